<?php
/**
 * magestack readiness probe for Magento 2: OPcache warmth, Redis, database. Answers JSON.
 *
 * Install it in Magento's pub/ (beside health_check.php). It is not in the PHP whitelist of
 * Magento's nginx.conf.sample, so neither nginx nor magestack runs it for HTTP clients; the
 * edge calls it directly over FastCGI (readiness.health_script) on every pool check.
 *
 * Response: 200 when every check that runs passes, else 503, with
 *   {"ready":bool,
 *    "opcache":{"enabled":bool,"cached_scripts":N,"expected_scripts":M,"cached_expected":K,"ratio":K/M},
 *    "redis":[{"name":"cache","ok":bool,"error":"..."}, ...],
 *    "db":{"ok":bool,"error":"..."}}
 * The edge compares opcache.ratio with its own readiness.opcache_min_ratio (the ratio is only
 * reported when a manifest exists).
 *
 * Environment (php-fpm pool env[...] or the container):
 *   MAGENTO_ROOT                 Magento's root (default: the parent of the directory of the
 *                                script FPM runs, i.e. pub/..)
 *   MAGESTACK_HEALTH_CHECKS      checks to run, comma-separated: opcache,redis,db (default all)
 *   MAGESTACK_REDIS_CA           CA bundle for Redis over TLS (a `tls://` server in env.php, as
 *                                ElastiCache's in-transit encryption needs); default: the
 *                                system's trust store
 *   MAGESTACK_OPCACHE_MANIFEST   file listing the scripts a warm worker has cached, one path a
 *                                line (default <root>/var/magestack/opcache-manifest.txt).
 *                                Write it from a warm pod: ?write_manifest=1 (FastCGI only,
 *                                like the rest of this script).
 */

declare(strict_types=1);

header('Content-Type: application/json');
header('Cache-Control: no-store');

$root = getenv('MAGENTO_ROOT') ?: dirname(dirname((string)realpath($_SERVER['SCRIPT_FILENAME'] ?? __FILE__)));
$checks = array_filter(array_map('trim', explode(',', getenv('MAGESTACK_HEALTH_CHECKS') ?: 'opcache,redis,db')));
$manifest = getenv('MAGESTACK_OPCACHE_MANIFEST') ?: $root . '/var/magestack/opcache-manifest.txt';
$out = ['ready' => true];

/** OPcache statistics; the share of the manifest's scripts that are cached. */
function mh_opcache(string $manifest): array
{
    if (!function_exists('opcache_get_status')) {
        return ['enabled' => false];
    }
    $st = @opcache_get_status(false);
    if (!is_array($st) || empty($st['opcache_enabled'])) {
        return ['enabled' => false];
    }
    $o = [
        'enabled' => true,
        'cached_scripts' => (int)($st['opcache_statistics']['num_cached_scripts'] ?? 0),
        'hits' => (int)($st['opcache_statistics']['hits'] ?? 0),
        'misses' => (int)($st['opcache_statistics']['misses'] ?? 0),
        'memory_used' => (int)($st['memory_usage']['used_memory'] ?? 0),
        'memory_free' => (int)($st['memory_usage']['free_memory'] ?? 0),
    ];
    if (is_readable($manifest)) {
        $expected = array_values(array_filter(array_map('trim', (array)file($manifest)), 'strlen'));
        $cached = 0;
        foreach ($expected as $script) {
            if (opcache_is_script_cached($script)) {
                $cached++;
            }
        }
        $o['expected_scripts'] = count($expected);
        $o['cached_expected'] = $cached;
        $o['ratio'] = count($expected) > 0 ? round($cached / count($expected), 4) : 1.0;
    }
    return $o;
}

/** PING over the Redis protocol (no phpredis needed), with AUTH when configured; TLS when
 *  the server is written tls://host or ssl://host (Magento's and Credis' spelling). */
function mh_redis(string $name, string $host, int $port, string $password): array
{
    $r = ['name' => $name, 'ok' => false];
    $ctx = stream_context_create();
    if (preg_match('#^(tls|ssl)://(.+)$#', $host, $m)) {
        $ssl = ['verify_peer' => true, 'verify_peer_name' => true, 'peer_name' => $m[2]];
        $ca = getenv('MAGESTACK_REDIS_CA');
        if (is_string($ca) && $ca !== '') {
            $ssl['cafile'] = $ca;
        }
        $ctx = stream_context_create(['ssl' => $ssl]);
        $target = 'tls://' . $m[2] . ':' . $port;
    } else {
        $target = (strpos($host, '/') === 0) ? 'unix://' . $host : 'tcp://' . $host . ':' . $port;
    }
    $s = @stream_socket_client($target, $errno, $errstr, 2.0, STREAM_CLIENT_CONNECT, $ctx);
    if ($s === false) {
        $r['error'] = "connect $target: $errstr";
        return $r;
    }
    stream_set_timeout($s, 1);
    if ($password !== '') {
        // RESP array form: a password with spaces or quotes is one argument.
        fwrite($s, "*2\r\n$4\r\nAUTH\r\n$" . strlen($password) . "\r\n" . $password . "\r\n");
        $auth = (string)fgets($s);
        if (strncmp($auth, '+OK', 3) !== 0) {
            $r['error'] = 'AUTH refused';
            fclose($s);
            return $r;
        }
    }
    fwrite($s, "PING\r\n");
    $line = (string)fgets($s);
    fclose($s);
    $r['ok'] = strncmp($line, '+PONG', 5) === 0;
    if (!$r['ok']) {
        $r['error'] = 'no PONG: ' . trim($line);
    }
    return $r;
}

