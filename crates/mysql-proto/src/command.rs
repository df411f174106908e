//! Client command packets (the command phase).

use bytes::Bytes;

use crate::consts::com;
use crate::response::Expect;
use crate::wire::{ParseError, Reader};

/// A client command, parsed as far as the proxy needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Command {
    /// `COM_QUIT`.
    Quit,
    /// `COM_INIT_DB` with the schema.
    InitDb(Bytes),
    /// `COM_QUERY` with the SQL text.
    Query(Bytes),
    /// `COM_FIELD_LIST` (deprecated; forwarded).
    FieldList,
    /// `COM_STATISTICS`.
    Statistics,
    /// `COM_PING`.
    Ping,
    /// `COM_CHANGE_USER`.
    ChangeUser,
    /// `COM_STMT_PREPARE` with the SQL text.
    StmtPrepare(Bytes),
    /// `COM_STMT_EXECUTE` of a statement id.
    StmtExecute(u32),
    /// `COM_STMT_SEND_LONG_DATA` (no response).
    StmtSendLongData(u32),
    /// `COM_STMT_CLOSE` (no response).
    StmtClose(u32),
    /// `COM_STMT_RESET`.
    StmtReset(u32),
    /// `COM_STMT_FETCH`.
    StmtFetch(u32),
    /// `COM_SET_OPTION`: 0 = multi-statements on, 1 = off.
    SetOption(u16),
    /// `COM_RESET_CONNECTION`.
    ResetConnection,
    /// Anything else: answered with `ER_UNKNOWN_COM_ERROR`.
    Unknown(u8),
}

impl Command {
    /// Parses a command packet's payload.
    ///
    /// # Errors
    ///
    /// An empty payload, or a statement command without its id.
    pub fn decode(payload: &Bytes) -> Result<Self, ParseError> {
        let mut r = Reader::new(payload);
        let c = r.u8("command")?;
        let rest = || payload.slice(1..);
        Ok(match c {
            com::QUIT => Self::Quit,
            com::INIT_DB => Self::InitDb(rest()),
            com::QUERY => Self::Query(rest()),
            com::FIELD_LIST => Self::FieldList,
            com::STATISTICS => Self::Statistics,
            com::PING => Self::Ping,
            com::CHANGE_USER => Self::ChangeUser,
            com::STMT_PREPARE => Self::StmtPrepare(rest()),
            com::STMT_EXECUTE => Self::StmtExecute(r.u32("statement id")?),
            com::STMT_SEND_LONG_DATA => Self::StmtSendLongData(r.u32("statement id")?),
            com::STMT_CLOSE => Self::StmtClose(r.u32("statement id")?),
            com::STMT_RESET => Self::StmtReset(r.u32("statement id")?),
            com::STMT_FETCH => Self::StmtFetch(r.u32("statement id")?),
            com::SET_OPTION => Self::SetOption(r.u16("option")?),
            com::RESET_CONNECTION => Self::ResetConnection,
            other => Self::Unknown(other),
        })
    }

    /// The response shape, or `None` for commands the server does not answer.
    pub fn expect(&self) -> Option<Expect> {
        Some(match self {
            Self::Quit | Self::StmtClose(_) | Self::StmtSendLongData(_) => return None,
            Self::Query(_) | Self::StmtExecute(_) => Expect::ResultSets,
            Self::StmtPrepare(_) => Expect::Prepare,
            Self::FieldList | Self::StmtFetch(_) => Expect::UntilEof,
            Self::Statistics => Expect::Raw,
            Self::InitDb(_)
            | Self::Ping
            | Self::ChangeUser
            | Self::StmtReset(_)
            | Self::SetOption(_)
            | Self::ResetConnection
            | Self::Unknown(_) => Expect::Single,
        })
    }

    /// A label for metrics and logs.
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Quit => "quit",
            Self::InitDb(_) => "init_db",
            Self::Query(_) => "query",
            Self::FieldList => "field_list",
            Self::Statistics => "statistics",
            Self::Ping => "ping",
            Self::ChangeUser => "change_user",
            Self::StmtPrepare(_) => "stmt_prepare",
            Self::StmtExecute(_) => "stmt_execute",
            Self::StmtSendLongData(_) => "stmt_send_long_data",
            Self::StmtClose(_) => "stmt_close",
            Self::StmtReset(_) => "stmt_reset",
            Self::StmtFetch(_) => "stmt_fetch",
            Self::SetOption(_) => "set_option",
            Self::ResetConnection => "reset_connection",
            Self::Unknown(_) => "unknown",
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn commands_parse() {
        let q = Bytes::from_static(b"\x03SELECT 1");
        assert_eq!(
            Command::decode(&q).unwrap(),
            Command::Query(Bytes::from_static(b"SELECT 1"))
        );
        let e = Bytes::from_static(b"\x17\x05\x00\x00\x00\x00\x01\x00\x00\x00");
        assert_eq!(Command::decode(&e).unwrap(), Command::StmtExecute(5));
        assert_eq!(
            Command::decode(&Bytes::from_static(b"\x63")).unwrap(),
            Command::Unknown(0x63)
        );
        assert!(Command::decode(&Bytes::new()).is_err());
        assert!(Command::decode(&Bytes::from_static(b"\x19\x01")).is_err());
    }
}
