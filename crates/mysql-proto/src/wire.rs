//! Primitive field codecs: fixed little-endian integers, length-encoded
//! integers and strings, NUL-terminated strings.
//!
//! [`Reader`] walks a payload and fails with [`ParseError`] instead of
//! panicking on truncated input, so every packet parser built on it is total.

use bytes::{BufMut, BytesMut};

/// A payload did not have the shape its packet type requires.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ParseError {
    /// The payload ended inside a field.
    #[error("{what}: payload truncated")]
    Truncated {
        /// The field being read.
        what: &'static str,
    },
    /// A field held a value its packet type does not allow.
    #[error("{what}: unexpected value {value:#x}")]
    Invalid {
        /// The field being read.
        what: &'static str,
        /// The value found.
        value: u64,
    },
}

/// A cursor over one packet payload.
#[derive(Debug, Clone)]
pub struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    /// A reader at the start of `buf`.
    pub fn new(buf: &'a [u8]) -> Self {
        Self { buf }
    }

    /// Bytes not read yet.
    pub fn remaining(&self) -> &'a [u8] {
        self.buf
    }

    /// True when every byte was read.
    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    /// The next `n` bytes.
    pub fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], ParseError> {
        if self.buf.len() < n {
            return Err(ParseError::Truncated { what });
        }
        let (head, tail) = self.buf.split_at(n);
        self.buf = tail;
        Ok(head)
    }

    /// One byte.
    pub fn u8(&mut self, what: &'static str) -> Result<u8, ParseError> {
        Ok(self.take(1, what)?[0])
    }

    /// A little-endian `u16`.
    pub fn u16(&mut self, what: &'static str) -> Result<u16, ParseError> {
        let b = self.take(2, what)?;
        Ok(u16::from_le_bytes([b[0], b[1]]))
    }

    /// A little-endian 3-byte integer.
    pub fn u24(&mut self, what: &'static str) -> Result<u32, ParseError> {
        let b = self.take(3, what)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], 0]))
    }

    /// A little-endian `u32`.
    pub fn u32(&mut self, what: &'static str) -> Result<u32, ParseError> {
        let b = self.take(4, what)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    /// A little-endian `u64`.
    pub fn u64(&mut self, what: &'static str) -> Result<u64, ParseError> {
        let b = self.take(8, what)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(u64::from_le_bytes(a))
    }

    /// A length-encoded integer. `0xfb` (NULL in rows) and `0xff` are not
    /// integers here and fail as [`ParseError::Invalid`].
    pub fn lenenc_int(&mut self, what: &'static str) -> Result<u64, ParseError> {
        match self.u8(what)? {
            b @ 0..=0xfa => Ok(u64::from(b)),
            0xfc => Ok(u64::from(self.u16(what)?)),
            0xfd => Ok(u64::from(self.u24(what)?)),
            0xfe => self.u64(what),
            b => Err(ParseError::Invalid {
                what,
                value: u64::from(b),
            }),
        }
    }

    /// A length-encoded string.
    pub fn lenenc_bytes(&mut self, what: &'static str) -> Result<&'a [u8], ParseError> {
        let len = self.lenenc_int(what)?;
        let len = usize::try_from(len).map_err(|_| ParseError::Truncated { what })?;
        self.take(len, what)
    }

    /// A NUL-terminated string (the NUL is consumed, not returned).
    pub fn nul_bytes(&mut self, what: &'static str) -> Result<&'a [u8], ParseError> {
        let end = self
            .buf
            .iter()
            .position(|&b| b == 0)
            .ok_or(ParseError::Truncated { what })?;
        let s = &self.buf[..end];
        self.buf = &self.buf[end + 1..];
        Ok(s)
    }

    /// Everything left.
    pub fn rest(&mut self) -> &'a [u8] {
        std::mem::take(&mut self.buf)
    }
}

/// Appends a length-encoded integer.
pub fn put_lenenc_int(dst: &mut BytesMut, v: u64) {
    if v < 0xfb {
        dst.put_u8(v as u8);
    } else if v <= 0xffff {
        dst.put_u8(0xfc);
        dst.put_u16_le(v as u16);
    } else if v <= 0xff_ffff {
        dst.put_u8(0xfd);
        dst.put_slice(&(v as u32).to_le_bytes()[..3]);
    } else {
        dst.put_u8(0xfe);
        dst.put_u64_le(v);
    }
}

/// Appends a length-encoded string.
pub fn put_lenenc_bytes(dst: &mut BytesMut, s: &[u8]) {
    put_lenenc_int(dst, s.len() as u64);
    dst.put_slice(s);
}

/// Appends a NUL-terminated string.
pub fn put_nul_bytes(dst: &mut BytesMut, s: &[u8]) {
    dst.put_slice(s);
    dst.put_u8(0);
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn lenenc_int_round_trips(v in any::<u64>()) {
            let mut b = BytesMut::new();
            put_lenenc_int(&mut b, v);
            let mut r = Reader::new(&b);
            prop_assert_eq!(r.lenenc_int("v").ok(), Some(v));
            prop_assert!(r.is_empty());
        }

        #[test]
        fn lenenc_bytes_round_trip(s in proptest::collection::vec(any::<u8>(), 0..300)) {
            let mut b = BytesMut::new();
            put_lenenc_bytes(&mut b, &s);
            let mut r = Reader::new(&b);
            prop_assert_eq!(r.lenenc_bytes("s").ok(), Some(&s[..]));
        }

        #[test]
        fn reader_never_panics(data in proptest::collection::vec(any::<u8>(), 0..64)) {
            let mut r = Reader::new(&data);
            let _ = r.lenenc_bytes("a");
            let _ = r.nul_bytes("b");
            let _ = r.u64("c");
        }
    }
}
