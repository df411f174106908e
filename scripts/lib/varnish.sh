# shellcheck shell=bash
# Running Varnish configured like Magento's stock VCL (bench/varnish/magento.vcl) in front of a web
# server (nginx -> PHP-FPM: Varnish cannot speak FastCGI). Source after common.sh. Used by
# scripts/bench and by the optional "varnish" service of scripts/deps.
#
# Only our own varnishd is ever touched: it runs from a work dir of ours (-n), with a pid file
# there (-P); the Debian package's system service is never started, stopped or reconfigured.

VARNISH_VCL_TEMPLATE=${VARNISH_VCL_TEMPLATE:-$REPO/bench/varnish/magento.vcl}
VARNISH_STORAGE=${VARNISH_STORAGE:-malloc,256m}
VARNISH_PURGE_ACL=${VARNISH_PURGE_ACL:-127.0.0.1}
VARNISH_SSL_OFFLOADED_HEADER=${VARNISH_SSL_OFFLOADED_HEADER:-X-Forwarded-Proto}
VARNISH_GRACE_PERIOD=${VARNISH_GRACE_PERIOD:-300}

# varnishd is in /usr/sbin, which a non-root PATH may lack.
varnishd_bin() {
    if command -v varnishd >/dev/null 2>&1; then
        command -v varnishd
    elif [ -x /usr/sbin/varnishd ]; then
        echo /usr/sbin/varnishd
    fi
}

# Debian's varnish package (bookworm: 7.1). Its postinst may try to start the system service
# (images with a policy-rc.d that exits 101 prevent that); we never use that instance.
install_varnish_pkg() {
    if [ -z "$(varnishd_bin)" ]; then
        install_pkgs varnish
    fi
    [ -n "$(varnishd_bin)" ] || die "varnishd not found after installing varnish"
    # varnishd compiles VCL to C and runs the system C compiler (a dependency of the package).
    command -v cc >/dev/null 2>&1 || command -v gcc >/dev/null 2>&1 || install_pkgs gcc libc6-dev
}

varnish_version() {
    "$(varnishd_bin)" -V 2>&1 | sed -n 's/^varnishd (\(varnish-[^ ]*\).*/\1/p' | head -n 1
}

# varnish_render DIR BACKEND_HOST BACKEND_PORT: writes DIR/magento.vcl from the template with the
# values Magento would substitute (purge ACL, SSL offload header, grace period).
varnish_render() {
    local dir=$1 host=$2 port=$3
    [ -n "$host" ] && [[ "$port" =~ ^[0-9]+$ ]] || die "varnish_render: backend host/port missing ('$host' '$port')"
    mkdir -p "$dir"
    # Comment lines keep their placeholder names (they document them).
    sed -e "/^[[:space:]]*#/!s#@BACKEND_HOST@#$host#g" \
        -e "/^[[:space:]]*#/!s#@BACKEND_PORT@#$port#g" \
        -e "/^[[:space:]]*#/!s#@PURGE_ACL@#$VARNISH_PURGE_ACL#g" \
        -e "/^[[:space:]]*#/!s#@SSL_OFFLOADED_HEADER@#$VARNISH_SSL_OFFLOADED_HEADER#g" \
        -e "/^[[:space:]]*#/!s#@GRACE_PERIOD@#$VARNISH_GRACE_PERIOD#g" \
        "$VARNISH_VCL_TEMPLATE" > "$dir/magento.vcl"
    if grep -v '^[[:space:]]*#' "$dir/magento.vcl" | grep -q '@[A-Z_]*@'; then
        die "unsubstituted placeholder in $dir/magento.vcl"
    fi
}

# varnish_check DIR: compile DIR/magento.vcl (varnishd -C) without starting anything.
varnish_check() {
    local dir=$1
    mkdir -p "$dir/check"
    "$(varnishd_bin)" -C -j none -n "$dir/check" -f "$dir/magento.vcl" >/dev/null 2>"$dir/vcl-check.log" \
        || { cat "$dir/vcl-check.log" >&2; die "VCL does not compile ($dir/magento.vcl)"; }
    rm -rf "$dir/check"
}

# varnish_start DIR HOST PORT: starts varnishd (daemon; manager pid in DIR/varnishd.pid, work dir
# DIR/work) with DIR/magento.vcl, listening on HOST:PORT, and waits until it accepts connections.
#   -j none     no privilege separation: the work dir and the VCL stay in our (private) dir
#   -T 127.0.0.1:0  management CLI on a random loopback port (varnishadm -n DIR/work finds it)
#   -p http_resp_hdr_len / http_resp_size / workspace_backend: room for long X-Magento-Tags
#      headers, as Magento's documentation advises for catalog pages
#   VARNISH_EXTRA_ARGS  more varnishd arguments (e.g. "-p thread_pool_min=50")
varnish_start() {
    local dir=$1 host=$2 port=$3 bin
    bin=$(varnishd_bin)
    varnish_check "$dir"
    mkdir -p "$dir/work"
    rm -f "$dir/varnishd.pid"
    # shellcheck disable=SC2086
    "$bin" -j none -n "$dir/work" -P "$dir/varnishd.pid" \
        -a "$host:$port" -T 127.0.0.1:0 -f "$dir/magento.vcl" -s "$VARNISH_STORAGE" \
        -p http_resp_hdr_len=65536 -p http_resp_size=98304 -p workspace_backend=262144 \
        ${VARNISH_EXTRA_ARGS:-} \
        9>&- </dev/null >"$dir/varnishd.log" 2>&1 \
        || { cat "$dir/varnishd.log" >&2; die "varnishd failed to start"; }
    if ! wait_tcp "$host" "$port" 20; then
        cat "$dir/varnishd.log" >&2 || true
        stop_pidfile "$dir/varnishd.pid" TERM 10
        die "varnishd did not listen on $host:$port"
    fi
}

# varnish_wait_healthy DIR TIMEOUT_S: wait until the backend probe says healthy (the first probe
# runs at start; with .window 10 / .threshold 5 Varnish starts a backend as healthy only after
# enough good probes, so misses before that still work but grace decisions would differ).
varnish_wait_healthy() {
    local dir=$1 timeout=${2:-30} i adm
    adm=$(command -v varnishadm || echo /usr/bin/varnishadm)
    for i in $(seq 1 $((timeout * 5))); do
        if "$adm" -n "$dir/work" backend.list 2>/dev/null | grep -q 'healthy'; then
            return 0
        fi
        sleep 0.2
    done
    "$adm" -n "$dir/work" backend.list >&2 2>&1 || true
    return 1
}

varnish_stop() {
    stop_pidfile "$1/varnishd.pid" TERM 15
}
