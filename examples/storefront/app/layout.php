<?php
/**
 * HTML rendering: a Luma-like page shell (head with many assets, header panel, mega menu, footer,
 * inline x-magento-init JSON) so pages weigh 20-40 KB like real Magento pages.
 */

declare(strict_types=1);

/** The static deploy's version when pub/static/deployed_version.txt names none. */
const SF_DEFAULT_STATIC_VERSION = '1712345678';

/**
 * The release this docroot runs: pub/static/deployed_version.txt, as Magento's static content
 * deploy writes it (and as Magento puts it in static URLs: /static/versionNNN/...). Two copies of
 * the storefront with different files are two releases, each page marked with its own.
 */
function sf_release(): string
{
    static $release = null;
    if ($release === null) {
        $root = (string)($_SERVER['DOCUMENT_ROOT'] ?? '');
        if ($root === '') {
            $root = dirname(__DIR__) . '/pub';
        }
        $text = @file_get_contents($root . '/static/deployed_version.txt');
        $line = $text === false ? '' : trim(strtok($text, "\n") ?: '');
        $release = preg_match('/^[A-Za-z0-9._-]{1,64}$/', $line) ? $line : SF_DEFAULT_STATIC_VERSION;
    }
    return $release;
}

function sf_static_base(): string
{
    return '/static/version' . sf_release() . '/frontend/Magento/luma/en_US/';
}

/** Identities of the top menu block (what Magento's Topmenu block reports). */
function sf_topnav_tags(): array
{
    $tags = [];
    foreach (array_keys(sf_categories()) as $id) {
        $tags[] = 'cat_c_' . $id;
    }
    return $tags;
}

function sf_esi_enabled(): bool
{
    return sf_flag('MAGESTACK_STOREFRONT_ESI', false);
}

/** The URL Magento would put in <esi:include src="…"> for a block (https rewritten to http). */
function sf_esi_url(string $block): string
{
    $host = (string)($_SERVER['HTTP_HOST'] ?? 'localhost');
    $blocks = rawurlencode(json_encode([$block]));
    $handles = rawurlencode(base64_encode(json_encode(['default', 'catalog_category_view'])));
    return "http://$host/page_cache/block/esi/blocks/$blocks/handles/$handles/";
}

function sf_render_topnav(): string
{
    $cats = sf_categories();
    $out = "<nav class=\"navigation\" data-action=\"navigation\">\n<ul data-mage-init='{\"menu\":{\"responsive\":true, \"expanded\":true, \"position\":{\"my\":\"left top\",\"at\":\"left bottom\"}}}'>\n";
    $level0 = array_filter($cats, fn($c) => $c['parent'] === 2);
    $n = 0;
    foreach ($level0 as $id => $c) {
        $n++;
        $out .= "<li class=\"level0 nav-$n category-item level-top parent\"><a href=\"/{$c['path']}.html\" class=\"level-top\"><span>" . sf_h($c['name']) . "</span></a>\n<ul class=\"level0 submenu\">\n";
        $children = array_filter($cats, fn($x) => $x['parent'] === $id);
        $m = 0;
        foreach ($children as $cid => $child) {
            $m++;
            $out .= "  <li class=\"level1 nav-$n-$m category-item\"><a href=\"/{$child['path']}.html\"><span>" . sf_h($child['name']) . "</span></a></li>\n";
        }
        // Mega-menu filler: product-type shortcuts every Luma menu carries.
        foreach (['Hoodies &amp; Sweatshirts', 'Jackets', 'Tees', 'Bras &amp; Tanks', 'Pants', 'Shorts'] as $k => $label) {
            $m++;
            $slug = strtolower(preg_replace('/[^a-z]+/i', '-', html_entity_decode($label)));
            $out .= "  <li class=\"level1 nav-$n-$m category-item\"><a href=\"/{$c['path']}/$slug.html\"><span>$label</span></a></li>\n";
        }
        $out .= "</ul></li>\n";
    }
    $out .= "</ul>\n</nav>\n";
    return $out;
}

