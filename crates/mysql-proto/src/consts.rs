//! Wire constants: capability flags, status flags, command bytes, error codes.
//!
//! Names follow MySQL's `include/mysql_com.h` and MariaDB's documentation so a
//! reader can look each one up.

/// Capability flags (`CLIENT_*`), negotiated in the handshake.
pub mod cap {
    /// `CLIENT_LONG_PASSWORD`.
    pub const LONG_PASSWORD: u32 = 1;
    /// `CLIENT_FOUND_ROWS`: affected rows count matched rows.
    pub const FOUND_ROWS: u32 = 1 << 1;
    /// `CLIENT_LONG_FLAG`.
    pub const LONG_FLAG: u32 = 1 << 2;
    /// `CLIENT_CONNECT_WITH_DB`: the handshake response names a schema.
    pub const CONNECT_WITH_DB: u32 = 1 << 3;
    /// `CLIENT_COMPRESS` (never offered by the proxy).
    pub const COMPRESS: u32 = 1 << 5;
    /// `CLIENT_LOCAL_FILES`: `LOAD DATA LOCAL` allowed.
    pub const LOCAL_FILES: u32 = 1 << 7;
    /// `CLIENT_PROTOCOL_41`.
    pub const PROTOCOL_41: u32 = 1 << 9;
    /// `CLIENT_INTERACTIVE`.
    pub const INTERACTIVE: u32 = 1 << 10;
    /// `CLIENT_SSL`: the client asks for TLS (SSLRequest packet).
    pub const SSL: u32 = 1 << 11;
    /// `CLIENT_TRANSACTIONS`.
    pub const TRANSACTIONS: u32 = 1 << 13;
    /// `CLIENT_SECURE_CONNECTION` (4.1 authentication).
    pub const SECURE_CONNECTION: u32 = 1 << 15;
    /// `CLIENT_MULTI_STATEMENTS`.
    pub const MULTI_STATEMENTS: u32 = 1 << 16;
    /// `CLIENT_MULTI_RESULTS`.
    pub const MULTI_RESULTS: u32 = 1 << 17;
    /// `CLIENT_PS_MULTI_RESULTS`.
    pub const PS_MULTI_RESULTS: u32 = 1 << 18;
    /// `CLIENT_PLUGIN_AUTH`.
    pub const PLUGIN_AUTH: u32 = 1 << 19;
    /// `CLIENT_CONNECT_ATTRS`.
    pub const CONNECT_ATTRS: u32 = 1 << 20;
    /// `CLIENT_PLUGIN_AUTH_LENENC_CLIENT_DATA`.
    pub const PLUGIN_AUTH_LENENC_DATA: u32 = 1 << 21;
    /// `CLIENT_SESSION_TRACK`: OK packets carry session-state changes.
    pub const SESSION_TRACK: u32 = 1 << 23;
    /// `CLIENT_DEPRECATE_EOF`: result sets end with an OK packet, not EOF.
    pub const DEPRECATE_EOF: u32 = 1 << 24;
}

/// Server status flags (`SERVER_*`) in OK and EOF packets.
pub mod status {
    /// `SERVER_STATUS_IN_TRANS`: a transaction is open.
    pub const IN_TRANS: u16 = 0x0001;
    /// `SERVER_STATUS_AUTOCOMMIT`.
    pub const AUTOCOMMIT: u16 = 0x0002;
    /// `SERVER_MORE_RESULTS_EXISTS`: another result follows.
    pub const MORE_RESULTS_EXISTS: u16 = 0x0008;
    /// `SERVER_STATUS_CURSOR_EXISTS`.
    pub const CURSOR_EXISTS: u16 = 0x0040;
    /// `SERVER_STATUS_LAST_ROW_SENT`.
    pub const LAST_ROW_SENT: u16 = 0x0080;
    /// `SERVER_STATUS_IN_TRANS_READONLY`.
    pub const IN_TRANS_READONLY: u16 = 0x2000;
    /// `SERVER_SESSION_STATE_CHANGED`: the OK packet carries state-change info.
    pub const SESSION_STATE_CHANGED: u16 = 0x4000;
}

