//! The body parsers the injection inspection runs on attacker bytes
//! (urlencoded forms, cookies, JSON, multipart, GraphQL literals, the URL and
//! entity decoders) must be total: no panic, no unbounded work.
#![no_main]

use std::ops::ControlFlow;

use libfuzzer_sys::fuzz_target;
use magestack_waf::inject::extract::{self, BodyKind, Location};
use magestack_waf::inject::signatures::html_entity_decode;

fuzz_target!(|data: &[u8]| {
    let mut seen = 0usize;
    let mut visit = |_: Location, name: &[u8], value: &[u8]| {
        // Names come from the input (or are the literal "graphql"); values
        // never grow much past it (decoding shrinks; fullwidth folding and
        // JSON number formatting are bounded).
        assert!(name.len() <= data.len().max(b"graphql".len()));
        assert!(value.len() <= data.len() * 4 + 32);
        seen += 1;
        ControlFlow::<()>::Continue(())
    };
    let _ = extract::form(data, Location::Body, &mut visit);
    let _ = extract::cookies(data, &mut visit);
    let _ = extract::json(data, data.first().is_some_and(|b| b & 1 == 1), &mut visit);
    let _ = extract::graphql_literals(data, &mut visit);
    // First line: a boundary; the rest: the multipart body.
    if let Some(nl) = data.iter().position(|&b| b == b'\n') {
        let _ = extract::multipart(&data[nl + 1..], &data[..nl], &mut visit);
        let _ = BodyKind::of(Some(&data[..nl]));
    }
    assert!(extract::url_decode(data, true).len() <= data.len());
    let _ = html_entity_decode(data);
});
