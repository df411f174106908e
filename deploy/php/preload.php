<?php
/**
 * OPcache preloading for Magento 2 (opcache.preload), compile-only.
 *
 * PHP-FPM's master runs this once at start. Every file of the preload list is compiled into
 * OPcache with opcache_compile_file(): nothing is executed, so no autoloader, no bootstrap and
 * no file order is involved (the usual ways a Magento preload script breaks). Classes whose
 * parents and interfaces are all in the list are linked and exist in every request without
 * autoloading; the others stay compiled scripts that the autoloader includes from memory
 * (PHP skips what a preloaded file already declared, functions included). The image is
 * immutable (validate_timestamps = 0), so a preloaded file can never be stale; a deploy is
 * a new image, hence a new master.
 *
 * The list (MAGESTACK_PRELOAD_LIST, default preload.list beside this script): one path a
 * line, relative to the Magento root (this script's directory, or MAGENTO_ROOT) or absolute;
 * a directory means its *.php files, without tests, fixtures and setup scripts; '#' starts a
 * comment. The OPcache manifest that magestack-health.php writes from a warm pod
 * (?write_manifest=1: the scripts a warm worker has cached) is a valid list too: point
 * MAGESTACK_PRELOAD_LIST at it to preload exactly what production runs.
 *
 * Preloading stops before OPcache's free memory falls under MAGESTACK_PRELOAD_KEEP_FREE
 * (default 0.5 of opcache.memory_consumption): requests still need room for everything else.
 * One summary line goes to PHP-FPM's error log. Warnings about classes that cannot be linked
 * (a parent outside the list) are not logged: those files are cached all the same.
 */

declare(strict_types=1);

/** Whether a path inside a listed directory is left out: tests, fixtures, setup, CLI. */
function magestack_preload_skip(string $relative): bool
{
    return (bool)preg_match(
        '#(^|/)(Test|Tests|tests|test|_files|Fixtures|fixtures|Setup|Console|dev)(/|$)#',
        $relative
    );
}

/** The files a list line stands for. */
function magestack_preload_files(string $path): iterable
{
    if (is_file($path)) {
        if (str_ends_with($path, '.php')) {
            yield $path;
        }
        return;
    }
    if (!is_dir($path)) {
        return;
    }
    $it = new RecursiveIteratorIterator(
        new RecursiveDirectoryIterator($path, FilesystemIterator::SKIP_DOTS),
        RecursiveIteratorIterator::LEAVES_ONLY
    );
    foreach ($it as $file) {
        $name = $file->getPathname();
        if (str_ends_with($name, '.php') && !magestack_preload_skip(substr($name, strlen($path)))) {
            yield $name;
        }
    }
}

(static function (): void {
    $root = rtrim(getenv('MAGENTO_ROOT') ?: __DIR__, '/');
    $list = getenv('MAGESTACK_PRELOAD_LIST') ?: __DIR__ . '/preload.list';
    $keepFree = (float)(getenv('MAGESTACK_PRELOAD_KEEP_FREE') ?: '0.5');
    $lines = is_readable($list) ? file($list, FILE_IGNORE_NEW_LINES) : false;
    if ($lines === false) {
        error_log("magestack preload: no list at $list; nothing preloaded");
        return;
    }
    $total = (float)ini_get('opcache.memory_consumption') * 1024 * 1024;
    $floor = $total * min(max($keepFree, 0.0), 1.0);
    $previous = error_reporting(E_ALL & ~E_WARNING);
    $compiled = $failed = $missing = 0;
    $stopped = '';
    $seen = [];
    foreach ($lines as $line) {
        $line = trim((string)preg_replace('/#.*$/', '', $line));
        if ($line === '') {
            continue;
        }
        $path = $line[0] === '/' ? $line : "$root/$line";
        if (!file_exists($path)) {
            $missing++;
            continue;
        }
        foreach (magestack_preload_files($path) as $file) {
            if (isset($seen[$file])) {
                continue;
            }
            $seen[$file] = true;
            if (($compiled + $failed) % 200 === 0) {
                $status = opcache_get_status(false);
                $free = (float)($status['memory_usage']['free_memory'] ?? 0);
                if ($free < $floor) {
                    $stopped = sprintf(
                        '; stopped at %d MB free (keep %.0f %%)',
                        $free / 1048576,
                        $keepFree * 100
                    );
                    break 2;
                }
            }
            try {
                if (opcache_compile_file($file)) {
                    $compiled++;
                } else {
                    $failed++;
                }
            } catch (\Throwable $e) {
                // A file this PHP cannot parse (another version's syntax): never loaded here.
                $failed++;
            }
        }
    }
    error_reporting($previous);
    $status = opcache_get_status(false);
    error_log(sprintf(
        'magestack preload: %d files compiled, %d failed, %d list entries missing, %d MB used%s',
        $compiled,
        $failed,
        $missing,
        (int)(($status['memory_usage']['used_memory'] ?? 0) / 1048576),
        $stopped
    ));
})();
