#!/usr/bin/env python3
"""The kit's OPcache preload, run by a real PHP-FPM with the kit's opcache.ini.

A Magento-shaped tree is written to a temporary root (framework classes and an interface,
a generated interceptor, a functions file, a unit test, a class whose parent lives in a
package outside the list, a file this PHP cannot parse), with the kit's preload.php and
preload.list beside it as the image has them. PHP-FPM starts with every setting of
deploy/k8s/base/php-fpm/opcache.ini (opcache.preload pointed at the temporary root), and a
request through FastCGI reports what the workers see:

- framework classes and the interceptor exist without any autoloader (linked at preload);
- the class with an unknown parent is not declared, but its script is cached;
- the unit test was left out; the unparsable file did not stop PHP-FPM;
- a preloaded functions file can still be required (no redeclaration);
- nothing listed was executed (a top-level statement would have logged);
- the readiness probe's OPcache manifest, written under preloading, lists file paths only,
  and reads back as fully warm;
- PHP-FPM logged the summary line.

Usage: php_preload_check.py REPO  (prints one line; exit 0 when every point holds).
PHP-FPM is MAGESTACK_PHP_FPM, as scripts/deps installs, finds and exports it.
"""

import json
import os
import pathlib
import re
import shutil
import subprocess
import sys
import tempfile
import time

FILES = {
    "vendor/psr/log/src/LoggerInterface.php":
        "<?php\nnamespace Psr\\Log;\ninterface LoggerInterface { public function log($l, $m); }\n",
    "vendor/magento/framework/App/FrontControllerInterface.php":
        "<?php\nnamespace Magento\\Framework\\App;\ninterface FrontControllerInterface "
        "{ public function dispatch(); }\n",
    "vendor/magento/framework/App/FrontController.php":
        "<?php\nnamespace Magento\\Framework\\App;\nclass FrontController implements "
        "FrontControllerInterface, \\Psr\\Log\\LoggerInterface {\n"
        "    public function dispatch() { return 'front'; }\n"
        "    public function log($l, $m) {}\n}\n",
    "vendor/magento/framework/functions.php":
        "<?php\nfunction __(...$argc) { return 'translated'; }\n",
    # Run it and it logs (registration.php files call Magento at their top level).
    "vendor/magento/framework/registration.php":
        "<?php\nerror_log('FIXTURE CODE RAN AT PRELOAD');\n",
    "vendor/magento/framework/Http/LaminasRequest.php":
        "<?php\nnamespace Magento\\Framework\\Http;\nclass LaminasRequest extends "
        "\\Laminas\\Http\\Request {}\n",
    "vendor/magento/framework/Future.php":
        "<?php\nnamespace Magento\\Framework;\nclass Future { public function f( { }\n",
    "vendor/magento/framework/Test/Unit/FrontControllerTest.php":
        "<?php\nnamespace Magento\\Framework\\Test\\Unit;\nclass FrontControllerTest {}\n",
    "generated/code/Magento/Framework/App/FrontController/Interceptor.php":
        "<?php\nnamespace Magento\\Framework\\App\\FrontController;\nclass Interceptor extends "
        "\\Magento\\Framework\\App\\FrontController {\n"
        "    public function dispatch() { return 'intercepted ' . parent::dispatch(); }\n}\n",
    "pub/check.php": """<?php
$root = dirname(__DIR__);
$laminas = $root . '/vendor/magento/framework/Http/LaminasRequest.php';
$stats = opcache_get_status(false)['preload_statistics'] ?? [];
$before = function_exists('__');
require $root . '/vendor/magento/framework/functions.php';
echo json_encode([
    'front' => class_exists('Magento\\\\Framework\\\\App\\\\FrontController', false),
    'interceptor' => class_exists('Magento\\\\Framework\\\\App\\\\FrontController\\\\Interceptor', false)
        ? (new Magento\\Framework\\App\\FrontController\\Interceptor())->dispatch() : null,
    'laminas_declared' => class_exists('Magento\\\\Framework\\\\Http\\\\LaminasRequest', false),
    'laminas_cached' => opcache_is_script_cached($laminas),
    'test_declared' => class_exists('Magento\\\\Framework\\\\Test\\\\Unit\\\\FrontControllerTest', false),
    'function_preloaded' => $before,
    'function_after_require' => __('x'),
    'preloaded_scripts' => count($stats['scripts'] ?? []),
]);
""",
}

WANT = {
    "front": True,
    "interceptor": "intercepted front",
    "laminas_declared": False,
    "laminas_cached": True,
    "test_declared": False,
    "function_preloaded": True,
    "function_after_require": "translated",
}


def ini_settings(path: pathlib.Path) -> dict:
    out = {}
    for line in path.read_text().splitlines():
        line = line.split(";", 1)[0].strip()
        if "=" in line:
            k, v = (x.strip() for x in line.split("=", 1))
            out[k] = v
    return out


def fpm_logs(tmp: pathlib.Path) -> str:
    """PHP-FPM's error log and its own output (the preload's lines go to either)."""
    return "".join(
        (tmp / f).read_text() for f in ("fpm.log", "fpm.stdio") if (tmp / f).exists()
    )


