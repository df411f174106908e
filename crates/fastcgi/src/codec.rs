//! Sans-IO FastCGI 1.0 record codec.
//!
//! This module knows the wire format and nothing else: no sockets, no tokio,
//! no clock. [`Record::decode`] takes bytes out of a caller's [`BytesMut`] and
//! returns `Ok(None)` while a record is incomplete; [`Record::encode`] and the
//! `encode_*` stream helpers append to a caller's buffer.
//!
//! # Wire format
//!
//! Every record is an 8-byte header (version 1, type, request id, content
//! length, padding length) followed by at most 65535 content bytes and up to
//! 255 padding bytes. Streams (PARAMS, STDIN, STDOUT, STDERR, DATA) are the
//! concatenation of their records' contents and end with an empty record.
//! Name-value pairs (PARAMS, GET_VALUES, GET_VALUES_RESULT) prefix the name and
//! the value with their lengths, in one byte below 128 and in four bytes (high
//! bit set) otherwise.
//!
//! # PHP-FPM compatibility
//!
//! php-src (`main/fastcgi.c`) rejects a record whose content length plus
//! padding exceeds 65535, and parses every PARAMS record on its own, so a
//! name-value pair must not straddle two PARAMS records. The encoders here
//! therefore pad to 8 bytes only when the sum stays within 65535, split streams
//! into chunks of [`MAX_STREAM_CHUNK`] bytes, and never split a pair: a single
//! parameter too large for one record is an [`EncodeError`].
#![deny(clippy::unwrap_used)]

use std::fmt;

use bytes::{Buf, BufMut, Bytes, BytesMut};

/// The only protocol version, `FCGI_VERSION_1`.
pub const VERSION_1: u8 = 1;
/// Length of a record header.
pub const HEADER_LEN: usize = 8;
/// Largest content length a record header can carry.
pub const MAX_CONTENT_LEN: usize = 0xffff;
/// Largest padding length a record header can carry.
pub const MAX_PADDING_LEN: usize = 0xff;
/// Chunk size the stream encoders split data into: the largest multiple of 8
/// that fits a record, so every chunk is sent without padding.
pub const MAX_STREAM_CHUNK: usize = 65528;
/// Request id of management records (GET_VALUES, GET_VALUES_RESULT, UNKNOWN_TYPE).
pub const NULL_REQUEST_ID: u16 = 0;
/// `FCGI_KEEP_CONN`: the application keeps the connection open after the request.
pub const KEEP_CONN: u8 = 1;
/// Default ceiling for one name-value pair decoded by [`decode_name_value`].
pub const DEFAULT_MAX_NAME_VALUE_LEN: usize = 1024 * 1024;
/// Largest name or value length the 4-byte length encoding can express.
pub const MAX_NAME_VALUE_FIELD_LEN: usize = 0x7fff_ffff;

// === RecordType ===

/// The record types of FastCGI 1.0.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum RecordType {
    /// `FCGI_BEGIN_REQUEST` (1).
    BeginRequest,
    /// `FCGI_ABORT_REQUEST` (2).
    AbortRequest,
    /// `FCGI_END_REQUEST` (3).
    EndRequest,
    /// `FCGI_PARAMS` (4).
    Params,
    /// `FCGI_STDIN` (5).
    Stdin,
    /// `FCGI_STDOUT` (6).
    Stdout,
    /// `FCGI_STDERR` (7).
    Stderr,
    /// `FCGI_DATA` (8).
    Data,
    /// `FCGI_GET_VALUES` (9).
    GetValues,
    /// `FCGI_GET_VALUES_RESULT` (10).
    GetValuesResult,
    /// `FCGI_UNKNOWN_TYPE` (11).
    UnknownType,
}

impl RecordType {
    /// The type's wire value.
    pub const fn as_u8(self) -> u8 {
        match self {
            Self::BeginRequest => 1,
            Self::AbortRequest => 2,
            Self::EndRequest => 3,
            Self::Params => 4,
            Self::Stdin => 5,
            Self::Stdout => 6,
            Self::Stderr => 7,
            Self::Data => 8,
            Self::GetValues => 9,
            Self::GetValuesResult => 10,
            Self::UnknownType => 11,
        }
    }

