//! `magestack warm`: reads a sitemap (indexes and gzip included) or a URL
//! list and requests every page through the edge, so the first shoppers
//! after a deploy or a purge find them cached. Bounded concurrency and a
//! polite rate, because a warmer that saturates PHP-FPM is an outage of its
//! own; a progress bar on a terminal; a summary and exit code 1 when a
//! page did not answer 2xx/3xx (a broken sitemap entry is worth knowing).

use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::TokioExecutor;

use crate::cli::WarmArgs;
use crate::sitemap::{self, Sitemap};

/// Nested sitemap indexes followed at most this deep (Magento writes one level).
const MAX_INDEX_DEPTH: usize = 3;
/// One page may take this long; then it counts as an error.
const PAGE_TIMEOUT: Duration = Duration::from_secs(60);
/// The slowest pages listed in the summary.
const SLOWEST: usize = 5;
/// Bytes of one page read before it is dropped (the edge caches it anyway).
const MAX_PAGE_BYTES: usize = 32 << 20;

type HttpClient = Client<HttpConnector, Empty<Bytes>>;

/// One URL's answer.
#[derive(Debug, Clone)]
struct Outcome {
    url: String,
    variant: Option<String>,
    /// `None`: no answer (connection, timeout).
    status: Option<u16>,
    /// `X-Magento-Cache-Debug` (`HIT`, `MISS`, `UNCACHEABLE`), or `-`.
    cache: String,
    took: Duration,
    error: Option<String>,
}

impl Outcome {
    fn ok(&self) -> bool {
        self.status.is_some_and(|s| (200..400).contains(&s))
    }
}

/// Where one URL is sent: the edge's address, the Host header, the path.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Target {
    connect: String,
    host: String,
    path: String,
    https: bool,
}

/// Splits `url` (absolute, or a path when `--edge` and `--host` say where).
fn target(url: &str, edge: Option<&str>, host: Option<&str>) -> Result<Target> {
    let (https, rest) = if let Some(r) = url.strip_prefix("https://") {
        (true, Some(r))
    } else if let Some(r) = url.strip_prefix("http://") {
        (false, Some(r))
    } else {
        (false, None)
    };
    let (authority, path) = match rest {
        Some(r) => match r.find('/') {
            Some(i) => (r[..i].to_owned(), r[i..].to_owned()),
            None => (r.to_owned(), "/".to_owned()),
        },
        None if url.starts_with('/') => (String::new(), url.to_owned()),
        None => bail!("{url}: not an http(s) URL or a path"),
    };
    let connect = match (edge, authority.is_empty()) {
        (Some(e), _) => crate::admin_client::authority(e),
        (None, false) if !https => {
            if authority.contains(':') {
                authority.clone()
            } else {
                format!("{authority}:80")
            }
        }
        (None, false) => bail!("{url}: https is not spoken here; give --edge host:port (the edge's plain listener) and the Host goes with the request"),
        (None, true) => bail!("{url}: a path needs --edge host:port"),
    };
    let host = match (host, authority.is_empty()) {
        (Some(h), _) => h.to_owned(),
        (None, false) => authority,
        (None, true) => bail!("{url}: a path needs --host"),
    };
    Ok(Target {
        connect,
        host,
        path,
        https,
    })
}

async fn get(
    client: &HttpClient,
    t: &Target,
    variant: Option<&str>,
) -> Result<(u16, String, Bytes)> {
    let mut req = http::Request::get(format!("http://{}{}", t.connect, t.path))
        .header(http::header::HOST, &t.host)
        .header(http::header::USER_AGENT, "magestack-warm")
        .header(http::header::ACCEPT_ENCODING, "gzip")
        .body(Empty::<Bytes>::new())
        .context("building the request")?;
    if t.https {
        // What the CDN or load balancer adds: the https variant is warmed
        // (the edge honours it from trusted proxies only).
        req.headers_mut()
            .insert("x-forwarded-proto", http::HeaderValue::from_static("https"));
    }
    if let Some(cookies) = variant {
        // Magento renders from the session and Varnish keys on
        // X-Magento-Vary: a variant is a session's cookies, as a browser sends them.
        req.headers_mut().insert(
            http::header::COOKIE,
            http::HeaderValue::from_str(cookies).context("--cookie is not a header value")?,
        );
    }
    let resp = tokio::time::timeout(PAGE_TIMEOUT, client.request(req))
        .await
        .context("timed out")?
        .context("no answer")?;
    let status = resp.status().as_u16();
    let cache = resp
        .headers()
        .get("x-magento-cache-debug")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("-")
        .to_owned();
    let body = http_body_util::Limited::new(resp.into_body(), MAX_PAGE_BYTES);
    let body = tokio::time::timeout(PAGE_TIMEOUT, body.collect())
        .await
        .context("timed out reading the body")?
        .map_err(|e| anyhow::anyhow!("reading the body: {e}"))?
        .to_bytes();
    Ok((status, cache, body))
}

