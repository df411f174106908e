//! Everything the proxy parses from a peer must be total: packet framing,
//! the client's handshake response and `COM_CHANGE_USER`, command packets, a server's response
//! stream for each response shape, OK packets with session-state info, and
//! the statement classifier on arbitrary SQL text.
#![no_main]

use bytes::{Bytes, BytesMut};
use libfuzzer_sys::fuzz_target;
use magestack_mysql_proto::consts::cap;
use magestack_mysql_proto::handshake::{ChangeUser, ClientHello, InitialHandshake};
use magestack_mysql_proto::packet::{decode, Limits};
use magestack_mysql_proto::{classify, Command, Expect, OkPacket, ResponseReader};

fuzz_target!(|data: &[u8]| {
    let _ = classify(data);
    let _ = ClientHello::decode(data);
    let _ = InitialHandshake::decode(data);
    let _ = ChangeUser::decode(data, !0);
    let _ = ChangeUser::decode(data, cap::PROTOCOL_41);
    let _ = Command::decode(&Bytes::copy_from_slice(data));
    let caps = cap::PROTOCOL_41 | cap::SESSION_TRACK;
    let _ = OkPacket::decode(data, caps);
    let limits = Limits {
        max_packet_bytes: 1 << 16,
    };
    let mut buf = BytesMut::from(data);
    let shape = data.first().copied().unwrap_or(0);
    let expect = [
        Expect::ResultSets,
        Expect::Prepare,
        Expect::UntilEof,
        Expect::Single,
        Expect::Raw,
    ][usize::from(shape % 5)];
    let caps = if shape & 0x80 != 0 { caps | cap::DEPRECATE_EOF } else { caps };
    let mut reader = ResponseReader::new(expect, caps);
    while let Ok(Some(p)) = decode(&mut buf, &limits) {
        assert!(p.payload.len() <= limits.max_packet_bytes);
        if reader.feed(&p.payload).is_err() || reader.is_done() {
            reader = ResponseReader::new(expect, caps);
        }
    }
});