    /// The type for a wire value, if FastCGI 1.0 defines it.
    pub const fn from_u8(v: u8) -> Option<Self> {
        Some(match v {
            1 => Self::BeginRequest,
            2 => Self::AbortRequest,
            3 => Self::EndRequest,
            4 => Self::Params,
            5 => Self::Stdin,
            6 => Self::Stdout,
            7 => Self::Stderr,
            8 => Self::Data,
            9 => Self::GetValues,
            10 => Self::GetValuesResult,
            11 => Self::UnknownType,
            _ => return None,
        })
    }

    /// The spec's name without the `FCGI_` prefix, e.g. `"END_REQUEST"`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::BeginRequest => "BEGIN_REQUEST",
            Self::AbortRequest => "ABORT_REQUEST",
            Self::EndRequest => "END_REQUEST",
            Self::Params => "PARAMS",
            Self::Stdin => "STDIN",
            Self::Stdout => "STDOUT",
            Self::Stderr => "STDERR",
            Self::Data => "DATA",
            Self::GetValues => "GET_VALUES",
            Self::GetValuesResult => "GET_VALUES_RESULT",
            Self::UnknownType => "UNKNOWN_TYPE",
        }
    }
}

impl fmt::Display for RecordType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

// === Role, ProtocolStatus ===

/// The role in a BEGIN_REQUEST record. Unknown values are kept as they are.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Role(pub u16);

impl Role {
    /// `FCGI_RESPONDER`: the CGI/1.1 role PHP-FPM implements.
    pub const RESPONDER: Role = Role(1);
    /// `FCGI_AUTHORIZER`.
    pub const AUTHORIZER: Role = Role(2);
    /// `FCGI_FILTER`.
    pub const FILTER: Role = Role(3);
}

/// The protocol status of an END_REQUEST record. Unknown values are kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ProtocolStatus(pub u8);

impl ProtocolStatus {
    /// `FCGI_REQUEST_COMPLETE`: normal end of request.
    pub const REQUEST_COMPLETE: ProtocolStatus = ProtocolStatus(0);
    /// `FCGI_CANT_MPX_CONN`: the application refuses a second request on the connection.
    pub const CANT_MPX_CONN: ProtocolStatus = ProtocolStatus(1);
    /// `FCGI_OVERLOADED`: the application is out of some resource.
    pub const OVERLOADED: ProtocolStatus = ProtocolStatus(2);
    /// `FCGI_UNKNOWN_ROLE`: the application does not implement the requested role.
    pub const UNKNOWN_ROLE: ProtocolStatus = ProtocolStatus(3);

    /// A label for logs and metrics.
    pub const fn as_str(self) -> &'static str {
        match self.0 {
            0 => "request_complete",
            1 => "cant_mpx_conn",
            2 => "overloaded",
            3 => "unknown_role",
            _ => "unknown",
        }
    }
}

impl fmt::Display for ProtocolStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.as_str(), self.0)
    }
}

// === Errors, Limits ===

/// Why bytes could not be decoded. After an error the byte stream cannot be
/// resynchronised: close the connection.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// The header's version byte is not 1.
    #[error("unsupported fastcgi version {0}")]
    UnsupportedVersion(u8),
    /// The content length is above [`Limits::max_content_len`].
    #[error("fastcgi record too large: {len} > {max}")]
    ContentTooLarge {
        /// Content length announced by the header.
        len: usize,
        /// The limit in force.
        max: usize,
    },
    /// A fixed-size record body has the wrong length.
    #[error("fastcgi {record_type} record has {len} content bytes, expected {expected}")]
    InvalidLength {
        /// The record's type.
        record_type: RecordType,
        /// Content length found.
        len: usize,
        /// Content length the spec requires.
        expected: usize,
    },
    /// A name-value pair runs past the end of its record.
    #[error("truncated fastcgi name-value pair")]
    TruncatedNameValue,
    /// A name-value pair is above [`Limits::max_name_value_len`].
    #[error("fastcgi name-value pair too large: {len} > {max}")]
    NameValueTooLarge {
        /// Name length plus value length.
        len: usize,
        /// The limit in force.
        max: usize,
    },
}

