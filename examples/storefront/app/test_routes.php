<?php
/**
 * TEST-ONLY endpoints under /_test/. They exist so magestack's integration tests and benchmarks
 * can observe what the edge sends to PHP-FPM and provoke edge cases (large/slow/streamed bodies,
 * odd statuses, many headers). A real Magento has nothing like them; never deploy them.
 *
 * Endpoints that accept `cache=`:  cache=public [&ttl=N] [&tags=a,b]  -> Magento public headers
 *                                   cache=private [&ttl=N]              -> private headers
 *                                   cache=raw                           -> no caching headers at all
 *                                   (absent)                            -> no-cache headers
 */

declare(strict_types=1);

function sf_test_dispatch(string $p): void
{
    switch ($p) {
        case '/_test/echo':
            sf_test_echo();
            return;
        case '/_test/stream':
            sf_test_stream();
            return;
        case '/_test/sleep':
            sf_test_sleep();
            return;
        case '/_test/status':
            sf_test_status();
            return;
        case '/_test/headers':
            sf_test_headers();
            return;
        case '/_test/bench':
            sf_test_bench();
            return;
        case '/_test/hits':
            sf_test_hits();
            return;
        case '/_test/health':
            sf_test_health();
            return;
    }
    http_response_code(404);
    header('Content-Type: text/plain; charset=UTF-8');
    sf_nocache_headers();
    echo "unknown test endpoint\n";
}

function sf_test_cache_headers(): void
{
    $mode = $_GET['cache'] ?? '';
    $ttl = sf_int_param('ttl', SF_PUBLIC_TTL, 0, 31536000);
    if ($mode === 'public') {
        sf_public_headers($ttl);
        $tags = (string)($_GET['tags'] ?? '');
        if ($tags !== '') {
            sf_tags_header(explode(',', $tags));
        }
    } elseif ($mode === 'private') {
        sf_private_headers($ttl);
    } elseif ($mode !== 'raw') {
        sf_nocache_headers();
    }
}

/** What PHP received: method, body digest and the CGI/FastCGI params (by name prefix). */
function sf_test_echo(): void
{
    $body = (string)file_get_contents('php://input');
    $prefixes = ['REQUEST_', 'SCRIPT_', 'DOCUMENT_', 'SERVER_', 'REMOTE_', 'HTTP_', 'CONTENT_', 'MAGE_'];
    $exact = ['QUERY_STRING', 'HTTPS', 'PATH_INFO', 'GATEWAY_INTERFACE', 'REDIRECT_STATUS', 'PHP_SELF'];
    $params = [];
    foreach ($_SERVER as $k => $v) {
        if (!is_string($k) || !is_scalar($v)) {
            continue;
        }
        $keep = in_array($k, $exact, true);
        foreach ($prefixes as $prefix) {
            $keep = $keep || str_starts_with($k, $prefix);
        }
        // REQUEST_TIME(_FLOAT) are set by PHP itself, not the web server.
        if ($keep && $k !== 'REQUEST_TIME' && $k !== 'REQUEST_TIME_FLOAT') {
            $params[$k] = (string)$v;
        }
    }
    ksort($params);
    $files = [];
    foreach ($_FILES as $field => $f) {
        if (is_array($f) && is_string($f['tmp_name'] ?? null)) {
            $files[$field] = ['name' => $f['name'], 'size' => $f['size'], 'error' => $f['error'],
                'md5' => is_file($f['tmp_name']) ? md5_file($f['tmp_name']) : null];
        }
    }
    sf_test_cache_headers();
    sf_json(200, [
        'method' => $_SERVER['REQUEST_METHOD'] ?? null,
        'body_md5' => md5($body),
        'body_length' => strlen($body),
        'params' => (object)$params,
        'get' => (object)$_GET,
        'post' => (object)$_POST,
        'files' => (object)$files,
        'cookies' => (object)$_COOKIE,
        'ini' => [
            'memory_limit' => ini_get('memory_limit'),
            'max_execution_time' => ini_get('max_execution_time'),
            'session.auto_start' => ini_get('session.auto_start'),
        ],
        'pid' => getmypid(),
    ], true);
}

/**
 * Streams ?mb=N MiB (default 1; or ?bytes=N) in 64 KiB chunks, flushing after each one.
 * Every chunk is "0123456789abcdef" repeated, so the body's digest is predictable.
 * ?delay_ms=N sleeps between chunks; ?length=1 sends Content-Length up front.
 */
function sf_test_stream(): void
{
    set_time_limit(0);
    while (ob_get_level() > 0) {
        ob_end_clean();
    }
    $total = isset($_GET['bytes'])
        ? sf_int_param('bytes', 0, 0, PHP_INT_MAX)
        : sf_int_param('mb', 1, 0, 1 << 20) * 1048576;
    $delay = sf_int_param('delay_ms', 0, 0, 60000);
    $chunk = str_repeat('0123456789abcdef', 4096);
    header('Content-Type: application/octet-stream');
    header('X-Stream-Bytes: ' . $total);
    sf_nocache_headers();
    if (($_GET['length'] ?? '') === '1') {
        header('Content-Length: ' . $total);
    }
    if (sf_method() === 'HEAD') {
        return;
    }
    $sent = 0;
    while ($sent < $total) {
        $n = min(strlen($chunk), $total - $sent);
        echo $n === strlen($chunk) ? $chunk : substr($chunk, 0, $n);
        flush();
        $sent += $n;
        if (connection_aborted()) {
            return;
        }
        if ($delay > 0 && $sent < $total) {
            usleep($delay * 1000);
        }
    }
}

