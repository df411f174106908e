//! Server responses: OK, ERR and EOF packets (with status flags and
//! session-state tracking), and [`ResponseReader`], which follows one
//! command's response packet by packet and says when it is complete.

use bytes::{BufMut, Bytes, BytesMut};

use crate::consts::{cap, status};
use crate::wire::{put_lenenc_bytes, put_lenenc_int, ParseError, Reader};

// === OkPacket ===

/// One entry of the session-state information (`CLIENT_SESSION_TRACK`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StateChange {
    /// `SESSION_TRACK_SYSTEM_VARIABLES`: a session variable and its new value.
    SystemVariable {
        /// Variable name as the server spells it.
        name: Bytes,
        /// New value.
        value: Bytes,
    },
    /// `SESSION_TRACK_SCHEMA`: the current schema changed.
    Schema(Bytes),
    /// `SESSION_TRACK_STATE_CHANGE`: something in the session changed
    /// (`"1"`), e.g. a user variable, a temporary table, a prepare.
    StateChanged(bool),
    /// `SESSION_TRACK_TRANSACTION_STATE`: the 8-character transaction state.
    TransactionState(Bytes),
    /// Another tracker (GTIDs, transaction characteristics), kept raw.
    Other {
        /// Tracker type byte.
        kind: u8,
        /// Its data.
        data: Bytes,
    },
}

/// An OK packet (header `0x00`, or `0xfe` when it ends a result set under
/// `CLIENT_DEPRECATE_EOF`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct OkPacket {
    /// Affected rows.
    pub affected_rows: u64,
    /// `LAST_INSERT_ID` of the statement (what PDO's `lastInsertId()` reads).
    pub last_insert_id: u64,
    /// Status flags.
    pub status: u16,
    /// Warning count.
    pub warnings: u16,
    /// Human-readable info (e.g. "Rows matched: 1  Changed: 1").
    pub info: Bytes,
    /// Session-state changes, when the connection negotiated tracking and
    /// the status has `SESSION_STATE_CHANGED`.
    pub state_changes: Vec<StateChange>,
}

impl OkPacket {
    /// Parses an OK packet (header byte included) under `caps`.
    ///
    /// # Errors
    ///
    /// Truncation or a header other than `0x00`/`0xfe`.
    pub fn decode(payload: &[u8], caps: u32) -> Result<Self, ParseError> {
        let mut r = Reader::new(payload);
        let h = r.u8("ok header")?;
        if h != 0x00 && h != 0xfe {
            return Err(ParseError::Invalid {
                what: "ok header",
                value: u64::from(h),
            });
        }
        let affected_rows = r.lenenc_int("affected rows")?;
        let last_insert_id = r.lenenc_int("last insert id")?;
        let (mut st, mut warnings) = (0, 0);
        if caps & cap::PROTOCOL_41 != 0 {
            st = r.u16("status")?;
            warnings = r.u16("warnings")?;
        }
        let mut info = Bytes::new();
        let mut state_changes = Vec::new();
        if caps & cap::SESSION_TRACK != 0 {
            if !r.is_empty() {
                info = Bytes::copy_from_slice(r.lenenc_bytes("info")?);
            }
            if st & status::SESSION_STATE_CHANGED != 0 && !r.is_empty() {
                let all = r.lenenc_bytes("session state info")?;
                let mut s = Reader::new(all);
                while !s.is_empty() {
                    let kind = s.u8("state change type")?;
                    let data = s.lenenc_bytes("state change data")?;
                    let mut d = Reader::new(data);
                    state_changes.push(match kind {
                        0 => StateChange::SystemVariable {
                            name: Bytes::copy_from_slice(d.lenenc_bytes("variable name")?),
                            value: Bytes::copy_from_slice(d.lenenc_bytes("variable value")?),
                        },
                        1 => StateChange::Schema(Bytes::copy_from_slice(d.lenenc_bytes("schema")?)),
                        // MySQL writes the flag length-encoded; MariaDB
                        // writes the bare "1".
                        2 => StateChange::StateChanged(match d.lenenc_bytes("state change") {
                            Ok(v) => v == b"1",
                            Err(_) => data == b"1",
                        }),
                        5 => StateChange::TransactionState(Bytes::copy_from_slice(
                            d.lenenc_bytes("transaction state")?,
                        )),
                        kind => StateChange::Other {
                            kind,
                            data: Bytes::copy_from_slice(data),
                        },
                    });
                }
            }
        } else if !r.is_empty() {
            // Servers write the message length-encoded; accept a bare string too.
            let rest = r.remaining();
            info = match r.lenenc_bytes("info") {
                Ok(i) => Bytes::copy_from_slice(i),
                Err(_) => Bytes::copy_from_slice(rest),
            };
        }
        Ok(Self {
            affected_rows,
            last_insert_id,
            status: st,
            warnings,
            info,
            state_changes,
        })
    }

