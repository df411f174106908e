#!/usr/bin/env python3
"""Abort decision latency of the edge's rollout (scripts/bench, profile rollout).

Starts the configured rollout on an edge (POST /admin/rollout/start), sends page requests at a
fixed rate (open loop: request i leaves at t0 + i/rate whatever the answers; every request
without cookies, so each is a new visitor with its own bucket), and polls GET /rollout every
50 ms. The latency is from the first 5xx a client received to the first poll that shows weight 0
(state "aborted"). Prints one line of key=value pairs.

Usage: rollout_abort_probe.py EDGE_HOST:PORT ADMIN_HOST:PORT [--rate 50] [--path /] [--timeout 120]
"""
import argparse
import http.client
import json
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor


def get(hostport, path, method="GET", headers=None, timeout=10):
    host, port = hostport.rsplit(":", 1)
    c = http.client.HTTPConnection(host, int(port), timeout=timeout)
    try:
        c.request(method, path, headers=headers or {})
        r = c.getresponse()
        body = r.read()
        return r.status, body
    finally:
        c.close()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("edge")
    ap.add_argument("admin")
    ap.add_argument("--rate", type=float, default=50.0)
    ap.add_argument("--path", default="/")
    ap.add_argument("--timeout", type=float, default=120.0)
    a = ap.parse_args()

    status, body = get(a.admin, "/admin/rollout/start", method="POST")
    if status != 200:
        print(f"start refused: {status} {body[:200]!r}", file=sys.stderr)
        return 1

    lock = threading.Lock()
    first_bad = [None]
    counts = {"sent": 0, "answered": 0, "bad": 0, "failed": 0}
    stop = threading.Event()
    headers = {
        "User-Agent": "Mozilla/5.0 (X11; Linux x86_64) Chrome/131.0.0.0 Safari/537.36",
        "Accept": "text/html,application/xhtml+xml",
        "Accept-Encoding": "gzip",
    }

    def one():
        try:
            s, _ = get(a.edge, a.path, headers=headers)
        except Exception:
            s = None
        t = time.monotonic()
        with lock:
            if s is None:
                counts["failed"] += 1
            else:
                counts["answered"] += 1
            if s is None or s >= 500:
                counts["bad"] += 1
                if first_bad[0] is None:
                    first_bad[0] = t

    def load():
        with ThreadPoolExecutor(max_workers=64) as pool:
            t0 = time.monotonic()
            i = 0
            while not stop.is_set():
                due = t0 + i / a.rate
                now = time.monotonic()
                if due > now:
                    time.sleep(due - now)
                pool.submit(one)
                counts["sent"] += 1
                i += 1

    loader = threading.Thread(target=load, daemon=True)
    started = time.monotonic()
    loader.start()
    aborted_at = None
    view = {}
    while time.monotonic() - started < a.timeout:
        try:
            _, body = get(a.admin, "/rollout", timeout=2)
            view = json.loads(body)
        except Exception:
            time.sleep(0.05)
            continue
        if view.get("state") == "aborted" and view.get("weight") == 0:
            aborted_at = time.monotonic()
            break
        if view.get("state") not in ("running", "paused"):
            break
        time.sleep(0.05)
    stop.set()
    loader.join()
    reason = str(view.get("last_change", "")).replace("\n", " ")
    # The early rule says so in its reason (magestack_rollout::analysis, "Early abort").
    code = "early" if "before the minimum sample" in reason else "min_sample"
    if aborted_at is None or first_bad[0] is None:
        print(
            f"aborted=0 state={view.get('state')} elapsed_s={time.monotonic() - started:.1f} "
            f"sent={counts['sent']} bad={counts['bad']} reason={reason!r}"
        )
        return 2
    print(
        f"aborted=1 latency_s={aborted_at - first_bad[0]:.2f} since_start_s={aborted_at - started:.2f} "
        f"sent={counts['sent']} bad={counts['bad']} failed={counts['failed']} code={code} reason={reason!r}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