/// One page of the edge's list of recently purged popular pages.
#[derive(Debug, serde::Deserialize)]
struct Purged {
    url: String,
    host: String,
    #[serde(default)]
    https: bool,
}

/// The admin listener for `--after-purge`: `--admin`, else `--edge`'s host
/// on the admin port the examples and the deploy kit use.
fn admin_address(args: &WarmArgs) -> Option<String> {
    if let Some(a) = &args.admin {
        return Some(crate::admin_client::authority(a));
    }
    let edge = crate::admin_client::authority(args.edge.as_deref()?);
    let host = match edge.rsplit_once(':') {
        Some((h, _)) => h.to_owned(),
        None => edge,
    };
    Some(format!("{host}:9180"))
}

/// The targets of `GET /cache/purged` (most hit first), each sent to
/// `edge` with the host and scheme it was cached under (`--host` overrides
/// the host).
fn purged_targets(body: &str, edge: &str, host: Option<&str>) -> Result<Vec<(String, Target)>> {
    let list: Vec<Purged> =
        serde_json::from_str(body).context("GET /cache/purged: not the list of purged pages")?;
    Ok(list
        .into_iter()
        .map(|p| {
            let host = host.map_or(p.host, str::to_owned);
            let scheme = if p.https { "https" } else { "http" };
            let t = Target {
                connect: crate::admin_client::authority(edge),
                host,
                path: p.url,
                https: p.https,
            };
            (format!("{scheme}://{}{}", t.host, t.path), t)
        })
        .collect())
}

/// `--after-purge`: the edge's list, read from its admin listener.
async fn after_purge(args: &WarmArgs) -> Result<Vec<(String, Target)>> {
    let (Some(admin), Some(edge)) = (admin_address(args), args.edge.clone()) else {
        bail!("--after-purge needs --edge host:port");
    };
    let path = format!("/cache/purged?limit={}", args.limit);
    let (status, body) = tokio::task::spawn_blocking(move || {
        let token = crate::admin_client::token()?;
        crate::admin_client::get(&admin, &path, token.as_deref())
    })
    .await
    .context("reading the purged list")??;
    match status {
        200 => purged_targets(&body, &edge, args.host.as_deref()),
        401 | 403 => bail!("GET /cache/purged: refused ({status}); set MAGESTACK_ADMIN_TOKEN"),
        404 => bail!("GET /cache/purged: not found (an edge older than this command?)"),
        s => bail!("GET /cache/purged: answered {s}: {}", body.trim()),
    }
}

/// The page URLs of `source` (a file or a URL), indexes followed.
async fn urls(client: &HttpClient, args: &WarmArgs) -> Result<Vec<String>> {
    let Some(sitemap) = args.sitemap.clone() else {
        return Ok(Vec::new());
    };
    let mut pending = vec![(sitemap, 0usize)];
    let mut out = Vec::new();
    let mut seen = std::collections::HashSet::new();
    while let Some((source, depth)) = pending.pop() {
        let raw = if source.starts_with("http://") || source.starts_with("https://") {
            let t = target(&source, args.edge.as_deref(), args.host.as_deref())?;
            let (status, _, body) = get(client, &t, None)
                .await
                .with_context(|| format!("fetching {source}"))?;
            if status != 200 {
                bail!("{source}: answered {status}");
            }
            body.to_vec()
        } else {
            std::fs::read(&source).with_context(|| format!("reading {source}"))?
        };
        match sitemap::parse(&raw).with_context(|| source.clone())? {
            Sitemap::Urls(u) => out.extend(u.into_iter().filter(|u| seen.insert(u.clone()))),
            Sitemap::Index(_) if depth >= MAX_INDEX_DEPTH => {
                bail!("{source}: sitemap indexes nested deeper than {MAX_INDEX_DEPTH}")
            }
            Sitemap::Index(children) => {
                pending.extend(children.into_iter().rev().map(|c| (c, depth + 1)))
            }
        }
    }
    Ok(out)
}

