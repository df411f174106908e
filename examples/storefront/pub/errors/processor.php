<?php
/**
 * Error-page renderer shared by 404.php, 503.php and report.php (Magento's pub/errors/processor.php).
 * Only those three scripts are whitelisted by nginx.conf.sample; this file itself must not be
 * reachable (it falls under the "banned" *.php rule) and prints nothing when included.
 */

declare(strict_types=1);

function sf_error_page(int $status, string $title, string $bodyHtml): void
{
    http_response_code($status);
    header('Content-Type: text/html; charset=UTF-8');
    // Magento derives the skin URL from DOCUMENT_ROOT + SCRIPT_NAME; a wrong SCRIPT_NAME shows here.
    $scriptDir = rtrim(dirname((string)($_SERVER['SCRIPT_NAME'] ?? '/errors/404.php')), '/');
    $skin = htmlspecialchars($scriptDir . '/default/', ENT_QUOTES);
    $t = htmlspecialchars($title, ENT_QUOTES);
    echo <<<HTML
<!doctype html>
<html lang="en">
<head>
<title>{$t}</title>
<base href="{$skin}" />
<meta http-equiv="Content-Type" content="text/html; charset=utf-8" />
<meta name="robots" content="*"/>
<link rel="stylesheet" href="css/styles.css" type="text/css" />
<link rel="icon" href="images/favicon.ico" type="image/x-icon" />
</head>
<body>
<main class="page-main">
<h1>{$t}</h1>
{$bodyHtml}
</main>
</body>
</html>

HTML;
}