/** The Redis servers of app/etc/env.php: cache frontends and sessions. */
function mh_redis_targets(array $env): array
{
    $t = [];
    foreach (($env['cache']['frontend'] ?? []) as $id => $fe) {
        $o = $fe['backend_options'] ?? null;
        if (is_array($o) && isset($o['server'])) {
            $t[] = ['cache:' . $id, (string)$o['server'], (int)($o['port'] ?? 6379), (string)($o['password'] ?? '')];
        }
    }
    if (($env['session']['save'] ?? '') === 'redis' && isset($env['session']['redis']['host'])) {
        $s = $env['session']['redis'];
        $t[] = ['session', (string)$s['host'], (int)($s['port'] ?? 6379), (string)($s['password'] ?? '')];
    }
    return $t;
}

function mh_db(array $env): array
{
    $c = $env['db']['connection']['default'] ?? null;
    if (!is_array($c)) {
        return ['ok' => false, 'error' => 'no db.connection.default in env.php'];
    }
    if (!extension_loaded('pdo_mysql')) {
        return ['ok' => false, 'error' => 'pdo_mysql is not loaded'];
    }
    $host = (string)($c['host'] ?? 'localhost');
    $dsn = (strpos($host, '/') === 0)
        ? 'mysql:unix_socket=' . $host . ';dbname=' . ($c['dbname'] ?? '')
        : 'mysql:host=' . str_replace(':', ';port=', $host) . ';dbname=' . ($c['dbname'] ?? '');
    // env.php's driver_options as Magento passes them to PDO: TLS (the CA bundle, server
    // certificate verification) where the server requires it (Aurora: require_secure_transport).
    $options = [PDO::ATTR_TIMEOUT => 2, PDO::ATTR_ERRMODE => PDO::ERRMODE_EXCEPTION];
    foreach ((array)($c['driver_options'] ?? []) as $k => $v) {
        $options[(int)$k] = $v;
    }
    try {
        $pdo = new PDO($dsn, (string)($c['username'] ?? ''), (string)($c['password'] ?? ''), $options);
        $cipher = $pdo->query("SHOW SESSION STATUS LIKE 'Ssl_cipher'")->fetch(PDO::FETCH_NUM);
        $pdo->query('SELECT 1');
        return ['ok' => true, 'tls' => is_array($cipher) && ($cipher[1] ?? '') !== ''];
    } catch (Throwable $e) {
        // The message never carries the password; keep it short.
        return ['ok' => false, 'error' => substr($e->getMessage(), 0, 200)];
    }
}

if (($_GET['write_manifest'] ?? '') === '1' && PHP_SAPI === 'fpm-fcgi') {
    $st = function_exists('opcache_get_status') ? @opcache_get_status(true) : false;
    $scripts = is_array($st) ? array_keys($st['scripts'] ?? []) : [];
    // Files only: with preloading OPcache also lists a "$PRELOAD$" pseudo-script, which
    // opcache_is_script_cached() never reports and would keep the ratio below 1.
    $scripts = array_values(array_filter($scripts, static function ($s): bool {
        return is_string($s) && strncmp($s, '/', 1) === 0;
    }));
    sort($scripts);
    @mkdir(dirname($manifest), 0775, true);
    $ok = @file_put_contents($manifest, implode("\n", $scripts) . "\n") !== false;
    http_response_code($ok ? 200 : 500);
    echo json_encode(['manifest' => $manifest, 'scripts' => count($scripts), 'written' => $ok]), "\n";
    exit;
}

$env = @include $root . '/app/etc/env.php';
$env = is_array($env) ? $env : [];

if (in_array('opcache', $checks, true)) {
    $out['opcache'] = mh_opcache($manifest);
}
if (in_array('redis', $checks, true)) {
    $out['redis'] = array_map(static function (array $t): array {
        return mh_redis($t[0], $t[1], $t[2], $t[3]);
    }, mh_redis_targets($env));
    foreach ($out['redis'] as $r) {
        $out['ready'] = $out['ready'] && $r['ok'];
    }
}
if (in_array('db', $checks, true)) {
    $out['db'] = mh_db($env);
    $out['ready'] = $out['ready'] && $out['db']['ok'];
}

http_response_code($out['ready'] ? 200 : 503);
echo json_encode($out, JSON_UNESCAPED_SLASHES), "\n";
