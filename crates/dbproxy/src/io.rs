//! Packet I/O over a tokio stream: the sans-IO framing of
//! `magestack_mysql_proto::packet` pumped by reads and writes, on plain TCP
//! or TLS (which MySQL starts mid-handshake, hence [`Stream`]).

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::BytesMut;
use magestack_mysql_proto::packet::{self, Limits, Packet};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;

use crate::error::IoError;

/// A connection to a client or a server, TLS or not: one type, so the
/// command loop and the pools do not become generic over it. The TLS
/// states are boxed: a plain connection (the common idle client) pays
/// for a pointer, not for rustls's state.
#[derive(Debug)]
pub(crate) enum Stream {
    Plain(TcpStream),
    ToServer(Box<tokio_rustls::client::TlsStream<TcpStream>>),
    FromClient(Box<tokio_rustls::server::TlsStream<TcpStream>>),
}

impl Stream {
    pub(crate) fn is_tls(&self) -> bool {
        !matches!(self, Self::Plain(_))
    }

    /// Resolves when a read may find bytes (or the end), without a buffer
    /// of ours: plain TCP waits on the socket's readiness; TLS too when
    /// rustls holds no decrypted bytes (a client may have sent two commands
    /// in one record), else at once. An undecryptable record also resolves
    /// at once: the read that follows reports it.
    async fn readable(&mut self) -> io::Result<()> {
        match self {
            Self::Plain(s) => s.readable().await,
            Self::FromClient(s) => {
                let (tcp, conn) = s.get_mut();
                match conn.process_new_packets() {
                    Ok(st) if st.plaintext_bytes_to_read() == 0 && !st.peer_has_closed() => {
                        tcp.readable().await
                    }
                    _ => Ok(()),
                }
            }
            Self::ToServer(_) => Ok(()),
        }
    }
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Self::ToServer(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
            Self::FromClient(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Self::ToServer(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
            Self::FromClient(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_flush(cx),
            Self::ToServer(s) => Pin::new(s.as_mut()).poll_flush(cx),
            Self::FromClient(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Self::ToServer(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
            Self::FromClient(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

/// Bytes read per `read` call at least: one syscall takes a typical
/// command or small result whole.
const READ_CHUNK: usize = 4096;

/// A stream with its read and write buffers. Both start empty and are
/// allocated on first use; [`PacketStream::read_idle`] gives them back
/// while waiting, so an idle client costs no buffer memory.
#[derive(Debug)]
pub(crate) struct PacketStream<S> {
    pub(crate) stream: S,
    buf: BytesMut,
    out: BytesMut,
    limits: Limits,
}

impl<S: AsyncRead + AsyncWrite + Unpin> PacketStream<S> {
    pub(crate) fn new(stream: S, limits: Limits) -> Self {
        Self {
            stream,
            buf: BytesMut::new(),
            out: BytesMut::new(),
            limits,
        }
    }

    /// The next logical packet.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: bytes read stay in the buffer.
    pub(crate) async fn read(&mut self) -> Result<Packet, IoError> {
        loop {
            if let Some(p) = packet::decode(&mut self.buf, &self.limits)? {
                return Ok(p);
            }
            if self.buf.capacity() - self.buf.len() < READ_CHUNK {
                self.buf.reserve(if self.buf.is_empty() {
                    READ_CHUNK
                } else {
                    4 * READ_CHUNK
                });
            }
            let n = self.stream.read_buf(&mut self.buf).await?;
            if n == 0 {
                return Err(IoError::Closed);
            }
        }
    }

    /// The next packet read byte-exactly, with no read-ahead: for the
    /// client's first packet, after which a client that sent an SSL
    /// Request starts TLS at once, so the bytes behind it belong to the TLS
    /// handshake and must stay in the socket. (Read ahead, they were lost
    /// to rustls: seen as a client's "unexpected eof" now and then.)
    pub(crate) async fn read_exact_packet(&mut self) -> Result<Packet, IoError> {
        if self.buf.is_empty() {
            let mut head = [0u8; 4];
            read_exact(&mut self.stream, &mut head).await?;
            let len = usize::from(head[0]) | usize::from(head[1]) << 8 | usize::from(head[2]) << 16;
            self.buf.extend_from_slice(&head);
            if len <= self.limits.max_packet_bytes {
                self.buf.resize(4 + len, 0);
                read_exact(&mut self.stream, &mut self.buf[4..]).await?;
            }
        }
        self.read().await
    }

    /// The stream back, to start TLS on it. `None` when the peer already
    /// sent bytes past the SSL Request (they would be read outside TLS: a
    /// protocol violation, or an attack on the switch).
    pub(crate) fn into_stream(self) -> Option<S> {
        self.buf.is_empty().then_some(self.stream)
    }

    /// Queues a payload with sequence id `seq`; returns the next id.
    pub(crate) fn queue(&mut self, payload: &[u8], seq: u8) -> u8 {
        packet::encode(payload, seq, &mut self.out)
    }

    /// Bytes queued and not yet flushed.
    pub(crate) fn queued(&self) -> usize {
        self.out.len()
    }

    /// Writes what was queued.
    pub(crate) async fn flush(&mut self) -> Result<(), IoError> {
        if !self.out.is_empty() {
            self.stream.write_all(&self.out).await?;
            self.out.clear();
        }
        Ok(())
    }

    /// Queues and flushes one payload.
    pub(crate) async fn send(&mut self, payload: &[u8], seq: u8) -> Result<u8, IoError> {
        let next = self.queue(payload, seq);
        self.flush().await?;
        Ok(next)
    }
}

async fn read_exact<S: AsyncRead + Unpin>(s: &mut S, dst: &mut [u8]) -> Result<(), IoError> {
    match s.read_exact(dst).await {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => Err(IoError::Closed),
        Err(e) => Err(e.into()),
    }
}

impl PacketStream<Stream> {
    /// The next packet, waiting for it without buffers: when nothing is
    /// buffered, both buffers are freed and the socket's readiness awaited
    /// before a read buffer is allocated again. For the wait between a
    /// client's commands, which may last as long as a PHP worker lives;
    /// the price is one allocation per command.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe, as [`PacketStream::read`].
    pub(crate) async fn read_idle(&mut self) -> Result<Packet, IoError> {
        if self.buf.is_empty() && self.out.is_empty() {
            self.buf = BytesMut::new();
            self.out = BytesMut::new();
            self.stream.readable().await?;
        }
        self.read().await
    }
}
