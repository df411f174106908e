//! gzip on the way out, with the semantics of the `gzip` block of Magento's
//! nginx.conf.sample (G2/G3): level 6, `gzip_min_length`, `gzip_proxied any`,
//! `gzip_vary on`, `gzip_disable "msie6"`, statuses 200/403/404 only, and never a
//! second encoding on top of an existing `Content-Encoding`.
//!
//! [`decide`] is pure; [`GzipBody`] streams: each upstream chunk is compressed as it
//! arrives, so a large PHP response is never held whole.

use std::io::Write;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{HeaderMap, StatusCode};
use http_body::{Body, Frame};

use crate::body::{BoxError, EdgeBody};

/// What to do with one response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GzipDecision {
    /// Not eligible: leave the response alone.
    Skip,
    /// Eligible, but this client gets identity: only add `Vary: Accept-Encoding`.
    VaryOnly,
    /// Compress and add `Vary: Accept-Encoding`.
    Compress,
}

/// What the gzip filter needs to know about the client, read once per request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientEncoding {
    /// `Accept-Encoding` allows gzip.
    pub gzip: bool,
    /// An old MSIE that mishandles gzip (`gzip_disable "msie6"`).
    pub msie6: bool,
}

impl ClientEncoding {
    /// Reads `Accept-Encoding` and `User-Agent`.
    pub fn of(headers: &HeaderMap) -> Self {
        Self {
            gzip: accepts_gzip(headers),
            msie6: is_msie6(headers),
        }
    }
}

/// Decides per nginx's gzip filter.
pub fn decide(
    enabled: bool,
    min_length: u64,
    status: StatusCode,
    client: ClientEncoding,
    resp_headers: &HeaderMap,
) -> GzipDecision {
    if !enabled || !matches!(status.as_u16(), 200 | 403 | 404) {
        return GzipDecision::Skip;
    }
    if resp_headers.contains_key(http::header::CONTENT_ENCODING) {
        return GzipDecision::Skip;
    }
    let ctype = resp_headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if !magestack_routing::is_gzip_type(ctype) {
        return GzipDecision::Skip;
    }
    if let Some(len) = resp_headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
    {
        if len < min_length {
            return GzipDecision::Skip;
        }
    }
    if client.gzip && !client.msie6 {
        GzipDecision::Compress
    } else {
        GzipDecision::VaryOnly
    }
}

/// `Accept-Encoding` lists gzip (or `*`) with a non-zero q-value.
pub fn accepts_gzip(headers: &HeaderMap) -> bool {
    accepts(headers, "gzip")
}

/// `Accept-Encoding` lists `coding` (or `*`) with a non-zero q-value.
pub fn accepts(headers: &HeaderMap, wanted: &str) -> bool {
    headers
        .get_all(http::header::ACCEPT_ENCODING)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|item| {
            let mut parts = item.split(';');
            let coding = parts.next().unwrap_or("").trim();
            if !(coding.eq_ignore_ascii_case(wanted) || coding == "*") {
                return false;
            }
            for p in parts {
                let p = p.trim();
                if let Some(q) = p.strip_prefix("q=").or_else(|| p.strip_prefix("Q=")) {
                    return q.trim().parse::<f32>().map(|q| q > 0.0).unwrap_or(false);
                }
            }
            true
        })
}

