# shellcheck shell=bash
# The "s3" service of scripts/deps: s3s-fs, a real S3-compatible server written in Rust
# (github.com/Nugine/s3s), serving a directory as buckets over SigV4-signed HTTP on a free
# loopback port. Source after common.sh; needs $STATE.
#
# The binary is installed once with `cargo install --locked` into a cache outside the clone
# ($MAGESTACK_S3S_FS_ROOT, default ~/.cache/magestack/s3s-fs); the version is pinned to one that
# builds with this toolchain (0.15 and later need rustc 1.96). A failed install stops the script:
# the media tests never run without a real store.
#
# Exports MAGESTACK_S3_ENDPOINT (http://127.0.0.1:PORT, path-style), MAGESTACK_S3_REGION,
# MAGESTACK_S3_ACCESS_KEY_ID, MAGESTACK_S3_SECRET_ACCESS_KEY (tests hand them to the edge as
# AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY), MAGESTACK_S3_BUCKET (media) and
# MAGESTACK_S3_STATIC_BUCKET (both exist, empty at start), MAGESTACK_S3_SERVER (the binary, for
# tests that start, stop and restart a private instance) and MAGESTACK_S3_ROOT (the data dir).

S3S_FS_VERSION=${S3S_FS_VERSION:-0.14.0}
S3S_FS_ROOT=${MAGESTACK_S3S_FS_ROOT:-$HOME/.cache/magestack/s3s-fs}
S3_BUCKETS=(magestack-media magestack-static)

s3_server() {
    echo "$S3S_FS_ROOT/bin/s3s-fs"
}

install_s3() {
    local bin
    bin=$(s3_server)
    if [ -x "$bin" ] && "$bin" --version 2>/dev/null | grep -q "$S3S_FS_VERSION"; then
        return 0
    fi
    command -v cargo >/dev/null 2>&1 || die "cargo not found: needed to install s3s-fs $S3S_FS_VERSION"
    log "cargo install --locked s3s-fs --version $S3S_FS_VERSION (once, into $S3S_FS_ROOT)"
    mkdir -p "$S3S_FS_ROOT"
    # Its own target dir, so the workspace's is not touched; removed afterwards.
    CARGO_TARGET_DIR="$S3S_FS_ROOT/build" cargo install --locked s3s-fs --version "$S3S_FS_VERSION" \
        --features binary --root "$S3S_FS_ROOT" >&2 \
        || die "cargo install s3s-fs $S3S_FS_VERSION failed"
    rm -rf "$S3S_FS_ROOT/build"
    [ -x "$bin" ] || die "s3s-fs not found at $bin after cargo install"
}

healthy_s3() {
    pid_alive "$STATE/s3.pid" || return 1
    [ -s "$STATE/s3.env" ] || return 1
    local port
    port=$(sed -n 's#^export MAGESTACK_S3_ENDPOINT=http://127\.0\.0\.1:\([0-9]*\)$#\1#p' "$STATE/s3.env")
    [ -n "$port" ] && wait_tcp 127.0.0.1 "$port" 1
}

start_s3() {
    local bin port key secret b
    bin=$(s3_server)
    port=$(free_port)
    # Fresh buckets on every start (like MariaDB's data): tests see only what they upload.
    rm -rf "$STATE/s3/data"
    for b in "${S3_BUCKETS[@]}"; do
        mkdir -p "$STATE/s3/data/$b"
    done
    key=magestack
    secret=$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')
    nohup "$bin" --host 127.0.0.1 --port "$port" --access-key "$key" --secret-key "$secret" \
        "$STATE/s3/data" > "$STATE/s3.log" 2>&1 9>&- &
    echo $! > "$STATE/s3.pid"
    if ! wait_tcp 127.0.0.1 "$port" 30; then
        cat "$STATE/s3.log" >&2 2>/dev/null || true
        die "s3s-fs did not answer on 127.0.0.1:$port"
    fi
    cat > "$STATE/s3.env" <<EOT
export MAGESTACK_S3_ENDPOINT=http://127.0.0.1:$port
export MAGESTACK_S3_REGION=us-east-1
export MAGESTACK_S3_ACCESS_KEY_ID=$key
export MAGESTACK_S3_SECRET_ACCESS_KEY=$secret
export MAGESTACK_S3_BUCKET=${S3_BUCKETS[0]}
export MAGESTACK_S3_STATIC_BUCKET=${S3_BUCKETS[1]}
export MAGESTACK_S3_SERVER=$bin
export MAGESTACK_S3_ROOT=$STATE/s3/data
EOT
}

stop_s3() {
    stop_pidfile "$STATE/s3.pid" TERM 10
    rm -f "$STATE/s3.env"
}
