<?php
/**
 * magestack storefront: a dependency-free PHP app that behaves like Magento 2 over HTTP.
 *
 * This file is the shared "framework": configuration, the HTTP context (currency, customer group),
 * the X-Magento-Vary cookie, sessions and Magento's three header sets (public / private / no-cache).
 * It lives outside pub/ (the docroot), like Magento's app/ directory, and is never served.
 *
 * Environment (inherited by PHP-FPM workers because the pool runs with clear_env = no):
 *   MAGESTACK_STOREFRONT_VAR          writable state dir (sessions, flags, markers); default
 *                                     sys_get_temp_dir()/magestack-storefront
 *   MAGESTACK_STOREFRONT_MATERIALIZE  "0" = static.php/get.php serve generated files without writing
 *                                     them under pub/ (default "1": write them, as Magento does)
 *   MAGESTACK_STOREFRONT_ANON_SESSION "0" = public pages do not start a session for cookie-less
 *                                     visitors (default "1": they send Set-Cookie: PHPSESSID, as Magento does)
 *   MAGESTACK_STOREFRONT_ESI          "1" = render the top menu as an <esi:include> (Magento with
 *                                     Varnish as the FPC); default "0" renders it inline
 *   MAGE_MODE                         "developer" adds X-Magento-Debug: 1 to pages
 */

declare(strict_types=1);

const SF_ROOT = __DIR__ . '/..';
const SF_PUBLIC_TTL = 86400;
const SF_DEFAULT_CURRENCY = 'USD';
const SF_CURRENCIES = [
    'USD' => ['symbol' => '$', 'rate' => 1.0, 'name' => 'US Dollar'],
    'EUR' => ['symbol' => '€', 'rate' => 0.92, 'name' => 'Euro'],
    'GBP' => ['symbol' => '£', 'rate' => 0.79, 'name' => 'British Pound'],
];

require_once __DIR__ . '/catalog.php';
require_once __DIR__ . '/layout.php';

/** Reads an env var from getenv() or $_SERVER (FastCGI params and pool env[] both land there). */
function sf_env(string $name, ?string $default = null): ?string
{
    $v = getenv($name);
    if ($v === false || $v === '') {
        $v = $_SERVER[$name] ?? null;
    }
    return ($v === null || $v === '') ? $default : (string)$v;
}

function sf_flag(string $name, bool $default): bool
{
    $v = sf_env($name);
    if ($v === null) {
        return $default;
    }
    return !in_array(strtolower($v), ['0', 'no', 'off', 'false'], true);
}

/** The writable state directory (sessions, health flag, cron marker, hit counters). */
function sf_var_dir(string $sub = ''): string
{
    static $base = null;
    if ($base === null) {
        $base = rtrim(sf_env('MAGESTACK_STOREFRONT_VAR', sys_get_temp_dir() . '/magestack-storefront'), '/');
    }
    $dir = $sub === '' ? $base : $base . '/' . $sub;
    if (!is_dir($dir)) {
        @mkdir($dir, 0777, true);
    }
    return $dir;
}

/** Reads app/etc/env.php (the fake deployment config), like Magento's DeploymentConfig. */
function sf_config(): array
{
    static $cfg = null;
    if ($cfg === null) {
        $cfg = require SF_ROOT . '/app/etc/env.php';
    }
    return $cfg;
}

// === Sessions ==================================================================================

function sf_session_init(): void
{
    static $done = false;
    if ($done) {
        return;
    }
    $done = true;
    ini_set('session.save_path', sf_var_dir('sessions'));
    ini_set('session.name', 'PHPSESSID');
    ini_set('session.use_strict_mode', '1');
    ini_set('session.use_cookies', '1');
    ini_set('session.use_only_cookies', '1');
    ini_set('session.cookie_path', '/');
    ini_set('session.cookie_httponly', '1');
    ini_set('session.cookie_samesite', 'Lax');
    ini_set('session.cookie_lifetime', '3600');
    ini_set('session.gc_probability', '0');
    // Magento sends its own cache headers; PHP's session cache limiter must not add any.
    session_cache_limiter('');
}

