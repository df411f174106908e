# syntax=docker/dockerfile:1.7
# Magento 2 as an immutable image: code, generated/ (DI compilation) and pub/static are built
# here, once; pods never compile or deploy static content at start (the cold-pod problem of
# the Kubernetes case study). Build from the Magento project root, with the repo's deploy/
# directory as a named context:
#   docker build -f magento.Dockerfile --build-context kit=<magestack>/deploy \
#     --secret id=composer_auth,src=auth.json -t magento .
ARG PHP_VERSION=8.3

FROM php:${PHP_VERSION}-fpm-bookworm AS php-base
# Magento's required extensions.
RUN apt-get update \
    && apt-get install -y --no-install-recommends \
       libfreetype6-dev libjpeg62-turbo-dev libpng-dev libwebp-dev libicu-dev libxslt1-dev \
       libzip-dev libsodium-dev unzip \
    && docker-php-ext-configure gd --with-freetype --with-jpeg --with-webp \
    && docker-php-ext-install -j"$(nproc)" bcmath gd intl pdo_mysql soap sockets xsl zip opcache \
    && pecl install redis-6.0.2 \
    && docker-php-ext-enable redis \
    && rm -rf /var/lib/apt/lists/* /tmp/pear

FROM php-base AS build
COPY --from=composer:2.7 /usr/bin/composer /usr/bin/composer
WORKDIR /var/www/magento
COPY composer.json composer.lock ./
# repo.magento.com keys come in as a BuildKit secret: never in a layer, never in the image.
RUN --mount=type=secret,id=composer_auth,target=/root/.composer/auth.json \
    composer install --no-dev --no-interaction --prefer-dist --no-progress --no-scripts
COPY . .
RUN composer dump-autoload --no-dev --optimize --apcu \
    && php -d memory_limit=-1 bin/magento setup:di:compile \
    && php -d memory_limit=-1 bin/magento setup:static-content:deploy -f --jobs "$(nproc)" \
    && rm -rf var/cache var/page_cache var/view_preprocessed/* \
    && find . -name '*.orig' -delete

FROM php-base
WORKDIR /var/www/magento
COPY --from=build --chown=root:root /var/www/magento /var/www/magento
# Pool files and OPcache settings: the Kubernetes manifests mount the same files from a
# ConfigMap (deploy/k8s/base/php-fpm); these are the image's defaults.
COPY --from=kit k8s/base/php-fpm/frontend.conf /usr/local/etc/php-fpm.d/zz-pool.conf
COPY --from=kit k8s/base/php-fpm/opcache.ini /usr/local/etc/php/conf.d/zz-opcache.ini
COPY --from=kit php/magestack-health.php /var/www/magento/pub/magestack-health.php
COPY --from=kit php/preload.php php/preload.list php/magestack-env.php php/magestack-db-bootstrap.php /var/www/magento/
COPY --from=kit k8s/base/php-fpm/opcache-blacklist.txt /usr/local/etc/php/opcache-blacklist.txt
# The RDS CA bundle: Aurora requires TLS (require_secure_transport) and env.php verifies the
# server's certificate against it (MAGENTO_DB_SSL_CA). Pin its checksum when you build.
RUN curl -fsSL --proto '=https' -o /etc/ssl/certs/rds-global-bundle.pem \
       https://truststore.pki.rds.amazonaws.com/global/global-bundle.pem \
    && chmod 0644 /etc/ssl/certs/rds-global-bundle.pem
# The OPcache manifest the readiness check measures warmth against (MAGESTACK_OPCACHE_MANIFEST
# in the pods; outside var/, which is an emptyDir there). Best: the scripts a warm production
# worker holds, written from a warm staging pod (magestack-health.php?write_manifest=1, see
# docs/kubernetes.md) and committed to the Magento project as opcache-manifest.txt. Until one
# exists (the first build), the files of the preload list: what the storefront runs on every page.
RUN if [ ! -s opcache-manifest.txt ]; then \
        grep -v '^#' preload.list | grep . | while read -r p; do \
            if [ -d "$p" ]; then \
                find "$PWD/$p" -name '*.php' -not -path '*/Test/*' -not -path '*/Tests/*' \
                     -not -path '*/Setup/*' -not -path '*/Console/*' -not -path '*/Fixtures/*'; \
            elif [ -f "$p" ]; then echo "$PWD/$p"; fi; \
        done | sort > /var/www/magento/opcache-manifest.txt; \
    fi \
    && test -s /var/www/magento/opcache-manifest.txt
# app/etc/env.php is generated at start, from the mounted secrets, into /run/magento (an
# in-memory emptyDir) by the magento-env sidecar; the image holds only the link.
RUN rm -f /usr/local/etc/php-fpm.d/www.conf /usr/local/etc/php-fpm.d/zz-docker.conf app/etc/env.php \
    && ln -s /run/magento/env.php app/etc/env.php \
    && mkdir -p var generated/tmp \
    && chown -R www-data:www-data var pub/media
# www-data (33): code is root-owned and read-only to PHP; only var/ and pub/media are writable.
USER 33:33
EXPOSE 9000 9001
HEALTHCHECK --interval=10s --timeout=3s CMD ["php-fpm", "-t"]
CMD ["php-fpm", "--nodaemonize"]
