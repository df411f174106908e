<?php
/**
 * Writes Magento's app/etc/env.php from secret files, as the pods mount them, and settings
 * from the environment; with --watch it rewrites it whenever a mounted secret changes (a
 * rotated database password, a new Redis token), so PHP reads the new value on its next
 * request (env.php is on OPcache's blacklist: deploy/k8s/base/php-fpm/opcache-blacklist.txt).
 *
 *   php magestack-env.php [--watch SECONDS] [--once]
 *
 * Secrets (files, one value each; Kubernetes Secret volumes without subPath, so the kubelet
 * updates them in place), under MAGENTO_SECRETS_DIR (default /run/secrets/magento):
 *   db/username, db/password        Magento's own database user (never the master)
 *   redis-cache/password            Redis of the cache (empty or missing: no AUTH)
 *   redis-sessions/password         Redis of the sessions
 *   crypt/key                       Magento's crypt key
 * Settings (environment; no secret ever comes from here):
 *   MAGENTO_ENV_PHP (default /run/magento/env.php; the image's app/etc/env.php links to it)
 *   MAGENTO_DB_HOST, MAGENTO_DB_NAME (magento), MAGENTO_DB_SSL_CA (a CA bundle: TLS with
 *   server-certificate verification; empty: plaintext, for a local database only)
 *   MAGENTO_DB_PROXY (host:port of magestack dbproxy, deploy/k8s/components/dbproxy): when
 *   set, env.php's connections go to the proxy instead of MAGENTO_DB_HOST, which pools them
 *   below Aurora's max_connections and speaks TLS to Aurora itself; in the namespace,
 *   behind its NetworkPolicy, plain TCP unless MAGENTO_DB_PROXY_SSL_CA names the CA of the
 *   proxy's tls_cert_file. Empty (cron and migrations: long indexer transactions, DDL and
 *   the master user go straight to Aurora): MAGENTO_DB_HOST as without the proxy.
 *   MAGENTO_REDIS_CACHE_HOST, _PORT (6379), MAGENTO_REDIS_SESSIONS_HOST, _PORT (6379),
 *   MAGENTO_REDIS_TLS (1: tls:// to both, as ElastiCache's in-transit encryption needs)
 *   MAGENTO_HTTP_CACHE_HOSTS (host:port,…: where Magento sends PURGE), MAGENTO_MODE (production)
 *   MAGENTO_CRON_GROUPS (default,index): groups whose use_separate_process is switched off,
 *   since every group has its own CronJob (deploy/k8s/base/cron.yaml)
 *
 * Exit status: 0 written (or unchanged), 1 a required secret or setting is missing. Logs one
 * line per write, never a secret.
 */

declare(strict_types=1);

function me_log(string $msg): void
{
    fwrite(STDERR, '[magestack-env] ' . $msg . "\n");
}

function me_env(string $name, ?string $default = null): ?string
{
    $v = getenv($name);
    return ($v === false || $v === '') ? $default : $v;
}

function me_secret(string $dir, string $name, bool $required): ?string
{
    $f = $dir . '/' . $name;
    if (!is_readable($f)) {
        if ($required) {
            throw new RuntimeException("secret file $f missing");
        }
        return null;
    }
    return rtrim((string)file_get_contents($f), "\r\n");
}

