//! The access line: one per request, formatted by hand into a reused
//! per-thread buffer and handed to a sink as one `&[u8]`.
//!
//! Why not `tracing::info!`: formatting the line through tracing's field
//! visitors and `core::fmt` cost ~11 % of the edge's CPU on cached hits.
//! The lines keep the shape the tracing formatter gives every other log line
//! (text or JSON with the same keys), so one parser reads both. Without a
//! sink (library users, tests) the edge falls back to `tracing`.

use std::cell::RefCell;
use std::fmt;
use std::io::Write as _;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::{Method, Version};

/// Where finished access lines go (the binary's batched stderr writer).
pub trait AccessSink: Send + Sync {
    /// Writes one complete line, `\n` included.
    fn write_line(&self, line: &[u8]);
}

/// Line format, as `log.format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AccessFormat {
    /// `2026-11-22T09:05:23.765214Z  INFO access: Request served. client=…`
    Text,
    /// One JSON object a line, the keys of the JSON log format.
    Json,
}

/// The access log of an edge: a sink and a format.
#[derive(Clone)]
pub struct AccessLog {
    sink: Arc<dyn AccessSink>,
    format: AccessFormat,
}

impl fmt::Debug for AccessLog {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AccessLog")
            .field("format", &self.format)
            .finish_non_exhaustive()
    }
}

/// One served request.
#[derive(Debug, Clone, Copy)]
pub struct AccessRecord<'a> {
    /// Client address (after trusted-proxy resolution).
    pub client: IpAddr,
    /// Request method.
    pub method: &'a Method,
    /// Path without the query string (queries may carry secrets).
    pub path: &'a str,
    /// HTTP version.
    pub version: Version,
    /// Status sent.
    pub status: u16,
    /// Who answered: `cache`, `php`, `static`, `edge`, …
    pub outcome: &'static str,
    /// `X-Magento-Cache-Debug` value, or `-`.
    pub cache: &'static str,
    /// Time from request head to response head.
    pub duration: Duration,
}

thread_local! {
    static LINE: RefCell<Vec<u8>> = RefCell::new(Vec::with_capacity(256));
}

impl AccessLog {
    /// An access log writing `format` lines to `sink`.
    pub fn new(sink: Arc<dyn AccessSink>, format: AccessFormat) -> AccessLog {
        AccessLog { sink, format }
    }

    /// Formats and writes one line.
    pub fn log(&self, rec: &AccessRecord<'_>) {
        let now = SystemTime::now();
        LINE.with(|buf| match buf.try_borrow_mut() {
            Ok(mut buf) => {
                buf.clear();
                format_line(rec, now, self.format, &mut buf);
                self.sink.write_line(&buf);
            }
            // Re-entered from inside the sink (cannot happen with ours).
            Err(_) => {
                let mut buf = Vec::with_capacity(256);
                format_line(rec, now, self.format, &mut buf);
                self.sink.write_line(&buf);
            }
        });
    }
}

fn version_str(v: Version) -> &'static str {
    match v {
        Version::HTTP_09 => "HTTP/0.9",
        Version::HTTP_10 => "HTTP/1.0",
        Version::HTTP_11 => "HTTP/1.1",
        Version::HTTP_2 => "HTTP/2.0",
        Version::HTTP_3 => "HTTP/3.0",
        _ => "HTTP/?",
    }
}

/// Formats `rec` logged at `at` as one line ending in `\n`.
pub fn format_line(
    rec: &AccessRecord<'_>,
    at: SystemTime,
    format: AccessFormat,
    out: &mut Vec<u8>,
) {
    let ms = rec.duration.as_secs_f64() * 1000.0;
    match format {
        AccessFormat::Text => {
            write_timestamp(at, out);
            out.extend_from_slice(b"  INFO access: Request served. client=");
            let _ = write!(out, "{}", rec.client);
            out.extend_from_slice(b" method=");
            out.extend_from_slice(rec.method.as_str().as_bytes());
            out.extend_from_slice(b" path=");
            out.extend_from_slice(rec.path.as_bytes());
            out.extend_from_slice(b" version=");
            out.extend_from_slice(version_str(rec.version).as_bytes());
            let _ = write!(out, " status={} outcome=\"", rec.status);
            out.extend_from_slice(rec.outcome.as_bytes());
            out.extend_from_slice(b"\" cache=\"");
            out.extend_from_slice(rec.cache.as_bytes());
            let _ = writeln!(out, "\" duration_ms={ms:.3}");
        }
        AccessFormat::Json => {
            out.extend_from_slice(b"{\"timestamp\":\"");
            write_timestamp(at, out);
            out.extend_from_slice(
                b"\",\"level\":\"INFO\",\"message\":\"Request served.\",\"client\":\"",
            );
            let _ = write!(out, "{}", rec.client);
            out.extend_from_slice(b"\",\"method\":");
            json_string(rec.method.as_str(), out);
            out.extend_from_slice(b",\"path\":");
            json_string(rec.path, out);
            out.extend_from_slice(b",\"version\":\"");
            out.extend_from_slice(version_str(rec.version).as_bytes());
            let _ = write!(out, "\",\"status\":{},\"outcome\":", rec.status);
            json_string(rec.outcome, out);
            out.extend_from_slice(b",\"cache\":");
            json_string(rec.cache, out);
            let _ = writeln!(out, ",\"duration_ms\":{ms:.3},\"target\":\"access\"}}");
        }
    }
}

