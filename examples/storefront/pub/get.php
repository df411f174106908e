<?php
/**
 * Media fallback, like Magento's pub/get.php. nginx sends missing /media/ files here
 * (try_files $uri $uri/ /get.php$is_args$args) with the original REQUEST_URI.
 *
 * - /media/catalog/product/cache/<32 hex>/<path> : the resized copy of
 *   /media/catalog/product/<path> (this app has no GD, so the "resize" is a copy). It is written
 *   to pub/media/... (unless MAGESTACK_STOREFRONT_MATERIALIZE=0), so the next request is served
 *   by the web server directly, exactly as with Magento.
 * - anything else: 404 with an empty body (Magento's Media app answers the same way).
 */

declare(strict_types=1);

require __DIR__ . '/../app/bootstrap.php';

$pub = __DIR__;
$path = sf_request_path();
$served = false;

if (preg_match('#^/(?:pub/)?media/(catalog/product/cache/[0-9a-f]{32}/((?:[^/]+/)*[^/]+\.(?:jpe?g|png|gif|webp)))$#i', $path, $m)
    && !str_contains($path, '..')) {
    $relative = $m[1];
    $original = $pub . '/media/catalog/product/' . $m[2];
    if (is_file($original)) {
        $bytes = (string)file_get_contents($original);
        if (sf_flag('MAGESTACK_STOREFRONT_MATERIALIZE', true)) {
            sf_write_atomic($pub . '/media/' . $relative, $bytes);
        }
        sf_send_file_bytes($bytes, $relative);
        $served = true;
    }
}

if (!$served) {
    http_response_code(404);
    header('Content-Type: text/plain; charset=UTF-8');
}
