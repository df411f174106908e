#!/usr/bin/env python3
"""Purge fan-out latency across edge replicas (used by scripts/bench, profile `cluster`).

Sends N PURGEs (Magento's raw request, one tag each) to the first edge and, for each, measures
the time from sending it until every other edge's magestack_purge_bus_messages_total{kind="applied"}
has moved (their /metrics polled as fast as they answer). Prints p50/p90/p99/max in ms.

Usage: fanout_probe.py EDGE_HOST:PORT ADMIN_HOST:PORT [ADMIN_HOST:PORT ...] [--n N]
"""
import socket
import sys
import time


def http(addr, raw):
    host, port = addr.rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=5) as s:
        s.sendall(raw.encode())
        chunks = []
        while True:
            b = s.recv(65536)
            if not b:
                break
            chunks.append(b)
    return b"".join(chunks).decode("latin-1")


def applied(admin):
    text = http(admin, "GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    for line in text.splitlines():
        if line.startswith('magestack_purge_bus_messages_total{kind="applied"} '):
            return int(line.split()[-1])
    raise SystemExit(f"no applied counter on {admin}")


def main():
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    n = 200
    if "--n" in sys.argv:
        n = int(sys.argv[sys.argv.index("--n") + 1])
        args.remove(str(n))
    edge, admins = args[0], args[1:]
    lat = []
    for i in range(n):
        before = [applied(a) for a in admins]
        t0 = time.perf_counter()
        r = http(edge, f"PURGE / HTTP/1.1\r\nHost: {edge}\r\nX-Magento-Tags-Pattern: ((^|,)cat_p_{900000 + i}(,|$))\r\nConnection: close\r\n\r\n")
        if not r.startswith("HTTP/1.1 200"):
            raise SystemExit(f"PURGE refused: {r.splitlines()[0] if r else 'no answer'}")
        pending = set(range(len(admins)))
        while pending:
            for j in list(pending):
                if applied(admins[j]) > before[j]:
                    pending.discard(j)
            if time.perf_counter() - t0 > 5:
                raise SystemExit(f"purge {i} did not reach every edge within 5 s")
        lat.append((time.perf_counter() - t0) * 1000)
    lat.sort()
    pick = lambda q: lat[min(len(lat) - 1, int(q * len(lat)))]
    print(f"n={n} p50_ms={pick(0.50):.2f} p90_ms={pick(0.90):.2f} p99_ms={pick(0.99):.2f} max_ms={lat[-1]:.2f}")


if __name__ == "__main__":
    main()
