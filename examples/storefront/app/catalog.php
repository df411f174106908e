<?php
/**
 * Fixed catalog data (what Magento would load from MySQL): categories, products, CMS pages.
 * Ids are stable because they appear in X-Magento-Tags (cat_c_<id>, cat_p_<id>, cms_p_<id>) and
 * tests purge by them.
 */

declare(strict_types=1);

/** Category id => [url path, name, parent id, product ids]. */
function sf_categories(): array
{
    static $cats = null;
    if ($cats === null) {
        $cats = [
            3 => ['path' => 'women', 'name' => 'Women', 'parent' => 2, 'products' => range(1, 24)],
            4 => ['path' => 'women/tops', 'name' => 'Tops', 'parent' => 3, 'products' => range(1, 16)],
            5 => ['path' => 'women/bottoms', 'name' => 'Bottoms', 'parent' => 3, 'products' => range(17, 24)],
            6 => ['path' => 'gear', 'name' => 'Gear', 'parent' => 2, 'products' => [1, 5, 9, 13]],
            7 => ['path' => 'sale', 'name' => 'Sale', 'parent' => 2, 'products' => [2, 4, 18, 20]],
        ];
    }
    return $cats;
}

function sf_category_by_path(string $path): ?array
{
    foreach (sf_categories() as $id => $c) {
        if ($c['path'] === $path) {
            return ['id' => $id] + $c;
        }
    }
    return null;
}

/** Product id => [sku, name, price (USD), category id, colour, description]. */
function sf_products(): array
{
    static $products = null;
    if ($products === null) {
        $names = [
            'Radiant Tee', 'Breathe-Easy Tank', 'Gwyn Endurance Tee', 'Juliana Short-Sleeve Tee',
            'Layla Tee', 'Minerva LumaTech V-Tee', 'Tiffany Fitness Tee', 'Karissa V-Neck Tee',
            'Diva Gym Tee', 'Gabrielle Micro Sleeve Top', 'Nona Fitness Tank', 'Antonia Racer Tank',
            'Zoe Tank', 'Chloe Compete Tank', 'Bella Tank', 'Prima Compete Bra Top',
            'Fiona Fitness Short', 'Maxima Drawstring Short', 'Angel Light Running Short',
            'Echo Fit Compression Short', 'Ida Workout Parachute Pant', 'Cora Parachute Pant',
            'Sylvia Capri', 'Karmen Yoga Pant',
        ];
        $colours = ['Blue', 'Orange', 'Purple', 'Black', 'White', 'Green', 'Red', 'Gray'];
        $products = [];
        foreach ($names as $i => $name) {
            $id = $i + 1;
            $products[$id] = [
                'id' => $id,
                'sku' => sprintf('WS%02d', $id),
                'name' => $name,
                'price' => 19.0 + ($id * 7 % 45) + 0.99 - 0.99 * ($id % 2),
                'category' => $id <= 16 ? 4 : 5,
                'colour' => $colours[$id % count($colours)],
                'description' => "The $name keeps you cool and dry through every workout. Moisture-wicking "
                    . 'fabric, flat-lock seams and a relaxed fit make it an everyday favourite.',
            ];
        }
    }
    return $products;
}

function sf_product_by_sku(string $sku): ?array
{
    foreach (sf_products() as $p) {
        if (strcasecmp($p['sku'], $sku) === 0) {
            return $p;
        }
    }
    return null;
}

/** CMS page id => [identifier, title]. Ids follow a default Magento install (1 = no-route, 2 = home). */
function sf_cms_pages(): array
{
    return [
        1 => ['identifier' => 'no-route', 'title' => '404 Not Found'],
        2 => ['identifier' => 'home', 'title' => 'Home Page'],
        3 => ['identifier' => 'enable-cookies', 'title' => 'Enable Cookies'],
        4 => ['identifier' => 'privacy-policy-cookie-restriction-mode', 'title' => 'Privacy Policy'],
        5 => ['identifier' => 'about-us', 'title' => 'About us'],
        6 => ['identifier' => 'customer-service', 'title' => 'Customer Service'],
    ];
}

function sf_cms_by_identifier(string $identifier): ?array
{
    foreach (sf_cms_pages() as $id => $p) {
        if ($p['identifier'] === $identifier) {
            return ['id' => $id] + $p;
        }
    }
    return null;
}
