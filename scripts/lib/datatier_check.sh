#!/usr/bin/env bash
# Issue 14, items 3 and 4, against the local stand-in of the AWS data tier (scripts/deps
# service "datatier": MariaDB with require_secure_transport=ON, Redis over TLS with a password):
#   1. the db-bootstrap (deploy/php/magestack-db-bootstrap.php, as the PreSync Job runs it) makes
#      Magento's own user with the master's credentials;
#   2. env.php is generated from secret files laid out as the pods mount them
#      (deploy/php/magestack-env.php, as the magento-env sidecar runs it);
#   3. deploy/php/magestack-health.php passes (database over verified TLS, Redis over TLS);
#      as a control, a plaintext env.php must fail (the server enforces TLS);
#   4. the application password is rotated (as Secrets Manager's rotation does: the database,
#      then the secret file): the old env.php fails, the sidecar (--watch) rewrites env.php, and
#      the health script passes again.
# Starts the service when it is not running and stops it again afterwards in that case.
# Prints the health JSON's verdicts (never a secret); last line: a one-line summary.
set -euo pipefail
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
# shellcheck source=common.sh
. "$REPO/scripts/lib/common.sh"
LOG_TAG=datatier
STATE=${MAGESTACK_DEPS_DIR:-$REPO/.deps}

started=0
if [ ! -s "$STATE/datatier.env" ] || ! MAGESTACK_DEPS_SERVICES=datatier "$REPO/scripts/deps" status >/dev/null 2>&1; then
    MAGESTACK_DEPS_SERVICES=datatier "$REPO/scripts/deps" start >/dev/null
    started=1
fi
# shellcheck disable=SC1091
. "$STATE/datatier.env"

work=$(mktemp -d)
watcher=""
cleanup() {
    [ -z "$watcher" ] || kill "$watcher" 2>/dev/null || true
    rm -rf "$work"
    [ "$started" -eq 0 ] || "$REPO/scripts/deps" stop datatier >/dev/null 2>&1 || true
}
trap cleanup EXIT

# The pod's layout: secrets under /run/secrets/magento/<name>/<key>, env.php in /run/magento,
# app/etc/env.php a link to it (as deploy/docker/magento.Dockerfile makes it).
sec=$work/secrets
mkdir -p "$sec/db" "$sec/redis-cache" "$sec/redis-sessions" "$sec/crypt" "$work/run" "$work/magento/app/etc" "$work/magento/pub"
umask 077
echo magento_app > "$sec/db/username"
openssl rand -hex 20 > "$sec/db/password"
cp "$MAGESTACK_DT_REDIS_SECRET" "$sec/redis-cache/password"
cp "$MAGESTACK_DT_REDIS_SECRET" "$sec/redis-sessions/password"
openssl rand -hex 16 > "$sec/crypt/key"
ln -s "$work/run/env.php" "$work/magento/app/etc/env.php"
cp "${OLD_HEALTH:-$REPO/deploy/php/magestack-health.php}" "$work/magento/pub/"

export MAGENTO_SECRETS_DIR=$sec MAGENTO_ENV_PHP=$work/run/env.php MAGENTO_DB_HOST=$MAGESTACK_DT_DB_HOST \
    MAGENTO_DB_NAME=magento MAGENTO_DB_SSL_CA=$MAGESTACK_DT_CA MAGENTO_REDIS_TLS=1 \
    MAGENTO_REDIS_CACHE_HOST=127.0.0.1 MAGENTO_REDIS_CACHE_PORT=$MAGESTACK_DT_REDIS_PORT \
    MAGENTO_REDIS_SESSIONS_HOST=127.0.0.1 MAGENTO_REDIS_SESSIONS_PORT=$MAGESTACK_DT_REDIS_PORT \
    MAGENTO_HTTP_CACHE_HOSTS=frontend-purge:8080 MAGESTACK_REDIS_CA=$MAGESTACK_DT_CA

health() { # -> JSON on stdout
    MAGENTO_ROOT=$work/magento MAGESTACK_HEALTH_CHECKS=redis,db php "$work/magento/pub/magestack-health.php"
}
verdict() { # JSON -> "ready=… db=… tls=… redis=…"
    php -r '$j = json_decode(stream_get_contents(STDIN), true) ?: [];
        $r = array_map(fn($x) => $x["name"] . ":" . ($x["ok"] ? "ok" : "FAIL " . ($x["error"] ?? "")), $j["redis"] ?? []);
        echo "ready=", json_encode($j["ready"] ?? null), " db=", ($j["db"]["ok"] ?? false) ? "ok" : "FAIL " . ($j["db"]["error"] ?? ""),
            " db_tls=", json_encode($j["db"]["tls"] ?? null), " redis=[", implode(", ", $r), "]\n";'
}
expect() { # want(true|false) label
    local out v
    out=$(health)
    v=$(printf '%s' "$out" | verdict)
    log "$2: $v"
    [[ "$v" == "ready=$1"* ]] || die "$2: expected ready=$1"
    if [ "$1" = true ]; then [[ "$v" == *"db_tls=true"* ]] || die "$2: the database session is not encrypted"; fi
}

# 1. Magento's own user, made with the master's credentials over TLS.
MASTER_DIR=$MAGESTACK_DT_MASTER_DIR APP_DIR=$sec/db php "$REPO/deploy/php/magestack-db-bootstrap.php"
# 2. env.php from the secret files.
php "$REPO/deploy/php/magestack-env.php" --once
grep -q "'username' => 'magento_app'" "$work/run/env.php" || die "env.php does not use the application user"
if grep -qF "$(cat "$MAGESTACK_DT_MASTER_DIR/password")" "$work/run/env.php"; then die "env.php holds the master password"; fi
# 3. Ready over TLS; plaintext is refused by the server (the check can fail).
expect true "TLS env.php"
MAGENTO_DB_SSL_CA="" MAGENTO_ENV_PHP=$work/plain.php php "$REPO/deploy/php/magestack-env.php" --once
ln -sf "$work/plain.php" "$work/magento/app/etc/env.php"
expect false "plaintext env.php (control)"
ln -sf "$work/run/env.php" "$work/magento/app/etc/env.php"
# 4. Rotation: the sidecar watches; the database gets the new password, then the secret file.
php "$REPO/deploy/php/magestack-env.php" --watch 1 2> "$work/watch.log" &
watcher=$!
sleep 1
openssl rand -hex 20 > "$work/newpw"
mariadb --socket="$MAGESTACK_DT_SOCKET" -uroot \
    -e "ALTER USER 'magento_app'@'%' IDENTIFIED BY '$(cat "$work/newpw")'"
expect false "after the database password changed, before the secret file did"
mv "$work/newpw" "$sec/db/password.new" && mv "$sec/db/password.new" "$sec/db/password"
for _ in $(seq 1 50); do
    grep -q wrote "$work/watch.log" && break
    sleep 0.2
done
grep -q wrote "$work/watch.log" || { cat "$work/watch.log" >&2; die "the watcher did not rewrite env.php"; }
expect true "after rotation (env.php rewritten by the watcher)"
echo "bootstrap made magento_app; health ready over TLS (db, 2 Redis); plaintext refused; ready again after a password rotation"
