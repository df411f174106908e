//! Sitemaps as Magento writes them (`<urlset>` of `<url><loc>`, a
//! `<sitemapindex>` of `<sitemap><loc>` once split, either gzipped) or a
//! plain list of URLs, one a line. Only `<loc>` matters to a warmer, so this
//! reads `<loc>` elements rather than carrying an XML parser.

use std::io::Read;

/// What a sitemap document lists.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Sitemap {
    /// Pages.
    Urls(Vec<String>),
    /// Further sitemaps.
    Index(Vec<String>),
}

/// A decompressed document beyond this is refused: Google's own limit for
/// one sitemap is 50 MB uncompressed, 50,000 URLs.
pub const MAX_SITEMAP_BYTES: u64 = 64 << 20;

/// Why a sitemap could not be read.
#[derive(Debug, thiserror::Error)]
pub enum SitemapError {
    /// gzip that does not inflate.
    #[error("not valid gzip")]
    Gzip(#[source] std::io::Error),
    /// Past [`MAX_SITEMAP_BYTES`].
    #[error("larger than {MAX_SITEMAP_BYTES} bytes")]
    TooLarge,
    /// Neither XML with `<loc>` nor a URL list.
    #[error("no <loc> and no URL lines")]
    Empty,
}

/// Parses `raw` (gzip detected by its magic bytes).
pub fn parse(raw: &[u8]) -> Result<Sitemap, SitemapError> {
    let inflated;
    let bytes = if raw.starts_with(&[0x1f, 0x8b]) {
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(raw)
            .take(MAX_SITEMAP_BYTES + 1)
            .read_to_end(&mut out)
            .map_err(SitemapError::Gzip)?;
        if out.len() as u64 > MAX_SITEMAP_BYTES {
            return Err(SitemapError::TooLarge);
        }
        inflated = out;
        &inflated[..]
    } else {
        raw
    };
    let text = String::from_utf8_lossy(bytes);
    let trimmed = text.trim_start_matches('\u{feff}').trim_start();
    if trimmed.starts_with('<') {
        let locs = locs(trimmed);
        if locs.is_empty() {
            return Err(SitemapError::Empty);
        }
        return Ok(if trimmed.contains("<sitemapindex") {
            Sitemap::Index(locs)
        } else {
            Sitemap::Urls(locs)
        });
    }
    let urls: Vec<String> = trimmed
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(str::to_owned)
        .collect();
    if urls.is_empty() {
        return Err(SitemapError::Empty);
    }
    Ok(Sitemap::Urls(urls))
}

/// The text of every `<loc>` element, entities decoded.
fn locs(xml: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = xml;
    while let Some(start) = rest.find("<loc>") {
        rest = &rest[start + 5..];
        let Some(end) = rest.find("</loc>") else {
            break;
        };
        let raw = rest[..end].trim();
        let raw = raw
            .strip_prefix("<![CDATA[")
            .and_then(|r| r.strip_suffix("]]>"))
            .unwrap_or(raw);
        out.push(unescape(raw.trim()));
        rest = &rest[end + 6..];
    }
    out
}

/// Pages of a sitemap warmed at start at most (`readiness.warmup_sitemap`):
/// the warm-up repeats its list round after round until the pools are
/// warm, so it stays short; `magestack warm` is for the whole shop.
pub const MAX_WARMUP_PAGES: usize = 50;

/// Path and query of each URL (absolute, or already a path), the first
/// `max`, without repeats.
pub fn paths(urls: &[String], max: usize) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for u in urls {
        let path = match u.split_once("://") {
            Some((_, rest)) => match rest.find('/') {
                Some(i) => rest[i..].to_owned(),
                None => "/".to_owned(),
            },
            None if u.starts_with('/') => u.clone(),
            None => continue,
        };
        let path = path.split('#').next().unwrap_or("/").to_owned();
        if !out.contains(&path) {
            out.push(path);
        }
        if out.len() == max {
            break;
        }
    }
    out
}

fn unescape(s: &str) -> String {
    s.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&apos;", "'")
        .replace("&amp;", "&")
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn urlset_index_gzip_and_lists() {
        let set = "<?xml version=\"1.0\"?><urlset><url><loc>https://s.test/a?x=1&amp;y=2</loc></url>\n<url><loc> https://s.test/b </loc></url></urlset>";
        assert_eq!(
            parse(set.as_bytes()).unwrap(),
            Sitemap::Urls(vec![
                "https://s.test/a?x=1&y=2".into(),
                "https://s.test/b".into()
            ])
        );
        let index =
            "<sitemapindex><sitemap><loc>https://s.test/s1.xml.gz</loc></sitemap></sitemapindex>";
        assert_eq!(
            parse(index.as_bytes()).unwrap(),
            Sitemap::Index(vec!["https://s.test/s1.xml.gz".into()])
        );
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(set.as_bytes()).unwrap();
        let gz = gz.finish().unwrap();
        assert!(matches!(parse(&gz).unwrap(), Sitemap::Urls(u) if u.len() == 2));
        assert_eq!(
            parse(b"# pages\nhttps://s.test/a\n\n/b\n").unwrap(),
            Sitemap::Urls(vec!["https://s.test/a".into(), "/b".into()])
        );
        assert!(parse(b"<urlset></urlset>").is_err());
        let urls: Vec<String> = [
            "https://s.test/a?x=1#top",
            "http://s.test",
            "/b",
            "https://s.test/a?x=1",
            "junk",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        assert_eq!(paths(&urls, 10), vec!["/a?x=1", "/", "/b"]);
        assert_eq!(paths(&urls, 2), vec!["/a?x=1", "/"]);
        assert!(parse(&[0x1f, 0x8b, 0, 1]).is_err());
    }
}