    /// Appends the packet for a peer with capabilities `caps`, with `header`
    /// `0x00` (OK) or `0xfe` (end of a result set under
    /// `CLIENT_DEPRECATE_EOF`). Session-state information is written only
    /// when `caps` has `CLIENT_SESSION_TRACK`; otherwise it is dropped and
    /// `SESSION_STATE_CHANGED` cleared, so a client never sees tracking
    /// data it did not ask for.
    pub fn encode(&self, header: u8, caps: u32, dst: &mut BytesMut) {
        dst.put_u8(header);
        put_lenenc_int(dst, self.affected_rows);
        put_lenenc_int(dst, self.last_insert_id);
        let track = caps & cap::SESSION_TRACK != 0 && !self.state_changes.is_empty();
        let mut st = self.status;
        if !track {
            st &= !status::SESSION_STATE_CHANGED;
        }
        if caps & cap::PROTOCOL_41 != 0 {
            dst.put_u16_le(st);
            dst.put_u16_le(self.warnings);
        }
        if track {
            put_lenenc_bytes(dst, &self.info);
            let mut all = BytesMut::new();
            for c in &self.state_changes {
                let mut d = BytesMut::new();
                let kind = match c {
                    StateChange::SystemVariable { name, value } => {
                        put_lenenc_bytes(&mut d, name);
                        put_lenenc_bytes(&mut d, value);
                        0
                    }
                    StateChange::Schema(s) => {
                        put_lenenc_bytes(&mut d, s);
                        1
                    }
                    StateChange::StateChanged(b) => {
                        put_lenenc_bytes(&mut d, if *b { b"1" } else { b"0" });
                        2
                    }
                    StateChange::TransactionState(s) => {
                        put_lenenc_bytes(&mut d, s);
                        5
                    }
                    StateChange::Other { kind, data } => {
                        d.put_slice(data);
                        *kind
                    }
                };
                all.put_u8(kind);
                put_lenenc_bytes(&mut all, &d);
            }
            put_lenenc_bytes(dst, &all);
        } else if !self.info.is_empty() {
            put_lenenc_bytes(dst, &self.info);
        }
    }
}

// === ErrPacket ===

/// An ERR packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErrPacket {
    /// Error code, e.g. 1064.
    pub code: u16,
    /// SQLSTATE (5 bytes), e.g. `42000`.
    pub sql_state: [u8; 5],
    /// Message.
    pub message: Bytes,
}

impl ErrPacket {
    /// An error with a message.
    pub fn new(code: u16, sql_state: &[u8; 5], message: impl Into<Bytes>) -> Self {
        Self {
            code,
            sql_state: *sql_state,
            message: message.into(),
        }
    }