/// Command bytes (`COM_*`), the first byte of a client's command packet.
pub mod com {
    /// `COM_SLEEP` (server-internal; a client sending it gets an error).
    pub const SLEEP: u8 = 0x00;
    /// `COM_QUIT`.
    pub const QUIT: u8 = 0x01;
    /// `COM_INIT_DB`.
    pub const INIT_DB: u8 = 0x02;
    /// `COM_QUERY`.
    pub const QUERY: u8 = 0x03;
    /// `COM_FIELD_LIST`.
    pub const FIELD_LIST: u8 = 0x04;
    /// `COM_STATISTICS`.
    pub const STATISTICS: u8 = 0x09;
    /// `COM_PING`.
    pub const PING: u8 = 0x0e;
    /// `COM_CHANGE_USER`.
    pub const CHANGE_USER: u8 = 0x11;
    /// `COM_STMT_PREPARE`.
    pub const STMT_PREPARE: u8 = 0x16;
    /// `COM_STMT_EXECUTE`.
    pub const STMT_EXECUTE: u8 = 0x17;
    /// `COM_STMT_SEND_LONG_DATA` (no response).
    pub const STMT_SEND_LONG_DATA: u8 = 0x18;
    /// `COM_STMT_CLOSE` (no response).
    pub const STMT_CLOSE: u8 = 0x19;
    /// `COM_STMT_RESET`.
    pub const STMT_RESET: u8 = 0x1a;
    /// `COM_SET_OPTION`.
    pub const SET_OPTION: u8 = 0x1b;
    /// `COM_STMT_FETCH`.
    pub const STMT_FETCH: u8 = 0x1c;
    /// `COM_RESET_CONNECTION`.
    pub const RESET_CONNECTION: u8 = 0x1f;
}

/// Server error codes the proxy sends or reacts to.
pub mod err {
    /// `ER_CON_COUNT_ERROR` 1040 "Too many connections".
    pub const CON_COUNT: u16 = 1040;
    /// `ER_HANDSHAKE_ERROR` 1043 "Bad handshake".
    pub const HANDSHAKE: u16 = 1043;
    /// `ER_ACCESS_DENIED_ERROR` 1045.
    pub const ACCESS_DENIED: u16 = 1045;
    /// `ER_NO_DB_ERROR` 1046 "No database selected".
    pub const NO_DB: u16 = 1046;
    /// `ER_UNKNOWN_COM_ERROR` 1047 "Unknown command".
    pub const UNKNOWN_COM: u16 = 1047;
    /// `ER_NET_PACKET_TOO_LARGE` 1153.
    pub const NET_PACKET_TOO_LARGE: u16 = 1153;
    /// `ER_UNKNOWN_STMT_HANDLER` 1243.
    pub const UNKNOWN_STMT_HANDLER: u16 = 1243;
    /// `ER_OPTION_PREVENTS_STATEMENT` 1290 (e.g. `--read-only`: a demoted writer).
    pub const OPTION_PREVENTS_STATEMENT: u16 = 1290;
    /// `ER_LOCK_DEADLOCK` 1213: what a client gets when its transaction's
    /// backend is lost (Magento does not retry it blindly, unlike 2006/2013).
    pub const LOCK_DEADLOCK: u16 = 1213;
    /// `ER_NOT_SUPPORTED_AUTH_MODE` 1251.
    pub const NOT_SUPPORTED_AUTH_MODE: u16 = 1251;
}

/// `utf8mb4_general_ci`, the collation the proxy announces in its handshake.
pub const UTF8MB4_GENERAL_CI: u8 = 45;

/// Largest payload of one physical packet; a payload of this size or more
/// continues in the next packet.
pub const MAX_PAYLOAD_LEN: usize = 0xff_ffff;