/// Why something could not be encoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EncodeError {
    /// One parameter does not fit a single PARAMS record (PHP-FPM requires that).
    #[error("fastcgi param {name:?} too large: {len} > {max} bytes")]
    ParamTooLarge {
        /// The parameter's name, lossily decoded and cut to 64 bytes.
        name: String,
        /// Encoded size of the pair.
        len: usize,
        /// Largest encoded pair that fits a record.
        max: usize,
    },
    /// A management record's pair list would exceed one record.
    #[error("fastcgi name-value list too large: {len} > {max} bytes")]
    PairListTooLarge {
        /// Encoded size the list would have.
        len: usize,
        /// Largest record content.
        max: usize,
    },
}

/// Ceilings applied while decoding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest accepted record content length (the format's own ceiling is
    /// [`MAX_CONTENT_LEN`]; a larger value has no further effect).
    pub max_content_len: usize,
    /// Largest accepted name length plus value length of one pair.
    pub max_name_value_len: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_content_len: MAX_CONTENT_LEN,
            max_name_value_len: DEFAULT_MAX_NAME_VALUE_LEN,
        }
    }
}

// === RecordHeader ===

/// A decoded 8-byte record header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordHeader {
    /// Protocol version (1 for every valid record).
    pub version: u8,
    /// Raw record type.
    pub record_type: u8,
    /// Request id; 0 for management records.
    pub request_id: u16,
    /// Content length.
    pub content_len: u16,
    /// Padding length.
    pub padding_len: u8,
}

impl RecordHeader {
    /// Reads the header at the start of `buf` without consuming anything;
    /// `None` if fewer than 8 bytes are buffered.
    pub fn peek(buf: &[u8]) -> Option<Self> {
        let h: &[u8; HEADER_LEN] = buf.get(..HEADER_LEN)?.try_into().ok()?;
        Some(Self {
            version: h[0],
            record_type: h[1],
            request_id: u16::from_be_bytes([h[2], h[3]]),
            content_len: u16::from_be_bytes([h[4], h[5]]),
            padding_len: h[6],
        })
    }

    /// Header, content and padding length together.
    pub fn record_len(&self) -> usize {
        HEADER_LEN + usize::from(self.content_len) + usize::from(self.padding_len)
    }
}

// === PairList ===

/// Name-value pairs of a management record (GET_VALUES, GET_VALUES_RESULT).
///
/// The list always fits one record: [`PairList::try_push`] refuses a pair that
/// would push the encoded size past [`MAX_CONTENT_LEN`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PairList {
    pairs: Vec<(Bytes, Bytes)>,
    encoded_len: usize,
}

impl PairList {
    /// An empty list.
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends a pair.
    ///
    /// # Errors
    ///
    /// [`EncodeError::PairListTooLarge`] if the list would no longer fit one record.
    pub fn try_push(
        &mut self,
        name: impl Into<Bytes>,
        value: impl Into<Bytes>,
    ) -> Result<(), EncodeError> {
        let (name, value) = (name.into(), value.into());
        let len = name_value_encoded_len(name.len(), value.len())
            .and_then(|l| l.checked_add(self.encoded_len))
            .unwrap_or(usize::MAX);
        if len > MAX_CONTENT_LEN {
            return Err(EncodeError::PairListTooLarge {
                len,
                max: MAX_CONTENT_LEN,
            });
        }
        self.encoded_len = len;
        self.pairs.push((name, value));
        Ok(())
    }

    /// The pairs in order.
    pub fn iter(&self) -> impl Iterator<Item = (&Bytes, &Bytes)> + '_ {
        self.pairs.iter().map(|(n, v)| (n, v))
    }

    /// The value of the first pair named `name`.
    pub fn get(&self, name: &[u8]) -> Option<&Bytes> {
        self.pairs
            .iter()
            .find(|(n, _)| n.as_ref() == name)
            .map(|(_, v)| v)
    }

    /// Number of pairs.
    pub fn len(&self) -> usize {
        self.pairs.len()
    }

    /// True if there are no pairs.
    pub fn is_empty(&self) -> bool {
        self.pairs.is_empty()
    }

    /// Size of the encoded list, at most [`MAX_CONTENT_LEN`].
    pub fn encoded_len(&self) -> usize {
        self.encoded_len
    }

    fn decode(mut content: Bytes, limits: &Limits) -> Result<Self, DecodeError> {
        let mut list = Self::new();
        while !content.is_empty() {
            let Some((hdr, name_len, value_len)) = parse_pair_lengths(&content, limits)? else {
                return Err(DecodeError::TruncatedNameValue);
            };
            content.advance(hdr);
            let name = content.split_to(name_len);
            let value = content.split_to(value_len);
            // Canonical size (a sender may use 4-byte lengths for short
            // names), so equal lists compare equal however they were encoded.
            list.encoded_len += name_value_encoded_len(name_len, value_len).unwrap_or(usize::MAX);
            list.pairs.push((name, value));
        }
        Ok(list)
    }
}