    /// Parses an ERR packet (header byte included).
    ///
    /// # Errors
    ///
    /// Truncation or a header other than `0xff`.
    pub fn decode(payload: &[u8], caps: u32) -> Result<Self, ParseError> {
        let mut r = Reader::new(payload);
        let h = r.u8("err header")?;
        if h != 0xff {
            return Err(ParseError::Invalid {
                what: "err header",
                value: u64::from(h),
            });
        }
        let code = r.u16("error code")?;
        let mut sql_state = *b"HY000";
        if caps & cap::PROTOCOL_41 != 0 && r.remaining().first() == Some(&b'#') {
            r.u8("sql state marker")?;
            sql_state.copy_from_slice(r.take(5, "sql state")?);
        }
        Ok(Self {
            code,
            sql_state,
            message: Bytes::copy_from_slice(r.rest()),
        })
    }

    /// Appends the packet.
    pub fn encode(&self, dst: &mut BytesMut) {
        dst.put_u8(0xff);
        dst.put_u16_le(self.code);
        dst.put_u8(b'#');
        dst.put_slice(&self.sql_state);
        dst.put_slice(&self.message);
    }
}

// === EofPacket ===

/// An EOF packet (`0xfe`, payload shorter than 9 bytes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EofPacket {
    /// Warning count.
    pub warnings: u16,
    /// Status flags.
    pub status: u16,
}

impl EofPacket {
    /// True when `payload` is an EOF packet rather than a row or an OK.
    pub fn is_eof(payload: &[u8]) -> bool {
        payload.first() == Some(&0xfe) && payload.len() < 9
    }

    /// Parses an EOF packet.
    ///
    /// # Errors
    ///
    /// Not an EOF packet.
    pub fn decode(payload: &[u8]) -> Result<Self, ParseError> {
        if !Self::is_eof(payload) {
            return Err(ParseError::Invalid {
                what: "eof header",
                value: payload.first().copied().map_or(0, u64::from),
            });
        }
        let mut r = Reader::new(&payload[1..]);
        if r.is_empty() {
            return Ok(Self {
                warnings: 0,
                status: 0,
            });
        }
        Ok(Self {
            warnings: r.u16("warnings")?,
            status: r.u16("status")?,
        })
    }

    /// Appends the packet.
    pub fn encode(&self, dst: &mut BytesMut) {
        dst.put_u8(0xfe);
        dst.put_u16_le(self.warnings);
        dst.put_u16_le(self.status);
    }
}

// === ResponseReader ===

/// The shape of response a command gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expect {
    /// `COM_QUERY`, `COM_STMT_EXECUTE`: OK, ERR, or result sets, repeated
    /// while `MORE_RESULTS_EXISTS` is set.
    ResultSets,
    /// `COM_STMT_PREPARE`: ERR, or the prepare-OK with parameter and column
    /// definitions.
    Prepare,
    /// `COM_FIELD_LIST`, `COM_STMT_FETCH`: packets up to an EOF (or ERR).
    UntilEof,
    /// `COM_PING`, `COM_INIT_DB`, `COM_RESET_CONNECTION`, `COM_STMT_RESET`,
    /// `COM_SET_OPTION`: one OK, EOF or ERR.
    Single,
    /// `COM_STATISTICS`: one string packet.
    Raw,
}

/// What one response packet was.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Part {
    /// An OK packet (a statement's result, or the end of a result set under
    /// `CLIENT_DEPRECATE_EOF`).
    Ok(OkPacket),
    /// An ERR packet; the response ends with it.
    Err(ErrPacket),
    /// An EOF packet (after column definitions, or ending rows).
    Eof(EofPacket),
    /// The column count that opens a result set.
    ColumnCount(u64),
    /// A column (or parameter) definition.
    ColumnDef,
    /// A row. `first_row` is true for the first row of a result set.
    Row {
        /// True for the first row of its result set.
        first_row: bool,
    },
    /// `COM_STMT_PREPARE`'s first packet.
    PrepareOk {
        /// The server's statement id.
        statement_id: u32,
        /// Columns of the result.
        columns: u16,
        /// Parameters.
        params: u16,
    },
    /// `LOCAL INFILE` request (the proxy never allows it; see the shell).
    LocalInfile,
    /// Another packet (`COM_STATISTICS`' text).
    Other,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Start,
    Columns { left: u64 },
    ColumnsEof,
    Rows { seen: bool },
    PrepareParams { left: u16, then_columns: u16 },
    PrepareParamsEof { then_columns: u16 },
    PrepareColumns { left: u16 },
    PrepareColumnsEof,
    UntilEof,
    Done,
}

