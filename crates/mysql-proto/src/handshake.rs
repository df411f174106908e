//! Connection phase: the server's Initial Handshake (protocol v10), the
//! client's Handshake Response 41 (or SSL Request), auth switch and
//! "more data" packets, and [`BackendAuth`], the client side of
//! authentication as a state machine (the proxy logging in to a backend).

use bytes::{BufMut, Bytes, BytesMut};

use crate::auth::{self, CACHING_SHA2_PASSWORD, NATIVE_PASSWORD};
use crate::consts::cap;
use crate::response::{ErrPacket, OkPacket};
use crate::wire::{put_lenenc_bytes, put_lenenc_int, put_nul_bytes, ParseError, Reader};

// === InitialHandshake ===

/// The server's first packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InitialHandshake {
    /// e.g. `5.5.5-10.11.19-MariaDB` (MariaDB's prefix keeps old clients happy).
    pub server_version: Vec<u8>,
    /// The server's thread id for this connection.
    pub connection_id: u32,
    /// The scramble (nonce), 20 bytes from real servers.
    pub scramble: Vec<u8>,
    /// Server capabilities (lower and upper 16 bits).
    pub capabilities: u32,
    /// Default collation id.
    pub charset: u8,
    /// Status flags.
    pub status: u16,
    /// Default authentication plugin.
    pub auth_plugin: Vec<u8>,
}

impl InitialHandshake {
    /// Parses the server's first packet.
    ///
    /// # Errors
    ///
    /// A protocol other than v10 (an ERR packet here is the server refusing
    /// the connection: check `payload[0] == 0xff` first), or truncation.
    pub fn decode(payload: &[u8]) -> Result<Self, ParseError> {
        let mut r = Reader::new(payload);
        let proto = r.u8("protocol version")?;
        if proto != 10 {
            return Err(ParseError::Invalid {
                what: "protocol version",
                value: u64::from(proto),
            });
        }
        let server_version = r.nul_bytes("server version")?.to_vec();
        let connection_id = r.u32("connection id")?;
        let mut scramble = r.take(8, "scramble")?.to_vec();
        r.u8("filler")?;
        let mut capabilities = u32::from(r.u16("capabilities")?);
        let (mut charset, mut status, mut auth_plugin) = (0, 0, Vec::new());
        if !r.is_empty() {
            charset = r.u8("charset")?;
            status = r.u16("status")?;
            capabilities |= u32::from(r.u16("capabilities")?) << 16;
            let data_len = r.u8("auth data length")?;
            r.take(10, "reserved")?;
            if capabilities & cap::SECURE_CONNECTION != 0 {
                let n = usize::from(data_len).saturating_sub(8).max(13);
                let part2 = r.take(n.min(r.remaining().len()), "scramble part 2")?;
                // The part ends with a NUL that is not part of the nonce.
                let part2 = part2.strip_suffix(&[0]).unwrap_or(part2);
                scramble.extend_from_slice(part2);
            }
            if capabilities & cap::PLUGIN_AUTH != 0 {
                let rest = r.rest();
                auth_plugin = rest.strip_suffix(&[0]).unwrap_or(rest).to_vec();
            }
        }
        Ok(Self {
            server_version,
            connection_id,
            scramble,
            capabilities,
            charset,
            status,
            auth_plugin,
        })
    }

    /// Appends the payload.
    pub fn encode(&self, dst: &mut BytesMut) {
        dst.put_u8(10);
        put_nul_bytes(dst, &self.server_version);
        dst.put_u32_le(self.connection_id);
        let (p1, p2) = self.scramble.split_at(self.scramble.len().min(8));
        dst.put_slice(p1);
        dst.put_bytes(0, 8 - p1.len());
        dst.put_u8(0);
        dst.put_u16_le(self.capabilities as u16);
        dst.put_u8(self.charset);
        dst.put_u16_le(self.status);
        dst.put_u16_le((self.capabilities >> 16) as u16);
        dst.put_u8((self.scramble.len() + 1) as u8);
        dst.put_bytes(0, 10);
        dst.put_slice(p2);
        dst.put_bytes(0, 13usize.saturating_sub(p2.len() + 1));
        dst.put_u8(0);
        put_nul_bytes(dst, &self.auth_plugin);
    }
}