/// nginx's `msie6` mask: MSIE 4–6 without SV1.
fn is_msie6(headers: &HeaderMap) -> bool {
    if !headers.contains_key(http::header::USER_AGENT) {
        return false;
    }
    let ua = headers
        .get(http::header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    ["MSIE 4.", "MSIE 5.", "MSIE 6."]
        .iter()
        .any(|m| ua.contains(m))
        && !ua.contains("SV1")
}

/// Deflate window bits for a body of `len` bytes (unknown: the full 32 KiB),
/// as nginx's gzip filter sizes them: a window larger than the body buys
/// nothing, and zlib's state (window, hash chains) is allocated and cleared
/// per response, most of the work for a small page.
pub fn window_bits(len: Option<u64>) -> u8 {
    let mut wbits: u8 = 15;
    if let Some(len) = len.filter(|&n| n > 0) {
        while wbits > 9 && len < (1u64 << (wbits - 1)).saturating_sub(262) {
            wbits -= 1;
        }
    }
    wbits
}

/// A gzip encoder writing into memory at level 6 (the sample's
/// `gzip_comp_level`), its window sized for `len`, its state reused.
pub fn gzip_encoder(len: Option<u64>, out: Vec<u8>) -> GzipWriter {
    crate::gzip_stream::GzipStream::new(6, window_bits(len), out)
}

/// What [`gzip_encoder`] returns: a deflate stream in a gzip wrapper.
pub type GzipWriter = crate::gzip_stream::GzipStream;

/// Gzips `data` whole (level 6, window sized for it).
pub fn gzip_all(data: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut enc = gzip_encoder(
        Some(data.len() as u64),
        Vec::with_capacity(data.len() / 3 + 64),
    );
    enc.write_all(data)?;
    enc.finish()
}

/// Rewrites headers for a compressed response and wraps the body.
pub fn compress(headers: &mut HeaderMap, body: EdgeBody) -> EdgeBody {
    let len = headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    headers.remove(http::header::CONTENT_LENGTH);
    // A strong validator no longer describes these bytes; nginx weakens it too.
    if let Some(etag) = headers.get(http::header::ETAG).cloned() {
        if !etag.as_bytes().starts_with(b"W/") {
            let mut weak = b"W/".to_vec();
            weak.extend_from_slice(etag.as_bytes());
            if let Ok(v) = http::HeaderValue::from_bytes(&weak) {
                headers.insert(http::header::ETAG, v);
            }
        }
    }
    headers.insert(
        http::header::CONTENT_ENCODING,
        http::HeaderValue::from_static("gzip"),
    );
    add_vary(headers);
    http_body_util::BodyExt::boxed_unsync(CodecBody {
        inner: body,
        codec: Some(gzip_encoder(
            len,
            Vec::with_capacity(len.map_or(8192, |n| (n as usize / 3 + 64).min(8192))),
        )),
    })
}

/// Adds `Accept-Encoding` to `Vary` unless it is already there.
pub fn add_vary(headers: &mut HeaderMap) {
    let present = headers
        .get_all(http::header::VARY)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case("accept-encoding") || t.trim() == "*");
    if !present {
        headers.append(
            http::header::VARY,
            http::HeaderValue::from_static("Accept-Encoding"),
        );
    }
}

/// Decompresses a gzip body as it streams (stored gzip objects for clients
/// that do not accept gzip).
pub fn gunzip(body: EdgeBody) -> EdgeBody {
    http_body_util::BodyExt::boxed_unsync(CodecBody {
        inner: body,
        codec: Some(flate2::write::GzDecoder::new(Vec::with_capacity(16 * 1024))),
    })
}

/// A streaming byte transform that writes into an in-memory buffer: gzip
/// encoding and decoding share one body type through it.
trait StreamCodec: Write {
    /// The bytes produced so far.
    fn output(&mut self) -> &mut Vec<u8>;
    /// Flushes what is left at the end of the stream.
    fn finish_output(self) -> std::io::Result<Vec<u8>>;
}

impl StreamCodec for GzipWriter {
    fn output(&mut self) -> &mut Vec<u8> {
        GzipWriter::output(self)
    }
    fn finish_output(self) -> std::io::Result<Vec<u8>> {
        self.finish()
    }
}

impl StreamCodec for flate2::write::GzDecoder<Vec<u8>> {
    fn output(&mut self) -> &mut Vec<u8> {
        self.get_mut()
    }
    fn finish_output(self) -> std::io::Result<Vec<u8>> {
        self.finish()
    }
}

/// Runs every data frame of `inner` through the codec, emitting output as it
/// appears (memory stays bounded by the codec's window, not the body size).
struct CodecBody<C> {
    inner: EdgeBody,
    codec: Option<C>,
}