// === Params ===

/// The ordered CGI parameters of a request (PARAMS stream), e.g.
/// `SCRIPT_FILENAME`, `REQUEST_METHOD`, `HTTP_HOST`.
///
/// Names are sent as given, in order; nothing is deduplicated or validated
/// here (sending a name twice is the caller's bug, see nginx PR #1031).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Params {
    pairs: Vec<(Bytes, Bytes)>,
}

impl Params {
    /// An empty list.
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty list with room for `n` pairs.
    pub fn with_capacity(n: usize) -> Self {
        Self {
            pairs: Vec::with_capacity(n),
        }
    }

    /// Appends a parameter.
    pub fn push(&mut self, name: impl Into<Bytes>, value: impl Into<Bytes>) {
        self.pairs.push((name.into(), value.into()));
    }

    /// The value of the first parameter named `name`.
    pub fn get(&self, name: &[u8]) -> Option<&Bytes> {
        self.pairs
            .iter()
            .find(|(n, _)| n.as_ref() == name)
            .map(|(_, v)| v)
    }

    /// The parameters in order.
    pub fn iter(&self) -> impl Iterator<Item = (&Bytes, &Bytes)> + '_ {
        self.pairs.iter().map(|(n, v)| (n, v))
    }

    /// Number of parameters.
    pub fn len(&self) -> usize {
        self.pairs.len()
    }

    /// True if there are no parameters.
    pub fn is_empty(&self) -> bool {
        self.pairs.is_empty()
    }

    /// Removes every parameter, keeping the allocation.
    pub fn clear(&mut self) {
        self.pairs.clear();
    }
}

impl<N: Into<Bytes>, V: Into<Bytes>> FromIterator<(N, V)> for Params {
    fn from_iter<I: IntoIterator<Item = (N, V)>>(iter: I) -> Self {
        let mut p = Self::new();
        p.extend(iter);
        p
    }
}

impl<N: Into<Bytes>, V: Into<Bytes>> Extend<(N, V)> for Params {
    fn extend<I: IntoIterator<Item = (N, V)>>(&mut self, iter: I) {
        for (n, v) in iter {
            self.push(n, v);
        }
    }
}

// === Record ===

/// One FastCGI record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// Request id; [`NULL_REQUEST_ID`] for management records.
    pub request_id: u16,
    /// Type and content.
    pub body: RecordBody,
}

/// The type and content of a record.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum RecordBody {
    /// Starts a request. The five reserved bytes are written as zero and ignored on decode.
    BeginRequest {
        /// Requested role.
        role: Role,
        /// Flags; [`KEEP_CONN`] is the only defined one.
        flags: u8,
    },
    /// Aborts a request.
    AbortRequest,
    /// Ends a request.
    EndRequest {
        /// The application's exit status.
        app_status: u32,
        /// Protocol-level outcome.
        protocol_status: ProtocolStatus,
    },
    /// Part of the PARAMS stream (encoded name-value pairs); empty ends it.
    Params(Bytes),
    /// Part of the request body; empty ends it.
    Stdin(Bytes),
    /// Part of the response; empty ends it.
    Stdout(Bytes),
    /// Part of the error stream; empty ends it.
    Stderr(Bytes),
    /// Part of the FILTER role's data stream; empty ends it.
    Data(Bytes),
    /// Asks for configuration values (names only; values are empty).
    GetValues(PairList),
    /// Answers GET_VALUES.
    GetValuesResult(PairList),
    /// Tells the peer a management record type was not understood.
    UnknownType {
        /// The type that was not understood.
        record_type: u8,
    },
    /// A record type FastCGI 1.0 does not define, kept verbatim.
    Other {
        /// Raw type.
        record_type: u8,
        /// Content.
        content: Bytes,
    },
}