// === HandshakeResponse ===

/// What a client sends after the server's handshake.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientHello {
    /// A 32-byte SSL Request: the client starts TLS, then sends the response.
    SslRequest {
        /// The client's capabilities.
        capabilities: u32,
    },
    /// The Handshake Response 41.
    Response(HandshakeResponse),
}

/// Handshake Response 41 (the 3.20 format is not supported: clients since
/// MySQL 4.1 send this one).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HandshakeResponse {
    /// Client capabilities.
    pub capabilities: u32,
    /// Largest packet the client accepts.
    pub max_packet: u32,
    /// Collation id for the connection.
    pub charset: u8,
    /// User name.
    pub username: Vec<u8>,
    /// The answer to the scramble.
    pub auth_response: Vec<u8>,
    /// Initial schema (`CLIENT_CONNECT_WITH_DB`).
    pub database: Option<Vec<u8>>,
    /// Plugin the answer was made with (`CLIENT_PLUGIN_AUTH`).
    pub auth_plugin: Option<Vec<u8>>,
    /// Connection attributes (`CLIENT_CONNECT_ATTRS`), kept raw.
    pub connect_attrs: Option<Vec<u8>>,
}

impl ClientHello {
    /// Parses the client's first packet.
    ///
    /// # Errors
    ///
    /// A pre-4.1 client (no `CLIENT_PROTOCOL_41`), or truncation.
    pub fn decode(payload: &[u8]) -> Result<Self, ParseError> {
        let mut r = Reader::new(payload);
        let capabilities = r.u32("capabilities")?;
        if capabilities & cap::PROTOCOL_41 == 0 {
            return Err(ParseError::Invalid {
                what: "capabilities (pre-4.1 client)",
                value: u64::from(capabilities),
            });
        }
        let max_packet = r.u32("max packet")?;
        let charset = r.u8("charset")?;
        r.take(23, "filler")?;
        if r.is_empty() && capabilities & cap::SSL != 0 {
            return Ok(Self::SslRequest { capabilities });
        }
        let username = r.nul_bytes("user name")?.to_vec();
        let auth_response = if capabilities & cap::PLUGIN_AUTH_LENENC_DATA != 0 {
            r.lenenc_bytes("auth response")?.to_vec()
        } else if capabilities & cap::SECURE_CONNECTION != 0 {
            let n = r.u8("auth response length")?;
            r.take(usize::from(n), "auth response")?.to_vec()
        } else {
            r.nul_bytes("auth response")?.to_vec()
        };
        let mut database = None;
        if capabilities & cap::CONNECT_WITH_DB != 0 && !r.is_empty() {
            database = Some(r.nul_bytes("database")?.to_vec());
        }
        let mut auth_plugin = None;
        if capabilities & cap::PLUGIN_AUTH != 0 && !r.is_empty() {
            // Some clients omit the final NUL.
            auth_plugin = Some(match r.nul_bytes("auth plugin") {
                Ok(p) => p.to_vec(),
                Err(_) => r.rest().to_vec(),
            });
        }
        let connect_attrs = if capabilities & cap::CONNECT_ATTRS != 0 && !r.is_empty() {
            Some(r.lenenc_bytes("connect attrs")?.to_vec())
        } else {
            None
        };
        Ok(Self::Response(HandshakeResponse {
            capabilities,
            max_packet,
            charset,
            username,
            auth_response,
            database,
            auth_plugin,
            connect_attrs,
        }))
    }
}

