<?php
/**
 * Like Magento's pub/health_check.php: 200 with an empty body when healthy, 500 (empty) when not.
 * Magento checks every DB connection and cache backend from app/etc/env.php; this app checks that
 * env.php loads and that no "unhealthy" flag file exists in the var dir
 * ($MAGESTACK_STOREFRONT_VAR/unhealthy; GET /_test/health?state=down|up toggles it).
 */

declare(strict_types=1);

require __DIR__ . '/../app/bootstrap.php';

try {
    $config = sf_config();
    if (!isset($config['db']['connection']['default'])) {
        throw new RuntimeException('no default db connection');
    }
    if (file_exists(sf_var_dir() . '/unhealthy')) {
        throw new RuntimeException('unhealthy flag set');
    }
} catch (Throwable $e) {
    error_log('health_check: ' . $e->getMessage());
    http_response_code(500);
    exit(1);
}
