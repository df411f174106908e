//! Packet I/O over a tokio stream: the sans-IO framing of
//! `magestack_mysql_proto::packet` pumped by reads and writes.

use bytes::BytesMut;
use magestack_mysql_proto::packet::{self, Limits, Packet};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::error::IoError;

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
