<?php
/** Magento's pub/errors/503.php (maintenance / overload page). Status 503. */

declare(strict_types=1);

require __DIR__ . '/processor.php';

sf_error_page(503, 'Error 503: Service Unavailable', '<h2 id="sf-error-503">Service Temporarily Unavailable</h2>'
    . '<p>The server is temporarily unable to service your request due to maintenance downtime or capacity problems. '
    . 'Please try again later.</p>');