/** The env.php array. */
function me_config(): array
{
    $dir = me_env('MAGENTO_SECRETS_DIR', '/run/secrets/magento');
    $dbHost = me_env('MAGENTO_DB_HOST');
    if ($dbHost === null) {
        throw new RuntimeException('MAGENTO_DB_HOST is not set');
    }
    $tls = me_env('MAGENTO_REDIS_TLS', '0') === '1';
    $redisHost = static function (string $h) use ($tls): string {
        return $tls ? 'tls://' . $h : $h;
    };
    $proxy = me_env('MAGENTO_DB_PROXY');
    $db = [
        'host' => $proxy ?? $dbHost,
        'dbname' => me_env('MAGENTO_DB_NAME', 'magento'),
        'username' => me_secret($dir, 'db/username', true),
        'password' => me_secret($dir, 'db/password', true),
        'model' => 'mysql4',
        'engine' => 'innodb',
        'initStatements' => 'SET NAMES utf8;',
        'active' => '1',
    ];
    $ca = $proxy === null ? me_env('MAGENTO_DB_SSL_CA') : me_env('MAGENTO_DB_PROXY_SSL_CA');
    if ($ca !== null) {
        // Aurora enforces require_secure_transport: TLS, and the server's certificate checked
        // against the RDS CA bundle built into the image.
        $db['driver_options'] = [
            PDO::MYSQL_ATTR_SSL_CA => $ca,
            PDO::MYSQL_ATTR_SSL_VERIFY_SERVER_CERT => true,
        ];
    }
    $cacheHost = me_env('MAGENTO_REDIS_CACHE_HOST');
    $sessHost = me_env('MAGENTO_REDIS_SESSIONS_HOST');
    if ($cacheHost === null || $sessHost === null) {
        throw new RuntimeException('MAGENTO_REDIS_CACHE_HOST and MAGENTO_REDIS_SESSIONS_HOST must be set');
    }
    $cacheBackend = [
        'server' => $redisHost($cacheHost),
        'port' => me_env('MAGENTO_REDIS_CACHE_PORT', '6379'),
        'password' => (string)me_secret($dir, 'redis-cache/password', false),
        'database' => '0',
        'compress_data' => '1',
    ];
    $cfg = [
        'backend' => ['frontName' => me_env('MAGENTO_ADMIN_FRONTNAME', 'admin')],
        'crypt' => ['key' => me_secret($dir, 'crypt/key', true)],
        'db' => ['table_prefix' => '', 'connection' => ['default' => $db, 'indexer' => $db]],
        'resource' => ['default_setup' => ['connection' => 'default']],
        'x-frame-options' => 'SAMEORIGIN',
        'MAGE_MODE' => me_env('MAGENTO_MODE', 'production'),
        'session' => [
            'save' => 'redis',
            'redis' => [
                'host' => $redisHost($sessHost),
                'port' => me_env('MAGENTO_REDIS_SESSIONS_PORT', '6379'),
                'password' => (string)me_secret($dir, 'redis-sessions/password', false),
                'database' => '0',
                'timeout' => '2.5',
                'persistent_identifier' => '',
                'compression_threshold' => '2048',
                'compression_library' => 'gzip',
                'log_level' => '1',
                'max_concurrency' => '6',
                'break_after_frontend' => '5',
                'break_after_adminhtml' => '30',
                'first_lifetime' => '600',
                'bot_first_lifetime' => '60',
                'bot_lifetime' => '7200',
                'disable_locking' => '0',
                'min_lifetime' => '60',
                'max_lifetime' => '2592000',
            ],
        ],
        'cache' => [
            'frontend' => [
                'default' => [
                    'id_prefix' => 'mg_',
                    'backend' => 'Magento\\Framework\\Cache\\Backend\\Redis',
                    'backend_options' => $cacheBackend,
                ],
            ],
        ],
        // The edges are the full-page cache (Magento's Varnish integration).
        'http_cache_hosts' => array_map(static function (string $hp): array {
            $p = explode(':', trim($hp), 2);
            return ['host' => $p[0], 'port' => $p[1] ?? '80'];
        }, array_filter(explode(',', me_env('MAGENTO_HTTP_CACHE_HOSTS', '')), 'strlen')),
        // Consumers run as Deployments: cron must not spawn them (they would die with its pod).
        'cron_consumers_runner' => ['cron_run' => false, 'max_messages' => 10000, 'consumers' => []],
        'queue' => ['consumers_wait_for_messages' => 1],
        'directories' => ['document_root_is_pub' => true],
        'cache_types' => array_fill_keys([
            'config', 'layout', 'block_html', 'collections', 'reflection', 'db_ddl', 'compiled_config',
            'eav', 'customer_notification', 'config_integration', 'config_integration_api',
            'full_page', 'config_webservice', 'translate',
        ], 1),
    ];
    $groups = array_filter(array_map('trim', explode(',', me_env('MAGENTO_CRON_GROUPS', 'default,index'))), 'strlen');
    foreach ($groups as $g) {
        $cfg['system']['default']['system']['cron'][$g]['use_separate_process'] = 0;
    }
    return $cfg;
}

/** Writes env.php atomically when its content changes; true when written. */
function me_write(string $target): bool
{
    $php = "<?php\n// Written by magestack-env.php from the mounted secrets; do not edit.\nreturn "
        . var_export(me_config(), true) . ";\n";
    if (is_readable($target) && hash_equals(hash('sha256', (string)file_get_contents($target)), hash('sha256', $php))) {
        return false;
    }
    $dir = dirname($target);
    if (!is_dir($dir) && !@mkdir($dir, 0750, true)) {
        throw new RuntimeException("cannot create $dir");
    }
    $tmp = $dir . '/.env.php.' . getmypid();
    if (@file_put_contents($tmp, $php) === false || !@chmod($tmp, 0640) || !@rename($tmp, $target)) {
        @unlink($tmp);
        throw new RuntimeException("cannot write $target");
    }
    if (function_exists('opcache_invalidate')) {
        @opcache_invalidate($target, true);
    }
    return true;
}

$target = me_env('MAGENTO_ENV_PHP', '/run/magento/env.php');
$args = array_slice($argv, 1);
$watch = 0;
for ($i = 0; $i < count($args); $i++) {
    if ($args[$i] === '--watch') {
        $watch = max(1, (int)($args[++$i] ?? 10));
    } elseif ($args[$i] === '--once') {
        $watch = 0;
    } else {
        me_log('usage: magestack-env.php [--watch SECONDS] [--once]');
        exit(2);
    }
}

do {
    try {
        if (me_write($target)) {
            me_log("wrote $target (db user " . (me_secret(me_env('MAGENTO_SECRETS_DIR', '/run/secrets/magento'), 'db/username', false) ?? '?') . ')');
        }
    } catch (Throwable $e) {
        me_log('ERROR: ' . $e->getMessage());
        if ($watch === 0) {
            exit(1);
        }
    }
    if ($watch > 0) {
        sleep($watch);
    }
} while ($watch > 0);
exit(0);