def main() -> int:
    repo = pathlib.Path(sys.argv[1])
    fpm_bin = os.environ.get("MAGESTACK_PHP_FPM")
    if not fpm_bin:
        print("MAGESTACK_PHP_FPM is not set: run scripts/deps start (scripts/test does)")
        return 1
    kit_ini = repo / "deploy/k8s/base/php-fpm/opcache.ini"
    settings = ini_settings(kit_ini)
    if settings.get("opcache.preload") != "/var/www/magento/preload.php":
        print(f"opcache.preload in {kit_ini} is not the image's /var/www/magento/preload.php")
        return 1
    tmp = pathlib.Path(tempfile.mkdtemp(prefix="msprel"))
    try:
        root = tmp / "magento"
        for rel, text in FILES.items():
            p = root / rel
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_text(text)
        shutil.copy(repo / "deploy/php/preload.php", root / "preload.php")
        shutil.copy(repo / "deploy/php/magestack-health.php", root / "pub/magestack-health.php")
        # The kit's own list: it names vendor/psr, the framework and generated/code's
        # Framework subtree, which the fixture has; its other entries count as missing.
        shutil.copy(repo / "deploy/php/preload.list", root / "preload.list")
        # preload_user (www-data) must read the tree when PHP-FPM runs as root.
        for d in [tmp, *tmp.rglob("*")]:
            d.chmod(0o755 if d.is_dir() else 0o644)
        settings["opcache.preload"] = str(root / "preload.php")
        sock = tmp / "fpm.sock"
        conf = tmp / "fpm.conf"
        is_root = os.getuid() == 0
        conf.write_text(
            f"[global]\nerror_log = {tmp}/fpm.log\ndaemonize = no\n"
            f"[check]\nlisten = {sock}\nlisten.mode = 0666\n"
            + ("user = root\ngroup = root\n" if is_root else "")
            + "pm = static\npm.max_children = 1\nclear_env = no\n"
        )
        args = [fpm_bin, "--fpm-config", str(conf)]
        for k, v in settings.items():
            args += ["-d", f"{k}={v}"]
        if is_root:
            args.append("--allow-to-run-as-root")
        stdio = open(tmp / "fpm.stdio", "w")
        env = dict(os.environ, MAGESTACK_HEALTH_CHECKS="opcache",
                   MAGESTACK_OPCACHE_MANIFEST=str(tmp / "manifest.txt"))
        fpm = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=stdio, stderr=stdio,
                               env=env)
        try:
            deadline = time.time() + 20
            while not sock.exists():
                if fpm.poll() is not None or time.time() > deadline:
                    print("php-fpm did not start with the kit's preload:")
                    print(fpm_logs(tmp))
                    return 1
                time.sleep(0.05)
            def get(script: str, uri: str = "") -> str:
                return subprocess.run(
                    ["php", str(repo / "scripts/lib/fcgi_get.php"), f"unix://{sock}",
                     script, str(root / "pub"), uri or script],
                    capture_output=True, text=True, timeout=20,
                ).stdout

            out = get("/check.php")
            # The readiness probe's OPcache manifest, written and read by a preloading PHP.
            written = get("/magestack-health.php", "/magestack-health.php?write_manifest=1")
            health = get("/magestack-health.php")
        finally:
            fpm.terminate()
            fpm.wait(timeout=10)
            stdio.close()
        body = out.split("\n\n", 1)[-1].strip()
        try:
            got = json.loads(body)
        except ValueError:
            print(f"the check script did not answer JSON: {out[:500]}")
            return 1
        wrong = {k: (got.get(k), v) for k, v in WANT.items() if got.get(k) != v}
        logs = fpm_logs(tmp)
        summary = re.search(r"magestack preload: (\d+) files compiled, (\d+) failed[^\n]*", logs)
        executed = "FIXTURE CODE RAN AT PRELOAD" in logs
        manifest = (tmp / "manifest.txt").read_text() if (tmp / "manifest.txt").exists() else ""
        if not manifest.strip() or any(not l.startswith("/") for l in manifest.split()):
            print(f"the health script's manifest holds more than file paths: {manifest[:300]!r}"
                  f" (write_manifest answered: {written[-300:]!r})")
            return 1
        try:
            ratio = json.loads(health.split("\n\n", 1)[-1])["opcache"]["ratio"]
        except (ValueError, KeyError, TypeError):
            ratio = None
        if ratio != 1:
            print(f"readiness under preloading: OPcache ratio {ratio}, want 1 ({health[-300:]!r})")
            return 1
        if wrong or not summary or executed:
            print(f"preload: wrong {wrong}; summary line {'found' if summary else 'missing'}"
                  f"{'; a listed file was executed' if executed else ''}")
            print(logs[-2000:])
            return 1
        # The failures and the missing entries are the fixture's, on purpose: Future.php does
        # not compile (a file newer PHP syntax would break must not stop the preload), and
        # the fixture holds only part of the tree the kit's preload.list names.
        print(f"php-fpm preloaded {got['preloaded_scripts']} scripts; log: {summary.group(0)}"
              f" (as intended: the fixture's Future.php does not compile and it lacks the"
              f" list's other entries)")
        return 0
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
