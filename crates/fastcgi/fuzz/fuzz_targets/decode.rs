//! Feeds arbitrary bytes to the FastCGI record decoder, the name-value pair
//! decoder and the CGI response-head parser. None of them may panic, and
//! whatever decodes must re-encode to something that decodes the same.
//!
//! Run with `cargo +nightly fuzz run decode` from `crates/fastcgi`.
#![no_main]

use bytes::{Bytes, BytesMut};
use libfuzzer_sys::fuzz_target;
use magestack_fastcgi::codec::{self, Limits};
use magestack_fastcgi::response::HeadParser;

fuzz_target!(|data: &[u8]| {
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    let limits = Limits {
        max_content_len: 1 + usize::from(selector) * 257,
        max_name_value_len: 1 + usize::from(selector) * 4099,
    };

    // Records: decode until error or need-more; round-trip what decodes.
    let mut buf = BytesMut::from(rest);
    while let Ok(Some(record)) = codec::decode(&mut buf, &limits) {
        let mut wire = BytesMut::new();
        record.encode(&mut wire);
        let again = codec::decode(&mut wire, &Limits::default())
            .expect("re-encoded record decodes")
            .expect("re-encoded record is complete");
        assert_eq!(again, record);
    }

    // Name-value pairs of a PARAMS stream.
    let mut buf = BytesMut::from(rest);
    while let Ok(Some(_)) = codec::decode_name_value(&mut buf, &limits) {}

    // CGI head, fed in chunks whose size depends on the selector.
    let mut parser = HeadParser::new(usize::from(selector) * 128);
    let step = usize::from(selector % 16) + 1;
    for chunk in rest.chunks(step) {
        match parser.push(Bytes::copy_from_slice(chunk)) {
            Ok(Some(head)) => {
                let _ = head.header_map();
                break;
            }
            Ok(None) => {}
            Err(_) => break,
        }
    }
});