impl HandshakeResponse {
    /// Appends the payload; the optional fields are written when their
    /// capability is set.
    pub fn encode(&self, dst: &mut BytesMut) {
        dst.put_u32_le(self.capabilities);
        dst.put_u32_le(self.max_packet);
        dst.put_u8(self.charset);
        dst.put_bytes(0, 23);
        put_nul_bytes(dst, &self.username);
        if self.capabilities & cap::PLUGIN_AUTH_LENENC_DATA != 0 {
            put_lenenc_bytes(dst, &self.auth_response);
        } else {
            dst.put_u8(self.auth_response.len().min(255) as u8);
            dst.put_slice(&self.auth_response[..self.auth_response.len().min(255)]);
        }
        if self.capabilities & cap::CONNECT_WITH_DB != 0 {
            put_nul_bytes(dst, self.database.as_deref().unwrap_or_default());
        }
        if self.capabilities & cap::PLUGIN_AUTH != 0 {
            put_nul_bytes(dst, self.auth_plugin.as_deref().unwrap_or_default());
        }
        if self.capabilities & cap::CONNECT_ATTRS != 0 {
            let attrs = self.connect_attrs.as_deref().unwrap_or_default();
            put_lenenc_int(dst, attrs.len() as u64);
            dst.put_slice(attrs);
        }
    }
}

// === ChangeUser ===

/// `COM_CHANGE_USER`'s payload: a new login on an open connection (PHP's
/// mysqli persistent connections and connection pools reset with it). The
/// fields after the schema are optional: old clients stop there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChangeUser {
    /// User name.
    pub username: Vec<u8>,
    /// The answer to the connection's scramble (the one from the greeting).
    pub auth_response: Vec<u8>,
    /// Schema; empty for none.
    pub database: Vec<u8>,
    /// Collation id (2 bytes here, unlike the handshake).
    pub charset: Option<u16>,
    /// Plugin the answer was made with.
    pub auth_plugin: Option<Vec<u8>>,
    /// Connection attributes, kept raw.
    pub connect_attrs: Option<Vec<u8>>,
}

impl ChangeUser {
    /// Parses the payload (command byte included) as a client with
    /// `capabilities` sends it.
    ///
    /// # Errors
    ///
    /// Not `COM_CHANGE_USER`, or truncation.
    pub fn decode(payload: &[u8], capabilities: u32) -> Result<Self, ParseError> {
        let mut r = Reader::new(payload);
        let c = r.u8("command")?;
        if c != crate::consts::com::CHANGE_USER {
            return Err(ParseError::Invalid {
                what: "change user command",
                value: u64::from(c),
            });
        }
        let username = r.nul_bytes("user name")?.to_vec();
        let auth_response = if capabilities & cap::SECURE_CONNECTION != 0 {
            let n = r.u8("auth response length")?;
            r.take(usize::from(n), "auth response")?.to_vec()
        } else {
            r.nul_bytes("auth response")?.to_vec()
        };
        let database = if r.is_empty() {
            Vec::new()
        } else {
            r.nul_bytes("database")?.to_vec()
        };
        let charset = if r.is_empty() {
            None
        } else {
            Some(r.u16("charset")?)
        };
        let mut auth_plugin = None;
        if capabilities & cap::PLUGIN_AUTH != 0 && !r.is_empty() {
            auth_plugin = Some(match r.nul_bytes("auth plugin") {
                Ok(p) => p.to_vec(),
                Err(_) => r.rest().to_vec(),
            });
        }
        let connect_attrs = if capabilities & cap::CONNECT_ATTRS != 0 && !r.is_empty() {
            Some(r.lenenc_bytes("connect attrs")?.to_vec())
        } else {
            None
        };
        Ok(Self {
            username,
            auth_response,
            database,
            charset,
            auth_plugin,
            connect_attrs,
        })
    }

    /// Appends the payload as a client with `capabilities` sends it (the
    /// optional fields when present).
    pub fn encode(&self, capabilities: u32, dst: &mut BytesMut) {
        dst.put_u8(crate::consts::com::CHANGE_USER);
        put_nul_bytes(dst, &self.username);
        if capabilities & cap::SECURE_CONNECTION != 0 {
            let n = self.auth_response.len().min(255);
            dst.put_u8(n as u8);
            dst.put_slice(&self.auth_response[..n]);
        } else {
            put_nul_bytes(dst, &self.auth_response);
        }
        put_nul_bytes(dst, &self.database);
        if let Some(cs) = self.charset {
            dst.put_u16_le(cs);
            if capabilities & cap::PLUGIN_AUTH != 0 {
                put_nul_bytes(dst, self.auth_plugin.as_deref().unwrap_or_default());
            }
            if capabilities & cap::CONNECT_ATTRS != 0 {
                put_lenenc_bytes(dst, self.connect_attrs.as_deref().unwrap_or_default());
            }
        }
    }
}