impl RecordBody {
    /// The raw wire type of this body.
    pub fn record_type(&self) -> u8 {
        match self {
            Self::BeginRequest { .. } => RecordType::BeginRequest.as_u8(),
            Self::AbortRequest => RecordType::AbortRequest.as_u8(),
            Self::EndRequest { .. } => RecordType::EndRequest.as_u8(),
            Self::Params(_) => RecordType::Params.as_u8(),
            Self::Stdin(_) => RecordType::Stdin.as_u8(),
            Self::Stdout(_) => RecordType::Stdout.as_u8(),
            Self::Stderr(_) => RecordType::Stderr.as_u8(),
            Self::Data(_) => RecordType::Data.as_u8(),
            Self::GetValues(_) => RecordType::GetValues.as_u8(),
            Self::GetValuesResult(_) => RecordType::GetValuesResult.as_u8(),
            Self::UnknownType { .. } => RecordType::UnknownType.as_u8(),
            Self::Other { record_type, .. } => *record_type,
        }
    }
}

impl Record {
    /// Decodes one record from the front of `buf`.
    ///
    /// Returns `Ok(None)` and leaves `buf` untouched while the record is
    /// incomplete. On success the record (header, content, padding) is
    /// removed from `buf`; stream contents are zero-copy slices of it.
    ///
    /// # Errors
    ///
    /// A [`DecodeError`] if the bytes are not a valid record. The version and
    /// content length are checked as soon as the header is buffered.
    pub fn decode(buf: &mut BytesMut, limits: &Limits) -> Result<Option<Record>, DecodeError> {
        let Some(h) = RecordHeader::peek(buf) else {
            return Ok(None);
        };
        if h.version != VERSION_1 {
            return Err(DecodeError::UnsupportedVersion(h.version));
        }
        let len = usize::from(h.content_len);
        if len > limits.max_content_len {
            return Err(DecodeError::ContentTooLarge {
                len,
                max: limits.max_content_len,
            });
        }
        let ty = RecordType::from_u8(h.record_type);
        if let Some(expected) = ty.and_then(fixed_content_len) {
            if len != expected {
                return Err(DecodeError::InvalidLength {
                    record_type: ty.unwrap_or(RecordType::UnknownType),
                    len,
                    expected,
                });
            }
        }
        if buf.len() < h.record_len() {
            return Ok(None);
        }
        buf.advance(HEADER_LEN);
        let content = buf.split_to(len).freeze();
        buf.advance(usize::from(h.padding_len));

        let c = content.as_ref();
        let body = match ty {
            Some(RecordType::BeginRequest) => RecordBody::BeginRequest {
                role: Role(u16::from_be_bytes([byte(c, 0), byte(c, 1)])),
                flags: byte(c, 2),
            },
            Some(RecordType::AbortRequest) => RecordBody::AbortRequest,
            Some(RecordType::EndRequest) => RecordBody::EndRequest {
                app_status: u32::from_be_bytes([byte(c, 0), byte(c, 1), byte(c, 2), byte(c, 3)]),
                protocol_status: ProtocolStatus(byte(c, 4)),
            },
            Some(RecordType::UnknownType) => RecordBody::UnknownType {
                record_type: byte(c, 0),
            },
            Some(RecordType::Params) => RecordBody::Params(content),
            Some(RecordType::Stdin) => RecordBody::Stdin(content),
            Some(RecordType::Stdout) => RecordBody::Stdout(content),
            Some(RecordType::Stderr) => RecordBody::Stderr(content),
            Some(RecordType::Data) => RecordBody::Data(content),
            Some(RecordType::GetValues) => {
                RecordBody::GetValues(PairList::decode(content, limits)?)
            }
            Some(RecordType::GetValuesResult) => {
                RecordBody::GetValuesResult(PairList::decode(content, limits)?)
            }
            None => RecordBody::Other {
                record_type: h.record_type,
                content,
            },
        };
        Ok(Some(Record {
            request_id: h.request_id,
            body,
        }))
    }