function sf_has_session_cookie(): bool
{
    $id = $_COOKIE['PHPSESSID'] ?? '';
    return is_string($id) && preg_match('/^[A-Za-z0-9,-]{16,128}$/', $id) === 1;
}

/** Read-only session access: no lock held, no Set-Cookie unless the id was rejected. */
function sf_session_read(): array
{
    if (!sf_has_session_cookie()) {
        return [];
    }
    sf_session_init();
    if (session_status() !== PHP_SESSION_ACTIVE) {
        @session_start(['read_and_close' => true]);
    }
    return $_SESSION ?? [];
}

/** Opens the session for writing (takes the file lock); callers must sf_session_close(). */
function sf_session_open(): void
{
    sf_session_init();
    if (session_status() !== PHP_SESSION_ACTIVE) {
        session_start();
    }
}

function sf_session_close(): void
{
    if (session_status() === PHP_SESSION_ACTIVE) {
        session_write_close();
    }
}

/** Starts a fresh session for a cookie-less visitor (Set-Cookie: PHPSESSID), as Magento does. */
function sf_session_touch_anonymous(): void
{
    if (sf_has_session_cookie() || !sf_flag('MAGESTACK_STOREFRONT_ANON_SESSION', true)) {
        return;
    }
    sf_session_open();
    $_SESSION['created_at'] = time();
    sf_session_close();
}

/**
 * A short tag for the visitor's session, printed in personalised responses so a test can tell
 * whose data a response carries (see examples/storefront/README.md): the first 12 hex digits of
 * md5("sf-visitor:" . session id), never the id itself. "-" when the request has no session.
 */
function sf_visitor_tag(): string
{
    $id = session_id();
    return ($id === false || $id === '') ? '-' : substr(md5('sf-visitor:' . $id), 0, 12);
}

/** 16 random hex digits per rendered response: a cached copy repeats them, a fresh render never does. */
function sf_render_nonce(): string
{
    return bin2hex(random_bytes(8));
}

// === HTTP context and the X-Magento-Vary cookie =================================================

/**
 * The HTTP context of this request. Public pages only consult the session when the request
 * carries an X-Magento-Vary cookie, so their content depends only on what a cache keys on
 * (URL + X-Magento-Vary), exactly the contract Magento relies on.
 */
function sf_context(bool $forceSession = false): array
{
    $ctx = ['currency' => SF_DEFAULT_CURRENCY, 'customer' => null, 'cart' => []];
    if ($forceSession || isset($_COOKIE['X-Magento-Vary'])) {
        $s = sf_session_read();
        if (isset($s['currency'], SF_CURRENCIES[$s['currency']])) {
            $ctx['currency'] = $s['currency'];
        }
        if (isset($s['customer']) && is_array($s['customer'])) {
            $ctx['customer'] = $s['customer'];
        }
        if (isset($s['cart']) && is_array($s['cart'])) {
            $ctx['cart'] = $s['cart'];
        }
    }
    return $ctx;
}

/** Magento's Http\Context::getVaryString(): sha1 of the JSON of the non-default values, key-sorted. */
function sf_vary_string(array $ctx): string
{
    $data = [];
    if ($ctx['currency'] !== SF_DEFAULT_CURRENCY) {
        $data['current_currency'] = $ctx['currency'];
    }
    if ($ctx['customer'] !== null) {
        $data['customer_group'] = (string)($ctx['customer']['group_id'] ?? 1);
        $data['customer_logged_in'] = true;
    }
    if ($data === []) {
        return '';
    }
    ksort($data);
    return sha1(json_encode($data, JSON_UNESCAPED_SLASHES));
}

/** Magento's Response\Http::sendVary(): set the cookie when the context is non-default, else delete it. */
function sf_send_vary(array $ctx): void
{
    $vary = sf_vary_string($ctx);
    if ($vary !== '') {
        setcookie('X-Magento-Vary', $vary, [
            'expires' => time() + 3600, 'path' => '/', 'httponly' => true, 'samesite' => 'Lax',
        ]);
    } elseif (isset($_COOKIE['X-Magento-Vary'])) {
        sf_delete_cookie('X-Magento-Vary', true);
    }
}

