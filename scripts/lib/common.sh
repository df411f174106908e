# shellcheck shell=bash
# Helpers shared by scripts/deps, scripts/test and scripts/bench. Source it; do not run it.

REPO=${REPO:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}

log() { printf '[%s] %s\n' "${LOG_TAG:-magestack}" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

# Runs a command as root: directly when we are root, through sudo otherwise.
as_root() {
    if [ "$(id -u)" -eq 0 ]; then
        "$@"
    elif command -v sudo >/dev/null 2>&1; then
        sudo "$@"
    else
        die "need root (or sudo) to run: $*"
    fi
}

# install_pkgs PKG...: apt-get install the packages; runs `apt-get update` at most once per process.
_APT_UPDATED=0
install_pkgs() {
    [ "$#" -gt 0 ] || return 0
    command -v apt-get >/dev/null 2>&1 || die "apt-get not found; install by hand: $*"
    if [ "$_APT_UPDATED" -eq 0 ]; then
        log "apt-get update"
        as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2
        _APT_UPDATED=1
    fi
    log "apt-get install -y $*"
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >&2
}

# need_cmd CMD PKG...: install PKG... unless CMD is already on PATH (or is an existing path).
need_cmd() {
    local cmd=$1; shift
    if command -v "$cmd" >/dev/null 2>&1 || [ -x "$cmd" ]; then
        return 0
    fi
    install_pkgs "$@"
    command -v "$cmd" >/dev/null 2>&1 || [ -x "$cmd" ] || die "$cmd still missing after installing $*"
}

# port_in_use PORT: true if something accepts connections on 127.0.0.1:PORT or has it bound.
port_in_use() {
    local port=$1
    if command -v ss >/dev/null 2>&1; then
        ss -Htan "sport = :$port" 2>/dev/null | grep -q . && return 0
    fi
    (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && return 0
    return 1
}

# free_port: prints a free high TCP port on 127.0.0.1 (kernel-assigned when python3 exists,
# else a random port from 20000-60999 that nothing uses). Ports handed out by this process are
# remembered so two calls never return the same one.
_PORTS_GIVEN=" "
free_port() {
    local port i
    for i in $(seq 1 50); do
        port=""
        if command -v python3 >/dev/null 2>&1; then
            port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()' 2>/dev/null || true)
        fi
        if [ -z "$port" ]; then
            port=$(( 20000 + (RANDOM * 32768 + RANDOM) % 41000 ))
        fi
        if [ "$port" -ge 20000 ] && [[ "$_PORTS_GIVEN" != *" $port "* ]] && ! port_in_use "$port"; then
            _PORTS_GIVEN="$_PORTS_GIVEN$port "
            echo "$port"
            return 0
        fi
    done
    die "no free port found"
}

# pid_alive PIDFILE: true if the file names a live process.
pid_alive() {
    local f=$1 pid
    [ -s "$f" ] || return 1
    pid=$(cat "$f" 2>/dev/null) || return 1
    [[ "$pid" =~ ^[0-9]+$ ]] || return 1
    kill -0 "$pid" 2>/dev/null
}

# stop_pidfile PIDFILE [SIGNAL] [TIMEOUT_S]: signal the process named in PIDFILE (default TERM),
# wait for it to exit, SIGKILL after the timeout; removes the pid file. Only ever touches that pid.
stop_pidfile() {
    local f=$1 sig=${2:-TERM} timeout=${3:-15} pid i
    [ -s "$f" ] || { rm -f "$f"; return 0; }
    pid=$(cat "$f")
    if [[ "$pid" =~ ^[0-9]+$ ]] && kill -0 "$pid" 2>/dev/null; then
        kill -s "$sig" "$pid" 2>/dev/null || true
        for i in $(seq 1 $((timeout * 10))); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        if kill -0 "$pid" 2>/dev/null; then
            log "pid $pid ($f) did not exit after ${timeout}s; sending KILL"
            kill -s KILL "$pid" 2>/dev/null || true
        fi
    fi
    rm -f "$f"
}

# wait_tcp HOST PORT TIMEOUT_S: wait until a TCP connect succeeds.
wait_tcp() {
    local host=$1 port=$2 timeout=$3 i
    for i in $(seq 1 $((timeout * 10))); do
        (exec 3<>"/dev/tcp/$host/$port") 2>/dev/null && return 0
        sleep 0.1
    done
    return 1
}

# cargo_target_dir: the directory cargo builds into (respects CARGO_TARGET_DIR).
cargo_target_dir() {
    local t=${CARGO_TARGET_DIR:-$REPO/target}
    case "$t" in /*) ;; *) t=$REPO/$t ;; esac
    echo "$t"
}