/// Follows one command's response.
///
/// Call protocol: create with the command's [`Expect`] and the connection's
/// capabilities, feed each server payload to [`ResponseReader::feed`] in
/// order; after it returns, [`ResponseReader::is_done`] says whether the
/// response is complete (the next packet belongs to the next command), and
/// [`ResponseReader::final_status`] holds the status flags of the last
/// OK/EOF seen (the ones that tell whether a transaction is open).
#[derive(Debug, Clone)]
pub struct ResponseReader {
    expect: Expect,
    caps: u32,
    phase: Phase,
    final_status: Option<u16>,
}

impl ResponseReader {
    /// A reader for a response of shape `expect` on a connection with `caps`.
    pub fn new(expect: Expect, caps: u32) -> Self {
        Self {
            expect,
            caps,
            phase: if expect == Expect::UntilEof {
                Phase::UntilEof
            } else {
                Phase::Start
            },
            final_status: None,
        }
    }

    /// True once the whole response was fed.
    pub fn is_done(&self) -> bool {
        self.phase == Phase::Done
    }

    /// Status flags of the last OK or EOF packet.
    pub fn final_status(&self) -> Option<u16> {
        self.final_status
    }

    fn deprecate_eof(&self) -> bool {
        self.caps & cap::DEPRECATE_EOF != 0
    }

    fn end_of_statement(&mut self, st: u16) {
        self.final_status = Some(st);
        self.phase = if self.expect == Expect::ResultSets && st & status::MORE_RESULTS_EXISTS != 0 {
            Phase::Start
        } else {
            Phase::Done
        };
    }