function sf_delete_cookie(string $name, bool $httpOnly): void
{
    setcookie($name, '', ['expires' => 1, 'path' => '/', 'httponly' => $httpOnly, 'samesite' => 'Lax']);
}

/** Magento's Version::process(): POST requests refresh the private_content_version cookie. */
function sf_private_content_version(): void
{
    if (($_SERVER['REQUEST_METHOD'] ?? 'GET') === 'POST') {
        setcookie('private_content_version', bin2hex(random_bytes(16)), [
            'expires' => time() + 315360000, 'path' => '/', 'samesite' => 'Lax',
        ]);
    }
}

// === Header sets ===============================================================================

function sf_http_date(int $ts): string
{
    return gmdate('D, d M Y H:i:s', $ts) . ' GMT';
}

/** Response\Http::setPublicHeaders($ttl). */
function sf_public_headers(int $ttl = SF_PUBLIC_TTL): void
{
    header('Pragma: cache');
    header("Cache-Control: max-age=$ttl, public, s-maxage=$ttl");
    header('Expires: ' . sf_http_date(time() + $ttl));
}

/** Response\Http::setPrivateHeaders($ttl). */
function sf_private_headers(int $ttl): void
{
    header('Pragma: cache');
    header("Cache-Control: private, max-age=$ttl");
    header('Expires: ' . sf_http_date(time() + $ttl));
}

/** Response\Http::setNoCacheHeaders(). */
function sf_nocache_headers(): void
{
    header('Pragma: no-cache');
    header('Cache-Control: no-store, no-cache, must-revalidate, max-age=0');
    header('Expires: ' . sf_http_date(time() - 31536000));
}

/** Security headers Magento adds to every page it renders. */
function sf_page_headers(): void
{
    header('Content-Type: text/html; charset=UTF-8');
    header('X-Frame-Options: SAMEORIGIN');
    header('X-Content-Type-Options: nosniff');
    header('X-XSS-Protection: 1; mode=block');
    header('X-UA-Compatible: IE=edge');
    if (sf_env('MAGE_MODE') === 'developer') {
        header('X-Magento-Debug: 1');
    }
}

function sf_tags_header(array $tags): void
{
    $tags = array_values(array_unique(array_filter($tags, 'strlen')));
    if ($tags !== []) {
        header('X-Magento-Tags: ' . implode(',', $tags));
    }
}

function sf_json(int $status, $data, bool $pretty = false): void
{
    http_response_code($status);
    header('Content-Type: application/json; charset=utf-8');
    $flags = JSON_UNESCAPED_SLASHES | JSON_UNESCAPED_UNICODE;
    if ($pretty) {
        $flags |= JSON_PRETTY_PRINT;
    }
    echo json_encode($data, $flags);
}

function sf_redirect(string $location, int $status = 302): void
{
    sf_nocache_headers();
    http_response_code($status);
    header('Location: ' . $location);
}

/** Request path (without query), percent-decoded, from REQUEST_URI as Magento routes on it. */
function sf_request_path(): string
{
    $uri = (string)($_SERVER['REQUEST_URI'] ?? '/');
    $path = parse_url('http://x' . (str_starts_with($uri, '/') ? $uri : '/' . $uri), PHP_URL_PATH);
    if (!is_string($path) || $path === '') {
        $path = '/';
    }
    return rawurldecode($path);
}

function sf_method(): string
{
    return strtoupper((string)($_SERVER['REQUEST_METHOD'] ?? 'GET'));
}

/** A request parameter from the query string or a form body. */
function sf_param(string $name, ?string $default = null): ?string
{
    $v = $_POST[$name] ?? $_GET[$name] ?? null;
    return is_string($v) ? $v : $default;
}