pub fn run(args: WarmArgs) -> Result<ExitCode> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the runtime")?;
    rt.block_on(warm(args))
}

async fn warm(args: WarmArgs) -> Result<ExitCode> {
    let client: HttpClient = Client::builder(TokioExecutor::new())
        .pool_idle_timeout(Duration::from_secs(30))
        .build_http();
    let mut targets = Vec::new();
    for u in urls(&client, &args).await? {
        let t = target(&u, args.edge.as_deref(), args.host.as_deref())?;
        targets.push((u, t));
    }
    if args.after_purge {
        let purged = after_purge(&args).await?;
        if purged.is_empty() {
            println!("warm: the edge lists no purged popular pages");
        }
        let seen: std::collections::HashSet<Target> =
            targets.iter().map(|(_, t)| t.clone()).collect();
        targets.extend(purged.into_iter().filter(|(_, t)| !seen.contains(t)));
    }
    // The default variant, then one per session cookie given.
    let variants: Vec<Option<String>> = std::iter::once(None)
        .chain(args.cookies.iter().cloned().map(Some))
        .collect();
    let mut jobs = Vec::new();
    for (u, t) in &targets {
        for v in &variants {
            jobs.push((u.clone(), t.clone(), v.clone()));
        }
    }
    let bar = indicatif::ProgressBar::new(jobs.len() as u64);
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "warm {bar:30.cyan/blue} {pos}/{len} {per_sec} eta {eta} {msg}",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
        .progress_chars("=> "),
    );
    let started = Instant::now();
    let concurrency = args.concurrency.max(1);
    let sem = Arc::new(tokio::sync::Semaphore::new(concurrency));
    let mut ticker = tokio::time::interval(Duration::from_secs_f64(1.0 / args.rate));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Outcome>();
    let counts = Arc::new(counts::Counts::default());
    let total = jobs.len();
    let feeder = {
        let client = client.clone();
        let bar = bar.clone();
        let counts = counts.clone();
        tokio::spawn(async move {
            for (url, t, variant) in jobs {
                ticker.tick().await;
                let Ok(permit) = sem.clone().acquire_owned().await else {
                    break;
                };
                let (client, tx, bar, counts) =
                    (client.clone(), tx.clone(), bar.clone(), counts.clone());
                tokio::spawn(async move {
                    let t0 = Instant::now();
                    let r = get(&client, &t, variant.as_deref()).await;
                    let took = t0.elapsed();
                    drop(permit);
                    let o = match r {
                        Ok((status, cache, _)) => Outcome {
                            url,
                            variant,
                            status: Some(status),
                            cache,
                            took,
                            error: None,
                        },
                        Err(e) => Outcome {
                            url,
                            variant,
                            status: None,
                            cache: "-".into(),
                            took,
                            error: Some(format!("{e:#}")),
                        },
                    };
                    counts.add(&o);
                    bar.set_message(counts.line());
                    bar.inc(1);
                    let _ = tx.send(o);
                });
            }
        })
    };
    let mut outcomes = Vec::with_capacity(total);
    while outcomes.len() < total {
        match rx.recv().await {
            Some(o) => outcomes.push(o),
            None => break,
        }
    }
    let _ = feeder.await;
    bar.finish_and_clear();
    summary(&outcomes, started.elapsed())
}

/// Running counts for the bar's message.
mod counts {
    use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

    #[derive(Debug, Default)]
    pub(super) struct Counts {
        hits: AtomicU64,
        misses: AtomicU64,
        errors: AtomicU64,
    }