    /// Classifies the next packet of the response and advances.
    ///
    /// # Errors
    ///
    /// A packet that cannot come at this point (a broken server or a
    /// desynchronised stream: close the connection).
    pub fn feed(&mut self, payload: &[u8]) -> Result<Part, ParseError> {
        let first = payload.first().copied().ok_or(ParseError::Truncated {
            what: "response packet",
        })?;
        if first == 0xff && !matches!(self.phase, Phase::Done) {
            // ERR may end any response (even mid-rows, e.g. a killed query).
            let e = ErrPacket::decode(payload, self.caps)?;
            self.phase = Phase::Done;
            return Ok(Part::Err(e));
        }
        match self.phase {
            Phase::Done => Err(ParseError::Invalid {
                what: "packet after the end of a response",
                value: u64::from(first),
            }),
            Phase::Start => match (self.expect, first) {
                (Expect::Raw, _) => {
                    self.phase = Phase::Done;
                    Ok(Part::Other)
                }
                (Expect::Prepare, 0x00) => {
                    let mut r = Reader::new(&payload[1..]);
                    let statement_id = r.u32("statement id")?;
                    let columns = r.u16("columns")?;
                    let params = r.u16("params")?;
                    self.phase = if params > 0 {
                        Phase::PrepareParams {
                            left: params,
                            then_columns: columns,
                        }
                    } else if columns > 0 {
                        Phase::PrepareColumns { left: columns }
                    } else {
                        Phase::Done
                    };
                    Ok(Part::PrepareOk {
                        statement_id,
                        columns,
                        params,
                    })
                }
                (_, 0x00) => {
                    let ok = OkPacket::decode(payload, self.caps)?;
                    self.end_of_statement(ok.status);
                    Ok(Part::Ok(ok))
                }
                (Expect::Single, 0xfe) => {
                    let eof = EofPacket::decode(payload)?;
                    self.end_of_statement(eof.status);
                    Ok(Part::Eof(eof))
                }
                (Expect::ResultSets, 0xfb) => {
                    self.phase = Phase::Done;
                    Ok(Part::LocalInfile)
                }
                (Expect::ResultSets, _) => {
                    let n = Reader::new(payload).lenenc_int("column count")?;
                    self.phase = Phase::Columns { left: n };
                    Ok(Part::ColumnCount(n))
                }
                (_, b) => Err(ParseError::Invalid {
                    what: "response header",
                    value: u64::from(b),
                }),
            },
            Phase::Columns { left } => {
                self.phase = if left > 1 {
                    Phase::Columns { left: left - 1 }
                } else if self.deprecate_eof() {
                    Phase::Rows { seen: false }
                } else {
                    Phase::ColumnsEof
                };
                Ok(Part::ColumnDef)
            }
            Phase::ColumnsEof => {
                let eof = EofPacket::decode(payload)?;
                self.phase = Phase::Rows { seen: false };
                Ok(Part::Eof(eof))
            }
            Phase::Rows { seen } => {
                if first == 0xfe
                    && self.deprecate_eof()
                    && payload.len() < crate::consts::MAX_PAYLOAD_LEN
                {
                    let ok = OkPacket::decode(payload, self.caps)?;
                    self.end_of_statement(ok.status);
                    return Ok(Part::Ok(ok));
                }
                if EofPacket::is_eof(payload) && !self.deprecate_eof() {
                    let eof = EofPacket::decode(payload)?;
                    self.end_of_statement(eof.status);
                    return Ok(Part::Eof(eof));
                }
                self.phase = Phase::Rows { seen: true };
                Ok(Part::Row { first_row: !seen })
            }
            Phase::PrepareParams { left, then_columns } => {
                self.phase = if left > 1 {
                    Phase::PrepareParams {
                        left: left - 1,
                        then_columns,
                    }
                } else if self.deprecate_eof() {
                    if then_columns > 0 {
                        Phase::PrepareColumns { left: then_columns }
                    } else {
                        Phase::Done
                    }
                } else {
                    Phase::PrepareParamsEof { then_columns }
                };
                Ok(Part::ColumnDef)
            }
            Phase::PrepareParamsEof { then_columns } => {
                let eof = EofPacket::decode(payload)?;
                self.phase = if then_columns > 0 {
                    Phase::PrepareColumns { left: then_columns }
                } else {
                    Phase::Done
                };
                Ok(Part::Eof(eof))
            }
            Phase::PrepareColumns { left } => {
                self.phase = if left > 1 {
                    Phase::PrepareColumns { left: left - 1 }
                } else if self.deprecate_eof() {
                    Phase::Done
                } else {
                    Phase::PrepareColumnsEof
                };
                Ok(Part::ColumnDef)
            }
            Phase::PrepareColumnsEof => {
                let eof = EofPacket::decode(payload)?;
                self.phase = Phase::Done;
                Ok(Part::Eof(eof))
            }
            Phase::UntilEof => {
                if EofPacket::is_eof(payload) {
                    let eof = EofPacket::decode(payload)?;
                    self.final_status = Some(eof.status);
                    self.phase = Phase::Done;
                    return Ok(Part::Eof(eof));
                }
                Ok(Part::Row { first_row: false })
            }
        }
    }
}

/// The first column of a text-protocol row: `Some(value)`, or `None` for
/// SQL NULL. What the session reads from `SELECT GET_LOCK(…)`.
///
/// # Errors
///
/// A truncated row.
pub fn first_text_column(row: &[u8]) -> Result<Option<&[u8]>, ParseError> {
    if row.first() == Some(&0xfb) {
        return Ok(None);
    }
    Reader::new(row).lenenc_bytes("column value").map(Some)
}