function sf_int_param(string $name, int $default, int $min, int $max): int
{
    $v = sf_param($name);
    if ($v === null || !is_numeric($v)) {
        return $default;
    }
    return max($min, min($max, (int)$v));
}

function sf_h(?string $s): string
{
    return htmlspecialchars((string)$s, ENT_QUOTES | ENT_SUBSTITUTE, 'UTF-8');
}

function sf_money(float $usd, string $currency): string
{
    $c = SF_CURRENCIES[$currency] ?? SF_CURRENCIES[SF_DEFAULT_CURRENCY];
    return $c['symbol'] . number_format($usd * $c['rate'], 2);
}

/** Writes a file atomically (temp + rename), creating parent directories. */
function sf_write_atomic(string $path, string $bytes): bool
{
    $dir = dirname($path);
    if (!is_dir($dir) && !@mkdir($dir, 0777, true) && !is_dir($dir)) {
        return false;
    }
    $tmp = $dir . '/.tmp.' . getmypid() . '.' . bin2hex(random_bytes(4));
    if (@file_put_contents($tmp, $bytes) !== strlen($bytes)) {
        @unlink($tmp);
        return false;
    }
    return @rename($tmp, $path);
}

/** Sends a file body with Content-Type and Content-Length (Magento's File\Transfer\Adapter\Http). */
function sf_send_file_bytes(string $bytes, string $name): void
{
    header('Content-Type: ' . sf_mime_type($name));
    header('Content-Length: ' . strlen($bytes));
    header('Last-Modified: ' . sf_http_date(time()));
    if (sf_method() !== 'HEAD') {
        echo $bytes;
    }
}

function sf_mime_type(string $name): string
{
    $ext = strtolower(pathinfo($name, PATHINFO_EXTENSION));
    return [
        'css' => 'text/css', 'js' => 'application/javascript', 'json' => 'application/json',
        'html' => 'text/html', 'txt' => 'text/plain', 'svg' => 'image/svg+xml',
        'png' => 'image/png', 'jpg' => 'image/jpeg', 'jpeg' => 'image/jpeg', 'gif' => 'image/gif',
        'webp' => 'image/webp', 'ico' => 'image/x-icon', 'woff2' => 'font/woff2', 'woff' => 'font/woff',
        'map' => 'application/json', 'xml' => 'application/xml', 'csv' => 'text/csv',
    ][$ext] ?? 'application/octet-stream';
}

/**
 * TEST-ONLY fault injection, for canary tests: a copy of the storefront whose app/etc/fault.ini
 * exists misbehaves as it says, on every page request. `error_ratio = 0.05` answers that share of
 * requests 500; `slow_factor = 2` makes each request about (1 + 2) times as slow (it sleeps twice
 * its own time, at least 2 x 5 ms, before the answer ends); `delay_ms = 40` adds a fixed delay.
 * The committed tree has no fault.ini.
 */
function sf_inject_faults(): void
{
    static $fault = null;
    if ($fault === null) {
        $file = __DIR__ . '/etc/fault.ini';
        $fault = is_file($file) ? (parse_ini_file($file) ?: []) : [];
    }
    if ($fault === []) {
        return;
    }
    $ratio = (float)($fault['error_ratio'] ?? 0);
    if ($ratio > 0 && mt_rand() / mt_getrandmax() < $ratio) {
        http_response_code(500);
        header('Cache-Control: no-store, no-cache, must-revalidate, max-age=0');
        echo "injected fault\n";
        exit;
    }
    $delay = (int)($fault['delay_ms'] ?? 0);
    if ($delay > 0) {
        usleep($delay * 1000);
    }
    $slow = (float)($fault['slow_factor'] ?? 0);
    if ($slow > 0) {
        $t0 = microtime(true);
        register_shutdown_function(static function () use ($t0, $slow): void {
            // At least slow_factor x 5 ms: the page itself renders in about a millisecond,
            // the request through the edge and FastCGI takes a few.
            usleep((int)(max(microtime(true) - $t0, 0.005) * $slow * 1e6));
        });
    }
}
