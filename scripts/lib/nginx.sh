# shellcheck shell=bash
# Running nginx configured like Magento's nginx.conf.sample (bench/nginx-magento.conf.template).
# Source after common.sh. Used by scripts/bench and by the optional "nginx" service of scripts/deps.

NGINX_TEMPLATE=${NGINX_TEMPLATE:-$REPO/bench/nginx-magento.conf.template}

install_nginx_pkg() {
    need_cmd nginx nginx-light
}

# The directory holding nginx's mime.types and fastcgi_params (from `nginx -V` --conf-path).
nginx_conf_dir() {
    local p
    p=$(nginx -V 2>&1 | tr ' ' '\n' | sed -n 's/^--conf-path=//p' | head -n 1)
    p=$(dirname "${p:-/etc/nginx/nginx.conf}")
    [ -f "$p/fastcgi_params" ] || die "nginx fastcgi_params not found in $p"
    echo "$p"
}

# nginx_render DIR LISTEN FPM_ADDR [WORKERS]: writes DIR/nginx.conf for a server on LISTEN
# (host:port) passing PHP to FPM_ADDR (host:port or unix:/path), docroot examples/storefront/pub
# (NGINX_MAGE_ROOT: another Magento root).
nginx_render() {
    local dir=$1 listen=$2 fpm=$3 workers=${4:-auto} user_line="" access_log
    mkdir -p "$dir/tmp"
    if [ "$(id -u)" -eq 0 ]; then
        # Workers must read the repo and write the temp dirs created by the (root) master.
        user_line="user root root;"
    fi
    access_log=${BENCH_NGINX_ACCESS_LOG:-off}
    if [ "$access_log" = "on" ]; then
        access_log="$dir/nginx-access.log"
    fi
    sed -e "s#@USER_LINE@#$user_line#" \
        -e "s#@WORKERS@#$workers#" \
        -e "s#@STATE@#$dir#g" \
        -e "s#@NGINX_CONF_DIR@#$(nginx_conf_dir)#g" \
        -e "s#@ACCESS_LOG@#$access_log#" \
        -e "s#@FPM@#$fpm#" \
        -e "s#@LISTEN@#$listen#" \
        -e "s#@MAGE_ROOT@#${NGINX_MAGE_ROOT:-$REPO/examples/storefront}#" \
        "$NGINX_TEMPLATE" > "$dir/nginx.conf"
    if grep -q '@[A-Z_]*@' "$dir/nginx.conf"; then
        die "unsubstituted placeholder in $dir/nginx.conf"
    fi
}

# nginx_start DIR HOST PORT: starts nginx with DIR/nginx.conf (daemon; pid DIR/nginx.pid) and
# waits until it accepts connections.
nginx_start() {
    local dir=$1 host=$2 port=$3
    nginx -t -q -p "$dir" -e "$dir/nginx-error.log" -c "$dir/nginx.conf" 9>&- </dev/null \
        || { cat "$dir/nginx-error.log" >&2 2>/dev/null; die "nginx config test failed ($dir/nginx.conf)"; }
    nginx -p "$dir" -e "$dir/nginx-error.log" -c "$dir/nginx.conf" 9>&- </dev/null >>"$dir/nginx-error.log" 2>&1 \
        || { cat "$dir/nginx-error.log" >&2; die "nginx failed to start"; }
    if ! wait_tcp "$host" "$port" 10; then
        cat "$dir/nginx-error.log" >&2 || true
        stop_pidfile "$dir/nginx.pid" TERM 5
        die "nginx did not listen on $host:$port"
    fi
}

nginx_stop() {
    stop_pidfile "$1/nginx.pid" QUIT 10
}
