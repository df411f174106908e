# shellcheck shell=bash
# The "datatier" service of scripts/deps: a local stand-in for the AWS data tier as the deploy
# kit meets it. Source it from scripts/deps (needs STATE, log, die, free_port, pid_alive,
# stop_pidfile, install_pkgs).
#
#   MariaDB (Debian's mariadb-server) with require_secure_transport=ON, like Aurora's parameter
#   group: TLS with a certificate from a private CA made here; a master user `magento_admin`
#   (as RDS creates it; Magento's own user is made by deploy/php/magestack-db-bootstrap.php).
#   Redis (Debian's redis-server) over TLS only (port 0, tls-port) with a password, like
#   ElastiCache with in-transit encryption and an auth token.
#
# Exports (datatier.env): MAGESTACK_DT_DB_HOST (127.0.0.1:port), MAGESTACK_DT_REDIS_PORT,
# MAGESTACK_DT_CA (the CA bundle), MAGESTACK_DT_MASTER_DIR (username/password files, as a
# Secret volume holds them), MAGESTACK_DT_REDIS_SECRET (the password file), MAGESTACK_DT_SOCKET.

find_mariadbd() {
    command -v mariadbd 2>/dev/null || { [ -x /usr/sbin/mariadbd ] && echo /usr/sbin/mariadbd; } || true
}

install_datatier() {
    if [ -z "$(find_mariadbd)" ] || ! command -v mariadb-install-db >/dev/null 2>&1 || ! command -v mariadb >/dev/null 2>&1; then
        install_pkgs mariadb-server mariadb-client
    fi
    if ! command -v redis-server >/dev/null 2>&1 || ! command -v redis-cli >/dev/null 2>&1; then
        install_pkgs redis-server redis-tools
    fi
    command -v openssl >/dev/null 2>&1 || install_pkgs openssl
    php -m 2>/dev/null | grep -qi '^pdo_mysql$' || install_pkgs php-mysql
}

_dt_redis_ping() {
    local d=$STATE/datatier
    REDISCLI_AUTH=$(cat "$d/secrets/redis/password") redis-cli --tls --cacert "$d/tls/ca.pem" \
        -h 127.0.0.1 -p "$1" ping 2>/dev/null
}

healthy_datatier() {
    local d=$STATE/datatier port
    pid_alive "$d/mariadb.pid" && pid_alive "$d/redis.pid" || return 1
    [ -s "$STATE/datatier.env" ] || return 1
    port=$(sed -n 's/^export MAGESTACK_DT_REDIS_PORT=//p' "$STATE/datatier.env")
    [ "$(_dt_redis_ping "$port")" = PONG ] || return 1
    mariadb --socket="$d/mariadb.sock" -uroot -e 'SELECT 1' >/dev/null 2>&1
}

_dt_tls() {
    local t=$1
    mkdir -p "$t"
    openssl req -x509 -newkey rsa:2048 -nodes -days 30 -subj "/CN=magestack test CA" \
        -keyout "$t/ca.key" -out "$t/ca.pem" 2>/dev/null
    openssl req -newkey rsa:2048 -nodes -subj "/CN=localhost" \
        -keyout "$t/server.key" -out "$t/server.csr" 2>/dev/null
    printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\n' > "$t/ext"
    openssl x509 -req -in "$t/server.csr" -CA "$t/ca.pem" -CAkey "$t/ca.key" -CAcreateserial \
        -days 30 -extfile "$t/ext" -out "$t/server.pem" 2>/dev/null
    chmod 0644 "$t/server.key"
}

start_datatier() {
    local d=$STATE/datatier mdb_port redis_port i user_args=()
    rm -rf "$d"
    mkdir -p "$d/data" "$d/secrets/master" "$d/secrets/redis"
    chmod 0700 "$d/secrets"
    _dt_tls "$d/tls"
    # Passwords: random, in files only (as the kubelet mounts a Secret), never on a command line.
    openssl rand -hex 24 > "$d/secrets/master/password"
    echo magento_admin > "$d/secrets/master/username"
    openssl rand -hex 24 > "$d/secrets/redis/password"

    [ "$(id -u)" -ne 0 ] || user_args=(--user=root)
    mdb_port=$(free_port)
    mariadb-install-db --no-defaults --datadir="$d/data" --auth-root-authentication-method=socket \
        "${user_args[@]}" > "$d/install.log" 2>&1 || { cat "$d/install.log" >&2; die "mariadb-install-db failed"; }
    cat > "$d/my.cnf" <<EOF
[mariadbd]
datadir = $d/data
socket = $d/mariadb.sock
pid-file = $d/mariadb.pid
log-error = $d/mariadb.log
bind-address = 127.0.0.1
port = $mdb_port
skip-name-resolve
innodb_buffer_pool_size = 64M
innodb_log_file_size = 16M
performance_schema = OFF
# As Aurora's parameter group: every TCP client must use TLS.
require_secure_transport = ON
ssl_ca = $d/tls/ca.pem
ssl_cert = $d/tls/server.pem
ssl_key = $d/tls/server.key
EOF
    "$(find_mariadbd)" --defaults-file="$d/my.cnf" "${user_args[@]}" 9>&- </dev/null >/dev/null 2>&1 &
    for ((i = 0; i < 150; i++)); do
        mariadb --socket="$d/mariadb.sock" -uroot -e 'SELECT 1' >/dev/null 2>&1 && break
        sleep 0.2
    done
    mariadb --socket="$d/mariadb.sock" -uroot -e 'SELECT 1' >/dev/null 2>&1 || { cat "$d/mariadb.log" >&2; die "mariadbd did not start"; }
    # The master user as RDS makes it (all privileges, grant option); its password from the file.
    mariadb --socket="$d/mariadb.sock" -uroot <<EOF
CREATE USER 'magento_admin'@'%' IDENTIFIED BY '$(cat "$d/secrets/master/password")';
GRANT ALL PRIVILEGES ON *.* TO 'magento_admin'@'%' WITH GRANT OPTION;
EOF

    redis_port=$(free_port)
    cat > "$d/redis.conf" <<EOF
bind 127.0.0.1
port 0
tls-port $redis_port
tls-cert-file $d/tls/server.pem
tls-key-file $d/tls/server.key
tls-ca-cert-file $d/tls/ca.pem
tls-auth-clients no
requirepass $(cat "$d/secrets/redis/password")
save ""
appendonly no
dir $d
daemonize yes
pidfile $d/redis.pid
logfile $d/redis.log
EOF
    chmod 0600 "$d/redis.conf"
    redis-server "$d/redis.conf" >/dev/null 9>&-
    for ((i = 0; i < 100; i++)); do
        [ "$(_dt_redis_ping "$redis_port")" = PONG ] && break
        sleep 0.1
    done
    [ "$(_dt_redis_ping "$redis_port")" = PONG ] || { cat "$d/redis.log" >&2; die "redis-server (TLS) did not answer"; }

    cat > "$STATE/datatier.env" <<EOF
export MAGESTACK_DT_DB_HOST=127.0.0.1:$mdb_port
export MAGESTACK_DT_SOCKET=$d/mariadb.sock
export MAGESTACK_DT_REDIS_PORT=$redis_port
export MAGESTACK_DT_CA=$d/tls/ca.pem
export MAGESTACK_DT_MASTER_DIR=$d/secrets/master
export MAGESTACK_DT_REDIS_SECRET=$d/secrets/redis/password
EOF
}

stop_datatier() {
    local d=$STATE/datatier
    stop_pidfile "$d/redis.pid" TERM 10
    stop_pidfile "$d/mariadb.pid" TERM 30
    rm -f "$STATE/datatier.env"
}
