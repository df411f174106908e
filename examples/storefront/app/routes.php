<?php
/**
 * The front controller's router and controllers (what Magento's index.php dispatches to).
 * Routing is on REQUEST_URI, exactly like Magento: the web server only has to send every
 * non-file request to /index.php with the original REQUEST_URI.
 */

declare(strict_types=1);

require_once __DIR__ . '/test_routes.php';

function sf_dispatch(): void
{
    sf_inject_faults();
    $path = sf_request_path();
    $p = rtrim($path, '/');
    if ($p === '' || $p === '/index.php') {
        $p = '/';
    }

    // TEST-ONLY endpoints (see test_routes.php); a real Magento has nothing under /_test/.
    if (str_starts_with($p, '/_test/')) {
        sf_test_dispatch($p);
        return;
    }

    if ($p === '/') {
        sf_home();
        return;
    }
    if (preg_match('#^/product/([A-Za-z0-9_-]+)\.html$#', $p, $m)) {
        sf_product_page($m[1]);
        return;
    }
    if (preg_match('#^/([a-z0-9/-]+)\.html$#', $p, $m) && ($cat = sf_category_by_path($m[1])) !== null) {
        sf_category_page($cat);
        return;
    }
    // Magento's cron writes pub/sitemap.xml; here it is generated, with the same shape.
    if ($p === '/sitemap.xml') {
        sf_sitemap();
        return;
    }
    if ($p === '/sitemap_index.xml') {
        sf_sitemap_index();
        return;
    }
    switch (strtolower($p)) {
        case '/customer/account/login':
        case '/customer/account/loginpost':
            sf_method() === 'POST' ? sf_login_post() : sf_login_form();
            return;
        case '/customer/account':
        case '/customer/account/index':
            sf_account_page();
            return;
        case '/customer/account/logout':
            sf_logout();
            return;
        case '/customer/section/load':
            sf_section_load();
            return;
        case '/page_cache/block/render':
            sf_block_render();
            return;
        case '/checkout/cart':
        case '/checkout/cart/index':
            sf_cart_page();
            return;
        case '/checkout/cart/add':
            sf_cart_add();
            return;
        case '/directory/currency/switch':
            sf_currency_switch();
            return;
        case '/graphql':
            sf_graphql();
            return;
        case '/admin/import/run':
            sf_admin_import();
            return;
    }
    if (preg_match('#^/rest/(?:[a-z0-9_]+/)?V1/products/([^/]+)$#', $p, $m)) {
        sf_rest_product(rawurldecode($m[1]));
        return;
    }
    // ESI URLs carry percent-encoded JSON and base64 (which may contain %2F): match the raw path.
    $rawPath = (string)parse_url('http://x' . (string)($_SERVER['REQUEST_URI'] ?? '/'), PHP_URL_PATH);
    if (preg_match('#^/page_cache/block/esi/blocks/([^/]+)/handles/([^/]+)/?$#', $rawPath, $m)) {
        sf_esi_block($m[1]);
        return;
    }
    if (preg_match('#^/([a-z0-9-]+)$#', $p, $m) && ($cms = sf_cms_by_identifier($m[1])) !== null
        && !in_array($cms['identifier'], ['home', 'no-route'], true)) {
        sf_cms_page($cms);
        return;
    }
    sf_noroute();
}

// === Public (cacheable) pages ===================================================================

/**
 * Renders a cacheable page the way Magento does with the FPC in Varnish mode: public cache
 * headers, X-Magento-Tags, the X-Magento-Vary cookie, and the 2.4.8 rule that a request whose
 * X-Magento-Vary cookie does not match the computed context gets no-cache headers.
 */
function sf_public_page(string $title, string $bodyClass, callable $content, array $tags, int $status = 200): void
{
    $ctx = sf_context();
    $vary = sf_vary_string($ctx);
    $reqVary = $_COOKIE['X-Magento-Vary'] ?? null;

    sf_page_headers();
    if ($reqVary !== null && $reqVary !== $vary) {
        sf_nocache_headers();
    } else {
        sf_public_headers();
    }
    if (!sf_esi_enabled()) {
        $tags = array_merge($tags, sf_topnav_tags());
    }
    sf_tags_header(array_merge($tags, ['store', 'cms_b']));
    sf_send_vary($ctx);
    sf_session_touch_anonymous();
    http_response_code($status);
    $marker = 'public currency=' . $ctx['currency'] . ' vary=' . ($vary === '' ? '-' : $vary) . ' render=' . sf_render_nonce();
    echo sf_render_page(sf_h($title), $bodyClass, $content($ctx), $ctx, ['marker' => $marker]);
}

