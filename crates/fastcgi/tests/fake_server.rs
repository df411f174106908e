//! The client against scripted FastCGI servers on 127.0.0.1:0, for the
//! paths a real PHP-FPM does not take on demand: STDERR records, stale pooled
//! connections, protocol violations, early responses, write timeouts.

mod common;

use std::future::Future;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use http::StatusCode;
use http_body::Body as _;
use http_body_util::BodyExt;
use magestack_fastcgi::codec::{self, ProtocolStatus, Record, RecordBody, RecordType, KEEP_CONN};
use magestack_fastcgi::{Client, ClientConfig, Endpoint, Error, Params, RequestBody};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

use common::{collect, ChannelBody, LogCapture};

// === the scripted server ===

#[derive(Debug, Default)]
struct FakeReq {
    id: u16,
    keep_conn: bool,
    params: Vec<(Bytes, Bytes)>,
    stdin: Vec<u8>,
}

struct Peer {
    s: TcpStream,
    buf: BytesMut,
}

impl Peer {
    async fn record(&mut self) -> Option<Record> {
        loop {
            if let Some(r) = codec::decode(&mut self.buf, &codec::Limits::default())
                .expect("client sends valid records")
            {
                return Some(r);
            }
            if self.s.read_buf(&mut self.buf).await.ok()? == 0 {
                return None;
            }
        }
    }

    /// BEGIN_REQUEST and the PARAMS stream.
    async fn head(&mut self) -> Option<FakeReq> {
        let mut req = FakeReq::default();
        match self.record().await?.body {
            RecordBody::BeginRequest { role, flags } => {
                assert_eq!(role, codec::Role::RESPONDER);
                req.keep_conn = flags & KEEP_CONN != 0;
            }
            other => panic!("expected BEGIN_REQUEST, got {other:?}"),
        }
        let mut params = BytesMut::new();
        loop {
            let r = self.record().await?;
            req.id = r.request_id;
            match r.body {
                RecordBody::Params(c) if c.is_empty() => break,
                RecordBody::Params(c) => params.extend_from_slice(&c),
                other => panic!("expected PARAMS, got {other:?}"),
            }
        }
        while let Some(p) =
            codec::decode_name_value(&mut params, &codec::Limits::default()).expect("valid pairs")
        {
            req.params.push(p);
        }
        Some(req)
    }

    /// The STDIN stream up to its empty record.
    async fn stdin(&mut self, req: &mut FakeReq) -> Option<()> {
        loop {
            match self.record().await?.body {
                RecordBody::Stdin(c) if c.is_empty() => return Some(()),
                RecordBody::Stdin(c) => req.stdin.extend_from_slice(&c),
                other => panic!("expected STDIN, got {other:?}"),
            }
        }
    }

    async fn request(&mut self) -> Option<FakeReq> {
        let mut req = self.head().await?;
        self.stdin(&mut req).await?;
        Some(req)
    }

    async fn send(&mut self, bytes: &[u8]) {
        let _ = self.s.write_all(bytes).await;
    }
}

/// STDOUT (split into records), the empty STDOUT, END_REQUEST.
fn reply(id: u16, stdout: &[u8]) -> BytesMut {
    let mut b = BytesMut::new();
    codec::encode_stream(&mut b, RecordType::Stdout, id, stdout);
    end(&mut b, id, ProtocolStatus::REQUEST_COMPLETE);
    b
}

fn end(b: &mut BytesMut, id: u16, status: ProtocolStatus) {
    Record {
        request_id: id,
        body: RecordBody::Stdout(Bytes::new()),
    }
    .encode(b);
    Record {
        request_id: id,
        body: RecordBody::EndRequest {
            app_status: 0,
            protocol_status: status,
        },
    }
    .encode(b);
}

fn record(b: &mut BytesMut, id: u16, body: RecordBody) {
    Record {
        request_id: id,
        body,
    }
    .encode(b);
}