    impl Counts {
        pub(super) fn add(&self, o: &super::Outcome) {
            if !o.ok() {
                self.errors.fetch_add(1, Relaxed);
            } else if o.cache == "HIT" {
                self.hits.fetch_add(1, Relaxed);
            } else {
                self.misses.fetch_add(1, Relaxed);
            }
        }

        pub(super) fn line(&self) -> String {
            format!(
                "hits {} misses {} errors {}",
                self.hits.load(Relaxed),
                self.misses.load(Relaxed),
                self.errors.load(Relaxed)
            )
        }
    }
}

fn summary(outcomes: &[Outcome], took: Duration) -> Result<ExitCode> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    let n = |f: &dyn Fn(&Outcome) -> bool| outcomes.iter().filter(|o| f(o)).count();
    let errors = n(&|o| !o.ok());
    writeln!(
        out,
        "warm: {} requests in {:.1} s: {} hits, {} misses, {} uncacheable, {} errors",
        outcomes.len(),
        took.as_secs_f64(),
        n(&|o| o.ok() && o.cache == "HIT"),
        n(&|o| o.ok() && o.cache == "MISS"),
        n(&|o| o.ok() && o.cache != "HIT" && o.cache != "MISS"),
        errors
    )?;
    let mut by_time: Vec<&Outcome> = outcomes.iter().collect();
    by_time.sort_by_key(|o| std::cmp::Reverse(o.took));
    writeln!(out, "slowest:")?;
    for o in by_time.iter().take(SLOWEST) {
        writeln!(out, "  {}", line(o))?;
    }
    if errors > 0 {
        writeln!(out, "errors:")?;
        for o in outcomes.iter().filter(|o| !o.ok()) {
            writeln!(out, "  {}", line(o))?;
        }
    }
    Ok(if errors == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

fn line(o: &Outcome) -> String {
    let status = o.status.map_or_else(|| "---".to_owned(), |s| s.to_string());
    // The variant by its position, not its cookies (a session is a secret).
    let variant = o
        .variant
        .as_deref()
        .map(|_| " (with --cookie)".to_owned())
        .unwrap_or_default();
    let err = o
        .error
        .as_deref()
        .map(|e| format!(": {e}"))
        .unwrap_or_default();
    format!(
        "{:>7.3} s  {status}  {:<11}  {}{variant}{err}",
        o.took.as_secs_f64(),
        o.cache,
        o.url
    )
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn targets() {
        let t = target("https://shop.test/a.html?x=1", Some("127.0.0.1:8080"), None).unwrap();
        assert_eq!(
            t,
            Target {
                connect: "127.0.0.1:8080".into(),
                host: "shop.test".into(),
                path: "/a.html?x=1".into(),
                https: true
            }
        );
        let t = target("http://shop.test", None, Some("de.shop.test")).unwrap();
        assert_eq!(
            (t.connect.as_str(), t.host.as_str(), t.path.as_str()),
            ("shop.test:80", "de.shop.test", "/")
        );
        assert!(target("https://shop.test/", None, None).is_err());
        assert!(target("/a", Some("e:1"), None).is_err());
        assert!(target("/a", Some("e:1"), Some("h")).is_ok());
    }

    #[test]
    fn purged_list_targets() {
        let body = r#"[{"url":"/a.html?x=1","host":"shop.test","https":true,"hits":3,"purged_at":1},
                      {"url":"/b.html","host":"de.shop.test","hits":1,"purged_at":1}]"#;
        let t = purged_targets(body, "127.0.0.1:8080", None).unwrap();
        assert_eq!(t[0].0, "https://shop.test/a.html?x=1");
        assert_eq!(
            t[0].1,
            Target {
                connect: "127.0.0.1:8080".into(),
                host: "shop.test".into(),
                path: "/a.html?x=1".into(),
                https: true
            }
        );
        assert_eq!(t[1].0, "http://de.shop.test/b.html");
        let t = purged_targets(body, "e:1", Some("x.test")).unwrap();
        assert_eq!(t[1].1.host, "x.test");
        assert!(purged_targets("{}", "e:1", None).is_err());
    }
}
