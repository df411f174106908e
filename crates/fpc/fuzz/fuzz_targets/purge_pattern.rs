//! `X-Magento-Tags-Pattern` / `X-Pool` parsing must be total, and the fast
//! path must agree with the regex it stands for.
#![no_main]

use libfuzzer_sys::fuzz_target;
use magestack_fpc::purge::{parse_tags_pattern, PurgePattern};

fuzz_target!(|data: &[u8]| {
    let Ok(value) = std::str::from_utf8(data) else {
        return;
    };
    let pattern = parse_tags_pattern(value);
    let _ = pattern.as_str();
    if let PurgePattern::Tags(tags) = &pattern {
        // The fast path only accepts Magento's shape, which is a valid regex
        // matching each of its tags.
        let re = regex_equivalent(value);
        for t in tags {
            assert!(pattern.matches_tag(t));
            assert!(re.as_ref().map_or(true, |re| re.matches_tag(t)));
        }
    }
    for probe in ["", "a", "cat_p_1", "store", ",", "^$"] {
        let _ = pattern.matches_tag(probe);
    }
});

/// The regex fallback for the same value, built by forcing a non-fast-path
/// shape (an extra empty group keeps the meaning).
fn regex_equivalent(value: &str) -> Option<PurgePattern> {
    match parse_tags_pattern(&format!("(?:){value}")) {
        p @ PurgePattern::Regex(_) => Some(p),
        _ => None,
    }
}
