//! The ESI parser must be total and its literals must be slices of the body.
#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use magestack_fpc::esi::{parse_esi, EsiLimits, EsiSegment};

fuzz_target!(|data: &[u8]| {
    let body = Bytes::copy_from_slice(data);
    let limits = EsiLimits {
        max_includes: 16,
        max_src_len: 256,
    };
    if let Ok(Some(segments)) = parse_esi(&body, &limits) {
        let base = body.as_ptr() as usize;
        let mut literal_bytes = 0;
        let mut includes = 0;
        for s in &segments {
            match s {
                EsiSegment::Literal(b) => {
                    let start = b.as_ptr() as usize;
                    assert!(start >= base && start + b.len() <= base + body.len());
                    assert!(!b.is_empty());
                    literal_bytes += b.len();
                }
                EsiSegment::Include(i) => {
                    assert!(i.src.len() <= limits.max_src_len);
                    includes += 1;
                }
            }
        }
        assert!(literal_bytes <= body.len());
        assert!(includes <= limits.max_includes);
    }
});