function sf_render_page(string $title, string $bodyClass, string $content, array $ctx, array $opts = []): string
{
    $cur = $ctx['currency'];
    $customer = $ctx['customer'];
    $static = sf_static_base();
    $release = sf_h(sf_release());
    $welcome = $customer !== null
        ? 'Welcome, ' . sf_h($customer['name']) . '!'
        : 'Default welcome msg!';
    $cartCount = 0;
    if (!empty($opts['show_cart'])) {
        foreach ($ctx['cart'] as $qty) {
            $cartCount += (int)$qty;
        }
    }
    $currencyOptions = '';
    foreach (SF_CURRENCIES as $code => $c) {
        $sel = $code === $cur ? ' class="active"' : '';
        $currencyOptions .= "<li$sel><a href=\"/directory/currency/switch?currency=$code\" data-post='{\"action\":\"/directory/currency/switch/\",\"data\":{\"currency\":\"$code\"}}'>$code - " . sf_h($c['name']) . "</a></li>\n";
    }
    $accountLinks = $customer !== null
        ? '<li><a href="/customer/account/">My Account</a></li><li><a href="/customer/account/logout">Sign Out</a></li>'
        : '<li class="authorization-link"><a href="/customer/account/login">Sign In</a></li><li><a href="/customer/account/create/">Create an Account</a></li>';

    $nav = sf_esi_enabled()
        ? '<esi:include src="' . sf_h(sf_esi_url('catalog.topnav')) . '" />' . "\n"
        : sf_render_topnav();

    $css = '';
    foreach (['mage/calendar.css', 'css/styles-m.css', 'mage/gallery/gallery.css', 'Magento_Swatches/css/swatches.css'] as $f) {
        $css .= "<link rel=\"stylesheet\" type=\"text/css\" media=\"all\" href=\"$static$f\" />\n";
    }
    $css .= "<link rel=\"stylesheet\" type=\"text/css\" media=\"screen and (min-width: 768px)\" href=\"{$static}css/styles-l.css\" />\n";
    $css .= "<link rel=\"stylesheet\" type=\"text/css\" media=\"print\" href=\"{$static}css/print.css\" />\n";
    foreach (['opensans/light/opensans-300', 'opensans/regular/opensans-400', 'opensans/semibold/opensans-600', 'opensans/bold/opensans-700'] as $font) {
        $css .= "<link rel=\"preload\" as=\"font\" crossorigin=\"anonymous\" href=\"{$static}fonts/$font.woff2\" />\n";
    }
    $js = "<script type=\"text/javascript\" src=\"{$static}requirejs/require.js\"></script>\n"
        . "<script type=\"text/javascript\" src=\"{$static}mage/requirejs/mixins.js\"></script>\n"
        . "<script type=\"text/javascript\" src=\"{$static}requirejs-config.js\"></script>\n"
        . "<script type=\"text/javascript\" src=\"{$static}js/storefront.js\"></script>\n";

    $initJson = sf_magento_init_json($ctx);
    $year = 2024;
    $footerLinks = '';
    foreach (['Search Terms' => '/search/term/popular/', 'Privacy and Cookie Policy' => '/privacy-policy-cookie-restriction-mode',
              'Advanced Search' => '/catalogsearch/advanced/', 'Orders and Returns' => '/sales/guest/form/',
              'Contact Us' => '/contact/', 'About us' => '/about-us', 'Customer Service' => '/customer-service'] as $label => $href) {
        $footerLinks .= "<li class=\"nav item\"><a href=\"$href\">" . sf_h($label) . "</a></li>\n";
    }
    $extraHead = $opts['head'] ?? '';
    $marker = $opts['marker'] ?? '';

    return <<<HTML
<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8"/>
<meta name="title" content="{$title}"/>
<meta name="description" content="Default Description"/>
<meta name="keywords" content="Magento, Varnish, magestack"/>
<meta name="robots" content="INDEX,FOLLOW"/>
<meta name="viewport" content="width=device-width, initial-scale=1"/>
<meta name="format-detection" content="telephone=no"/>
<meta name="magestack-release" content="{$release}"/>
<title>{$title}</title>
{$css}{$js}<link rel="icon" type="image/x-icon" href="{$static}Magento_Theme/favicon.ico" />
<link rel="shortcut icon" type="image/x-icon" href="{$static}Magento_Theme/favicon.ico" />
{$extraHead}
</head>
<body data-container="body" data-mage-init='{"loaderAjax": {}, "loader": { "icon": "{$static}images/loader-2.gif"}}' id="html-body" class="{$bodyClass} page-layout-2columns-left">
<div class="cookie-status-message" id="cookie-status">The store will not work correctly when cookies are disabled.</div>
<noscript><div class="message global noscript"><div class="content"><p><strong>JavaScript seems to be disabled in your browser.</strong> <span>For the best experience on our site, be sure to turn on Javascript in your browser.</span></p></div></div></noscript>
<div class="page-wrapper">
<header class="page-header">
<div class="panel wrapper"><div class="panel header">
<a class="action skip contentarea" href="#contentarea"><span>Skip to Content</span></a>
<ul class="header links">
<li class="greet welcome" data-bind="scope: 'customer'"><span class="logged-in" id="sf-welcome">{$welcome}</span></li>
{$accountLinks}
</ul>
<div class="switcher currency switcher-currency" id="switcher-currency">
<strong class="label switcher-label"><span>Currency</span></strong>
<div class="actions dropdown options switcher-options"><div class="action toggle switcher-trigger" id="switcher-currency-trigger">
<strong class="language-{$cur}"><span id="sf-currency">{$cur}</span></strong></div>
<ul class="dropdown switcher-dropdown">
{$currencyOptions}</ul></div></div>
</div></div>
<div class="header content">
<span data-action="toggle-nav" class="action nav-toggle"><span>Toggle Nav</span></span>
<a class="logo" href="/" title="" aria-label="store logo"><img src="{$static}images/logo.svg" title="" alt="" width="170" height="" /></a>
<div data-block="minicart" class="minicart-wrapper"><a class="action showcart" href="/checkout/cart/" data-bind="scope: 'minicart_content'"><span class="text">My Cart</span><span class="counter qty" id="sf-cart-count">{$cartCount}</span></a></div>
<div class="block block-search"><div class="block block-title"><strong>Search</strong></div>
<div class="block block-content"><form class="form minisearch" id="search_mini_form" action="/catalogsearch/result/" method="get">
<div class="field search"><label class="label" for="search" data-role="minisearch-label"><span>Search</span></label>
<div class="control"><input id="search" type="text" name="q" value="" placeholder="Search entire store here..." class="input-text" maxlength="128" role="combobox" aria-haspopup="false" aria-autocomplete="both" autocomplete="off" aria-expanded="false"/>
<div id="search_autocomplete" class="search-autocomplete"></div></div></div>
<div class="actions"><button type="submit" title="Search" class="action search" aria-label="Search"><span>Search</span></button></div>
</form></div></div>
</div>
</header>
<div class="sections nav-sections"><div class="section-items nav-sections-items" data-mage-init='{"tabs":{"openedState":"active"}}'>
<div class="section-item-title nav-sections-item-title" data-role="collapsible"><a class="nav-sections-item-switch" data-toggle="switch" href="#store.menu">Menu</a></div>
<div class="section-item-content nav-sections-item-content" id="store.menu" data-role="content">
{$nav}</div></div></div>
<main id="maincontent" class="page-main">
<a id="contentarea" tabindex="-1"></a>
<div class="page messages"><div data-placeholder="messages"></div></div>
<div class="columns"><div class="column main">
{$content}
</div></div>
</main>
<footer class="page-footer"><div class="footer content">
<div class="block newsletter"><div class="title"><strong>Newsletter</strong></div>
<div class="content"><form class="form subscribe" novalidate action="/newsletter/subscriber/new/" method="post" id="newsletter-validate-detail">
<div class="field newsletter"><div class="control"><label for="newsletter"><span class="label">Sign Up for Our Newsletter:</span>
<input name="email" type="email" id="newsletter" placeholder="Enter your email address" data-mage-init='{"mage/trim-input":{}}' data-validate="{required:true, 'validate-email':true}"/></label></div></div>
<div class="actions"><button class="action subscribe primary" title="Subscribe" type="submit" aria-label="Subscribe"><span>Subscribe</span></button></div>
</form></div></div>
<ul class="footer links">
{$footerLinks}</ul>
</div></footer>
<small class="copyright"><span>Copyright © 2013-present Magento, Inc. All rights reserved. (magestack storefront {$year})</span></small>
</div>
<script type="text/x-magento-init">{$initJson}</script>
<!-- sf:{$marker} -->
</body>
</html>

HTML;
}

