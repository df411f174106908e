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

/// A stream with its read buffer.
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
            buf: BytesMut::with_capacity(4096),
            out: BytesMut::with_capacity(4096),
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
            if self.buf.capacity() - self.buf.len() < 4096 {
                self.buf.reserve(16 * 1024);
            }
            let n = self.stream.read_buf(&mut self.buf).await?;
            if n == 0 {
                return Err(IoError::Closed);
            }
        }
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