    /// Appends the record to `dst`, padded to a multiple of 8 bytes where
    /// PHP-FPM allows it.
    ///
    /// Stream contents (and [`RecordBody::Other`]) longer than
    /// [`MAX_CONTENT_LEN`] are written as several consecutive records of the
    /// same type in chunks of [`MAX_STREAM_CHUNK`], which is the same stream on
    /// the wire; an empty stream content is written as one empty record, i.e.
    /// the end-of-stream marker.
    pub fn encode(&self, dst: &mut BytesMut) {
        let id = self.request_id;
        let ty = self.body.record_type();
        match &self.body {
            RecordBody::BeginRequest { role, flags } => {
                let [r1, r0] = role.0.to_be_bytes();
                put_record(dst, ty, id, &[r1, r0, *flags, 0, 0, 0, 0, 0]);
            }
            RecordBody::AbortRequest => put_record(dst, ty, id, &[]),
            RecordBody::EndRequest {
                app_status,
                protocol_status,
            } => {
                let [a3, a2, a1, a0] = app_status.to_be_bytes();
                put_record(dst, ty, id, &[a3, a2, a1, a0, protocol_status.0, 0, 0, 0]);
            }
            RecordBody::UnknownType { record_type } => {
                put_record(dst, ty, id, &[*record_type, 0, 0, 0, 0, 0, 0, 0]);
            }
            RecordBody::Params(c)
            | RecordBody::Stdin(c)
            | RecordBody::Stdout(c)
            | RecordBody::Stderr(c)
            | RecordBody::Data(c)
            | RecordBody::Other { content: c, .. } => {
                if c.len() <= MAX_CONTENT_LEN {
                    put_record(dst, ty, id, c);
                } else {
                    put_stream(dst, ty, id, c);
                }
            }
            RecordBody::GetValues(list) | RecordBody::GetValuesResult(list) => {
                let len = list.encoded_len();
                let pad = padding_for(len);
                dst.reserve(HEADER_LEN + len + pad);
                put_header(dst, ty, id, len, pad);
                for (n, v) in list.iter() {
                    put_name_value(dst, n, v);
                }
                dst.put_bytes(0, pad);
            }
        }
    }
}

/// Decodes one record from the front of `buf`; see [`Record::decode`].
///
/// # Errors
///
/// See [`Record::decode`].
pub fn decode(buf: &mut BytesMut, limits: &Limits) -> Result<Option<Record>, DecodeError> {
    Record::decode(buf, limits)
}

fn fixed_content_len(ty: RecordType) -> Option<usize> {
    match ty {
        RecordType::BeginRequest | RecordType::EndRequest | RecordType::UnknownType => Some(8),
        RecordType::AbortRequest => Some(0),
        _ => None,
    }
}

/// Byte `i` of `c`, or 0 (callers have checked the length already).
fn byte(c: &[u8], i: usize) -> u8 {
    c.get(i).copied().unwrap_or(0)
}

// === Name-value pairs ===

fn len_field_size(len: usize) -> Option<usize> {
    if len < 0x80 {
        Some(1)
    } else if len <= MAX_NAME_VALUE_FIELD_LEN {
        Some(4)
    } else {
        None
    }
}

/// Encoded size of a pair, `None` if a length cannot be expressed.
pub fn name_value_encoded_len(name_len: usize, value_len: usize) -> Option<usize> {
    len_field_size(name_len)?
        .checked_add(len_field_size(value_len)?)?
        .checked_add(name_len)?
        .checked_add(value_len)
}

fn put_len(dst: &mut BytesMut, len: usize) {
    match u8::try_from(len) {
        Ok(l) if l < 0x80 => dst.put_u8(l),
        // Callers checked `len <= MAX_NAME_VALUE_FIELD_LEN`; saturate rather than panic.
        _ => dst.put_u32(u32::try_from(len).unwrap_or(u32::MAX) | 0x8000_0000),
    }
}

fn put_name_value(dst: &mut BytesMut, name: &[u8], value: &[u8]) {
    put_len(dst, name.len());
    put_len(dst, value.len());
    dst.put_slice(name);
    dst.put_slice(value);
}