/// Listens on 127.0.0.1:0 and runs `script` for connection 0, 1, 2, …
async fn serve<F, Fut>(script: F) -> (Endpoint, JoinHandle<()>)
where
    F: Fn(usize, Peer) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = l.local_addr().expect("addr");
    let task = tokio::spawn(async move {
        let mut n = 0;
        while let Ok((s, _)) = l.accept().await {
            tokio::spawn(script(
                n,
                Peer {
                    s,
                    buf: BytesMut::new(),
                },
            ));
            n += 1;
        }
    });
    (Endpoint::Tcp(addr.to_string()), task)
}

fn params() -> Params {
    let mut p = Params::new();
    p.push("SCRIPT_FILENAME", "/app/pub/index.php");
    p.push("REQUEST_METHOD", "GET");
    p
}

fn config() -> ClientConfig {
    ClientConfig {
        read_timeout: Duration::from_secs(5),
        write_timeout: Duration::from_secs(5),
        ..ClientConfig::default()
    }
}

async fn get(client: &Client) -> Result<(StatusCode, Bytes), Error> {
    let resp = client.request(&params(), RequestBody::Empty).await?;
    Ok((resp.status, collect(resp.body).await?))
}

// === tests ===

#[tokio::test(flavor = "current_thread")]
async fn stderr_is_logged_truncated_and_not_forwarded() {
    let (logs, _guard) = LogCapture::install();
    let (ep, _srv) = serve(|_, mut p| async move {
        let req = p.request().await.expect("request");
        assert!(req.keep_conn);
        assert_eq!(req.id, 1);
        assert_eq!(req.params[0].0, "SCRIPT_FILENAME");
        let mut b = BytesMut::new();
        record(
            &mut b,
            1,
            RecordBody::Stderr(Bytes::from_static(b"PHP Warning:  Undefined variable $x\n")),
        );
        codec::encode_stream(
            &mut b,
            RecordType::Stdout,
            1,
            b"Content-Type: text/plain\r\n\r\nbody ",
        );
        let long = format!("PHP Fatal error: {}END-OF-LONG-LINE", "z".repeat(10_000));
        record(&mut b, 1, RecordBody::Stderr(Bytes::from(long)));
        codec::encode_stream(&mut b, RecordType::Stdout, 1, b"text");
        end(&mut b, 1, ProtocolStatus::REQUEST_COMPLETE);
        p.send(&b).await;
        let _ = p.request().await;
    })
    .await;
    let client = Client::new(ep, config());
    let (status, body) = get(&client).await.expect("request");
    assert_eq!(status, StatusCode::OK);
    assert_eq!(&body[..], b"body text", "stderr never reaches the body");
    let text = logs.text();
    assert!(text.contains("WARN"), "{text}");
    assert!(text.contains("Undefined variable $x"), "{text}");
    assert!(text.contains("PHP Fatal error"), "{text}");
    assert!(text.contains("truncated=true"), "{text}");
    assert!(
        !text.contains("END-OF-LONG-LINE"),
        "long stderr is cut: {text}"
    );
    assert_eq!(client.stats().idle, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_once_when_a_pooled_connection_was_closed_by_the_server() {
    // Connection 0 answers one request, then takes the next one and closes
    // without answering (as FPM does when a worker is recycled). The retry
    // goes to a fresh connection.
    let (ep, _srv) = serve(|n, mut p| async move {
        let req = p.request().await.expect("request");
        p.send(&reply(
            req.id,
            format!("Status: 200\r\n\r\nconn {n}").as_bytes(),
        ))
        .await;
        if n == 0 {
            let _ = p.request().await;
            return; // drop: close without a response
        }
        while let Some(req) = p.request().await {
            p.send(&reply(req.id, format!("\r\nconn {n}").as_bytes()))
                .await;
        }
    })
    .await;
    let client = Client::new(ep, config());
    assert_eq!(get(&client).await.expect("first").1, "conn 0");
    let (_, body) = get(&client)
        .await
        .expect("second succeeds on a new connection");
    assert_eq!(body, "conn 1");
    let s = client.stats();
    assert_eq!((s.connects, s.reused, s.retries), (2, 1, 1), "{s:?}");
    assert_eq!(get(&client).await.expect("third").1, "conn 1");

    // A Full body is resent intact on the retry.
    let (ep, _srv) = serve(|n, mut p| async move {
        let req = p.request().await.expect("request");
        p.send(&reply(
            req.id,
            format!("\r\n{n}:{}", req.stdin.len()).as_bytes(),
        ))
        .await;
        if n == 0 {
            let _ = p.request().await;
        }
    })
    .await;
    let client = Client::new(ep, config());
    get(&client).await.expect("first");
    let resp = client
        .request(
            &params(),
            RequestBody::Full(Bytes::from(vec![7u8; 100_000])),
        )
        .await
        .expect("retried");
    assert_eq!(collect(resp.body).await.expect("body"), "1:100000");
    assert_eq!(client.stats().retries, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connection_closed_by_the_server_is_not_reused() {
    let (ep, _srv) = serve(|n, mut p| async move {
        let req = p.request().await.expect("request");
        p.send(&reply(req.id, format!("\r\nconn {n}").as_bytes()))
            .await;
        // Close right away: the FIN reaches the client while the connection is idle.
    })
    .await;
    let client = Client::new(ep, config());
    assert_eq!(get(&client).await.expect("first").1, "conn 0");
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(get(&client).await.expect("second").1, "conn 1");
    let s = client.stats();
    assert_eq!((s.connects, s.reused, s.retries), (2, 0, 0), "{s:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_retry_once_the_streamed_body_was_consumed() {
    let (ep, _srv) = serve(|n, mut p| async move {
        let req = p.request().await.expect("request");
        p.send(&reply(req.id, b"\r\nok")).await;
        if n == 0 {
            // Read the next request's head and some body, then vanish.
            let _ = p.head().await;
            let _ = p.record().await;
        }
    })
    .await;
    let client = Client::new(ep, config());
    get(&client).await.expect("first");
    let (tx, body) = ChannelBody::new(4);
    tx.send(Ok(Bytes::from_static(b"part one")))
        .await
        .expect("send");
    let feeder = tokio::spawn(async move {
        // Keep the body open: the server closes first.
        tokio::time::sleep(Duration::from_secs(2)).await;
        drop(tx);
    });
    let err = client
        .request(&params(), RequestBody::stream(body))
        .await
        .expect_err("cannot replay a consumed stream");
    assert!(err.is_closed(), "{err:?}");
    assert_eq!(client.stats().retries, 0);
    feeder.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_body_is_streamed_as_it_arrives() {
    let (seen_tx, mut seen_rx) = tokio::sync::mpsc::channel::<Vec<u8>>(8);
    let (ep, _srv) = serve(move |_, mut p| {
        let seen_tx = seen_tx.clone();
        async move {
            let mut req = p.head().await.expect("head");
            // Report every STDIN record as it arrives.
            loop {
                match p.record().await.expect("record").body {
                    RecordBody::Stdin(c) if c.is_empty() => break,
                    RecordBody::Stdin(c) => {
                        req.stdin.extend_from_slice(&c);
                        seen_tx.send(c.to_vec()).await.expect("report");
                    }
                    other => panic!("{other:?}"),
                }
            }
            p.send(&reply(
                req.id,
                format!("\r\n{}", req.stdin.len()).as_bytes(),
            ))
            .await;
        }
    })
    .await;
    let client = Client::new(ep, config());
    let (tx, body) = ChannelBody::new(1);
    let request = tokio::spawn(async move {
        let resp = client.request(&params(), RequestBody::stream(body)).await?;
        collect(resp.body).await
    });
    for chunk in [&b"first chunk"[..], b"second chunk", &[b'z'; 200_000]] {
        tx.send(Ok(Bytes::copy_from_slice(chunk)))
            .await
            .expect("send");
        // The server sees this chunk before the next one is even produced.
        let mut got = Vec::new();
        while got.len() < chunk.len() {
            let part = tokio::time::timeout(Duration::from_secs(5), seen_rx.recv())
                .await
                .expect("chunk forwarded promptly")
                .expect("server alive");
            got.extend_from_slice(&part);
        }
        assert_eq!(got, chunk);
    }
    drop(tx);
    let body = request.await.expect("task").expect("response");
    assert_eq!(body, "200023");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_body_error_is_reported_and_connection_dropped() {
    let (ep, _srv) = serve(|_, mut p| async move {
        let _ = p.request().await;
    })
    .await;
    let client = Client::new(ep, config());
    let (tx, body) = ChannelBody::new(2);
    tx.send(Ok(Bytes::from_static(b"abc"))).await.expect("send");
    tx.send(Err("client went away".into())).await.expect("send");
    let err = client
        .request(&params(), RequestBody::stream(body))
        .await
        .expect_err("body failed");
    assert!(err.is_request_body(), "{err:?}");
    assert!(!err.is_connect() && !err.is_timeout() && !err.is_protocol());
    assert_eq!(client.stats().idle, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn response_while_the_upload_is_blocked_does_not_deadlock() {
    // The server writes 4 MiB of response before reading any STDIN; the
    // client sends 16 MiB. Both directions must progress together.
    const UP: usize = 16 << 20;
    const DOWN: usize = 4 << 20;
    let (ep, _srv) = serve(|_, mut p| async move {
        let mut req = p.head().await.expect("head");
        let mut b = BytesMut::new();
        codec::encode_stream(
            &mut b,
            RecordType::Stdout,
            req.id,
            b"Content-Type: x/y\r\n\r\n",
        );
        codec::encode_stream(&mut b, RecordType::Stdout, req.id, &vec![b'd'; DOWN]);
        p.send(&b).await;
        p.stdin(&mut req).await.expect("stdin");
        assert_eq!(req.stdin.len(), UP);
        let mut b = BytesMut::new();
        end(&mut b, req.id, ProtocolStatus::REQUEST_COMPLETE);
        p.send(&b).await;
    })
    .await;
    let client = Client::new(ep, config());
    let resp = tokio::time::timeout(
        Duration::from_secs(20),
        client.request(&params(), RequestBody::Full(Bytes::from(vec![b'u'; UP]))),
    )
    .await
    .expect("no deadlock")
    .expect("response");
    let body = tokio::time::timeout(Duration::from_secs(20), collect(resp.body))
        .await
        .expect("no deadlock")
        .expect("body");
    assert_eq!(body.len(), DOWN);
    assert_eq!(
        client.stats().idle,
        1,
        "everything sent and ended cleanly: pooled"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn write_timeout_when_the_server_stops_reading() {
    let (ep, _srv) = serve(|_, mut p| async move {
        let _ = p.head().await;
        tokio::time::sleep(Duration::from_secs(10)).await;
    })
    .await;
    let client = Client::new(
        ep,
        ClientConfig {
            write_timeout: Duration::from_millis(300),
            ..config()
        },
    );
    let started = Instant::now();
    let err = client
        .request(
            &params(),
            RequestBody::Full(Bytes::from(vec![0u8; 64 << 20])),
        )
        .await
        .expect_err("server never reads");
    assert!(err.is_timeout(), "{err:?}");
    assert!(matches!(err, Error::WriteTimeout(_)), "{err:?}");
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn protocol_violations_are_protocol_errors() {
    async fn one(body: BytesMut) -> Error {
        let body = Bytes::from(body);
        let (ep, _srv) = serve(move |_, mut p| {
            let body = body.clone();
            async move {
                let _ = p.request().await;
                p.send(&body).await;
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        })
        .await;
        let client = Client::new(ep, config());
        let err = get(&client).await.expect_err("violation");
        assert_eq!(client.stats().idle, 0);
        err
    }

    let err = one(BytesMut::from(&b"HTTP/1.1 200 OK\r\n\r\n"[..])).await;
    assert!(
        err.is_protocol() && matches!(err, Error::Decode(_)),
        "{err:?}"
    );

    let mut b = BytesMut::new();
    end(&mut b, 1, ProtocolStatus::REQUEST_COMPLETE);
    let err = one(b).await;
    assert!(err.is_protocol(), "END before head: {err:?}");

    let mut b = BytesMut::new();
    end(&mut b, 1, ProtocolStatus::OVERLOADED);
    let err = one(b).await;
    assert!(err.is_protocol(), "overloaded: {err:?}");

    let mut b = BytesMut::new();
    codec::encode_stream(&mut b, RecordType::Stdout, 2, b"\r\nwrong request id");
    let err = one(b).await;
    assert!(err.is_protocol(), "foreign id: {err:?}");

    let mut b = BytesMut::new();
    codec::encode_stream(&mut b, RecordType::Stdout, 1, b"Broken header line\r\n\r\n");
    let err = one(b).await;
    assert!(err.is_protocol() && !err.is_header_too_large(), "{err:?}");

    let mut b = BytesMut::new();
    codec::encode_stream(&mut b, RecordType::Stdout, 1, &vec![b'h'; 40_000]);
    let err = one(b).await;
    assert!(err.is_header_too_large(), "{err:?}");

    // Closed mid-body: the body ends with an error, not silently.
    let (ep, _srv) = serve(|_, mut p| async move {
        let req = p.request().await.expect("request");
        let mut b = BytesMut::new();
        codec::encode_stream(&mut b, RecordType::Stdout, req.id, b"\r\npartial");
        p.send(&b).await;
    })
    .await;
    let client = Client::new(ep, config());
    let resp = client
        .request(&params(), RequestBody::Empty)
        .await
        .expect("head");
    let err = collect(resp.body).await.expect_err("truncated");
    assert!(err.is_closed(), "{err:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn end_request_right_after_the_last_chunk_pools_without_another_poll() {
    let (ep, _srv) = serve(|_, mut p| async move {
        while let Some(req) = p.request().await {
            p.send(&reply(req.id, b"Content-Length: 5\r\n\r\nhello"))
                .await;
        }
    })
    .await;
    let client = Client::new(ep, config());
    let mut resp = client
        .request(&params(), RequestBody::Empty)
        .await
        .expect("request");
    let frame = resp.body.frame().await.expect("frame").expect("data");
    assert_eq!(frame.into_data().expect("data"), "hello");
    // A consumer that stops after Content-Length bytes (as hyper does) must
    // still see the end, so the connection is pooled.
    assert!(resp.body.is_end_stream());
    drop(resp);
    assert_eq!(client.stats().idle, 1);
    get(&client).await.expect("second");
    assert_eq!(client.stats().connects, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn app_status_other_than_zero_is_not_pooled() {
    let (ep, _srv) = serve(|_, mut p| async move {
        let req = p.request().await.expect("request");
        let mut b = BytesMut::new();
        codec::encode_stream(&mut b, RecordType::Stdout, req.id, b"\r\nbye");
        record(
            &mut b,
            req.id,
            RecordBody::EndRequest {
                app_status: 255,
                protocol_status: ProtocolStatus::REQUEST_COMPLETE,
            },
        );
        p.send(&b).await;
    })
    .await;
    let client = Client::new(ep, config());
    assert_eq!(get(&client).await.expect("request").1, "bye");
    assert_eq!(client.stats().idle, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accepted_but_unanswered_connection_times_out() {
    // The kernel completes the handshake into the backlog of a listener that
    // never accepts, like an FPM whose workers are all busy.
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let ep = Endpoint::Tcp(l.local_addr().expect("addr").to_string());
    let client = Client::new(
        ep,
        ClientConfig {
            read_timeout: Duration::from_millis(200),
            ..config()
        },
    );
    let started = Instant::now();
    let err = get(&client).await.expect_err("no answer");
    assert!(
        err.is_timeout() && matches!(err, Error::ReadTimeout(_)),
        "{err:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(3));
    drop(l);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn params_too_large_fail_before_connecting() {
    let client = Client::new(Endpoint::Tcp("127.0.0.1:1".into()), config());
    let mut p = params();
    p.push("HTTP_COOKIE", vec![b'c'; 70_000]);
    let err = client
        .request(&p, RequestBody::Empty)
        .await
        .expect_err("too large");
    assert!(err.is_params_too_large(), "{err:?}");
    assert_eq!(client.stats().connects, 0);
}
