use super::*;
use proptest::prelude::*;

fn limits() -> Limits {
    Limits::default()
}

fn decode_all(mut buf: BytesMut) -> Vec<Record> {
    let mut out = Vec::new();
    while let Some(r) = decode(&mut buf, &limits()).expect("valid records") {
        out.push(r);
    }
    assert!(buf.is_empty(), "{} bytes left over", buf.len());
    out
}

fn encoded(r: &Record) -> BytesMut {
    let mut b = BytesMut::new();
    r.encode(&mut b);
    b
}

// A BEGIN_REQUEST, as nginx sends it (responder, keep-conn).
const BEGIN_KEEP_CONN: &[u8] = &[1, 1, 0, 1, 0, 8, 0, 0, 0, 1, 1, 0, 0, 0, 0, 0];

#[test]
fn begin_request_wire_bytes() {
    let r = Record {
        request_id: 1,
        body: RecordBody::BeginRequest {
            role: Role::RESPONDER,
            flags: KEEP_CONN,
        },
    };
    assert_eq!(&encoded(&r)[..], BEGIN_KEEP_CONN);
    let mut b = BytesMut::new();
    encode_begin_request(&mut b, 1, Role::RESPONDER, KEEP_CONN);
    assert_eq!(&b[..], BEGIN_KEEP_CONN);
    assert_eq!(decode_all(b), vec![r]);
}

