<?php
/** Magento's pub/errors/report.php?id=N: the "error processing your request" page. Status 500. */

declare(strict_types=1);

require __DIR__ . '/processor.php';

$id = preg_replace('/[^0-9a-f]/i', '', (string)($_GET['id'] ?? ''));
sf_error_page(500, 'There has been an error processing your request', $id === ''
    ? '<p id="sf-error-report">Exception printing is disabled by default for security reasons.</p>'
    : '<p id="sf-error-report">Error log record number: ' . htmlspecialchars($id, ENT_QUOTES) . '</p>');
