<?php
/**
 * Fake Magento deployment config (app/etc/env.php). It lives OUTSIDE the docroot (pub/) and must
 * never be reachable over HTTP. The strings below are markers tests can grep for in responses.
 */
return [
    'backend' => ['frontName' => 'admin'],
    'crypt' => ['key' => 'MAGESTACK-SECRET-CRYPT-KEY-0123456789abcdef'],
    'db' => [
        'table_prefix' => '',
        'connection' => [
            'default' => [
                'host' => '127.0.0.1',
                'dbname' => 'magento',
                'username' => 'magento',
                'password' => 'MAGESTACK-SECRET-DB-PASSWORD',
                'model' => 'mysql4',
                'engine' => 'innodb',
                'initStatements' => 'SET NAMES utf8;',
                'active' => '1',
            ],
        ],
    ],
    'resource' => ['default_setup' => ['connection' => 'default']],
    'x-frame-options' => 'SAMEORIGIN',
    'MAGE_MODE' => 'production',
    'session' => ['save' => 'files'],
    'cache' => [
        'frontend' => ['default' => ['id_prefix' => 'sf_'], 'page_cache' => ['id_prefix' => 'sf_']],
        'graphql' => ['id_salt' => 'MAGESTACK-GRAPHQL-SALT'],
    ],
    'http_cache_hosts' => [['host' => '127.0.0.1', 'port' => '6081']],
    'cache_types' => ['config' => 1, 'layout' => 1, 'block_html' => 1, 'full_page' => 1],
    'install' => ['date' => 'Mon, 15 Jan 2024 10:00:00 +0000'],
];
