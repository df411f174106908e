//! Packet framing: a 3-byte little-endian payload length, a 1-byte sequence
//! id, then the payload. A payload of 16 MiB − 1 bytes or more is split into
//! packets of exactly [`MAX_PAYLOAD_LEN`] bytes followed by a shorter one
//! (possibly empty); [`decode`] joins them, [`encode`] splits.

use bytes::{Buf, BufMut, Bytes, BytesMut};

use crate::consts::MAX_PAYLOAD_LEN;

/// Length of a packet header.
pub const HEADER_LEN: usize = 4;
/// Default ceiling for one logical payload: 64 MiB, MySQL 8's default
/// `max_allowed_packet` (MariaDB's is 16 MiB), so the proxy is never the
/// first to refuse a packet the servers accept.
pub const DEFAULT_MAX_PACKET_BYTES: usize = 64 * 1024 * 1024;

/// Ceilings for the decoder.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest logical payload (after joining split packets).
    pub max_packet_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_packet_bytes: DEFAULT_MAX_PACKET_BYTES,
        }
    }
}

/// One logical packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Packet {
    /// Sequence id of its first physical packet.
    pub seq: u8,
    /// Sequence id of its last physical packet: the peer's answer continues
    /// at `last_seq + 1`.
    pub last_seq: u8,
    /// The payload, joined when it was split.
    pub payload: Bytes,
}

/// A byte stream that is not MySQL packets within the limits.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FrameError {
    /// The logical payload would exceed [`Limits::max_packet_bytes`].
    #[error("mysql packet too large: more than {max} bytes")]
    TooLarge {
        /// The ceiling.
        max: usize,
    },
    /// A continuation packet did not carry the next sequence id.
    #[error("mysql packet sequence broken: expected {expected}, got {got}")]
    Sequence {
        /// The id that should have followed.
        expected: u8,
        /// The id found.
        got: u8,
    },
}

/// Takes one logical packet off the front of `buf`, joining split packets.
///
/// Returns `Ok(None)` while the packet is incomplete; `buf` is then left
/// untouched, so the caller reads more bytes and calls again.
///
/// # Errors
///
/// [`FrameError::TooLarge`] as soon as a header announces more than the
/// limit (before the bytes arrive), [`FrameError::Sequence`] when a
/// continuation's sequence id does not follow.
pub fn decode(buf: &mut BytesMut, limits: &Limits) -> Result<Option<Packet>, FrameError> {
    let mut off = 0usize;
    let mut total = 0usize;
    let mut parts = 0usize;
    let mut first_seq = 0u8;
    let mut last_seq = 0u8;
    loop {
        if buf.len() < off + HEADER_LEN {
            return Ok(None);
        }
        let len = usize::from(buf[off])
            | usize::from(buf[off + 1]) << 8
            | usize::from(buf[off + 2]) << 16;
        let seq = buf[off + 3];
        if parts == 0 {
            first_seq = seq;
        } else if seq != last_seq.wrapping_add(1) {
            return Err(FrameError::Sequence {
                expected: last_seq.wrapping_add(1),
                got: seq,
            });
        }
        last_seq = seq;
        total += len;
        if total > limits.max_packet_bytes {
            return Err(FrameError::TooLarge {
                max: limits.max_packet_bytes,
            });
        }
        if buf.len() < off + HEADER_LEN + len {
            return Ok(None);
        }
        off += HEADER_LEN + len;
        parts += 1;
        if len < MAX_PAYLOAD_LEN {
            break;
        }
    }
    let payload = if parts == 1 {
        let mut p = buf.split_to(off);
        p.advance(HEADER_LEN);
        p.freeze()
    } else {
        let mut joined = BytesMut::with_capacity(total);
        let mut frames = buf.split_to(off);
        while !frames.is_empty() {
            let len =
                usize::from(frames[0]) | usize::from(frames[1]) << 8 | usize::from(frames[2]) << 16;
            frames.advance(HEADER_LEN);
            joined.put_slice(&frames[..len]);
            frames.advance(len);
        }
        joined.freeze()
    };
    Ok(Some(Packet {
        seq: first_seq,
        last_seq,
        payload,
    }))
}