/// Appends an SSL Request: the first 32 bytes of a Handshake Response with
/// `CLIENT_SSL` set. The client starts TLS right after it and sends the full
/// response (next sequence id) inside TLS, so nothing of the login crosses
/// the wire in clear.
pub fn encode_ssl_request(capabilities: u32, max_packet: u32, charset: u8, dst: &mut BytesMut) {
    dst.put_u32_le(capabilities | cap::SSL);
    dst.put_u32_le(max_packet);
    dst.put_u8(charset);
    dst.put_bytes(0, 23);
}

/// Appends an Auth Switch Request (`0xfe`, plugin, scramble + NUL).
pub fn encode_auth_switch(plugin: &str, scramble: &[u8], dst: &mut BytesMut) {
    dst.put_u8(0xfe);
    put_nul_bytes(dst, plugin.as_bytes());
    put_nul_bytes(dst, scramble);
}

/// `caching_sha2_password`'s "fast authentication succeeded" (`0x01 0x03`),
/// sent before the OK.
pub const FAST_AUTH_SUCCESS: &[u8] = &[0x01, 0x03];
/// `caching_sha2_password`'s "perform full authentication" (`0x01 0x04`).
pub const PERFORM_FULL_AUTH: &[u8] = &[0x01, 0x04];
/// A client's request for the server's RSA public key (`0x02`), during
/// `caching_sha2_password` full authentication over plain TCP. The server
/// answers with `0x01` followed by the key in PEM (SubjectPublicKeyInfo).
pub const REQUEST_PUBLIC_KEY: u8 = 0x02;

// === BackendAuth ===

/// Why logging in to a backend failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BackendAuthError {
    /// The server refused (its ERR packet).
    #[error("server refused: {} {}", .0.code, String::from_utf8_lossy(&.0.message))]
    Refused(ErrPacket),
    /// A plugin this core cannot answer.
    #[error("unsupported authentication plugin {0:?}")]
    UnsupportedPlugin(String),
    /// TLS is required and the server does not offer it (`CLIENT_SSL`).
    #[error("the server does not offer TLS")]
    NoTls,
    /// A packet that does not belong in the authentication exchange.
    #[error("unexpected packet during authentication")]
    Protocol(#[from] ParseError),
}

/// What [`BackendAuth`] wants after a server packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthStep {
    /// Send this payload (next sequence id) and feed the server's answer.
    Send(Bytes),
    /// `caching_sha2_password` full authentication over plain TCP: encrypt
    /// `plaintext` (the password and its NUL, XOR the scramble) with RSA-OAEP
    /// (SHA-1, as MySQL 8.0.5 and later) under the server's public key
    /// `public_key_pem`, send the ciphertext (next sequence id) and feed the
    /// server's answer.
    SendEncrypted {
        /// The server's RSA public key, PEM.
        public_key_pem: Vec<u8>,
        /// What to encrypt.
        plaintext: Vec<u8>,
    },
    /// Feed the next server packet; nothing to send.
    Wait,
    /// Logged in; the OK packet's status flags.
    Done(OkPacket),
}

/// The client side of authentication, sans-IO.
///
/// Call protocol: [`BackendAuth::start`] with the server's handshake gives
/// the Handshake Response to send (sequence id 1); then feed every server
/// packet to [`BackendAuth::on_packet`] until it returns [`AuthStep::Done`]
/// or an error. Sequence ids continue from the server's packet + 1.
#[derive(Debug)]
pub struct BackendAuth {
    password: Vec<u8>,
    scramble: Vec<u8>,
    plugin: String,
    tls: bool,
    capabilities: u32,
    /// Full authentication over plain TCP asked for the server's key.
    awaiting_key: bool,
}