/// A JSON string literal (quotes, backslashes and control bytes escaped).
fn json_string(s: &str, out: &mut Vec<u8>) {
    out.push(b'"');
    for &b in s.as_bytes() {
        match b {
            b'"' => out.extend_from_slice(b"\\\""),
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            b'\t' => out.extend_from_slice(b"\\t"),
            0..=0x1f | 0x7f => {
                let _ = write!(out, "\\u{b:04x}");
            }
            _ => out.push(b),
        }
    }
    out.push(b'"');
}

/// RFC 3339 UTC with microseconds, as tracing's default timer prints it:
/// `2026-11-22T09:05:23.765214Z`.
fn write_timestamp(at: SystemTime, out: &mut Vec<u8>) {
    let d = at.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs();
    let (y, m, day) = civil_from_days((secs / 86_400) as i64);
    let rem = secs % 86_400;
    let _ = write!(
        out,
        "{y:04}-{m:02}-{day:02}T{:02}:{:02}:{:02}.{:06}Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60,
        d.subsec_micros()
    );
}

/// Days since 1970-01-01 → (year, month, day) in the proleptic Gregorian
/// calendar (Howard Hinnant's `civil_from_days`).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn rec(path: &str) -> AccessRecord<'_> {
        AccessRecord {
            client: "10.0.0.7".parse().unwrap(),
            method: &Method::GET,
            path,
            version: Version::HTTP_11,
            status: 200,
            outcome: "cache",
            cache: "HIT",
            duration: Duration::from_micros(8_446),
        }
    }

    fn at(secs: u64, micros: u32) -> SystemTime {
        UNIX_EPOCH + Duration::new(secs, micros * 1000)
    }

    #[test]
    fn text_line_has_the_tracing_shape() {
        let mut out = Vec::new();
        format_line(
            &rec("/women/tops.html"),
            at(1_795_338_323, 765_214),
            AccessFormat::Text,
            &mut out,
        );
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "2026-11-22T09:05:23.765214Z  INFO access: Request served. client=10.0.0.7 \
             method=GET path=/women/tops.html version=HTTP/1.1 status=200 outcome=\"cache\" \
             cache=\"HIT\" duration_ms=8.446\n"
        );
    }

    #[test]
    fn json_line_is_valid_json_with_escapes() {
        let mut out = Vec::new();
        format_line(
            &rec("/a\"b\\c\u{1}"),
            at(0, 0),
            AccessFormat::Json,
            &mut out,
        );
        assert_eq!(out.last(), Some(&b'\n'));
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["timestamp"], "1970-01-01T00:00:00.000000Z");
        assert_eq!(v["path"], "/a\"b\\c\u{1}");
        assert_eq!(v["status"], 200);
        assert_eq!(v["cache"], "HIT");
        assert_eq!(v["target"], "access");
        assert_eq!(v["duration_ms"], 8.446);
    }

    #[test]
    fn calendar_matches_known_dates() {
        for (days, want) in [
            (0, (1970, 1, 1)),
            (59, (1970, 3, 1)),
            (11_016, (2000, 2, 29)),
            (20_414, (2025, 11, 22)),
            (-1, (1969, 12, 31)),
        ] {
            assert_eq!(civil_from_days(days), want, "{days}");
        }
    }

    #[test]
    fn log_writes_whole_lines_to_the_sink() {
        struct Collect(std::sync::Mutex<Vec<Vec<u8>>>);
        impl AccessSink for Collect {
            fn write_line(&self, line: &[u8]) {
                self.0.lock().unwrap().push(line.to_vec());
            }
        }
        let sink = Arc::new(Collect(std::sync::Mutex::new(Vec::new())));
        let log = AccessLog::new(sink.clone(), AccessFormat::Text);
        log.log(&rec("/x"));
        log.log(&rec("/y"));
        let lines = sink.0.lock().unwrap();
        assert_eq!(lines.len(), 2);
        assert!(lines[1].ends_with(b"\n") && lines[1].windows(7).any(|w| w == b"path=/y"));
        assert!(format!("{log:?}").contains("Text"));
    }
}
