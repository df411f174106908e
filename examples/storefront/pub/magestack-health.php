<?php
// The storefront uses magestack's shipped readiness probe as a Magento install would
// (copied into pub/); here it is included from the repository's deploy kit.
require __DIR__ . '/../../../deploy/php/magestack-health.php';
