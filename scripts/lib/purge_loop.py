#!/usr/bin/env python3
"""Sends Magento-style PURGE requests at a steady rate to one cache (magestack edge or Varnish).

Used by scripts/bench (profile fpc_purge_load) to load a cache with invalidations while wrk
measures hits. Each purge is what Magento's CacheInvalidate\\Model\\PurgeCache sends for one saved
product: a new TCP connection, the raw bytes

    PURGE / HTTP/1.1\\r\\n
    X-Magento-Tags-Pattern: ((^|,)cat_p_N(,|$))\\r\\n
    Host: 127.0.0.1\\r\\n
    \\r\\n

then reading the answer and closing. N is random in [--tag-min, --tag-max] (default 1000-200999:
product ids the benchmarked page does not carry, so the page stays cached and wrk keeps measuring
hits while the cache processes invalidations).

Pacing: request i is due at start + i/rate; a slot missed because the previous purge was slow is
skipped, not caught up in a burst (the summary shows the rate achieved). Stops by itself after
--duration seconds, or on SIGTERM/SIGINT; either way prints key=value lines:
sent, ok (status 200), bad_status, errors, rate_per_sec, latency_ms_p50/p99/max.

Loopback only: --host must be a 127.0.0.0/8 or ::1 address.
"""

import argparse
import ipaddress
import random
import signal
import socket
import sys
import time

STOP = False


def on_signal(_sig, _frame):
    global STOP
    STOP = True


def read_response(sock):
    """Reads one HTTP response (headers, then Content-Length bytes or until close); returns status."""
    buf = b""
    while b"\r\n\r\n" not in buf:
        chunk = sock.recv(4096)
        if not chunk:
            break
        buf += chunk
    head, _, body = buf.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    parts = lines[0].split(b" ", 2) if lines and lines[0] else []
    if len(parts) < 2 or not parts[0].startswith(b"HTTP/"):
        raise ValueError("no HTTP status line: %r" % lines[:1])
    status = int(parts[1])
    length = None
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value.strip())
    if length is None:
        while True:  # no length: the server closes after the body
            chunk = sock.recv(4096)
            if not chunk:
                break
    else:
        while len(body) < length:
            chunk = sock.recv(4096)
            if not chunk:
                break
            body += chunk
    return status


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--rate", type=float, default=100.0, help="purges per second")
    ap.add_argument("--duration", type=float, default=10.0, help="seconds (upper bound)")
    ap.add_argument("--tag-prefix", default="cat_p_")
    ap.add_argument("--tag-min", type=int, default=1000)
    ap.add_argument("--tag-max", type=int, default=200999)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--timeout", type=float, default=5.0, help="per purge, seconds")
    args = ap.parse_args()

    if not ipaddress.ip_address(args.host).is_loopback:
        sys.exit("purge_loop: --host must be a loopback address")
    if args.rate <= 0 or args.duration <= 0:
        sys.exit("purge_loop: --rate and --duration must be positive")

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    rng = random.Random(args.seed)
    interval = 1.0 / args.rate
    sent = ok = bad = errors = 0
    lat = []
    first_error = ""
    start = time.monotonic()
    deadline = start + args.duration
    i = 0
    while not STOP:
        due = start + i * interval
        now = time.monotonic()
        if due >= deadline:
            break
        if due > now:
            time.sleep(due - now)
            if STOP:
                break
        elif now - due > interval:
            # Behind schedule: skip the missed slots instead of bursting.
            i = int((now - start) / interval)
            continue
        i += 1
        tag = "%s%d" % (args.tag_prefix, rng.randint(args.tag_min, args.tag_max))
        req = (
            "PURGE / HTTP/1.1\r\n"
            "X-Magento-Tags-Pattern: ((^|,)%s(,|$))\r\n"
            "Host: %s\r\n"
            "\r\n" % (tag, args.host)
        ).encode()
        t0 = time.monotonic()
        sent += 1
        try:
            with socket.create_connection((args.host, args.port), timeout=args.timeout) as s:
                s.sendall(req)
                status = read_response(s)
            lat.append((time.monotonic() - t0) * 1000.0)
            if status == 200:
                ok += 1
            else:
                bad += 1
                if not first_error:
                    first_error = "status %d" % status
        except (OSError, ValueError) as e:
            errors += 1
            if not first_error:
                first_error = str(e)

    elapsed = max(time.monotonic() - start, 1e-9)
    lat.sort()

    def pct(p):
        if not lat:
            return 0.0
        return lat[min(len(lat) - 1, int(round((len(lat) - 1) * p)))]

    print("sent=%d" % sent)
    print("ok=%d" % ok)
    print("bad_status=%d" % bad)
    print("errors=%d" % errors)
    print("elapsed_s=%.2f" % elapsed)
    print("rate_per_sec=%.1f" % (sent / elapsed))
    print("latency_ms_p50=%.2f" % pct(0.5))
    print("latency_ms_p99=%.2f" % pct(0.99))
    print("latency_ms_max=%.2f" % (lat[-1] if lat else 0.0))
    if first_error:
        print("first_error=%s" % first_error.replace("\n", " "))
    return 0


if __name__ == "__main__":
    sys.exit(main())
