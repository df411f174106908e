<?php
/**
 * Creates Magento's own database user (or sets its password) with the master user's
 * credentials: the db-bootstrap Job (deploy/k8s/base/migrate.yaml, Argo CD PreSync) runs it
 * before the schema upgrade. Idempotent; the password follows the app secret, so a rotated
 * or re-seeded magento/db-app is applied on the next sync.
 *
 *   php magestack-db-bootstrap.php
 *
 * Files (Secret volumes): MASTER_DIR (default /run/secrets/master)/{username,password} (the
 * RDS-managed master secret), APP_DIR (default /run/secrets/magento/db)/{username,password}.
 * Environment: MAGENTO_DB_HOST (host[:port]), MAGENTO_DB_NAME (magento), MAGENTO_DB_SSL_CA
 * (TLS with certificate verification; Aurora requires TLS). Never prints a password.
 */

declare(strict_types=1);

function bs_file(string $f): string
{
    if (!is_readable($f)) {
        fwrite(STDERR, "[db-bootstrap] ERROR: $f missing\n");
        exit(1);
    }
    return rtrim((string)file_get_contents($f), "\r\n");
}

$master = getenv('MASTER_DIR') ?: '/run/secrets/master';
$app = getenv('APP_DIR') ?: '/run/secrets/magento/db';
$host = getenv('MAGENTO_DB_HOST') ?: '';
$db = getenv('MAGENTO_DB_NAME') ?: 'magento';
$ca = getenv('MAGENTO_DB_SSL_CA') ?: '';
if ($host === '' || !preg_match('/^[A-Za-z0-9_]+$/', $db)) {
    fwrite(STDERR, "[db-bootstrap] ERROR: MAGENTO_DB_HOST unset or MAGENTO_DB_NAME not a plain name\n");
    exit(1);
}
$appUser = bs_file("$app/username");
$masterUser = bs_file("$master/username");
if (!preg_match('/^[A-Za-z0-9_]{1,32}$/', $appUser) || $appUser === $masterUser) {
    fwrite(STDERR, "[db-bootstrap] ERROR: the application user must be a plain name other than the master user\n");
    exit(1);
}
$options = [PDO::ATTR_ERRMODE => PDO::ERRMODE_EXCEPTION, PDO::ATTR_TIMEOUT => 5];
if ($ca !== '') {
    $options[PDO::MYSQL_ATTR_SSL_CA] = $ca;
    $options[PDO::MYSQL_ATTR_SSL_VERIFY_SERVER_CERT] = true;
}
[$h, $p] = array_pad(explode(':', $host, 2), 2, '3306');
try {
    $pdo = new PDO("mysql:host=$h;port=$p", $masterUser, bs_file("$master/password"), $options);
    $pw = $pdo->quote(bs_file("$app/password"));
    $u = $pdo->quote($appUser);
    $pdo->exec("CREATE DATABASE IF NOT EXISTS `$db`");
    $pdo->exec("CREATE USER IF NOT EXISTS $u@'%' IDENTIFIED BY $pw REQUIRE SSL");
    $pdo->exec("ALTER USER $u@'%' IDENTIFIED BY $pw REQUIRE SSL");
    // What Magento needs on its own schema (setup:upgrade included), nothing on the others.
    $pdo->exec("GRANT ALL PRIVILEGES ON `$db`.* TO $u@'%'");
    fwrite(STDERR, "[db-bootstrap] user $appUser ready on $db\n");
} catch (Throwable $e) {
    fwrite(STDERR, '[db-bootstrap] ERROR: ' . substr($e->getMessage(), 0, 200) . "\n");
    exit(1);
}