impl BackendAuth {
    /// Builds the Handshake Response for `hs` with the proxy's chosen
    /// capabilities (intersected with the server's). With `tls` the
    /// response carries `CLIENT_SSL` (it goes inside the TLS session that
    /// [`encode_ssl_request`] opened, and the server checks the flag), and
    /// `caching_sha2_password` may send the password in full.
    ///
    /// # Errors
    ///
    /// `tls` asked of a server that does not offer `CLIENT_SSL`.
    pub fn start(
        hs: &InitialHandshake,
        wanted_caps: u32,
        user: &[u8],
        password: &[u8],
        database: Option<&[u8]>,
        tls: bool,
    ) -> Result<(Self, HandshakeResponse), BackendAuthError> {
        let plugin = String::from_utf8_lossy(&hs.auth_plugin).into_owned();
        let plugin = if plugin.is_empty() {
            NATIVE_PASSWORD.to_owned()
        } else {
            plugin
        };
        let mut capabilities = wanted_caps & hs.capabilities;
        if tls {
            if hs.capabilities & cap::SSL == 0 {
                return Err(BackendAuthError::NoTls);
            }
            capabilities |= cap::SSL;
        } else {
            capabilities &= !cap::SSL;
        }
        if database.is_some() {
            capabilities |= cap::CONNECT_WITH_DB & hs.capabilities;
        } else {
            capabilities &= !cap::CONNECT_WITH_DB;
        }
        // An unknown default plugin: answer as native and let the server switch.
        let (plugin, auth_response) = match auth::expected_response(&plugin, password, &hs.scramble)
        {
            Some(r) => (plugin, r),
            None => (
                NATIVE_PASSWORD.to_owned(),
                auth::native_password(password, &hs.scramble),
            ),
        };
        let resp = HandshakeResponse {
            capabilities,
            max_packet: 0x0100_0000,
            // One login collation on every server, whatever its default:
            // a backend session fresh from login or reset is then known to
            // have `session::LOGIN_NAMES`, and a client's login collation
            // is replayed against it like `SET NAMES`.
            charset: crate::consts::UTF8MB4_GENERAL_CI,
            username: user.to_vec(),
            auth_response,
            database: database.map(<[u8]>::to_vec),
            auth_plugin: Some(plugin.clone().into_bytes()),
            connect_attrs: None,
        };
        Ok((
            Self {
                password: password.to_vec(),
                scramble: hs.scramble.clone(),
                plugin,
                tls,
                capabilities,
                awaiting_key: false,
            },
            resp,
        ))
    }

    /// The capabilities in force on the connection.
    pub fn capabilities(&self) -> u32 {
        self.capabilities
    }