/// Appends one encoded name-value pair (no record header) to `dst`.
///
/// # Errors
///
/// [`EncodeError::ParamTooLarge`] if a length exceeds [`MAX_NAME_VALUE_FIELD_LEN`].
pub fn encode_name_value(dst: &mut BytesMut, name: &[u8], value: &[u8]) -> Result<(), EncodeError> {
    let Some(len) = name_value_encoded_len(name.len(), value.len()) else {
        return Err(param_too_large(name, usize::MAX, MAX_NAME_VALUE_FIELD_LEN));
    };
    dst.reserve(len);
    put_name_value(dst, name, value);
    Ok(())
}

/// Parses the two length fields at the start of `src`.
/// Returns (header size, name length, value length), or `None` if `src`
/// does not hold the whole pair yet.
fn parse_pair_lengths(
    src: &[u8],
    limits: &Limits,
) -> Result<Option<(usize, usize, usize)>, DecodeError> {
    fn field(src: &[u8], at: usize) -> Option<(usize, usize)> {
        let b0 = *src.get(at)?;
        if b0 & 0x80 == 0 {
            return Some((1, usize::from(b0)));
        }
        let b: [u8; 4] = src.get(at..at + 4)?.try_into().ok()?;
        let len = u32::from_be_bytes(b) & 0x7fff_ffff;
        Some((4, usize::try_from(len).unwrap_or(usize::MAX)))
    }
    let Some((n_sz, name_len)) = field(src, 0) else {
        return Ok(None);
    };
    let Some((v_sz, value_len)) = field(src, n_sz) else {
        return Ok(None);
    };
    let len = name_len.saturating_add(value_len);
    if len > limits.max_name_value_len {
        return Err(DecodeError::NameValueTooLarge {
            len,
            max: limits.max_name_value_len,
        });
    }
    let hdr = n_sz + v_sz;
    if src.len() < hdr.saturating_add(len) {
        return Ok(None);
    }
    Ok(Some((hdr, name_len, value_len)))
}

/// Decodes one name-value pair from the front of a PARAMS (or similar) stream.
///
/// Returns `Ok(None)` and leaves `buf` untouched while the pair is
/// incomplete; on success the pair is removed from `buf` and returned as
/// zero-copy slices.
///
/// # Errors
///
/// [`DecodeError::NameValueTooLarge`] if name plus value length exceeds
/// [`Limits::max_name_value_len`] (checked before the pair is buffered).
pub fn decode_name_value(
    buf: &mut BytesMut,
    limits: &Limits,
) -> Result<Option<(Bytes, Bytes)>, DecodeError> {
    let Some((hdr, name_len, value_len)) = parse_pair_lengths(buf, limits)? else {
        return Ok(None);
    };
    buf.advance(hdr);
    let name = buf.split_to(name_len).freeze();
    let value = buf.split_to(value_len).freeze();
    Ok(Some((name, value)))
}

// === Stream encoders ===

/// Padding that aligns `len` to 8 bytes, or 0 where php-src would reject the
/// sum (content + padding above 65535).
fn padding_for(len: usize) -> usize {
    let pad = (8 - len % 8) % 8;
    if len + pad > MAX_CONTENT_LEN {
        0
    } else {
        pad
    }
}

/// Writes a header; `len` must be at most [`MAX_CONTENT_LEN`] (clamped otherwise).
fn put_header(dst: &mut BytesMut, ty: u8, id: u16, len: usize, pad: usize) {
    let len = u16::try_from(len).unwrap_or(u16::MAX);
    let pad = u8::try_from(pad).unwrap_or(0);
    let [i1, i0] = id.to_be_bytes();
    let [l1, l0] = len.to_be_bytes();
    dst.put_slice(&[VERSION_1, ty, i1, i0, l1, l0, pad, 0]);
}

/// One record; `content` must be at most [`MAX_CONTENT_LEN`] bytes.
fn put_record(dst: &mut BytesMut, ty: u8, id: u16, content: &[u8]) {
    let pad = padding_for(content.len());
    dst.reserve(HEADER_LEN + content.len() + pad);
    put_header(dst, ty, id, content.len(), pad);
    dst.put_slice(content);
    dst.put_bytes(0, pad);
}

/// Stream data as records of at most [`MAX_STREAM_CHUNK`] bytes; nothing for empty data.
fn put_stream(dst: &mut BytesMut, ty: u8, id: u16, data: &[u8]) {
    let records = data.len().div_ceil(MAX_STREAM_CHUNK);
    dst.reserve(data.len() + records * (HEADER_LEN + 7));
    for chunk in data.chunks(MAX_STREAM_CHUNK) {
        put_record(dst, ty, id, chunk);
    }
}

