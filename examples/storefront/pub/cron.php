<?php
/**
 * Magento ships pub/cron.php; web servers must never execute it (nginx.conf.sample denies it via
 * the "banned" regex). If it ever runs, it leaves a marker file so tests can prove a leak:
 * $MAGESTACK_STOREFRONT_VAR/cron-ran.
 */

declare(strict_types=1);

require __DIR__ . '/../app/bootstrap.php';

file_put_contents(sf_var_dir() . '/cron-ran', date(DATE_ATOM) . ' ' . ($_SERVER['REQUEST_URI'] ?? 'cli') . "\n", FILE_APPEND);
header('Content-Type: text/plain; charset=UTF-8');
echo "cron ran\n";