    /// Feeds one server packet.
    ///
    /// # Errors
    ///
    /// The server refused, asked for an unsupported plugin, or sent
    /// something else.
    pub fn on_packet(&mut self, payload: &[u8]) -> Result<AuthStep, BackendAuthError> {
        match payload.first() {
            Some(0x00) => Ok(AuthStep::Done(OkPacket::decode(
                payload,
                self.capabilities,
            )?)),
            Some(0xff) => Err(BackendAuthError::Refused(ErrPacket::decode(
                payload,
                self.capabilities,
            )?)),
            Some(0xfe) => {
                let mut r = Reader::new(&payload[1..]);
                let plugin = String::from_utf8_lossy(r.nul_bytes("plugin")?).into_owned();
                let data = r.rest();
                self.scramble = data.strip_suffix(&[0]).unwrap_or(data).to_vec();
                let resp = auth::expected_response(&plugin, &self.password, &self.scramble)
                    .ok_or_else(|| BackendAuthError::UnsupportedPlugin(plugin.clone()))?;
                self.plugin = plugin;
                Ok(AuthStep::Send(Bytes::from(resp)))
            }
            Some(0x01) if self.plugin == CACHING_SHA2_PASSWORD && self.awaiting_key => {
                // The server's public key (PEM) after our 0x02 request.
                self.awaiting_key = false;
                let mut pw = self.password.clone();
                pw.push(0);
                Ok(AuthStep::SendEncrypted {
                    public_key_pem: payload[1..].to_vec(),
                    plaintext: auth::xor_scramble(&pw, &self.scramble),
                })
            }
            Some(0x01) if self.plugin == CACHING_SHA2_PASSWORD => match payload.get(1) {
                Some(0x03) => Ok(AuthStep::Wait),
                Some(0x04) if self.tls => {
                    let mut pw = self.password.clone();
                    pw.push(0);
                    Ok(AuthStep::Send(Bytes::from(pw)))
                }
                Some(0x04) => {
                    // No TLS: never the password in clear; ask for the key.
                    self.awaiting_key = true;
                    Ok(AuthStep::Send(Bytes::from_static(&[REQUEST_PUBLIC_KEY])))
                }
                _ => Err(ParseError::Invalid {
                    what: "caching_sha2_password more data",
                    value: payload.get(1).copied().map_or(0, u64::from),
                }
                .into()),
            },
            other => Err(ParseError::Invalid {
                what: "authentication packet",
                value: other.copied().map_or(0, u64::from),
            }
            .into()),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn sample() -> InitialHandshake {
        InitialHandshake {
            server_version: b"5.5.5-10.11.19-MariaDB".to_vec(),
            connection_id: 42,
            scramble: b"0123456789abcdefghij".to_vec(),
            capabilities: cap::PROTOCOL_41
                | cap::SECURE_CONNECTION
                | cap::PLUGIN_AUTH
                | cap::SESSION_TRACK
                | cap::CONNECT_WITH_DB,
            charset: 45,
            status: 2,
            auth_plugin: NATIVE_PASSWORD.as_bytes().to_vec(),
        }
    }

    #[test]
    fn handshake_round_trips() {
        let hs = sample();
        let mut b = BytesMut::new();
        hs.encode(&mut b);
        assert_eq!(InitialHandshake::decode(&b), Ok(hs));
    }

    #[test]
    fn backend_auth_answers_native_then_finishes_on_ok() {
        let hs = sample();
        let (mut a, resp) =
            BackendAuth::start(&hs, !0, b"magento", b"pw", Some(b"magento"), false).unwrap();
        assert_eq!(
            resp.auth_response,
            auth::native_password(b"pw", &hs.scramble)
        );
        assert_eq!(resp.database.as_deref(), Some(&b"magento"[..]));
        let step = a.on_packet(&[0, 0, 0, 2, 0, 0, 0]);
        assert!(matches!(step, Ok(AuthStep::Done(_))));
    }

    #[test]
    fn backend_auth_follows_a_switch_to_caching_sha2_and_its_fast_path() {
        let (mut a, _) = BackendAuth::start(&sample(), !0, b"u", b"pw", None, false).unwrap();
        let mut sw = BytesMut::new();
        encode_auth_switch(CACHING_SHA2_PASSWORD, b"ABCDEFGHIJKLMNOPQRST", &mut sw);
        let want = auth::caching_sha2_password(b"pw", b"ABCDEFGHIJKLMNOPQRST");
        assert_eq!(a.on_packet(&sw), Ok(AuthStep::Send(Bytes::from(want))));
        assert_eq!(a.on_packet(FAST_AUTH_SUCCESS), Ok(AuthStep::Wait));
    }

    #[test]
    fn backend_full_auth_without_tls_asks_for_the_key_and_encrypts_pw_xor_scramble() {
        let mut hs = sample();
        hs.auth_plugin = CACHING_SHA2_PASSWORD.as_bytes().to_vec();
        let (mut a, _) = BackendAuth::start(&hs, !0, b"u", b"pw", None, false).unwrap();
        assert_eq!(
            a.on_packet(PERFORM_FULL_AUTH),
            Ok(AuthStep::Send(Bytes::from_static(&[REQUEST_PUBLIC_KEY])))
        );
        let mut key = vec![0x01];
        key.extend_from_slice(b"-----BEGIN PUBLIC KEY-----\n...");
        assert_eq!(
            a.on_packet(&key),
            Ok(AuthStep::SendEncrypted {
                public_key_pem: key[1..].to_vec(),
                plaintext: auth::xor_scramble(b"pw\0", &hs.scramble),
            })
        );
        // Then the server's OK.
        assert!(matches!(
            a.on_packet(&[0, 0, 0, 2, 0, 0, 0]),
            Ok(AuthStep::Done(_))
        ));
    }

    #[test]
    fn ssl_request_is_the_response_prefix_and_decodes_as_one() {
        let mut b = BytesMut::new();
        encode_ssl_request(
            cap::PROTOCOL_41 | cap::SECURE_CONNECTION,
            1 << 24,
            45,
            &mut b,
        );
        assert_eq!(b.len(), 32);
        let want = cap::PROTOCOL_41 | cap::SECURE_CONNECTION | cap::SSL;
        assert_eq!(
            ClientHello::decode(&b),
            Ok(ClientHello::SslRequest { capabilities: want })
        );
    }

    #[test]
    fn backend_auth_with_tls_sets_ssl_and_sends_the_password_on_full_auth() {
        let mut hs = sample();
        assert_eq!(
            BackendAuth::start(&hs, !0, b"u", b"pw", None, true).err(),
            Some(BackendAuthError::NoTls)
        );
        hs.capabilities |= cap::SSL;
        hs.auth_plugin = CACHING_SHA2_PASSWORD.as_bytes().to_vec();
        let (mut a, resp) = BackendAuth::start(&hs, !0, b"u", b"pw", None, true).unwrap();
        assert_ne!(resp.capabilities & cap::SSL, 0);
        assert_eq!(
            a.on_packet(PERFORM_FULL_AUTH),
            Ok(AuthStep::Send(Bytes::from_static(b"pw\0")))
        );
        // Without TLS the flag never goes out, even if the server offers it.
        let (_, plain) = BackendAuth::start(&hs, !0, b"u", b"pw", None, false).unwrap();
        assert_eq!(plain.capabilities & cap::SSL, 0);
    }

    proptest! {
        #[test]
        fn change_user_round_trips(
            user in proptest::collection::vec(1u8..=255, 0..40),
            auth_response in proptest::collection::vec(any::<u8>(), 0..40),
            db in proptest::collection::vec(1u8..=255, 0..20),
            more in any::<bool>(),
            attrs in any::<bool>(),
        ) {
            let caps = cap::PROTOCOL_41 | cap::SECURE_CONNECTION | cap::PLUGIN_AUTH
                | if attrs { cap::CONNECT_ATTRS } else { 0 };
            let cu = ChangeUser {
                username: user, auth_response, database: db,
                charset: more.then_some(45),
                auth_plugin: more.then(|| b"mysql_native_password".to_vec()),
                connect_attrs: (more && attrs).then(|| b"\x03abc\x01x".to_vec()),
            };
            let mut b = BytesMut::new();
            cu.encode(caps, &mut b);
            prop_assert_eq!(ChangeUser::decode(&b, caps), Ok(cu));
        }

        #[test]
        fn change_user_never_panics(data in proptest::collection::vec(any::<u8>(), 0..128), caps in any::<u32>()) {
            let _ = ChangeUser::decode(&data, caps);
        }

        #[test]
        fn handshake_response_round_trips(
            user in proptest::collection::vec(1u8..=255, 0..40),
            auth_response in proptest::collection::vec(any::<u8>(), 0..40),
            db in proptest::option::of(proptest::collection::vec(1u8..=255, 0..20)),
            lenenc in any::<bool>(),
        ) {
            let mut caps = cap::PROTOCOL_41 | cap::SECURE_CONNECTION | cap::PLUGIN_AUTH;
            if lenenc { caps |= cap::PLUGIN_AUTH_LENENC_DATA; }
            if db.is_some() { caps |= cap::CONNECT_WITH_DB; }
            let r = HandshakeResponse {
                capabilities: caps, max_packet: 1 << 24, charset: 33, username: user,
                auth_response, database: db, auth_plugin: Some(b"mysql_native_password".to_vec()),
                connect_attrs: None,
            };
            let mut b = BytesMut::new();
            r.encode(&mut b);
            prop_assert_eq!(ClientHello::decode(&b), Ok(ClientHello::Response(r)));
        }

        #[test]
        fn client_hello_never_panics(data in proptest::collection::vec(any::<u8>(), 0..128)) {
            let _ = ClientHello::decode(&data);
            let _ = InitialHandshake::decode(&data);
        }
    }
}
