<?php
/** Magento's pub/errors/404.php: nginx's error_page 404 403 = /errors/404.php lands here. Status 404. */

declare(strict_types=1);

require __DIR__ . '/processor.php';

sf_error_page(404, 'Error 404: Not Found', '<p id="sf-error-404">The page you requested was not found.</p>');
