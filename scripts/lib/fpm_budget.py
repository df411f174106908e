#!/usr/bin/env python3
"""PHP-FPM memory budget of a rendered Kustomize overlay.

For every Deployment with a `php-fpm` container that mounts a pool file from a ConfigMap,
checks that the container's memory limit holds the worst case:

    pm.max_children x php memory_limit + opcache.memory_consumption + 64 MiB (master, libraries)

(memory_limit is what PHP enforces per child; with pm = static every child always exists),
and that the pod's edge does not admit more PHP requests than the pool has children
(pools.<name>.max_inflight = pm.max_children when the pool is the pod's own FPM).

Usage: fpm_budget.py RENDERED.yaml  (output of `kubectl kustomize`); exit 1 on a violation,
2 when something it needs is missing.
"""
import re
import sys

import yaml

MIB = 1024 * 1024
MASTER_OVERHEAD = 64 * MIB
UNITS = {"": 1, "k": 1000, "m": 1000**2, "g": 1000**3, "ki": 1024, "mi": MIB, "gi": 1024 * MIB}


def quantity(text):
    """A Kubernetes memory quantity (4608Mi, 4G, 123456) in bytes."""
    m = re.fullmatch(r"(\d+)([KkMmGg]i?)?", str(text).strip())
    if not m:
        raise ValueError(f"unsupported memory quantity {text!r}")
    return int(m.group(1)) * UNITS[(m.group(2) or "").lower()]


def php_bytes(text):
    """A php.ini size (384M, 2G, 1024K, bytes) in bytes."""
    m = re.fullmatch(r"(\d+)([KkMmGg])?", text.strip())
    if not m:
        raise ValueError(f"unsupported php size {text!r}")
    return int(m.group(1)) * {"": 1, "k": 1024, "m": MIB, "g": 1024 * MIB}[(m.group(2) or "").lower()]


def ini_value(text, key):
    for line in text.splitlines():
        line = line.split(";", 1)[0].strip()
        if "=" in line:
            k, v = (s.strip() for s in line.split("=", 1))
            if k == key:
                return v
    return None


def fail(code, msg):
    print(f"fpm budget: {msg}", file=sys.stderr)
    sys.exit(code)


def main(path):
    with open(path, encoding="utf-8") as f:
        docs = [d for d in yaml.safe_load_all(f) if d]
    configmaps = {d["metadata"]["name"]: d.get("data", {}) for d in docs if d.get("kind") == "ConfigMap"}
    checked = 0
    problems = []
    for d in docs:
        if d.get("kind") != "Deployment":
            continue
        spec = d["spec"]["template"]["spec"]
        volumes = {v["name"]: v for v in spec.get("volumes", [])}
        for c in spec.get("containers", []):
            if c["name"] != "php-fpm":
                continue
            name = d["metadata"]["name"]
            pool_file = opcache_file = None
            for m in c.get("volumeMounts", []):
                cm = volumes.get(m["name"], {}).get("configMap", {}).get("name")
                if not cm or "subPath" not in m:
                    continue
                text = configmaps.get(cm, {}).get(m["subPath"])
                if text is None:
                    fail(2, f"{name}: ConfigMap {cm} has no {m['subPath']}")
                if m["mountPath"].endswith(".conf"):
                    pool_file = (m["subPath"], text)
                elif m["mountPath"].endswith(".ini") and ini_value(text, "opcache.memory_consumption"):
                    opcache_file = (m["subPath"], text)
            if not pool_file or not opcache_file:
                fail(2, f"{name}: php-fpm mounts no pool file or no OPcache ini from a ConfigMap")
            limit = c.get("resources", {}).get("limits", {}).get("memory")
            if limit is None:
                fail(2, f"{name}: php-fpm has no memory limit")
            children = ini_value(pool_file[1], "pm.max_children")
            per_child = ini_value(pool_file[1], "php_admin_value[memory_limit]")
            opcache_mb = ini_value(opcache_file[1], "opcache.memory_consumption")
            if children is None or per_child is None:
                fail(2, f"{name}: {pool_file[0]} lacks pm.max_children or php_admin_value[memory_limit]")
            need = int(children) * php_bytes(per_child) + int(opcache_mb) * MIB + MASTER_OVERHEAD
            have = quantity(limit)
            line = (f"{name}: {children} children x {per_child} + OPcache {opcache_mb}M + 64Mi "
                    f"= {need // MIB}Mi, container limit {have // MIB}Mi")
            if need > have:
                problems.append(line + ": OVER")
            else:
                print(f"fpm budget: {line}: ok")
            checked += 1
            # The pod's own edge must not send more requests than FPM has children.
            edge_cm = next((v["configMap"]["name"] for v in spec.get("volumes", [])
                            if v.get("configMap", {}).get("name") == "edge-config"
                            or v.get("configMap", {}).get("name", "").startswith("edge-config")), None)
            if edge_cm:
                toml_text = configmaps.get(edge_cm, {}).get("edge.toml", "")
                inflight = re.search(r"(?ms)^\[pools\.frontend\].*?^max_inflight\s*=\s*(\d+)", toml_text)
                if inflight and int(inflight.group(1)) != int(children):
                    problems.append(f"{name}: edge pools.frontend.max_inflight {inflight.group(1)} "
                                    f"!= pm.max_children {children}")
    if checked == 0:
        fail(2, "no Deployment with a php-fpm container found")
    if problems:
        for p in problems:
            print(f"fpm budget: {p}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    if len(sys.argv) != 2:
        fail(2, "usage: fpm_budget.py RENDERED.yaml")
    main(sys.argv[1])