function sf_test_sleep(): void
{
    set_time_limit(0);
    $ms = sf_int_param('ms', 1000, 0, 3600000);
    usleep($ms * 1000);
    sf_test_cache_headers();
    sf_json(200, ['slept_ms' => $ms, 'pid' => getmypid(), 'uri' => $_SERVER['REQUEST_URI'] ?? null]);
}

/** Answers ?code=N (default 200); 3xx carry Location (?location=, default /). */
function sf_test_status(): void
{
    $code = sf_int_param('code', 200, 100, 599);
    if ($code < 200) {
        $code = 200; // PHP cannot send a final 1xx
    }
    http_response_code($code);
    sf_test_cache_headers();
    if ($code >= 300 && $code < 400 && $code !== 304) {
        header('Location: ' . (string)($_GET['location'] ?? '/'));
    }
    if ($code === 204 || $code === 304) {
        header_remove('Content-Type');
        return;
    }
    header('Content-Type: text/plain; charset=UTF-8');
    echo "status $code\n";
}

/** ?n=N Set-Cookie headers (default 40); ?big=BYTES adds one X-Test-Big header of that size. */
function sf_test_headers(): void
{
    $n = sf_int_param('n', 40, 0, 1000);
    for ($i = 1; $i <= $n; $i++) {
        header("Set-Cookie: sf_test_$i=value-$i-" . str_repeat('x', 32) . '; path=/; HttpOnly', false);
    }
    $big = sf_int_param('big', 0, 0, 1 << 20);
    if ($big > 0) {
        header('X-Test-Big: ' . str_repeat('b', $big));
    }
    sf_test_cache_headers();
    sf_json(200, ['set_cookie_headers' => $n, 'big_header_bytes' => $big]);
}

/**
 * A fixed HTML page for benchmarks: no session, no I/O. By default ~2 KB with no-cache headers
 * (never cached: the PHP path); `?kb=N` (1-512) makes it about N KiB (more product items), and
 * `cache=public` gives it Magento's public headers and tags (a full-page cache object).
 */
function sf_test_bench(): void
{
    sf_page_headers();
    if (($_GET['cache'] ?? '') === 'public') {
        sf_public_headers();
        sf_tags_header(['cat_c_4', 'cms_b_footer_links']);
    } else {
        sf_nocache_headers();
    }
    $kb = sf_int_param('kb', 0, 0, 512);
    // About 108 bytes per item; 12 items plus the frame make the 2 KB default.
    $count = $kb > 0 ? max(1, intdiv($kb * 1024 - 1200, 108)) : 12;
    $items = '';
    for ($i = 1; $i <= $count; $i++) {
        $items .= "<li class=\"item product\"><a href=\"/product/ws" . sprintf('%02d', $i % 100) . ".html\">Product $i</a> <span class=\"price\">\$" . (10 + $i % 90) . ".00</span></li>\n";
    }
    echo <<<HTML
<!doctype html>
<html lang="en">
<head><meta charset="utf-8"/><title>magestack bench page</title>
<link rel="stylesheet" type="text/css" href="/static/frontend/Magento/luma/en_US/css/styles-m.css" />
<meta name="viewport" content="width=device-width, initial-scale=1"/></head>
<body class="cms-index-index page-layout-1column">
<header class="page-header"><div class="header content"><a class="logo" href="/">magestack</a>
<ul class="header links"><li><a href="/customer/account/login">Sign In</a></li><li><a href="/checkout/cart/">My Cart</a></li></ul></div></header>
<main id="maincontent" class="page-main"><h1 class="page-title">Benchmark page</h1>
<p>This page is rendered by PHP through the front controller on every request. It is deliberately cheap:
no session, no database, no template engine, so a benchmark measures the web server and FastCGI path rather than PHP.</p>
<ol class="product-items">
{$items}</ol>
</main>
<footer class="page-footer"><div class="footer content"><ul class="footer links"><li><a href="/about-us">About us</a></li>
<li><a href="/customer-service">Customer Service</a></li><li><a href="/privacy-policy-cookie-restriction-mode">Privacy and Cookie Policy</a></li></ul>
<small class="copyright">Copyright © magestack storefront</small></div></footer>
</body>
</html>

HTML;
}

/** Counts requests per ?key= (file + flock); ?peek=1 reads without counting. Lets tests count upstream hits. */
function sf_test_hits(): void
{
    $key = preg_replace('/[^A-Za-z0-9_.-]/', '_', (string)($_GET['key'] ?? 'default'));
    $file = sf_var_dir('hits') . '/' . $key;
    $fh = fopen($file, 'c+');
    if ($fh === false) {
        sf_json(500, ['error' => 'cannot open counter']);
        return;
    }
    flock($fh, LOCK_EX);
    $n = (int)stream_get_contents($fh);
    if (($_GET['peek'] ?? '') !== '1') {
        $n++;
        ftruncate($fh, 0);
        rewind($fh);
        fwrite($fh, (string)$n);
        fflush($fh);
    }
    flock($fh, LOCK_UN);
    fclose($fh);
    if (($_GET['peek'] ?? '') === '1') {
        sf_nocache_headers();
    } else {
        sf_test_cache_headers();
    }
    sf_json(200, ['key' => $key, 'hits' => $n, 'pid' => getmypid()]);
}

/** ?state=down makes /health_check.php answer 500 (flag file in the var dir); ?state=up restores it. */
function sf_test_health(): void
{
    $flag = sf_var_dir() . '/unhealthy';
    $state = (string)($_GET['state'] ?? '');
    if ($state === 'down') {
        touch($flag);
    } elseif ($state === 'up') {
        @unlink($flag);
    }
    sf_nocache_headers();
    sf_json(200, ['healthy' => !file_exists($flag), 'flag' => $flag]);
}