/**
 * The inline JSON Magento pages carry (customer-data sections, section invalidation rules,
 * cookie config…). It is a big share of a real page's weight, so it is reproduced here.
 */
function sf_magento_init_json(array $ctx): string
{
    $sections = [];
    foreach (['cart', 'customer', 'compare-products', 'last-ordered-items', 'wishlist', 'instant-purchase',
              'loggedAsCustomer', 'multiplewishlist', 'persistent', 'review', 'directory-data', 'messages',
              'captcha', 'paypal-billing-agreement', 'recently_viewed_product', 'recently_compared_product',
              'product_data_storage', 'checkout-data'] as $s) {
        $sections[] = $s;
    }
    $invalidation = [];
    foreach (['checkout/cart/add', 'checkout/cart/delete', 'checkout/cart/updatepost', 'checkout/cart/updateitemoptions',
              'checkout/cart/couponpost', 'checkout/cart/estimatepost', 'checkout/cart/estimateupdatepost',
              'checkout/onepage/saveorder', 'checkout/sidebar/removeitem', 'checkout/sidebar/updateitemqty',
              'rest/*/v1/carts/*/payment-information', 'rest/*/v1/guest-carts/*/payment-information',
              'rest/*/v1/guest-carts/*/selected-payment-method', 'rest/*/v1/carts/*/selected-payment-method',
              'customer/address/*', 'customer/account/logout', 'customer/account/loginpost',
              'customer/account/createpost', 'customer/account/editpost', 'customer/ajax/login',
              'catalog/product_compare/add', 'catalog/product_compare/remove', 'catalog/product_compare/clear',
              'sales/guest/reorder', 'sales/order/reorder', 'checkout/onepage/saveorder',
              'review/product/post', 'wishlist/index/add', 'wishlist/index/remove', 'wishlist/index/updateitemoptions',
              'wishlist/index/update', 'wishlist/index/cart', 'wishlist/index/fromcart', 'wishlist/index/allcart',
              'wishlist/shared/allcart', 'wishlist/shared/cart', 'directory/currency/switch',
              'paypal/billing_agreement/returnwizard', 'loginascustomer/login/index',
              'persistent/index/unsetcookie', 'braintree/paypal/placeorder', 'authorizenet/directpost_payment/place',
              'multishipping/checkout/overviewpost', 'paypal/express/placeorder', 'paypal/payflowexpress/placeorder',
              'paypal/express/onauthorization', 'stripe/payment/index'] as $url) {
        $invalidation[$url] = array_slice($sections, (strlen($url) * 7) % 6, 5 + strlen($url) % 7);
    }
    $products = [];
    foreach (array_slice(sf_products(), 0, 8) as $p) {
        $products[] = [
            'id' => $p['id'], 'sku' => $p['sku'], 'name' => $p['name'],
            'url' => '/product/' . strtolower($p['sku']) . '.html',
            'price' => round($p['price'] * SF_CURRENCIES[$ctx['currency']]['rate'], 2),
            'currency' => $ctx['currency'],
            'image' => '/media/catalog/product/cache/0f831c1845fc143d00d6d1ebc49f446a/a/b/ab.jpg',
        ];
    }
    $init = [
        '*' => [
            'Magento_PageCache/js/form-key-provider' => ['isPaginationCacheEnabled' => 0],
            'mage/cookies' => [
                'expires' => null, 'path' => '/', 'domain' => '', 'secure' => false, 'lifetime' => 3600,
            ],
            'Magento_Customer/js/customer-data' => [
                'sectionLoadUrl' => '/customer/section/load/',
                'expirableSectionLifetime' => 60,
                'expirableSectionNames' => ['cart', 'persistent'],
                'cookieLifeTime' => '3600',
                'updateSessionUrl' => '/customer/account/updateSession/',
            ],
            'Magento_Customer/js/section-config' => [
                'sections' => $invalidation,
                'clientSideSections' => ['checkout-data', 'cart-data'],
                'baseUrls' => ['http://localhost/'],
                'sectionNames' => $sections,
            ],
            'Magento_Catalog/js/product/storage/storage-service' => [
                'recently_viewed_product' => ['lifetime' => 1000, 'allowToSendRequest' => null],
                'product_data_storage' => ['updateRequestConfig' => ['url' => '/rest/default/V1/products-render-info']],
                'products' => $products,
            ],
        ],
    ];
    return json_encode($init, JSON_UNESCAPED_SLASHES | JSON_UNESCAPED_UNICODE);
}