/// Appends a BEGIN_REQUEST record.
pub fn encode_begin_request(dst: &mut BytesMut, request_id: u16, role: Role, flags: u8) {
    Record {
        request_id,
        body: RecordBody::BeginRequest { role, flags },
    }
    .encode(dst);
}

/// Appends an ABORT_REQUEST record.
pub fn encode_abort_request(dst: &mut BytesMut, request_id: u16) {
    put_record(dst, RecordType::AbortRequest.as_u8(), request_id, &[]);
}

/// Appends the whole PARAMS stream: the pairs packed into as few records as
/// possible without splitting a pair, then the empty terminating record.
///
/// Every pair is checked before anything is written, so on error `dst` is unchanged.
///
/// # Errors
///
/// [`EncodeError::ParamTooLarge`] if one pair does not fit a record.
pub fn encode_params(
    dst: &mut BytesMut,
    request_id: u16,
    params: &Params,
) -> Result<(), EncodeError> {
    let mut total = 0usize;
    for (n, v) in params.iter() {
        let len = name_value_encoded_len(n.len(), v.len()).unwrap_or(usize::MAX);
        if len > MAX_CONTENT_LEN {
            return Err(param_too_large(n, len, MAX_CONTENT_LEN));
        }
        total += len;
    }
    let ty = RecordType::Params.as_u8();
    dst.reserve(total + (total / MAX_STREAM_CHUNK + 2) * (HEADER_LEN + 7));
    let mut start = dst.len();
    put_header(dst, ty, request_id, 0, 0);
    let mut content = 0usize;
    for (n, v) in params.iter() {
        let len = name_value_encoded_len(n.len(), v.len()).unwrap_or(usize::MAX);
        if content + len > MAX_CONTENT_LEN {
            finish_params_record(dst, start, request_id, content);
            start = dst.len();
            put_header(dst, ty, request_id, 0, 0);
            content = 0;
        }
        put_name_value(dst, n, v);
        content += len;
    }
    if content > 0 {
        finish_params_record(dst, start, request_id, content);
        put_header(dst, ty, request_id, 0, 0);
    }
    // The last header written is the empty terminator (content 0, padding 0).
    Ok(())
}

/// Rewrites the placeholder header at `start` with the real length and adds padding.
fn finish_params_record(dst: &mut BytesMut, start: usize, request_id: u16, content: usize) {
    let pad = padding_for(content);
    let mut h = BytesMut::with_capacity(HEADER_LEN);
    put_header(&mut h, RecordType::Params.as_u8(), request_id, content, pad);
    if let Some(slot) = dst.get_mut(start..start + HEADER_LEN) {
        slot.copy_from_slice(&h);
    }
    dst.put_bytes(0, pad);
}

fn param_too_large(name: &[u8], len: usize, max: usize) -> EncodeError {
    let cut = &name[..name.len().min(64)];
    EncodeError::ParamTooLarge {
        name: String::from_utf8_lossy(cut).into_owned(),
        len,
        max,
    }
}

/// Appends request-body bytes as STDIN records of at most
/// [`MAX_STREAM_CHUNK`] bytes. Empty `data` writes nothing (an empty STDIN
/// record would end the stream: use [`encode_stdin_end`] for that).
pub fn encode_stdin(dst: &mut BytesMut, request_id: u16, data: &[u8]) {
    put_stream(dst, RecordType::Stdin.as_u8(), request_id, data);
}

/// Appends the empty STDIN record that ends the request body.
pub fn encode_stdin_end(dst: &mut BytesMut, request_id: u16) {
    put_record(dst, RecordType::Stdin.as_u8(), request_id, &[]);
}

/// Appends stream bytes of any stream type (e.g. STDOUT for a test server),
/// split like [`encode_stdin`]; empty `data` writes nothing.
pub fn encode_stream(dst: &mut BytesMut, record_type: RecordType, request_id: u16, data: &[u8]) {
    put_stream(dst, record_type.as_u8(), request_id, data);
}

#[cfg(test)]
mod tests;
