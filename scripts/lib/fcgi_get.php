<?php
/**
 * Minimal FastCGI client used by scripts/deps to prove PHP-FPM really answers (not just that a
 * port is open). Usage:
 *
 *   php fcgi_get.php ADDR SCRIPT_NAME [DOCUMENT_ROOT] [REQUEST_URI]
 *
 * ADDR is tcp://127.0.0.1:PORT or unix:///path/to.sock. SCRIPT_FILENAME = DOCUMENT_ROOT.SCRIPT_NAME
 * (or SCRIPT_NAME alone when no docroot is given, as FPM's ping/status paths want).
 * Prints "<status>\n<headers>\n\n<body>"; exit 0 when a response arrived, 2 on I/O errors.
 */

declare(strict_types=1);

[$_, $addr, $scriptName] = $argv + [null, null, null];
$docroot = $argv[3] ?? '';
$requestUri = $argv[4] ?? $scriptName;
if ($addr === null || $scriptName === null) {
    fwrite(STDERR, "usage: php fcgi_get.php ADDR SCRIPT_NAME [DOCUMENT_ROOT] [REQUEST_URI]\n");
    exit(64);
}

function rec(int $type, string $content): string
{
    $len = strlen($content);
    $pad = (8 - $len % 8) % 8;
    return pack('CCnnCC', 1, $type, 1, $len, $pad, 0) . $content . str_repeat("\0", $pad);
}

function nv(string $n, string $v): string
{
    $enc = fn(int $l) => $l < 128 ? chr($l) : pack('N', $l | 0x80000000);
    return $enc(strlen($n)) . $enc(strlen($v)) . $n . $v;
}

$sock = @stream_socket_client($addr, $errno, $errstr, 2.0);
if ($sock === false) {
    fwrite(STDERR, "connect $addr: $errstr\n");
    exit(2);
}
stream_set_timeout($sock, 10);

$query = (string)(parse_url($requestUri, PHP_URL_QUERY) ?? '');
$params = [
    'GATEWAY_INTERFACE' => 'CGI/1.1',
    'SERVER_SOFTWARE' => 'magestack-deps',
    'REQUEST_METHOD' => 'GET',
    'SCRIPT_NAME' => $scriptName,
    'SCRIPT_FILENAME' => $docroot . $scriptName,
    'DOCUMENT_ROOT' => $docroot,
    'REQUEST_URI' => $requestUri,
    'DOCUMENT_URI' => $scriptName,
    'QUERY_STRING' => $query,
    'SERVER_PROTOCOL' => 'HTTP/1.1',
    'SERVER_NAME' => 'localhost',
    'SERVER_ADDR' => '127.0.0.1',
    'SERVER_PORT' => '80',
    'REMOTE_ADDR' => '127.0.0.1',
    'REMOTE_PORT' => '1',
    'HTTP_HOST' => 'localhost',
    'REDIRECT_STATUS' => '200',
    'CONTENT_LENGTH' => '',
    'CONTENT_TYPE' => '',
];
$p = '';
foreach ($params as $k => $v) {
    $p .= nv($k, $v);
}
fwrite($sock, rec(1, pack('nCx5', 1, 0)) . rec(4, $p) . rec(4, '') . rec(5, ''));

$stdout = '';
$stderr = '';
$ended = false;
$buf = '';
while (!$ended) {
    $chunk = fread($sock, 65536);
    if ($chunk === false || ($chunk === '' && feof($sock))) {
        break;
    }
    if ($chunk === '' && stream_get_meta_data($sock)['timed_out']) {
        fwrite(STDERR, "timeout reading from $addr\n");
        exit(2);
    }
    $buf .= $chunk;
    while (strlen($buf) >= 8) {
        $h = unpack('Cver/Ctype/nid/nlen/Cpad/Cres', $buf);
        $total = 8 + $h['len'] + $h['pad'];
        if (strlen($buf) < $total) {
            break;
        }
        $content = substr($buf, 8, $h['len']);
        $buf = substr($buf, $total);
        if ($h['type'] === 6) {
            $stdout .= $content;
        } elseif ($h['type'] === 7) {
            $stderr .= $content;
        } elseif ($h['type'] === 3) {
            $ended = true;
        }
    }
}
fclose($sock);
if (!$ended) {
    fwrite(STDERR, "no END_REQUEST from $addr\n");
    exit(2);
}
$split = strpos($stdout, "\r\n\r\n");
$head = $split === false ? $stdout : substr($stdout, 0, $split);
$body = $split === false ? '' : substr($stdout, $split + 4);
$status = 200;
if (preg_match('/^Status:\s*(\d{3})/mi', $head, $m)) {
    $status = (int)$m[1];
}
echo $status, "\n", $head, "\n\n", $body;
if ($stderr !== '') {
    fwrite(STDERR, $stderr);
}
exit(0);