#[test]
fn end_request_wire_bytes() {
    // As php-fpm sends it: app status 0, FCGI_REQUEST_COMPLETE.
    let wire = [1u8, 3, 0, 1, 0, 8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
    let r = decode(&mut BytesMut::from(&wire[..]), &limits())
        .expect("valid")
        .expect("complete");
    assert_eq!(
        r,
        Record {
            request_id: 1,
            body: RecordBody::EndRequest {
                app_status: 0,
                protocol_status: ProtocolStatus::REQUEST_COMPLETE
            }
        }
    );
    assert_eq!(&encoded(&r)[..], &wire[..]);
    let r = Record {
        request_id: 0x1234,
        body: RecordBody::EndRequest {
            app_status: 0xdead_beef,
            protocol_status: ProtocolStatus::OVERLOADED,
        },
    };
    assert_eq!(
        &encoded(&r)[..],
        &[1, 3, 0x12, 0x34, 0, 8, 0, 0, 0xde, 0xad, 0xbe, 0xef, 2, 0, 0, 0]
    );
}

#[test]
fn stdout_with_padding_from_server() {
    // php-fpm pads STDOUT records to 8 bytes: "hello" + 3 padding bytes.
    let wire = [
        1u8, 6, 0, 1, 0, 5, 3, 0, b'h', b'e', b'l', b'l', b'o', 0, 0, 0,
    ];
    let r = decode(&mut BytesMut::from(&wire[..]), &limits())
        .expect("valid")
        .expect("complete");
    assert_eq!(r.body, RecordBody::Stdout(Bytes::from_static(b"hello")));
    assert_eq!(&encoded(&r)[..], &wire[..]);
}

#[test]
fn incomplete_input_needs_more_and_leaves_buffer() {
    let mut full = BytesMut::new();
    Record {
        request_id: 1,
        body: RecordBody::Stdout(Bytes::from_static(b"some output")),
    }
    .encode(&mut full);
    for cut in 0..full.len() {
        let mut part = BytesMut::from(&full[..cut]);
        assert_eq!(decode(&mut part, &limits()), Ok(None), "cut at {cut}");
        assert_eq!(part.len(), cut, "nothing consumed at {cut}");
    }
}

#[test]
fn decodes_several_records_in_one_buffer() {
    let records = vec![
        Record {
            request_id: 1,
            body: RecordBody::Stderr(Bytes::from_static(b"PHP Warning: x")),
        },
        Record {
            request_id: 1,
            body: RecordBody::Stdout(Bytes::from_static(b"Content-type: text/html\r\n\r\nhi")),
        },
        Record {
            request_id: 1,
            body: RecordBody::Stdout(Bytes::new()),
        },
        Record {
            request_id: 1,
            body: RecordBody::EndRequest {
                app_status: 0,
                protocol_status: ProtocolStatus::REQUEST_COMPLETE,
            },
        },
    ];
    let mut buf = BytesMut::new();
    for r in &records {
        r.encode(&mut buf);
    }
    assert_eq!(decode_all(buf), records);
}

#[test]
fn bad_version_is_an_error_before_content_arrives() {
    let mut buf = BytesMut::from(&[2u8, 6, 0, 1, 0xff, 0xff, 0, 0][..]);
    assert_eq!(
        decode(&mut buf, &limits()),
        Err(DecodeError::UnsupportedVersion(2))
    );
}

#[test]
fn content_limit() {
    let l = Limits {
        max_content_len: 100,
        ..Limits::default()
    };
    let mut buf = BytesMut::from(&[1u8, 6, 0, 1, 0, 101, 0, 0][..]);
    assert_eq!(
        decode(&mut buf, &l),
        Err(DecodeError::ContentTooLarge { len: 101, max: 100 })
    );
}

#[test]
fn fixed_length_records_are_checked() {
    let mut buf = BytesMut::from(&[1u8, 3, 0, 1, 0, 4, 0, 0, 0, 0, 0, 0][..]);
    assert_eq!(
        decode(&mut buf, &limits()),
        Err(DecodeError::InvalidLength {
            record_type: RecordType::EndRequest,
            len: 4,
            expected: 8
        })
    );
    let mut buf = BytesMut::from(&[1u8, 2, 0, 1, 0, 1, 0, 0, 0][..]);
    assert!(matches!(
        decode(&mut buf, &limits()),
        Err(DecodeError::InvalidLength {
            record_type: RecordType::AbortRequest,
            ..
        })
    ));
}

#[test]
fn unknown_record_type_is_kept() {
    let wire = [1u8, 42, 0, 0, 0, 2, 6, 0, 7, 8, 0, 0, 0, 0, 0, 0];
    let r = decode(&mut BytesMut::from(&wire[..]), &limits())
        .expect("valid")
        .expect("complete");
    assert_eq!(
        r.body,
        RecordBody::Other {
            record_type: 42,
            content: Bytes::from_static(&[7, 8])
        }
    );
    assert_eq!(r.body.record_type(), 42);
}

#[test]
fn name_value_lengths_one_and_four_bytes() {
    let mut b = BytesMut::new();
    encode_name_value(&mut b, b"A", b"xyz").expect("fits");
    assert_eq!(&b[..], b"\x01\x03Axyz");
    let long = vec![b'v'; 200];
    let mut b = BytesMut::new();
    encode_name_value(&mut b, b"N", &long).expect("fits");
    assert_eq!(&b[..6], &[1, 0x80, 0, 0, 200, b'N']);
    assert_eq!(b.len(), 6 + 200);
    // 127 is the largest 1-byte length, 128 the smallest 4-byte one.
    for (len, hdr) in [(127usize, 1usize), (128, 4)] {
        let mut b = BytesMut::new();
        encode_name_value(&mut b, &vec![b'n'; len], b"").expect("fits");
        assert_eq!(b.len(), hdr + 1 + len);
        let (n, v) = decode_name_value(&mut b, &limits())
            .expect("valid")
            .expect("complete");
        assert_eq!((n.len(), v.len()), (len, 0));
    }
}

#[test]
fn name_value_incremental_and_limit() {
    let mut full = BytesMut::new();
    encode_name_value(&mut full, b"HTTP_COOKIE", &[b'c'; 300]).expect("fits");
    for cut in 0..full.len() {
        let mut part = BytesMut::from(&full[..cut]);
        assert_eq!(decode_name_value(&mut part, &limits()), Ok(None));
        assert_eq!(part.len(), cut);
    }
    let tight = Limits {
        max_name_value_len: 100,
        ..Limits::default()
    };
    // The limit applies as soon as the lengths are known.
    let mut part = BytesMut::from(&full[..5]);
    assert_eq!(
        decode_name_value(&mut part, &tight),
        Err(DecodeError::NameValueTooLarge { len: 311, max: 100 })
    );
}

#[test]
fn get_values_round_trip() {
    let mut list = PairList::new();
    list.try_push("FCGI_MAX_CONNS", "").expect("fits");
    list.try_push("FCGI_MPXS_CONNS", "").expect("fits");
    let r = Record {
        request_id: NULL_REQUEST_ID,
        body: RecordBody::GetValues(list.clone()),
    };
    let got = decode_all(encoded(&r));
    assert_eq!(got, vec![r]);
    assert_eq!(list.get(b"FCGI_MPXS_CONNS"), Some(&Bytes::new()));
    assert_eq!(list.len(), 2);
}

#[test]
fn non_canonical_lengths_decode_to_canonical_lists() {
    // GET_VALUES_RESULT "A" => "1" with 4-byte lengths where 1 byte would do.
    let content = [0x80u8, 0, 0, 1, 0x80, 0, 0, 1, b'A', b'1'];
    let mut wire = BytesMut::new();
    Record {
        request_id: 0,
        body: RecordBody::Other {
            record_type: RecordType::GetValuesResult.as_u8(),
            content: Bytes::copy_from_slice(&content),
        },
    }
    .encode(&mut wire);
    let r = decode(&mut wire, &limits())
        .expect("valid")
        .expect("complete");
    let RecordBody::GetValuesResult(list) = &r.body else {
        panic!("{r:?}");
    };
    assert_eq!(list.encoded_len(), 4);
    let mut canonical = PairList::new();
    canonical.try_push("A", "1").expect("fits");
    assert_eq!(list, &canonical);
    assert_eq!(decode_all(encoded(&r)), vec![r]);
}

#[test]
fn pair_list_refuses_overflow() {
    let mut list = PairList::new();
    list.try_push(vec![b'a'; 40_000], "").expect("fits");
    let err = list.try_push(vec![b'b'; 40_000], "").expect_err("too big");
    assert!(matches!(err, EncodeError::PairListTooLarge { .. }));
    assert_eq!(list.len(), 1);
}

#[test]
fn truncated_pair_in_management_record() {
    // GET_VALUES_RESULT whose pair claims a 5-byte name but has 1.
    let wire = [1u8, 10, 0, 0, 0, 3, 5, 0, 5, 0, b'x', 0, 0, 0, 0, 0];
    assert_eq!(
        decode(&mut BytesMut::from(&wire[..]), &limits()),
        Err(DecodeError::TruncatedNameValue)
    );
}

fn params_records(buf: BytesMut) -> Vec<Bytes> {
    decode_all(buf)
        .into_iter()
        .map(|r| match r.body {
            RecordBody::Params(c) => {
                assert_eq!(r.request_id, 1);
                c
            }
            other => panic!("unexpected {other:?}"),
        })
        .collect()
}

fn pairs_of(contents: &[Bytes]) -> Vec<(Bytes, Bytes)> {
    let mut out = Vec::new();
    for c in contents {
        // Every record holds whole pairs (php-fpm parses records one by one).
        let mut b = BytesMut::from(&c[..]);
        while let Some(p) = decode_name_value(&mut b, &limits()).expect("valid") {
            out.push(p);
        }
        assert!(b.is_empty(), "a pair straddles two PARAMS records");
    }
    out
}

#[test]
fn params_stream_small() {
    let mut p = Params::new();
    p.push("SCRIPT_FILENAME", "/app/pub/index.php");
    p.push("REQUEST_METHOD", "GET");
    p.push("QUERY_STRING", "");
    let mut b = BytesMut::new();
    encode_params(&mut b, 1, &p).expect("fits");
    assert_eq!(b.len() % 8, 0, "padded to 8 bytes");
    let recs = params_records(b);
    assert_eq!(recs.len(), 2);
    assert!(recs[1].is_empty(), "terminated by an empty PARAMS record");
    let got = pairs_of(&recs);
    let want: Vec<_> = p.iter().map(|(n, v)| (n.clone(), v.clone())).collect();
    assert_eq!(got, want);
}

#[test]
fn params_stream_empty() {
    let mut b = BytesMut::new();
    encode_params(&mut b, 7, &Params::new()).expect("fits");
    assert_eq!(&b[..], &[1, 4, 0, 7, 0, 0, 0, 0]);
}

#[test]
fn params_stream_splits_between_pairs_and_respects_fpm_limit() {
    let mut p = Params::new();
    for i in 0..40 {
        p.push(format!("HTTP_X_{i}"), vec![b'v'; 3000 + i]);
    }
    // One pair that exactly fills a record with its 4+1 byte lengths.
    p.push("N", vec![b'z'; MAX_CONTENT_LEN - 6]);
    let mut b = BytesMut::new();
    encode_params(&mut b, 1, &p).expect("fits");
    // Every record's content + padding stays within 65535 (php-src rule).
    let mut raw = &b[..];
    while let Some(h) = RecordHeader::peek(raw) {
        assert!(usize::from(h.content_len) + usize::from(h.padding_len) <= MAX_CONTENT_LEN);
        raw = &raw[h.record_len()..];
    }
    let recs = params_records(b);
    assert!(recs.len() >= 4);
    assert!(recs.last().is_some_and(Bytes::is_empty));
    let got = pairs_of(&recs);
    let want: Vec<_> = p.iter().map(|(n, v)| (n.clone(), v.clone())).collect();
    assert_eq!(got, want);
}

#[test]
fn params_too_large_is_an_error_and_writes_nothing() {
    let mut p = Params::new();
    p.push("REQUEST_METHOD", "GET");
    p.push("HTTP_COOKIE", vec![b'c'; 70_000]);
    let mut b = BytesMut::from(&b"prefix"[..]);
    let err = encode_params(&mut b, 1, &p).expect_err("too large");
    assert!(
        matches!(&err, EncodeError::ParamTooLarge { name, .. } if name == "HTTP_COOKIE"),
        "{err:?}"
    );
    assert_eq!(&b[..], b"prefix");
    assert!(err.to_string().starts_with("fastcgi param"));
}

#[test]
fn stdin_split_and_end() {
    let data: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
    let mut b = BytesMut::new();
    encode_stdin(&mut b, 1, &data);
    encode_stdin(&mut b, 1, b"");
    encode_stdin_end(&mut b, 1);
    let recs = decode_all(b);
    assert_eq!(recs.len(), 5, "4 data records and the end marker");
    let mut joined = Vec::new();
    for r in &recs[..4] {
        match &r.body {
            RecordBody::Stdin(c) => {
                assert!(!c.is_empty() && c.len() <= MAX_STREAM_CHUNK);
                joined.extend_from_slice(c);
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(joined, data);
    assert_eq!(recs[4].body, RecordBody::Stdin(Bytes::new()));
}

#[test]
fn oversized_stream_record_is_split_on_encode() {
    let r = Record {
        request_id: 3,
        body: RecordBody::Stdout(Bytes::from(vec![b'x'; MAX_CONTENT_LEN + 10])),
    };
    let recs = decode_all(encoded(&r));
    assert_eq!(recs.len(), 2);
    let total: usize = recs
        .iter()
        .map(|r| match &r.body {
            RecordBody::Stdout(c) => c.len(),
            _ => 0,
        })
        .sum();
    assert_eq!(total, MAX_CONTENT_LEN + 10);
}

#[test]
fn padding_never_pushes_a_record_past_the_php_limit() {
    for len in [
        MAX_CONTENT_LEN - 8,
        MAX_STREAM_CHUNK,
        MAX_STREAM_CHUNK + 1,
        MAX_CONTENT_LEN,
    ] {
        let r = Record {
            request_id: 1,
            body: RecordBody::Data(Bytes::from(vec![0u8; len])),
        };
        let b = encoded(&r);
        let h = RecordHeader::peek(&b).expect("header");
        assert_eq!(usize::from(h.content_len), len);
        assert!(
            len + usize::from(h.padding_len) <= MAX_CONTENT_LEN,
            "len {len}"
        );
        assert_eq!(decode_all(b), vec![r]);
    }
}

#[test]
fn record_type_names() {
    for v in 1..=11u8 {
        let t = RecordType::from_u8(v).expect("defined");
        assert_eq!(t.as_u8(), v);
        assert!(!t.as_str().is_empty());
    }
    assert_eq!(RecordType::from_u8(0), None);
    assert_eq!(RecordType::from_u8(12), None);
    assert_eq!(RecordType::GetValuesResult.to_string(), "GET_VALUES_RESULT");
    assert_eq!(ProtocolStatus(9).as_str(), "unknown");
}

#[test]
fn params_helpers() {
    let p: Params = [("A", "1"), ("B", "2")].into_iter().collect();
    assert_eq!(p.len(), 2);
    assert_eq!(p.get(b"B"), Some(&Bytes::from_static(b"2")));
    assert_eq!(p.get(b"C"), None);
    let mut p = p;
    p.clear();
    assert!(p.is_empty());
}

// === property tests ===

fn content(max: usize) -> impl Strategy<Value = Bytes> {
    prop_oneof![
        3 => proptest::collection::vec(any::<u8>(), 0..64),
        1 => proptest::collection::vec(any::<u8>(), 0..max),
    ]
    .prop_map(Bytes::from)
}

fn pair_list() -> impl Strategy<Value = PairList> {
    proptest::collection::vec((content(300), content(300)), 0..8).prop_map(|pairs| {
        let mut l = PairList::new();
        for (n, v) in pairs {
            // Pairs that would overflow a record are skipped.
            let _ = l.try_push(n, v);
        }
        l
    })
}

fn record_body() -> impl Strategy<Value = RecordBody> {
    prop_oneof![
        (any::<u16>(), any::<u8>()).prop_map(|(r, flags)| RecordBody::BeginRequest {
            role: Role(r),
            flags
        }),
        Just(RecordBody::AbortRequest),
        (any::<u32>(), any::<u8>()).prop_map(|(a, p)| RecordBody::EndRequest {
            app_status: a,
            protocol_status: ProtocolStatus(p)
        }),
        content(MAX_CONTENT_LEN + 1).prop_map(RecordBody::Params),
        content(MAX_CONTENT_LEN + 1).prop_map(RecordBody::Stdin),
        content(MAX_CONTENT_LEN + 1).prop_map(RecordBody::Stdout),
        content(4096).prop_map(RecordBody::Stderr),
        content(4096).prop_map(RecordBody::Data),
        pair_list().prop_map(RecordBody::GetValues),
        pair_list().prop_map(RecordBody::GetValuesResult),
        any::<u8>().prop_map(|t| RecordBody::UnknownType { record_type: t }),
        (12u8.., content(4096)).prop_map(|(t, c)| RecordBody::Other {
            record_type: t,
            content: c
        }),
    ]
}

fn record() -> impl Strategy<Value = Record> {
    (any::<u16>(), record_body()).prop_map(|(request_id, body)| Record { request_id, body })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn record_round_trip(r in record()) {
        let mut buf = encoded(&r);
        prop_assert_eq!(buf.len().is_multiple_of(8) || buf.len() > MAX_CONTENT_LEN, true);
        let got = decode(&mut buf, &limits()).expect("valid").expect("complete");
        prop_assert_eq!(got, r);
        prop_assert!(buf.is_empty());
    }

    #[test]
    fn record_sequence_round_trip_any_split(rs in proptest::collection::vec(record(), 1..6), cut in any::<proptest::sample::Index>()) {
        let mut wire = BytesMut::new();
        for r in &rs {
            r.encode(&mut wire);
        }
        // Feed in two parts: the decoder must give the same records.
        let at = cut.index(wire.len() + 1);
        let mut buf = BytesMut::from(&wire[..at]);
        let mut got = Vec::new();
        while let Some(r) = decode(&mut buf, &limits()).expect("valid") {
            got.push(r);
        }
        buf.extend_from_slice(&wire[at..]);
        while let Some(r) = decode(&mut buf, &limits()).expect("valid") {
            got.push(r);
        }
        prop_assert!(buf.is_empty());
        prop_assert_eq!(got, rs);
    }

    #[test]
    fn name_value_round_trip(name in content(1000), value in content(70_000)) {
        let mut buf = BytesMut::new();
        encode_name_value(&mut buf, &name, &value).expect("fits");
        prop_assert_eq!(Some(buf.len()), name_value_encoded_len(name.len(), value.len()));
        let (n, v) = decode_name_value(&mut buf, &limits()).expect("valid").expect("complete");
        prop_assert_eq!(n, name);
        prop_assert_eq!(v, value);
        prop_assert!(buf.is_empty());
    }

    #[test]
    fn params_round_trip(pairs in proptest::collection::vec((content(200), content(20_000)), 0..12)) {
        let params: Params = pairs.iter().cloned().collect();
        let mut buf = BytesMut::new();
        encode_params(&mut buf, 9, &params).expect("fits");
        let recs = params_records_any_id(buf);
        prop_assert!(recs.last().is_some_and(Bytes::is_empty));
        prop_assert_eq!(pairs_of(&recs), pairs);
    }

    #[test]
    fn decode_never_panics(data in proptest::collection::vec(any::<u8>(), 0..512), max in 0usize..70_000) {
        let l = Limits { max_content_len: max, max_name_value_len: max };
        let mut buf = BytesMut::from(&data[..]);
        while let Ok(Some(r)) = decode(&mut buf, &l) {
            // Whatever decodes re-encodes to the same record.
            let again = decode(&mut encoded(&r), &limits()).expect("valid").expect("complete");
            prop_assert_eq!(again, r);
        }
        let mut buf = BytesMut::from(&data[..]);
        while let Ok(Some(_)) = decode_name_value(&mut buf, &l) {}
    }

    #[test]
    fn decode_valid_header_random_content_never_panics(ty in any::<u8>(), id in any::<u16>(), body in proptest::collection::vec(any::<u8>(), 0..300), pad in 0u8..16) {
        let mut buf = BytesMut::new();
        let len = u16::try_from(body.len()).unwrap_or(u16::MAX);
        buf.put_slice(&[VERSION_1, ty, (id >> 8) as u8, id as u8, (len >> 8) as u8, len as u8, pad, 0]);
        buf.put_slice(&body);
        buf.put_bytes(0, usize::from(pad));
        let _ = decode(&mut buf, &limits());
    }
}

fn params_records_any_id(buf: BytesMut) -> Vec<Bytes> {
    decode_all(buf)
        .into_iter()
        .map(|r| match r.body {
            RecordBody::Params(c) => c,
            other => panic!("unexpected {other:?}"),
        })
        .collect()
}