function sf_product_card(array $p, string $currency): string
{
    $url = '/product/' . strtolower($p['sku']) . '.html';
    $price = sf_money($p['price'], $currency);
    $name = sf_h($p['name']);
    return <<<HTML
<li class="item product product-item">
<div class="product-item-info" id="product-item-info_{$p['id']}" data-container="product-grid">
<a href="{$url}" class="product photo product-item-photo" tabindex="-1"><span class="product-image-container product-image-container-{$p['id']}"><span class="product-image-wrapper">
<img class="product-image-photo" src="/media/catalog/product/cache/0f831c1845fc143d00d6d1ebc49f446a/a/b/ab.jpg" loading="lazy" width="240" height="300" alt="{$name}"/></span></span></a>
<div class="product details product-item-details"><strong class="product name product-item-name"><a class="product-item-link" href="{$url}">{$name}</a></strong>
<div class="price-box price-final_price" data-role="priceBox" data-product-id="{$p['id']}" data-price-box="product-id-{$p['id']}">
<span class="price-container price-final_price tax weee"><span id="product-price-{$p['id']}" data-price-type="finalPrice" class="price-wrapper "><span class="price">{$price}</span></span></span></div>
<div class="swatch-opt-{$p['id']}" data-role="swatch-option-{$p['id']}"></div>
<div class="product-item-inner"><div class="product actions product-item-actions"><div class="actions-primary">
<form data-role="tocart-form" data-product-sku="{$p['sku']}" action="/checkout/cart/add?sku={$p['sku']}" method="post">
<input type="hidden" name="product" value="{$p['id']}"/><input name="form_key" type="hidden" value="" />
<button type="submit" title="Add to Cart" class="action tocart primary"><span>Add to Cart</span></button></form></div>
<div data-role="add-to-links" class="actions-secondary"><a href="#" class="action towishlist" title="Add to Wish List"><span>Wish List</span></a></div></div></div>
</div></div></li>

HTML;
}