function sf_home(): void
{
    $featured = array_slice(sf_products(), 0, 8);
    $tags = ['cms_p_2'];
    foreach ($featured as $p) {
        $tags[] = 'cat_p_' . $p['id'];
    }
    sf_public_page('Home Page', 'cms-home cms-index-index page-layout-1column', function (array $ctx) use ($featured): string {
        $grid = '';
        foreach ($featured as $p) {
            $grid .= sf_product_card($p, $ctx['currency']);
        }
        return <<<HTML
<div class="page-title-wrapper"><h1 class="page-title"><span class="base" data-ui-id="page-title-wrapper">Home Page</span></h1></div>
<div class="blocks-promo">
<a class="block-promo home-main" href="/women.html"><img src="/media/wysiwyg/home/home-main.jpg" alt="" /><span class="content bg-white"><span class="info">New Luma Yoga Collection</span><strong class="title">Get fit and look fab in new seasonal styles</strong><span class="action more button">Shop New Yoga</span></span></a>
<div class="block-promo-wrapper block-promo-hp"><a class="block-promo home-pants" href="/women/bottoms.html"><span class="content"><strong class="title">PANTS</strong><span class="info">Luma pants when you need them most</span></span></a>
<a class="block-promo home-t-shirts" href="/women/tops.html"><span class="content"><strong class="title">Even more ways to mix and match</strong><span class="info">Buy 3 Luma tees get a 4th free</span></span></a>
<a class="block-promo home-erin" href="/sale.html"><span class="content"><strong class="title">Take it from Erin</strong><span class="info">Luma founder Erin Renny shares her favorites!</span></span></a></div>
</div>
<div class="content-heading"><h2 class="title">Hot Sellers</h2><p class="info">Here is what`s trending on Luma right now</p></div>
<div class="block widget block-products-list grid"><div class="block-content"><div class="products-grid grid"><ol class="product-items widget-product-grid">
{$grid}</ol></div></div></div>
HTML;
    }, $tags);
}

function sf_category_page(array $cat): void
{
    $perPage = 12;
    $ids = $cat['products'];
    $pages = max(1, (int)ceil(count($ids) / $perPage));
    $page = sf_int_param('p', 1, 1, $pages);
    $all = sf_products();
    $items = [];
    foreach (array_slice($ids, ($page - 1) * $perPage, $perPage) as $id) {
        $items[] = $all[$id];
    }
    $tags = ['cat_c_' . $cat['id'], 'cat_c_p_' . $cat['id']];
    foreach ($items as $p) {
        $tags[] = 'cat_p_' . $p['id'];
    }
    sf_public_page($cat['name'], 'page-products categorypath-' . str_replace('/', '-', $cat['path']) . ' category-' . $cat['path'] . ' catalog-category-view',
        function (array $ctx) use ($cat, $items, $page, $pages, $ids): string {
            $grid = '';
            foreach ($items as $p) {
                $grid .= sf_product_card($p, $ctx['currency']);
            }
            $pager = '';
            for ($i = 1; $i <= $pages; $i++) {
                $pager .= $i === $page
                    ? "<li class=\"item current\"><strong class=\"page\"><span>$i</span></strong></li>"
                    : "<li class=\"item\"><a class=\"page\" href=\"/{$cat['path']}.html?p=$i\"><span>$i</span></a></li>";
            }
            $name = sf_h($cat['name']);
            $count = count($ids);
            return <<<HTML
<div class="page-title-wrapper"><h1 class="page-title" id="page-title-heading"><span class="base" data-ui-id="page-title-wrapper">{$name}</span></h1></div>
<div class="toolbar toolbar-products" data-mage-init='{"productListToolbarForm":{"mode":"product_list_mode","direction":"product_list_dir","order":"product_list_order","limit":"product_list_limit","modeDefault":"grid","directionDefault":"asc","orderDefault":"position","limitDefault":12,"url":"\/{$cat['path']}.html","formKey":"","post":false}}'>
<p class="toolbar-amount" id="toolbar-amount">Items <span class="toolbar-number">{$count}</span></p>
<div class="pages"><strong class="label pages-label" id="paging-label">Page</strong><ul class="items pages-items" aria-labelledby="paging-label">{$pager}</ul></div>
</div>
<div class="products wrapper grid products-grid" data-page="{$page}"><ol class="products list items product-items">
{$grid}</ol></div>
HTML;
        }, $tags);
}

function sf_product_page(string $sku): void
{
    $product = sf_product_by_sku($sku);
    if ($product === null) {
        sf_noroute();
        return;
    }
    $all = sf_products();
    $related = [];
    for ($k = 1; $k <= 4; $k++) {
        $related[] = $all[(($product['id'] + $k * 5 - 1) % count($all)) + 1];
    }
    $tags = ['cat_p_' . $product['id'], 'cat_c_' . $product['category']];
    foreach ($related as $r) {
        $tags[] = 'cat_p_' . $r['id'];
    }
    sf_public_page($product['name'], 'catalog-product-view product-' . strtolower($product['sku']) . ' page-layout-1column',
        function (array $ctx) use ($product, $related): string {
            $name = sf_h($product['name']);
            $price = sf_money($product['price'], $ctx['currency']);
            $desc = sf_h($product['description']);
            $rel = '';
            foreach ($related as $r) {
                $rel .= sf_product_card($r, $ctx['currency']);
            }
            $sizes = '';
            foreach (['XS', 'S', 'M', 'L', 'XL'] as $i => $s) {
                $sizes .= "<div class=\"swatch-option text\" id=\"option-label-size-143-item-" . (166 + $i) . "\" data-option-label=\"$s\" tabindex=\"0\" role=\"option\">$s</div>";
            }
            return <<<HTML
<div class="product-info-main">
<div class="page-title-wrapper product"><h1 class="page-title"><span class="base" data-ui-id="page-title-wrapper" itemprop="name">{$name}</span></h1></div>
<div class="product-reviews-summary empty"><div class="reviews-actions"><a class="action add" href="#review-form">Be the first to review this product</a></div></div>
<div class="product-info-price"><div class="price-box price-final_price" data-role="priceBox" data-product-id="{$product['id']}">
<span class="price-container price-final_price tax weee" itemprop="offers" itemscope itemtype="http://schema.org/Offer">
<span id="product-price-{$product['id']}" data-price-type="finalPrice" class="price-wrapper"><span class="price" id="sf-price">{$price}</span></span>
<meta itemprop="price" content="{$product['price']}" /><meta itemprop="priceCurrency" content="{$ctx['currency']}" /></span></div>
<div class="product-info-stock-sku"><div class="stock available" title="Availability"><span>In stock</span></div>
<div class="product attribute sku"><strong class="type">SKU</strong><div class="value" itemprop="sku">{$product['sku']}</div></div></div></div>
<div class="product-add-form"><form data-product-sku="{$product['sku']}" action="/checkout/cart/add?sku={$product['sku']}" method="post" id="product_addtocart_form">
<input type="hidden" name="product" value="{$product['id']}" /><input type="hidden" name="selected_configurable_option" value="" />
<input name="form_key" type="hidden" value="" />
<div class="product-options-wrapper" id="product-options-wrapper"><div class="swatch-attribute size" data-attribute-code="size" data-attribute-id="143">
<span class="swatch-attribute-label">Size</span><div class="swatch-attribute-options clearfix">{$sizes}</div></div>
<div class="swatch-attribute color"><span class="swatch-attribute-label">Color</span><span class="swatch-attribute-selected-option">{$product['colour']}</span></div></div>
<div class="box-tocart"><div class="fieldset"><div class="field qty"><label class="label" for="qty"><span>Qty</span></label>
<div class="control"><input type="number" name="qty" id="qty" min="0" value="1" title="Qty" class="input-text qty" /></div></div>
<div class="actions"><button type="submit" title="Add to Cart" class="action primary tocart" id="product-addtocart-button"><span>Add to Cart</span></button></div></div></div>
</form></div></div>
<div class="product media"><div class="gallery-placeholder _block-content-loading" data-gallery-role="gallery-placeholder">
<img alt="main product photo" class="gallery-placeholder__image" src="/media/catalog/product/cache/0f831c1845fc143d00d6d1ebc49f446a/a/b/ab.jpg" width="700" height="700" /></div></div>
<div class="product info detailed"><div class="product data items" data-mage-init='{"tabs":{"openedState":"active"}}'>
<div class="data item title" data-role="collapsible" id="tab-label-description"><a class="data switch" tabindex="-1" data-toggle="trigger" href="#description">Details</a></div>
<div class="data item content" id="description" data-role="content"><div class="product attribute description"><div class="value"><p>{$desc}</p>
<ul><li>Relaxed fit.</li><li>Short-Sleeve.</li><li>Crew neckline.</li><li>Machine wash/dry.</li></ul></div></div></div>
<div class="data item title" data-role="collapsible" id="tab-label-additional"><a class="data switch" tabindex="-1" data-toggle="trigger" href="#additional">More Information</a></div>
<div class="data item content" id="additional" data-role="content"><table class="data table additional-attributes" id="product-attribute-specs-table">
<tbody><tr><th class="col label" scope="row">Style</th><td class="col data">Tee</td></tr><tr><th class="col label" scope="row">Material</th><td class="col data">Cotton, Polyester</td></tr>
<tr><th class="col label" scope="row">Pattern</th><td class="col data">Solid</td></tr><tr><th class="col label" scope="row">Climate</th><td class="col data">Indoor, Warm</td></tr></tbody></table></div>
</div></div>
<div class="block related" data-mage-init='{"relatedProducts":{"relatedCheckbox":".related.checkbox"}}' data-limit="0" data-shuffle="0">
<div class="block-title title"><strong id="block-related-heading" role="heading" aria-level="2">Related Products</strong></div>
<div class="block-content content"><div class="products wrapper grid products-grid products-related"><ol class="products list items product-items">
{$rel}</ol></div></div></div>
HTML;
        }, $tags);
}

function sf_cms_page(array $cms): void
{
    sf_public_page($cms['title'], 'cms-' . $cms['identifier'] . ' cms-page-view page-layout-1column', function (array $ctx) use ($cms): string {
        $title = sf_h($cms['title']);
        $paras = '';
        $lines = [
            'With more than 230 stores spanning 43 states and growing, Luma is a nationally recognized active wear manufacturer and retailer.',
            'We are passionate about active lifestyles – and it goes way beyond apparel. At Luma, wellness is a way of life.',
            'We do not believe age, gender or any other factor should hold you back, so our gear is made for every body.',
            'Our buyers travel the globe to find the freshest collections and the most durable, comfortable fabrics.',
        ];
        for ($i = 0; $i < 8; $i++) {
            $paras .= '<p>' . sf_h($lines[$i % count($lines)]) . "</p>\n";
        }
        return "<div class=\"page-title-wrapper\"><h1 class=\"page-title\"><span class=\"base\">$title</span></h1></div>\n"
            . "<div class=\"cms-content\" data-cms-page-id=\"{$cms['id']}\">\n$paras</div>";
    }, ['cms_p_' . $cms['id']]);
}

/** Magento's noroute: the CMS "404 Not Found" page, status 404, cacheable like any CMS page. */
function sf_noroute(): void
{
    sf_public_page('404 Not Found', 'cms-no-route cms-noroute-index page-layout-2columns-right', function (array $ctx): string {
        return <<<HTML
<div class="page-title-wrapper"><h1 class="page-title"><span class="base" data-ui-id="page-title-wrapper">Whoops, our bad...</span></h1></div>
<dl><dt>The page you requested was not found, and we have a fine guess why.</dt>
<dd><ul class="disc"><li>If you typed the URL directly, please make sure the spelling is correct.</li>
<li>If you clicked on a link to get here, the link is outdated.</li></ul></dd></dl>
<dl><dt>What can you do?</dt><dd>Have no fear, help is near! There are many ways you can get back on track with Magento Store.</dd>
<dd><ul class="disc"><li><a href="#" onclick="history.go(-1); return false;">Go back</a> to the previous page.</li>
<li>Use the search bar at the top of the page to search for your products.</li>
<li>Follow these links to get you back on track!<br /><a href="/">Store Home</a> <span class="separator">|</span> <a href="/customer/account/">My Account</a></li></ul></dd></dl>
HTML;
    }, ['cms_p_1'], 404);
}

/** The ESI endpoint Magento renders blocks on when Varnish is the FPC (blocks = JSON list). */
function sf_esi_block(string $blocksParam): void
{
    $blocks = json_decode(rawurldecode($blocksParam), true);
    header('Content-Type: text/html; charset=UTF-8');
    header('X-Frame-Options: SAMEORIGIN');
    if (is_array($blocks) && ($blocks[0] ?? null) === 'catalog.topnav') {
        sf_public_headers(3600);
        sf_tags_header(sf_topnav_tags());
        echo sf_render_topnav();
        return;
    }
    sf_public_headers(0);
}

// === Personalised (never cached) pages ==========================================================

function sf_private_page(string $title, string $bodyClass, string $content, array $ctx): void
{
    sf_page_headers();
    sf_nocache_headers();
    sf_send_vary($ctx);
    $marker = 'private visitor=' . sf_visitor_tag() . ' nonce=' . sf_render_nonce();
    echo sf_render_page(sf_h($title), $bodyClass, $content, $ctx, ['show_cart' => true, 'marker' => $marker]);
}

function sf_form_key(): string
{
    if (empty($_SESSION['form_key'])) {
        $_SESSION['form_key'] = substr(strtr(base64_encode(random_bytes(12)), '+/', 'AB'), 0, 16);
    }
    setcookie('form_key', $_SESSION['form_key'], ['expires' => time() + 3600, 'path' => '/', 'samesite' => 'Lax']);
    return $_SESSION['form_key'];
}

function sf_login_form(): void
{
    sf_session_open();
    $ctx = sf_context(true);
    if ($ctx['customer'] !== null) {
        sf_session_close();
        sf_redirect('/customer/account/');
        return;
    }
    $formKey = sf_form_key();
    $error = $_SESSION['login_error'] ?? '';
    unset($_SESSION['login_error']);
    sf_session_close();
    $msg = $error !== '' ? '<div class="message-error error message"><div>' . sf_h($error) . '</div></div>' : '';
    $content = <<<HTML
<div class="page-title-wrapper"><h1 class="page-title"><span class="base">Customer Login</span></h1></div>
{$msg}
<div class="login-container"><div class="block block-customer-login"><div class="block-title"><strong id="block-customer-login-heading" role="heading" aria-level="2">Registered Customers</strong></div>
<div class="block-content" aria-labelledby="block-customer-login-heading">
<form class="form form-login" action="/customer/account/login" method="post" id="login-form">
<input name="form_key" type="hidden" value="{$formKey}" />
<fieldset class="fieldset login"><div class="field note">If you have an account, sign in with your email address.</div>
<div class="field email required"><label class="label" for="email"><span>Email</span></label><div class="control"><input name="email" value="" autocomplete="off" id="email" type="email" class="input-text" title="Email" /></div></div>
<div class="field password required"><label for="pass" class="label"><span>Password</span></label><div class="control"><input name="password" type="password" autocomplete="off" class="input-text" id="pass" title="Password" /></div></div>
<div class="actions-toolbar"><div class="primary"><button type="submit" class="action login primary" name="send" id="send2"><span>Sign In</span></button></div></div>
</fieldset></form></div></div></div>
HTML;
    sf_private_page('Customer Login', 'customer-account-login', $content, $ctx);
}

function sf_customer_from_email(string $email): array
{
    $local = strtolower(explode('@', $email)[0]);
    if ($local === 'roni_cost') {
        $name = 'Veronica Costello';
    } else {
        $name = implode(' ', array_map('ucfirst', preg_split('/[._+-]+/', $local, -1, PREG_SPLIT_NO_EMPTY) ?: ['Customer']));
    }
    return [
        'id' => (crc32($email) % 100000) + 1,
        'email' => $email,
        'name' => $name,
        // "+wholesale" addresses land in the Wholesale group: a second logged-in vary context.
        'group_id' => str_contains($local, '+wholesale') ? 2 : 1,
    ];
}

function sf_login_post(): void
{
    sf_private_content_version();
    // Accept both this app's field names and Magento's login[username] / login[password].
    $login = is_array($_POST['login'] ?? null) ? $_POST['login'] : [];
    $email = trim((string)(sf_param('email') ?? (is_string($login['username'] ?? null) ? $login['username'] : '')));
    $password = (string)(sf_param('password') ?? (is_string($login['password'] ?? null) ? $login['password'] : ''));
    sf_session_open();
    if ($email === '' || $password === '' || !filter_var($email, FILTER_VALIDATE_EMAIL)) {
        $_SESSION['login_error'] = 'Invalid login or password.';
        sf_session_close();
        sf_redirect('/customer/account/login');
        return;
    }
    session_regenerate_id(true);
    $_SESSION['customer'] = sf_customer_from_email($email);
    sf_form_key();
    $ctx = sf_context_from_session();
    sf_session_close();
    sf_send_vary($ctx);
    sf_redirect('/customer/account/');
}

/** Context from the currently open session (used right after writing it). */
function sf_context_from_session(): array
{
    return [
        'currency' => isset($_SESSION['currency'], SF_CURRENCIES[$_SESSION['currency']]) ? $_SESSION['currency'] : SF_DEFAULT_CURRENCY,
        'customer' => isset($_SESSION['customer']) && is_array($_SESSION['customer']) ? $_SESSION['customer'] : null,
        'cart' => isset($_SESSION['cart']) && is_array($_SESSION['cart']) ? $_SESSION['cart'] : [],
    ];
}

function sf_account_page(): void
{
    $ctx = sf_context(true);
    if ($ctx['customer'] === null) {
        sf_redirect('/customer/account/login');
        return;
    }
    $c = $ctx['customer'];
    $name = sf_h($c['name']);
    $email = sf_h($c['email']);
    $group = $c['group_id'] === 2 ? 'Wholesale' : 'General';
    $content = <<<HTML
<div class="page-title-wrapper"><h1 class="page-title"><span class="base">My Account</span></h1></div>
<div class="block block-dashboard-info"><div class="block-title"><strong>Account Information</strong></div>
<div class="block-content"><div class="box box-information"><strong class="box-title"><span>Contact Information</span></strong>
<div class="box-content"><p id="sf-account-name">{$name}</p><p id="sf-account-email">{$email}</p><p>Group: {$group}</p><p>Display currency: {$ctx['currency']}</p></div>
<div class="box-actions"><a class="action edit" href="/customer/account/edit/"><span>Edit</span></a> <a href="/customer/account/logout" class="action">Sign Out</a></div></div></div></div>
HTML;
    sf_private_page('My Account', 'account customer-account-index', $content, $ctx);
}

function sf_logout(): void
{
    if (sf_has_session_cookie()) {
        sf_session_open();
        $_SESSION = [];
        session_destroy();
    }
    sf_delete_cookie('PHPSESSID', true);
    sf_delete_cookie('X-Magento-Vary', true);
    sf_delete_cookie('form_key', false);
    sf_redirect('/');
}

function sf_cart_page(): void
{
    $ctx = sf_context(true);
    $all = sf_products();
    $rows = '';
    $subtotal = 0.0;
    foreach ($ctx['cart'] as $sku => $qty) {
        $p = sf_product_by_sku((string)$sku);
        if ($p === null) {
            continue;
        }
        $line = $p['price'] * (int)$qty;
        $subtotal += $line;
        $rows .= '<tr class="item-info" data-sku="' . sf_h($p['sku']) . '"><td class="col item">' . sf_h($p['name'])
            . '</td><td class="col price">' . sf_money($p['price'], $ctx['currency']) . '</td><td class="col qty">' . (int)$qty
            . '</td><td class="col subtotal">' . sf_money($line, $ctx['currency']) . "</td></tr>\n";
    }
    unset($all);
    $who = $ctx['customer'] !== null ? sf_h($ctx['customer']['name']) . "'s cart" : 'Guest cart';
    $body = $rows === ''
        ? '<div class="cart-empty"><p>You have no items in your shopping cart.</p></div>'
        : "<table id=\"shopping-cart-table\" class=\"cart items data table\"><tbody>\n$rows</tbody></table>"
            . '<div class="cart-summary"><strong>Subtotal</strong> <span id="sf-subtotal">' . sf_money($subtotal, $ctx['currency']) . '</span></div>';
    $content = "<div class=\"page-title-wrapper\"><h1 class=\"page-title\"><span class=\"base\">Shopping Cart</span></h1></div>\n"
        . "<p id=\"sf-cart-owner\">$who</p>\n$body";
    sf_private_page('Shopping Cart', 'checkout-cart-index', $content, $ctx);
}

function sf_cart_add(): void
{
    if (sf_method() !== 'POST') {
        sf_redirect('/checkout/cart/');
        return;
    }
    sf_private_content_version();
    $sku = (string)sf_param('sku', '');
    $qty = sf_int_param('qty', 1, 1, 1000);
    $product = sf_product_by_sku($sku);
    sf_session_open();
    if ($product !== null) {
        $cart = $_SESSION['cart'] ?? [];
        $cart[$product['sku']] = ($cart[$product['sku']] ?? 0) + $qty;
        $_SESSION['cart'] = $cart;
    }
    $ctx = sf_context_from_session();
    sf_session_close();
    sf_send_vary($ctx);
    sf_redirect('/checkout/cart/');
}

function sf_currency_switch(): void
{
    sf_private_content_version();
    $currency = strtoupper((string)sf_param('currency', ''));
    sf_session_open();
    if (isset(SF_CURRENCIES[$currency])) {
        $_SESSION['currency'] = $currency;
    }
    $ctx = sf_context_from_session();
    sf_session_close();
    sf_send_vary($ctx);
    $back = '/';
    $ref = (string)($_SERVER['HTTP_REFERER'] ?? '');
    if ($ref !== '') {
        $parts = parse_url($ref);
        $host = strtolower(explode(':', (string)($_SERVER['HTTP_HOST'] ?? ''))[0]);
        if (is_array($parts) && (!isset($parts['host']) || strtolower($parts['host']) === $host)) {
            $back = ($parts['path'] ?? '/') . (isset($parts['query']) ? '?' . $parts['query'] : '');
            if (!str_starts_with($back, '/') || str_starts_with($back, '//')) {
                $back = '/';
            }
        }
    }
    sf_redirect($back);
}

/** Magento's customer-data section endpoint: the private content of a cached page, as JSON. */
function sf_section_load(): void
{
    $ctx = sf_context(true);
    $count = 0;
    foreach ($ctx['cart'] as $qty) {
        $count += (int)$qty;
    }
    sf_nocache_headers();
    sf_json(200, [
        'customer' => $ctx['customer'] === null ? [] : [
            'fullname' => $ctx['customer']['name'], 'firstname' => explode(' ', $ctx['customer']['name'])[0],
            'websiteId' => '1',
        ],
        'cart' => ['summary_count' => $count, 'items' => array_keys($ctx['cart'])],
        'directory-data' => ['currency' => $ctx['currency']],
        // Not a Magento section: whose session this answer was rendered for, and a per-response nonce.
        'sf_debug' => ['visitor' => sf_visitor_tag(), 'nonce' => sf_render_nonce()],
    ]);
}

/**
 * Magento's PageCache Block\Render controller: the private blocks of a cached page, rendered for
 * one visitor as JSON `{"<block name>": "<html>"}` with private headers (`Cache-Control: private,
 * max-age=31536000`, Helper\Data::PRIVATE_MAX_AGE_CACHE). The URL is the same for every visitor
 * and contains neither /customer nor /checkout, so a Varnish-like cache looks it up and must not
 * store it because of `private`. Like Magento it needs an AJAX request (X-Requested-With:
 * XMLHttpRequest or ?isAjax=1); anything else gets the noroute page. It opens the session, so a
 * cookie-less visitor gets `Set-Cookie: PHPSESSID` (kept by Varnish: private responses return
 * before its Set-Cookie stripping).
 */
function sf_block_render(): void
{
    $ajax = strcasecmp((string)($_SERVER['HTTP_X_REQUESTED_WITH'] ?? ''), 'XMLHttpRequest') === 0
        || sf_param('isAjax') !== null || sf_param('ajax') !== null;
    if (!$ajax) {
        sf_noroute();
        return;
    }
    $blocks = json_decode((string)sf_param('blocks', '[]'), true);
    sf_session_open();
    $_SESSION['created_at'] = $_SESSION['created_at'] ?? time();
    $ctx = sf_context_from_session();
    $visitor = sf_visitor_tag();
    sf_session_close();
    $data = [];
    foreach (is_array($blocks) ? $blocks : [] as $name) {
        if ($name === 'header.customer.welcome') {
            $data[$name] = '<span class="logged-in" id="sf-welcome">' . ($ctx['customer'] !== null
                ? 'Welcome, ' . sf_h($ctx['customer']['name']) . '!' : 'Default welcome msg!') . '</span>';
        } elseif ($name === 'minicart') {
            $count = 0;
            $rows = '';
            foreach ($ctx['cart'] as $sku => $qty) {
                $count += (int)$qty;
                $rows .= '<li class="item product" data-sku="' . sf_h((string)$sku) . '">' . (int)$qty . '</li>';
            }
            $data[$name] = '<span class="counter qty" id="sf-cart-count">' . $count . '</span><ol class="minicart-items">' . $rows . '</ol>';
        }
    }
    $data['sf_debug'] = ['visitor' => $visitor, 'nonce' => sf_render_nonce()];
    sf_send_vary($ctx);
    sf_private_headers(31536000);
    sf_json(200, $data);
}

// === APIs ======================================================================================

function sf_rest_product(string $sku): void
{
    if (sf_method() !== 'GET' && sf_method() !== 'HEAD') {
        sf_json(401, ['message' => "The consumer isn't authorized to access %resources.", 'parameters' => ['resources' => 'Magento_Catalog::products']]);
        return;
    }
    $p = sf_product_by_sku($sku);
    if ($p === null) {
        sf_json(404, ['message' => "The product that was requested doesn't exist. Verify the product and try again."]);
        return;
    }
    sf_json(200, [
        'id' => $p['id'], 'sku' => $p['sku'], 'name' => $p['name'], 'attribute_set_id' => 9,
        'price' => $p['price'], 'status' => 1, 'visibility' => 4, 'type_id' => 'simple',
        'created_at' => '2024-01-15 10:00:00', 'updated_at' => '2024-01-15 10:00:00', 'weight' => 1,
        'extension_attributes' => [
            'website_ids' => [1],
            'category_links' => [['position' => 0, 'category_id' => (string)$p['category']]],
        ],
        'custom_attributes' => [
            ['attribute_code' => 'description', 'value' => '<p>' . $p['description'] . '</p>'],
            ['attribute_code' => 'url_key', 'value' => strtolower($p['sku'])],
            ['attribute_code' => 'color', 'value' => $p['colour']],
        ],
    ]);
}

/**
 * A tiny GraphQL endpoint: answers `products` and `storeConfig` queries with the shapes Magento
 * uses, and reproduces the caching contract (X-Magento-Cache-Id; GET cacheable, POST not).
 */
function sf_graphql(): void
{
    $method = sf_method();
    $query = '';
    $variables = [];
    if ($method === 'GET' || $method === 'HEAD') {
        $query = (string)($_GET['query'] ?? '');
        $variables = json_decode((string)($_GET['variables'] ?? '{}'), true) ?: [];
    } elseif ($method === 'POST') {
        $body = json_decode((string)file_get_contents('php://input'), true);
        $query = is_array($body) ? (string)($body['query'] ?? '') : '';
        $variables = is_array($body) ? ($body['variables'] ?? []) : [];
    } else {
        sf_json(405, ['errors' => [['message' => 'Request method not allowed']]]);
        return;
    }
    $currency = strtoupper((string)($_SERVER['HTTP_CONTENT_CURRENCY'] ?? SF_DEFAULT_CURRENCY));
    if (!isset(SF_CURRENCIES[$currency])) {
        $currency = SF_DEFAULT_CURRENCY;
    }
    $store = (string)($_SERVER['HTTP_STORE'] ?? 'default');
    $bearer = preg_match('/^Bearer\s+(\S+)/i', (string)($_SERVER['HTTP_AUTHORIZATION'] ?? ''), $m) ? $m[1] : null;

    $factors = [
        'CURRENCY' => $currency, 'CUSTOMER_GROUP' => $bearer !== null ? '1' : '0', 'CUSTOMER_TAX_RATE' => '0',
        'IS_LOGGEDIN' => $bearer !== null ? 'true' : 'false', 'STORE' => $store,
    ];
    ksort($factors);
    $salt = (string)(sf_config()['cache']['graphql']['id_salt'] ?? 'salt');
    $cacheId = hash('sha256', strtoupper(implode('|', array_values($factors))) . '|' . $salt);

    if ($query === '') {
        sf_nocache_headers();
        sf_json(200, ['errors' => [['message' => 'Syntax Error: Unexpected <EOF>', 'extensions' => ['category' => 'graphql']]]]);
        return;
    }
    $data = [];
    $tags = [];
    $cacheable = true;
    if (stripos($query, 'mutation') !== false) {
        $cacheable = false;
    }
    if (stripos($query, 'storeConfig') !== false) {
        $data['storeConfig'] = ['store_code' => $store, 'base_currency_code' => SF_DEFAULT_CURRENCY, 'default_display_currency_code' => $currency, 'store_name' => 'Default Store View'];
        $tags[] = 'store';
    }
    if (stripos($query, 'products') !== false) {
        $wanted = null;
        if (preg_match('/sku\s*:\s*\{\s*eq\s*:\s*"([^"]+)"/', $query, $mm)) {
            $wanted = $mm[1];
        } elseif (isset($variables['sku']) && is_string($variables['sku'])) {
            $wanted = $variables['sku'];
        }
        $items = [];
        foreach (sf_products() as $p) {
            if ($wanted !== null && strcasecmp($p['sku'], $wanted) !== 0) {
                continue;
            }
            $items[] = ['id' => $p['id'], 'sku' => $p['sku'], 'name' => $p['name'], 'url_key' => strtolower($p['sku']),
                'price_range' => ['minimum_price' => ['final_price' => ['value' => round($p['price'] * SF_CURRENCIES[$currency]['rate'], 2), 'currency' => $currency]]]];
            $tags[] = 'cat_p_' . $p['id'];
            if ($wanted === null && count($items) >= 6) {
                break;
            }
        }
        $data['products'] = ['total_count' => count($items), 'items' => $items];
        array_unshift($tags, 'cat_p');
    }
    if (stripos($query, 'customer') !== false && stripos($query, 'customerGroup') === false) {
        $cacheable = false;
        if ($bearer === null) {
            sf_nocache_headers();
            header('X-Magento-Cache-Id: ' . $cacheId);
            sf_json(200, ['errors' => [['message' => 'The current customer isn\'t authorized.', 'extensions' => ['category' => 'graphql-authorization']]], 'data' => ['customer' => null]]);
            return;
        }
        $data['customer'] = ['firstname' => 'Graph', 'lastname' => 'Customer', 'email' => 'graph.customer@example.com'];
    }
    header('X-Magento-Cache-Id: ' . $cacheId);
    if ($cacheable && ($method === 'GET' || $method === 'HEAD')) {
        sf_public_headers();
        sf_tags_header($tags);
    } else {
        sf_nocache_headers();
    }
    sf_json(200, ['data' => $data]);
}

// === Admin =====================================================================================

/**
 * A slow admin import: works for ?seconds=N (default 5), holding one PHP worker. ?busy=P
 * (0-100, default 50) is the share of its time spent on CPU; the rest waits, as an import
 * waits on the database.
 */
function sf_admin_import(): void
{
    set_time_limit(0);
    $seconds = sf_int_param('seconds', 5, 0, 3600);
    $busy = sf_int_param('busy', 50, 0, 100);
    $start = microtime(true);
    $deadline = $start + $seconds;
    $rows = 0;
    $digest = '';
    $buf = str_repeat('magento-import-row;', 512);
    while (microtime(true) < $deadline) {
        // Busy (parsing/hashing rows), then waiting (the database), like a real import.
        $until = microtime(true) + 0.04 * $busy / 100;
        while (microtime(true) < $until) {
            $digest = md5($digest . $buf);
            $rows++;
        }
        usleep((int)(40000 * (100 - $busy) / 100));
    }
    sf_nocache_headers();
    header('X-Frame-Options: SAMEORIGIN');
    sf_json(200, [
        'status' => 'done', 'seconds' => $seconds, 'elapsed_ms' => (int)round((microtime(true) - $start) * 1000),
        'rows' => $rows, 'digest' => $digest, 'pid' => getmypid(),
    ]);
}

// === Sitemaps (what Magento's sitemap generator writes to pub/) ===================================

/** Absolute URLs on the requested host, as Magento writes them with the store's base URL. */
function sf_sitemap_base(): string
{
    $host = (string)($_SERVER['HTTP_HOST'] ?? 'localhost');
    $https = strtolower((string)($_SERVER['HTTP_X_FORWARDED_PROTO'] ?? '')) === 'https';
    return ($https ? 'https' : 'http') . '://' . $host;
}

/**
 * Every public page: home, categories, products, CMS pages (not the 404 page), with priorities
 * like Magento's defaults (home 1.0, categories 0.5, products 1.0, CMS 0.25).
 */
function sf_sitemap(): void
{
    $base = sf_sitemap_base();
    $urls = [[$base . '/', '1.0']];
    foreach (sf_categories() as $c) {
        $urls[] = [$base . '/' . $c['path'] . '.html', '0.5'];
    }
    foreach (sf_products() as $p) {
        $urls[] = [$base . '/product/' . strtolower($p['sku']) . '.html', '1.0'];
    }
    // Not /customer-service: Magento's VCL passes every URL containing "/customer", so no cache
    // can hold it and a warmer would only load PHP with it.
    foreach (sf_cms_pages() as $c) {
        if (!in_array($c['identifier'], ['home', 'no-route', 'customer-service'], true)) {
            $urls[] = [$base . '/' . $c['identifier'], '0.25'];
        }
    }
    header('Content-Type: application/xml; charset=UTF-8');
    header('Cache-Control: no-store');
    echo '<?xml version="1.0" encoding="UTF-8"?>' . "\n";
    echo '<urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">' . "\n";
    foreach ($urls as [$loc, $prio]) {
        echo '<url><loc>' . htmlspecialchars($loc, ENT_XML1) . '</loc><changefreq>daily</changefreq><priority>' . $prio . "</priority></url>\n";
    }
    echo "</urlset>\n";
}

/** A sitemap index pointing at the sitemap (Magento writes one once a sitemap is split). */
function sf_sitemap_index(): void
{
    header('Content-Type: application/xml; charset=UTF-8');
    header('Cache-Control: no-store');
    echo '<?xml version="1.0" encoding="UTF-8"?>' . "\n";
    echo '<sitemapindex xmlns="http://www.sitemaps.org/schemas/sitemap/0.9"><sitemap><loc>'
        . htmlspecialchars(sf_sitemap_base() . '/sitemap.xml', ENT_XML1) . "</loc></sitemap></sitemapindex>\n";
}