/// The name (alias) of a column from its Column Definition 41 packet: the
/// proxy reads replication status by column name, since the columns of
/// `SHOW REPLICA STATUS` differ between MariaDB and MySQL versions.
///
/// # Errors
///
/// A truncated definition.
pub fn column_name(def: &[u8]) -> Result<&[u8], ParseError> {
    let mut r = Reader::new(def);
    for what in ["catalog", "schema", "table", "org_table"] {
        r.lenenc_bytes(what)?;
    }
    r.lenenc_bytes("name")
}

/// Every value of a text-protocol row (`None`: SQL NULL).
///
/// # Errors
///
/// A truncated row.
pub fn text_row(row: &[u8]) -> Result<Vec<Option<&[u8]>>, ParseError> {
    let mut r = Reader::new(row);
    let mut out = Vec::new();
    while !r.is_empty() {
        if r.remaining().first() == Some(&0xfb) {
            r.take(1, "null")?;
            out.push(None);
        } else {
            out.push(Some(r.lenenc_bytes("column value")?));
        }
    }
    Ok(out)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const CAPS: u32 = cap::PROTOCOL_41 | cap::SESSION_TRACK;

    fn ok(status: u16) -> Vec<u8> {
        let mut b = BytesMut::new();
        OkPacket {
            status,
            ..Default::default()
        }
        .encode(0, CAPS, &mut b);
        b.to_vec()
    }

    fn eof(status: u16) -> Vec<u8> {
        let mut b = BytesMut::new();
        EofPacket {
            warnings: 0,
            status,
        }
        .encode(&mut b);
        b.to_vec()
    }

    #[test]
    fn a_result_set_then_more_results_then_ok() {
        let mut r = ResponseReader::new(Expect::ResultSets, CAPS);
        assert_eq!(r.feed(&[2]).unwrap(), Part::ColumnCount(2));
        assert_eq!(r.feed(b"\x03def").unwrap(), Part::ColumnDef);
        assert_eq!(r.feed(b"\x03def").unwrap(), Part::ColumnDef);
        assert!(matches!(r.feed(&eof(0)).unwrap(), Part::Eof(_)));
        assert_eq!(
            r.feed(b"\x011\x012").unwrap(),
            Part::Row { first_row: true }
        );
        assert_eq!(
            r.feed(b"\x011\x012").unwrap(),
            Part::Row { first_row: false }
        );
        let more = status::MORE_RESULTS_EXISTS | status::IN_TRANS;
        assert!(matches!(r.feed(&eof(more)).unwrap(), Part::Eof(_)));
        assert!(!r.is_done());
        assert!(matches!(
            r.feed(&ok(status::IN_TRANS)).unwrap(),
            Part::Ok(_)
        ));
        assert!(r.is_done());
        assert_eq!(r.final_status(), Some(status::IN_TRANS));
    }

    #[test]
    fn deprecate_eof_ends_rows_with_an_ok_and_a_16_mib_row_is_a_row() {
        let caps = CAPS | cap::DEPRECATE_EOF;
        let mut r = ResponseReader::new(Expect::ResultSets, caps);
        r.feed(&[1]).unwrap();
        r.feed(b"col").unwrap();
        let mut big = vec![0xfe];
        big.resize(crate::consts::MAX_PAYLOAD_LEN + 10, b'x');
        assert_eq!(r.feed(&big).unwrap(), Part::Row { first_row: true });
        let mut end = BytesMut::new();
        OkPacket::default().encode(0xfe, caps, &mut end);
        assert!(matches!(r.feed(&end).unwrap(), Part::Ok(_)));
        assert!(r.is_done());
    }

    #[test]
    fn prepare_response_counts_params_and_columns() {
        let mut r = ResponseReader::new(Expect::Prepare, CAPS);
        let mut p = vec![0u8];
        p.extend_from_slice(&7u32.to_le_bytes());
        p.extend_from_slice(&1u16.to_le_bytes());
        p.extend_from_slice(&2u16.to_le_bytes());
        p.extend_from_slice(&[0, 0, 0]);
        assert_eq!(
            r.feed(&p).unwrap(),
            Part::PrepareOk {
                statement_id: 7,
                columns: 1,
                params: 2
            }
        );
        r.feed(b"p1").unwrap();
        r.feed(b"p2").unwrap();
        r.feed(&eof(2)).unwrap();
        r.feed(b"c1").unwrap();
        assert!(!r.is_done());
        r.feed(&eof(2)).unwrap();
        assert!(r.is_done());
    }

    #[test]
    fn session_state_changes_are_parsed_and_dropped_for_clients_without_tracking() {
        // Captured shape: MariaDB after `SET NAMES utf8` with trackers on.
        let pkt = OkPacket {
            status: status::AUTOCOMMIT | status::SESSION_STATE_CHANGED,
            state_changes: vec![
                StateChange::SystemVariable {
                    name: Bytes::from_static(b"character_set_client"),
                    value: Bytes::from_static(b"utf8mb3"),
                },
                StateChange::Schema(Bytes::from_static(b"magento")),
                StateChange::StateChanged(true),
            ],
            ..Default::default()
        };
        let mut b = BytesMut::new();
        pkt.encode(0, CAPS, &mut b);
        assert_eq!(OkPacket::decode(&b, CAPS).unwrap(), pkt);
        let mut plain = BytesMut::new();
        pkt.encode(0, cap::PROTOCOL_41, &mut plain);
        let seen = OkPacket::decode(&plain, cap::PROTOCOL_41).unwrap();
        assert!(seen.state_changes.is_empty());
        assert_eq!(seen.status, status::AUTOCOMMIT);
    }

    #[test]
    fn first_text_column_reads_values_and_null() {
        assert_eq!(first_text_column(b"\x011").unwrap(), Some(&b"1"[..]));
        assert_eq!(first_text_column(&[0xfb]).unwrap(), None);
    }

    proptest! {
        #[test]
        fn ok_round_trips(
            affected_rows in any::<u64>(), last_insert_id in any::<u64>(),
            st in any::<u16>(), warnings in any::<u16>(),
            info in proptest::collection::vec(any::<u8>(), 0..40),
            schema in proptest::option::of(proptest::collection::vec(any::<u8>(), 0..20)),
        ) {
            let mut state_changes = Vec::new();
            let mut st = st & !status::SESSION_STATE_CHANGED;
            if let Some(s) = schema {
                state_changes.push(StateChange::Schema(Bytes::from(s)));
                st |= status::SESSION_STATE_CHANGED;
            }
            let p = OkPacket { affected_rows, last_insert_id, status: st, warnings, info: Bytes::from(info), state_changes };
            let mut b = BytesMut::new();
            p.encode(0, CAPS, &mut b);
            prop_assert_eq!(OkPacket::decode(&b, CAPS), Ok(p));
        }

        #[test]
        fn err_round_trips(code in any::<u16>(), msg in proptest::collection::vec(any::<u8>(), 0..60)) {
            let e = ErrPacket::new(code, b"42S02", msg);
            let mut b = BytesMut::new();
            e.encode(&mut b);
            prop_assert_eq!(ErrPacket::decode(&b, CAPS), Ok(e));
        }

        #[test]
        fn reader_never_panics(
            packets in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..24), 0..12),
            expect in 0..5u8, deprecate in any::<bool>(),
        ) {
            let expect = [Expect::ResultSets, Expect::Prepare, Expect::UntilEof, Expect::Single, Expect::Raw][usize::from(expect)];
            let caps = if deprecate { CAPS | cap::DEPRECATE_EOF } else { CAPS };
            let mut r = ResponseReader::new(expect, caps);
            for p in &packets {
                if r.feed(p).is_err() { break; }
            }
        }
    }
}
