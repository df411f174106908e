//! The shared L2 object format: a cached page as the edges keep it
//! (status, header block, body as stored: gzip and brotli included), its
//! times and tags, in a compact binary record for Redis.
//!
//! Layout (little endian): magic `MSL2`, version 1, then status u16, flags
//! u8 (bit 0: gzip), variance u64, created/ttl/grace/keep u64 (ms), tag count
//! u16 and each tag as u16 length + bytes, header block u32 length + bytes,
//! body u32 length + bytes. Decoding is total: a short or foreign record is
//! an error, never a panic.

const MAGIC: &[u8; 4] = b"MSL2";
const VERSION: u8 = 1;
/// Largest tag list and tag accepted (Magento pages carry hundreds at most).
const MAX_TAGS: usize = 4096;

/// One object in L2.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct L2Object {
    /// HTTP status.
    pub status: u16,
    /// Body is gzip.
    pub gzip: bool,
    /// The store's variance (secondary key).
    pub variance: u64,
    /// Creation time, ms since the epoch.
    pub created_ms: u64,
    /// TTL, grace and keep, ms.
    pub ttl_ms: u64,
    /// Grace, ms.
    pub grace_ms: u64,
    /// Keep, ms.
    pub keep_ms: u64,
    /// Tag names.
    pub tags: Vec<String>,
    /// The stored header block.
    pub headers: Vec<u8>,
    /// The stored body.
    pub body: Vec<u8>,
}

/// Why an L2 record was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum L2Error {
    /// Not an L2 record of a known version.
    #[error("not an L2 record")]
    Foreign,
    /// Cut short or lengths that do not add up.
    #[error("truncated L2 record")]
    Truncated,
}

impl L2Object {
    /// Encodes the record.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(64 + self.headers.len() + self.body.len());
        out.extend_from_slice(MAGIC);
        out.push(VERSION);
        out.extend_from_slice(&self.status.to_le_bytes());
        out.push(u8::from(self.gzip));
        for v in [
            self.variance,
            self.created_ms,
            self.ttl_ms,
            self.grace_ms,
            self.keep_ms,
        ] {
            out.extend_from_slice(&v.to_le_bytes());
        }
        let tags: Vec<&String> = self
            .tags
            .iter()
            .filter(|t| t.len() <= usize::from(u16::MAX))
            .take(MAX_TAGS)
            .collect();
        out.extend_from_slice(&(tags.len() as u16).to_le_bytes());
        for t in tags {
            out.extend_from_slice(&(t.len() as u16).to_le_bytes());
            out.extend_from_slice(t.as_bytes());
        }
        for block in [&self.headers, &self.body] {
            out.extend_from_slice(&(block.len() as u32).to_le_bytes());
            out.extend_from_slice(block);
        }
        out
    }

    /// Decodes a record.
    pub fn decode(data: &[u8]) -> Result<L2Object, L2Error> {
        let mut r = Reader(data);
        if r.take(4)? != MAGIC || r.u8()? != VERSION {
            return Err(L2Error::Foreign);
        }
        let status = r.u16()?;
        let gzip = r.u8()? & 1 == 1;
        let variance = r.u64()?;
        let created_ms = r.u64()?;
        let ttl_ms = r.u64()?;
        let grace_ms = r.u64()?;
        let keep_ms = r.u64()?;
        let n = usize::from(r.u16()?);
        if n > MAX_TAGS {
            return Err(L2Error::Foreign);
        }
        let mut tags = Vec::with_capacity(n);
        for _ in 0..n {
            let len = usize::from(r.u16()?);
            let t = std::str::from_utf8(r.take(len)?).map_err(|_| L2Error::Foreign)?;
            tags.push(t.to_owned());
        }
        let hl = r.u32()? as usize;
        let headers = r.take(hl)?.to_vec();
        let bl = r.u32()? as usize;
        let body = r.take(bl)?.to_vec();
        if !r.0.is_empty() {
            return Err(L2Error::Truncated);
        }
        Ok(L2Object {
            status,
            gzip,
            variance,
            created_ms,
            ttl_ms,
            grace_ms,
            keep_ms,
            tags,
            headers,
            body,
        })
    }
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], L2Error> {
        if self.0.len() < n {
            return Err(L2Error::Truncated);
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }
    fn u8(&mut self) -> Result<u8, L2Error> {
        Ok(self.take(1)?[0])
    }
    fn u16(&mut self) -> Result<u16, L2Error> {
        let b = self.take(2)?;
        Ok(u16::from_le_bytes([b[0], b[1]]))
    }
    fn u32(&mut self) -> Result<u32, L2Error> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }
    fn u64(&mut self) -> Result<u64, L2Error> {
        let b = self.take(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(u64::from_le_bytes(a))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn object() -> impl Strategy<Value = L2Object> {
        (
            any::<u16>(),
            any::<bool>(),
            any::<[u64; 5]>(),
            proptest::collection::vec("[a-z_0-9]{0,20}", 0..8),
            proptest::collection::vec(any::<u8>(), 0..200),
            proptest::collection::vec(any::<u8>(), 0..500),
        )
            .prop_map(|(status, gzip, t, tags, headers, body)| L2Object {
                status,
                gzip,
                variance: t[0],
                created_ms: t[1],
                ttl_ms: t[2],
                grace_ms: t[3],
                keep_ms: t[4],
                tags,
                headers,
                body,
            })
    }

    proptest! {
        #[test]
        fn round_trips(o in object()) {
            prop_assert_eq!(L2Object::decode(&o.encode()), Ok(o));
        }

        #[test]
        fn cut_records_are_errors_not_panics(o in object(), cut in 0usize..1000) {
            let bytes = o.encode();
            let cut = cut.min(bytes.len());
            if cut < bytes.len() {
                prop_assert!(L2Object::decode(&bytes[..cut]).is_err());
            }
        }

        #[test]
        fn garbage_never_panics(data in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = L2Object::decode(&data);
        }
    }
}
