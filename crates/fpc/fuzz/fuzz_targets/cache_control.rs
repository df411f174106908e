//! `Cache-Control` parsing and the Varnish TTL helpers must be total.
#![no_main]

use libfuzzer_sys::fuzz_target;
use magestack_fpc::cache_control::{
    parse_delta_seconds, parse_http_date, CacheControl, MAX_DIRECTIVES,
};

fuzz_target!(|data: &[u8]| {
    // Split the input into up to four header lines on 0xff.
    let lines: Vec<&[u8]> = data.split(|&b| b == 0xff).take(4).collect();
    let cc = CacheControl::parse(lines.iter().copied());
    assert!(cc.directives().len() <= MAX_DIRECTIVES);
    let _ = cc.shared_max_age();
    for d in cc.directives() {
        assert!(!d.name.is_empty());
        if let Some(v) = &d.value {
            let _ = parse_delta_seconds(v);
        }
    }
    let _ = parse_http_date(data);
    if let Ok(s) = std::str::from_utf8(data) {
        let _ = parse_delta_seconds(s);
    }
});