/// Appends `payload` as packets starting at sequence id `seq`, split at
/// [`MAX_PAYLOAD_LEN`] (with an empty final packet when the length is a
/// multiple of it). Returns the sequence id that follows.
pub fn encode(payload: &[u8], seq: u8, dst: &mut BytesMut) -> u8 {
    let mut seq = seq;
    let mut rest = payload;
    dst.reserve(payload.len() + HEADER_LEN * (payload.len() / MAX_PAYLOAD_LEN + 1));
    loop {
        let n = rest.len().min(MAX_PAYLOAD_LEN);
        dst.put_slice(&(n as u32).to_le_bytes()[..3]);
        dst.put_u8(seq);
        dst.put_slice(&rest[..n]);
        seq = seq.wrapping_add(1);
        rest = &rest[n..];
        if n < MAX_PAYLOAD_LEN {
            return seq;
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn a_payload_of_exactly_16_mib_minus_one_ends_with_an_empty_packet() {
        let payload = vec![7u8; MAX_PAYLOAD_LEN];
        let mut b = BytesMut::new();
        let next = encode(&payload, 3, &mut b);
        assert_eq!(next, 5);
        assert_eq!(b.len(), payload.len() + 2 * HEADER_LEN);
        assert_eq!(&b[b.len() - 4..], &[0, 0, 0, 4]);
        let p = decode(&mut b, &Limits::default()).ok().flatten();
        let p = p.as_ref().map(|p| (p.seq, p.last_seq, p.payload.len()));
        assert_eq!(p, Some((3, 4, MAX_PAYLOAD_LEN)));
        assert!(b.is_empty());
    }

    #[test]
    fn a_40_mib_payload_is_split_and_joined() {
        let payload: Vec<u8> = (0..40 * 1024 * 1024).map(|i| (i % 251) as u8).collect();
        let mut b = BytesMut::new();
        let next = encode(&payload, 255, &mut b);
        assert_eq!(next, 255u8.wrapping_add(3));
        let p = decode(&mut b, &Limits::default()).ok().flatten();
        assert_eq!(p.map(|p| p.payload == payload[..]), Some(true));
    }

    #[test]
    fn the_limit_is_enforced_from_the_header() {
        let mut b = BytesMut::from(&[0xff, 0xff, 0x00, 0][..]);
        let limits = Limits {
            max_packet_bytes: 1000,
        };
        assert_eq!(
            decode(&mut b, &limits),
            Err(FrameError::TooLarge { max: 1000 })
        );
    }

    #[test]
    fn a_broken_continuation_sequence_is_an_error() {
        let mut b = BytesMut::new();
        encode(&vec![0u8; MAX_PAYLOAD_LEN + 5], 0, &mut b);
        let at = HEADER_LEN + MAX_PAYLOAD_LEN + 3;
        b[at] = 9;
        assert_eq!(
            decode(&mut b, &Limits::default()),
            Err(FrameError::Sequence {
                expected: 1,
                got: 9
            })
        );
    }

    proptest! {
        #[test]
        fn decode_inverts_encode_at_any_split(
            payloads in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..2000), 1..5),
            seq in any::<u8>(),
            cut in any::<prop::sample::Index>(),
        ) {
            let mut wire = BytesMut::new();
            for p in &payloads {
                encode(p, seq, &mut wire);
            }
            // Feed in two parts: nothing is decoded from an incomplete prefix wrongly.
            let cut = cut.index(wire.len() + 1);
            let mut buf = BytesMut::from(&wire[..cut]);
            let mut out = Vec::new();
            while let Some(p) = decode(&mut buf, &Limits::default()).map_err(|e| TestCaseError::fail(e.to_string()))? {
                out.push(p.payload.to_vec());
            }
            buf.extend_from_slice(&wire[cut..]);
            while let Some(p) = decode(&mut buf, &Limits::default()).map_err(|e| TestCaseError::fail(e.to_string()))? {
                prop_assert_eq!(p.seq, seq);
                out.push(p.payload.to_vec());
            }
            prop_assert_eq!(out, payloads);
            prop_assert!(buf.is_empty());
        }

        #[test]
        fn decode_never_panics(data in proptest::collection::vec(any::<u8>(), 0..256)) {
            let mut b = BytesMut::from(&data[..]);
            let limits = Limits { max_packet_bytes: 4096 };
            while let Ok(Some(_)) = decode(&mut b, &limits) {}
        }
    }
}
