<?php
/**
 * Front controller, like Magento's pub/index.php: the web server sends every request that is not
 * an existing file here (nginx: try_files $uri $uri/ /index.php$is_args$args) and the app routes
 * on REQUEST_URI. Application code lives outside the docroot, in ../app/.
 */

declare(strict_types=1);

require __DIR__ . '/../app/bootstrap.php';
require __DIR__ . '/../app/routes.php';

sf_dispatch();
