//! The client against a real php-fpm (`/usr/sbin/php-fpm8.2` or
//! `$MAGESTACK_PHP_FPM`). Each test starts its own FPM on a free port or a
//! socket in a temp dir. A missing php-fpm fails the tests.

mod common;

use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{header, StatusCode};
use http_body::Body as _;
use http_body_util::BodyExt;
use magestack_fastcgi::codec::{self, Limits, PairList, ProtocolStatus, Record, RecordBody, Role};
use magestack_fastcgi::{Client, ClientConfig, Endpoint, HeadParser, RequestBody};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use common::{collect, md5_hex, pseudo_random, ChannelBody, Fpm, Listen, LogCapture};

const HELLO: &str = r#"<?php
header('X-Test: yes');
header('Set-Cookie: a=1', false);
header('Set-Cookie: b=2', false);
echo "hello ", $_SERVER['REQUEST_METHOD'], " ", $_SERVER['QUERY_STRING'], " ", $_GET['name'] ?? '-';
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_with_params_over_tcp() {
    let fpm = Fpm::start(Listen::Tcp);
    fpm.script("hello.php", HELLO);
    let client = fpm.client(ClientConfig::default());
    let resp = client
        .request(
            &fpm.params("hello.php", "GET", "name=magento&x=1", None),
            RequestBody::Empty,
        )
        .await
        .unwrap_or_else(|e| panic!("request failed: {e:?}\n{}", fpm.logs()));
    assert_eq!(resp.status, StatusCode::OK);
    assert_eq!(resp.headers["x-test"], "yes");
    assert!(resp.headers[header::CONTENT_TYPE]
        .to_str()
        .expect("ascii")
        .starts_with("text/html"));
    let cookies: Vec<_> = resp.headers.get_all(header::SET_COOKIE).iter().collect();
    assert_eq!(cookies, ["a=1", "b=2"]);
    let body = collect(resp.body).await.expect("body");
    assert_eq!(&body[..], b"hello GET name=magento&x=1 magento");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_over_unix_socket() {
    let fpm = Fpm::start(Listen::Unix);
    assert!(matches!(fpm.endpoint, Endpoint::Unix(_)));
    fpm.script("hello.php", HELLO);
    let client = fpm.client(ClientConfig::default());
    for _ in 0..3 {
        let resp = client
            .request(
                &fpm.params("hello.php", "GET", "", None),
                RequestBody::Empty,
            )
            .await
            .unwrap_or_else(|e| panic!("request failed: {e:?}\n{}", fpm.logs()));
        assert_eq!(resp.status, StatusCode::OK);
        assert_eq!(
            &collect(resp.body).await.expect("body")[..],
            b"hello GET  -"
        );
    }
    let stats = client.stats();
    assert_eq!((stats.connects, stats.reused), (1, 2), "{stats:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_404_and_redirect_from_php() {
    let fpm = Fpm::start(Listen::Tcp);
    fpm.script(
        "missing.php",
        "<?php header('Status: 404 Not Found'); echo 'nope';",
    );
    fpm.script("code.php", "<?php http_response_code(410); echo 'gone';");
    fpm.script("redirect.php", "<?php header('Location: /checkout/cart/');");
    let client = fpm.client(ClientConfig::default());

    let resp = client
        .request(
            &fpm.params("missing.php", "GET", "", None),
            RequestBody::Empty,
        )
        .await
        .expect("request");
    assert_eq!(resp.status, StatusCode::NOT_FOUND);
    assert!(
        resp.headers.get("status").is_none(),
        "Status is not forwarded"
    );
    assert_eq!(&collect(resp.body).await.expect("body")[..], b"nope");

    let resp = client
        .request(&fpm.params("code.php", "GET", "", None), RequestBody::Empty)
        .await
        .expect("request");
    assert_eq!(resp.status, StatusCode::GONE);
    assert_eq!(&collect(resp.body).await.expect("body")[..], b"gone");

    let resp = client
        .request(
            &fpm.params("redirect.php", "GET", "", None),
            RequestBody::Empty,
        )
        .await
        .expect("request");
    assert_eq!(resp.status, StatusCode::FOUND);
    assert_eq!(resp.headers[header::LOCATION], "/checkout/cart/");
    collect(resp.body).await.expect("body");

    // A script that does not exist: FPM's own "File not found." 404.
    let resp = client
        .request(&fpm.params("nope.php", "GET", "", None), RequestBody::Empty)
        .await
        .expect("request");
    assert_eq!(resp.status, StatusCode::NOT_FOUND);
    assert_eq!(
        &collect(resp.body).await.expect("body")[..],
        b"File not found.\n"
    );
    assert_eq!(client.stats().connects, 1, "all four on one connection");
}

const MD5: &str = "<?php $in = file_get_contents('php://input'); echo md5($in), ' ', strlen($in);";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn post_body_of_a_few_mb_arrives_intact() {
    let fpm = Fpm::start(Listen::Tcp);
    fpm.script("md5.php", MD5);
    let client = fpm.client(ClientConfig::default());
    let data = Bytes::from(pseudo_random(5 * 1024 * 1024 + 17, 42));
    let want = format!("{} {}", md5_hex(&data), data.len());
    let params = fpm.params(
        "md5.php",
        "POST",
        "",
        Some((data.len(), "application/octet-stream")),
    );

    // In memory.
    let resp = client
        .request(&params, RequestBody::Full(data.clone()))
        .await
        .unwrap_or_else(|e| panic!("request failed: {e:?}\n{}", fpm.logs()));
    assert_eq!(resp.status, StatusCode::OK);
    assert_eq!(
        String::from_utf8_lossy(&collect(resp.body).await.expect("body")),
        want
    );

    // Streamed in uneven chunks from another task.
    let (tx, body) = ChannelBody::new(2);
    let feeder = {
        let data = data.clone();
        tokio::spawn(async move {
            let mut at = 0;
            let mut step = 1;
            while at < data.len() {
                let end = (at + step).min(data.len());
                tx.send(Ok(data.slice(at..end))).await.expect("send chunk");
                at = end;
                step = (step * 7 + 1) % 300_000 + 1;
            }
        })
    };
    let resp = client
        .request(&params, RequestBody::stream(body))
        .await
        .unwrap_or_else(|e| panic!("request failed: {e:?}\n{}", fpm.logs()));
    feeder.await.expect("feeder");
    assert_eq!(
        String::from_utf8_lossy(&collect(resp.body).await.expect("body")),
        want
    );

    // A form post, which PHP reads before the script runs.
    let form = "a=1&b=".to_owned() + &"x".repeat(300_000);
    fpm.script(
        "form.php",
        "<?php echo $_POST['a'], ' ', strlen($_POST['b']);",
    );
    let params = fpm.params(
        "form.php",
        "POST",
        "",
        Some((form.len(), "application/x-www-form-urlencoded")),
    );
    let resp = client
        .request(&params, RequestBody::Full(Bytes::from(form)))
        .await
        .expect("request");
    assert_eq!(&collect(resp.body).await.expect("body")[..], b"1 300000");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sequential_requests_reuse_one_connection() {
    let fpm = Fpm::start(Listen::Tcp);
    fpm.script("hello.php", HELLO);
    fpm.script("md5.php", MD5);
    let client = fpm.client(ClientConfig::default());
    for i in 0..5 {
        let resp = client
            .request(
                &fpm.params("hello.php", "GET", &format!("i={i}"), None),
                RequestBody::Empty,
            )
            .await
            .expect("request");
        let body = collect(resp.body).await.expect("body");
        assert_eq!(body, format!("hello GET i={i} -"));
    }
    let body = Bytes::from_static(b"0123456789");
    let resp = client
        .request(
            &fpm.params("md5.php", "POST", "", Some((body.len(), "text/plain"))),
            RequestBody::Full(body.clone()),
        )
        .await
        .expect("request");
    assert_eq!(
        collect(resp.body).await.expect("body"),
        format!("{} 10", md5_hex(&body))
    );
    let stats = client.stats();
    assert_eq!(stats.requests, 6);
    assert_eq!(stats.connects, 1, "{stats:?}");
    assert_eq!(stats.reused, 5, "{stats:?}");
    assert_eq!(stats.idle, 1, "{stats:?}");

    // Without keep-alive every request connects.
    let no_keepalive = fpm.client(ClientConfig {
        max_idle: 0,
        ..ClientConfig::default()
    });
    for _ in 0..2 {
        let resp = no_keepalive
            .request(
                &fpm.params("hello.php", "GET", "", None),
                RequestBody::Empty,
            )
            .await
            .expect("request");
        collect(resp.body).await.expect("body");
    }
    assert_eq!(no_keepalive.stats().connects, 2);
    assert_eq!(no_keepalive.stats().idle, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn more_concurrent_requests_than_fpm_workers_do_not_starve() {
    // pm.max_children = 4 and a kept-alive connection pins a worker: without
    // the release rule the last requests would wait in FPM's backlog until
    // the read timeout.
    let fpm = Fpm::start(Listen::Tcp);
    fpm.script(
        "slow.php",
        "<?php usleep(200000); echo 'done ', $_GET['i'];",
    );
    let client = fpm.client(ClientConfig {
        max_idle: 16,
        read_timeout: Duration::from_secs(5),
        ..ClientConfig::default()
    });
    let started = Instant::now();
    let mut tasks = Vec::new();
    for i in 0..12 {
        let client = client.clone();
        let params = fpm.params("slow.php", "GET", &format!("i={i}"), None);
        tasks.push(tokio::spawn(async move {
            let resp = client.request(&params, RequestBody::Empty).await?;
            collect(resp.body).await
        }));
    }
    for (i, t) in tasks.into_iter().enumerate() {
        let body = t
            .await
            .expect("task")
            .unwrap_or_else(|e| panic!("request {i}: {e:?}"));
        assert_eq!(body, format!("done {i}"));
    }
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "took {:?}",
        started.elapsed()
    );
    assert!(
        client.stats().released_for_waiters > 0,
        "{:?}",
        client.stats()
    );
    // Afterwards the pool works normally again.
    let resp = client
        .request(
            &fpm.params("slow.php", "GET", "i=x", None),
            RequestBody::Empty,
        )
        .await
        .expect("request");
    assert_eq!(collect(resp.body).await.expect("body"), "done x");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fpm_down_is_a_connect_error() {
    let port = common::unused_port();
    let client = Client::new(
        Endpoint::Tcp(format!("127.0.0.1:{port}")),
        ClientConfig::default(),
    );
    let params = common::cgi_params(
        std::path::Path::new("/nonexistent"),
        "index.php",
        "GET",
        "",
        None,
    );
    let err = client
        .request(&params, RequestBody::Empty)
        .await
        .expect_err("nothing listens");
    assert!(err.is_connect(), "{err:?}");
    assert!(!err.is_timeout());
    assert!(err.to_string().contains(&port.to_string()), "{err}");

    let dir = tempfile::tempdir().expect("tempdir");
    let client = Client::new(
        Endpoint::Unix(dir.path().join("missing.sock")),
        ClientConfig::default(),
    );
    let err = client
        .request(&params, RequestBody::Empty)
        .await
        .expect_err("no socket");
    assert!(err.is_connect(), "{err:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_script_hits_the_read_timeout() {
    let fpm = Fpm::start(Listen::Tcp);
    fpm.script("sleep.php", "<?php sleep(5); echo 'late';");
    let client = fpm.client(ClientConfig {
        read_timeout: Duration::from_millis(500),
        ..ClientConfig::default()
    });
    let started = Instant::now();
    let err = client
        .request(
            &fpm.params("sleep.php", "GET", "", None),
            RequestBody::Empty,
        )
        .await
        .expect_err("times out");
    let took = started.elapsed();
    assert!(err.is_timeout(), "{err:?}");
    assert!(!err.is_connect());
    assert!(
        took >= Duration::from_millis(450) && took < Duration::from_secs(3),
        "took {took:?}"
    );
    assert_eq!(
        client.stats().idle,
        0,
        "a timed-out connection is not pooled"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_timeout_applies_between_body_reads() {
    let fpm = Fpm::start(Listen::Tcp);
    fpm.script(
        "pause.php",
        "<?php echo 'first'; flush(); sleep(3); echo 'second';",
    );
    let client = fpm.client(ClientConfig {
        read_timeout: Duration::from_millis(400),
        ..ClientConfig::default()
    });
    let mut resp = client
        .request(
            &fpm.params("pause.php", "GET", "", None),
            RequestBody::Empty,
        )
        .await
        .expect("head arrives");
    let first = resp.body.frame().await.expect("frame").expect("ok");
    assert_eq!(first.into_data().expect("data"), "first");
    let err = resp
        .body
        .frame()
        .await
        .expect("frame")
        .expect_err("timeout");
    assert!(err.is_timeout(), "{err:?}");
    assert!(resp.body.is_end_stream());
    assert!(resp.body.frame().await.is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn too_large_response_head_is_refused() {
    let fpm = Fpm::start(Listen::Tcp);
    // Magento emits big X-Magento-Tags; over 32 KiB nginx answers 502.
    fpm.script(
        "tags.php",
        "<?php header('X-Magento-Tags: ' . str_repeat('cat_p_1,', 5000)); echo 'x';",
    );
    fpm.script("hello.php", HELLO);
    let client = fpm.client(ClientConfig::default());
    let err = client
        .request(&fpm.params("tags.php", "GET", "", None), RequestBody::Empty)
        .await
        .expect_err("too big");
    assert!(err.is_header_too_large(), "{err:?}");
    assert!(err.is_protocol());
    // The same header fits a larger ceiling.
    let big = fpm.client(ClientConfig {
        max_header_bytes: 64 * 1024,
        ..ClientConfig::default()
    });
    let resp = big
        .request(&fpm.params("tags.php", "GET", "", None), RequestBody::Empty)
        .await
        .expect("fits");
    assert_eq!(resp.headers["x-magento-tags"].len(), 40_000);
    assert_eq!(&collect(resp.body).await.expect("body")[..], b"x");
}

#[tokio::test(flavor = "current_thread")]
async fn php_error_log_goes_to_the_log_not_the_body() {
    let (logs, _guard) = LogCapture::install();
    let fpm = Fpm::start(Listen::Tcp);
    fpm.script(
        "stderr.php",
        "<?php error_log('payment gateway said no'); echo 'page';",
    );
    let client = fpm.client(ClientConfig::default());
    let resp = client
        .request(
            &fpm.params("stderr.php", "GET", "", None),
            RequestBody::Empty,
        )
        .await
        .expect("request");
    assert_eq!(resp.status, StatusCode::OK);
    assert_eq!(&collect(resp.body).await.expect("body")[..], b"page");
    let text = logs.text();
    assert!(
        text.contains("WARN") && text.contains("payment gateway said no"),
        "stderr not logged: {text}\n{}",
        fpm.logs()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_the_body_early_closes_the_connection() {
    let fpm = Fpm::start(Listen::Tcp);
    fpm.script(
        "big.php",
        "<?php $c = str_repeat('y', 65536); for ($i = 0; $i < 64; $i++) { echo $c; flush(); }",
    );
    fpm.script("hello.php", HELLO);
    let client = fpm.client(ClientConfig::default());
    let mut resp = client
        .request(&fpm.params("big.php", "GET", "", None), RequestBody::Empty)
        .await
        .expect("request");
    let _first = resp.body.frame().await.expect("frame").expect("ok");
    drop(resp);
    assert_eq!(client.stats().idle, 0);
    let resp = client
        .request(
            &fpm.params("hello.php", "GET", "", None),
            RequestBody::Empty,
        )
        .await
        .expect("request");
    collect(resp.body).await.expect("body");
    let stats = client.stats();
    assert_eq!(
        (stats.connects, stats.reused, stats.idle),
        (2, 0, 1),
        "{stats:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn head_request_has_no_body_and_keeps_the_connection() {
    let fpm = Fpm::start(Listen::Tcp);
    fpm.script("hello.php", HELLO);
    let client = fpm.client(ClientConfig::default());
    let resp = client
        .request(
            &fpm.params("hello.php", "HEAD", "", None),
            RequestBody::Empty,
        )
        .await
        .expect("request");
    assert_eq!(resp.status, StatusCode::OK);
    assert_eq!(resp.headers["x-test"], "yes");
    // END_REQUEST arrived with the head: the body is already finished and the
    // connection is back in the pool before anyone polls the body.
    assert!(resp.body.is_end_stream(), "{:?}", resp.body);
    assert_eq!(client.stats().idle, 1);
    assert!(collect(resp.body).await.expect("body").is_empty());
}

/// Sends `wire` on a fresh connection and returns the records FPM sends
/// until END_REQUEST or GET_VALUES_RESULT.
async fn raw_exchange(fpm: &Fpm, wire: &[u8]) -> Vec<Record> {
    let Endpoint::Tcp(addr) = &fpm.endpoint else {
        panic!("tcp endpoint expected");
    };
    let mut s = tokio::net::TcpStream::connect(addr.as_str())
        .await
        .expect("connect");
    s.write_all(wire).await.expect("write");
    let mut buf = bytes::BytesMut::new();
    let mut records = Vec::new();
    loop {
        while let Some(r) =
            codec::decode(&mut buf, &Limits::default()).expect("fpm sends valid records")
        {
            let last = matches!(
                r.body,
                RecordBody::EndRequest { .. } | RecordBody::GetValuesResult(_)
            );
            records.push(r);
            if last {
                assert!(buf.is_empty(), "{} bytes after the last record", buf.len());
                return records;
            }
        }
        let n = tokio::time::timeout(Duration::from_secs(5), s.read_buf(&mut buf))
            .await
            .unwrap_or_else(|_| {
                panic!(
                    "fpm went silent after {records:?} + {buf:?}\n{}",
                    fpm.logs()
                )
            })
            .expect("read");
        assert!(n > 0, "fpm closed early after {records:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bare_codec_talks_to_php_fpm() {
    let fpm = Fpm::start(Listen::Tcp);
    fpm.script("hello.php", HELLO);

    // A responder request with request id 7 and no keep-conn.
    let mut wire = bytes::BytesMut::new();
    codec::encode_begin_request(&mut wire, 7, Role::RESPONDER, 0);
    codec::encode_params(
        &mut wire,
        7,
        &fpm.params("hello.php", "GET", "name=raw", None),
    )
    .expect("fits");
    codec::encode_stdin_end(&mut wire, 7);
    let records = raw_exchange(&fpm, &wire).await;
    let mut stdout = Vec::new();
    for r in &records[..records.len() - 1] {
        assert_eq!(r.request_id, 7);
        match &r.body {
            // php-fpm 8.2 goes straight to END_REQUEST without the empty
            // STDOUT record; the client does not rely on either.
            RecordBody::Stdout(c) if c.is_empty() => {}
            RecordBody::Stdout(c) => stdout.extend_from_slice(c),
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(
        records.last().map(|r| (r.request_id, &r.body)),
        Some((
            7,
            &RecordBody::EndRequest {
                app_status: 0,
                protocol_status: ProtocolStatus::REQUEST_COMPLETE
            }
        ))
    );
    let head = HeadParser::new(magestack_fastcgi::DEFAULT_MAX_HEADER_BYTES)
        .push(Bytes::from(stdout))
        .expect("valid head")
        .expect("complete head");
    assert_eq!(head.status, StatusCode::OK);
    assert_eq!(&head.body[..], b"hello GET name=raw raw");

    // GET_VALUES: FPM says it does not multiplex connections.
    let mut names = PairList::new();
    for n in ["FCGI_MAX_CONNS", "FCGI_MAX_REQS", "FCGI_MPXS_CONNS"] {
        names.try_push(n, "").expect("fits");
    }
    let mut wire = bytes::BytesMut::new();
    Record {
        request_id: codec::NULL_REQUEST_ID,
        body: RecordBody::GetValues(names),
    }
    .encode(&mut wire);
    let records = raw_exchange(&fpm, &wire).await;
    let [Record {
        request_id: 0,
        body: RecordBody::GetValuesResult(values),
    }] = &records[..]
    else {
        panic!("expected one GET_VALUES_RESULT, got {records:?}");
    };
    assert_eq!(
        values.get(b"FCGI_MPXS_CONNS").map(|v| &v[..]),
        Some(&b"0"[..]),
        "{values:?}"
    );
    // php-fpm 8.2 answers only the names it knows, i.e. FCGI_MPXS_CONNS.
    assert_eq!(values.len(), 1, "{values:?}");
}