impl<C: StreamCodec + Unpin> Body for CodecBody<C> {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        loop {
            let Some(codec) = this.codec.as_mut() else {
                return Poll::Ready(None);
            };
            match Pin::new(&mut this.inner).poll_frame(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Some(Err(e))) => {
                    this.codec = None;
                    return Poll::Ready(Some(Err(e)));
                }
                Poll::Ready(Some(Ok(frame))) => {
                    let Ok(data) = frame.into_data() else {
                        continue; // trailers are dropped, as nginx does
                    };
                    if let Err(e) = codec.write_all(&data) {
                        this.codec = None;
                        return Poll::Ready(Some(Err(e.into())));
                    }
                    let out = std::mem::take(codec.output());
                    if !out.is_empty() {
                        return Poll::Ready(Some(Ok(Frame::data(Bytes::from(out)))));
                    }
                }
                Poll::Ready(None) => {
                    let Some(codec) = this.codec.take() else {
                        return Poll::Ready(None);
                    };
                    return match codec.finish_output() {
                        Ok(out) if out.is_empty() => Poll::Ready(None),
                        Ok(out) => Poll::Ready(Some(Ok(Frame::data(Bytes::from(out))))),
                        Err(e) => Poll::Ready(Some(Err(e.into()))),
                    };
                }
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;
    use std::io::Read;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut m = HeaderMap::new();
        for (k, v) in pairs {
            m.append(
                http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        m
    }

    #[test]
    fn the_window_fits_the_body_as_nginx_sizes_it() {
        assert_eq!(window_bits(None), 15);
        assert_eq!(window_bits(Some(0)), 15);
        assert_eq!(window_bits(Some(100)), 9);
        assert_eq!(window_bits(Some(2_500)), 12);
        assert_eq!(window_bits(Some(40_000)), 15);
        // Every size round-trips, including across the thresholds.
        for n in [
            1usize, 250, 251, 255, 1_000, 2_500, 3_835, 3_900, 16_000, 70_000,
        ] {
            let data: Vec<u8> = (0..n).map(|i| b"<li>magento</li>"[i % 16]).collect();
            let gz = gzip_all(&data).unwrap();
            let mut out = Vec::new();
            flate2::read::GzDecoder::new(&gz[..])
                .read_to_end(&mut out)
                .unwrap();
            assert_eq!(out, data, "{n} bytes");
        }
    }

    #[test]
    fn html_for_gzip_client_is_compressed() {
        let req = headers(&[("accept-encoding", "gzip, deflate, br")]);
        let resp = headers(&[("content-type", "text/html; charset=UTF-8")]);
        assert_eq!(
            decide(true, 1100, StatusCode::OK, ClientEncoding::of(&req), &resp),
            GzipDecision::Compress
        );
    }

    #[test]
    fn identity_client_gets_vary_only() {
        let req = headers(&[]);
        let resp = headers(&[("content-type", "text/css")]);
        assert_eq!(
            decide(true, 1100, StatusCode::OK, ClientEncoding::of(&req), &resp),
            GzipDecision::VaryOnly
        );
        let req = headers(&[("accept-encoding", "gzip;q=0")]);
        assert_eq!(
            decide(true, 1100, StatusCode::OK, ClientEncoding::of(&req), &resp),
            GzipDecision::VaryOnly
        );
    }

    #[test]
    fn small_images_encoded_and_redirects_are_skipped() {
        let req = headers(&[("accept-encoding", "gzip")]);
        let small = headers(&[("content-type", "text/html"), ("content-length", "100")]);
        assert_eq!(
            decide(true, 1100, StatusCode::OK, ClientEncoding::of(&req), &small),
            GzipDecision::Skip
        );
        let img = headers(&[("content-type", "image/jpeg")]);
        assert_eq!(
            decide(true, 1100, StatusCode::OK, ClientEncoding::of(&req), &img),
            GzipDecision::Skip
        );
        let enc = headers(&[("content-type", "text/html"), ("content-encoding", "br")]);
        assert_eq!(
            decide(true, 1100, StatusCode::OK, ClientEncoding::of(&req), &enc),
            GzipDecision::Skip
        );
        let html = headers(&[("content-type", "text/html")]);
        assert_eq!(
            decide(
                true,
                1100,
                StatusCode::FOUND,
                ClientEncoding::of(&req),
                &html
            ),
            GzipDecision::Skip
        );
        assert_eq!(
            decide(false, 1100, StatusCode::OK, ClientEncoding::of(&req), &html),
            GzipDecision::Skip
        );
    }

    #[test]
    fn msie6_is_excluded() {
        let req = headers(&[
            ("accept-encoding", "gzip"),
            (
                "user-agent",
                "Mozilla/4.0 (compatible; MSIE 6.0; Windows NT 5.0)",
            ),
        ]);
        let resp = headers(&[("content-type", "text/html")]);
        assert_eq!(
            decide(true, 0, StatusCode::OK, ClientEncoding::of(&req), &resp),
            GzipDecision::VaryOnly
        );
    }

    #[tokio::test]
    async fn streaming_body_round_trips() {
        let chunks: Vec<Result<Frame<Bytes>, BoxError>> = (0..50)
            .map(|i| {
                Ok(Frame::data(Bytes::from(format!(
                    "chunk {i} of a Magento page\n"
                ))))
            })
            .collect();
        let inner =
            http_body_util::StreamBody::new(futures_util::stream::iter(chunks)).boxed_unsync();
        let mut h = headers(&[("content-length", "123"), ("etag", "\"abc\"")]);
        let body = compress(&mut h, inner);
        assert!(h.get("content-length").is_none());
        assert_eq!(h.get("content-encoding").unwrap(), "gzip");
        assert_eq!(h.get("etag").unwrap(), "W/\"abc\"");
        assert_eq!(h.get("vary").unwrap(), "Accept-Encoding");
        let bytes = body.collect().await.unwrap().to_bytes();
        let mut out = String::new();
        flate2::read::GzDecoder::new(&bytes[..])
            .read_to_string(&mut out)
            .unwrap();
        let expected: String = (0..50)
            .map(|i| format!("chunk {i} of a Magento page\n"))
            .collect();
        assert_eq!(out, expected);
    }
}
