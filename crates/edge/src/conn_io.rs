//! Connection I/O wrapper that enforces the HTTP/1 header-read and idle timeouts.
//!
//! hyper's own `header_read_timeout` closes the socket silently. Operators (and the
//! acceptance tests) expect nginx-like behaviour instead: a client that started a
//! request head but did not finish it in time gets `408 Request Timeout`; a
//! keep-alive connection that sends nothing is closed quietly after the idle timeout.
//! The wrapper learns where request boundaries are from [`HeadState`], which the
//! service flips when hyper hands it a parsed request and when the response ends.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

/// The raw bytes of the 408 answer; fixed, so they are a constant.
const RESPONSE_408: &[u8] = b"HTTP/1.1 408 Request Timeout\r\nconnection: close\r\ncontent-type: text/plain\r\ncontent-length: 16\r\n\r\nrequest timeout\n";

/// Shared between the I/O wrapper and the request service of one connection.
///
/// A generation counter: even while the connection waits for a request head, odd
/// while a request is being served. The wrapper re-arms its timers whenever the
/// generation moved, so a deadline never leaks from one request to the next.
#[derive(Debug, Default)]
pub(crate) struct HeadState(AtomicU32);

impl HeadState {
    /// hyper parsed a request head: header timers stop until the response ends.
    pub(crate) fn request_started(&self) {
        self.0.fetch_add(1, Ordering::AcqRel);
    }

    /// The response was written: the connection waits for the next head again.
    pub(crate) fn request_finished(&self) {
        self.0.fetch_add(1, Ordering::AcqRel);
    }

    fn generation(&self) -> u32 {
        self.0.load(Ordering::Acquire)
    }
}

/// Timeouts applied while a connection waits for a request head.
#[derive(Debug, Clone, Copy)]
pub(crate) struct HeadTimeouts {
    /// From the first byte of a head to its end.
    pub(crate) header_read: Duration,
    /// With no byte of a new request at all.
    pub(crate) idle: Duration,
}

/// AsyncRead/AsyncWrite wrapper; see the module docs.
#[derive(Debug)]
pub(crate) struct TimedIo<I> {
    inner: I,
    state: Arc<HeadState>,
    timeouts: HeadTimeouts,
    /// Deadline currently armed, and whether it is the header (true) or idle (false) one.
    timer: Pin<Box<Sleep>>,
    armed: Option<bool>,
    /// Generation of [`HeadState`] the timer was armed in.
    armed_gen: u32,
    /// Bytes of the 408 answer still to write once the header timer fired.
    timed_out: Option<usize>,
}

impl<I> TimedIo<I> {
    pub(crate) fn new(inner: I, state: Arc<HeadState>, timeouts: HeadTimeouts) -> Self {
        Self {
            inner,
            state,
            timeouts,
            timer: Box::pin(tokio::time::sleep(timeouts.idle)),
            armed: None,
            armed_gen: 0,
            timed_out: None,
        }
    }

    fn arm(&mut self, header: bool) {
        let d = if header {
            self.timeouts.header_read
        } else {
            self.timeouts.idle
        };
        self.timer.as_mut().reset(Instant::now() + d);
        self.armed = Some(header);
    }
}

impl<I: AsyncRead + AsyncWrite + Unpin> AsyncRead for TimedIo<I> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if let Some(written) = this.timed_out {
            return this.poll_write_408(cx, written);
        }
        let generation = this.state.generation();
        if generation % 2 == 1 {
            this.armed = None;
            return Pin::new(&mut this.inner).poll_read(cx, buf);
        }
        if this.armed.is_none() || this.armed_gen != generation {
            this.armed_gen = generation;
            this.arm(false);
        }
        let before = buf.filled().len();
        match Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                if buf.filled().len() > before && this.armed == Some(false) {
                    // First bytes of a head: from now on the header timer runs.
                    this.arm(true);
                }
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => {
                if this.timer.as_mut().poll(cx).is_ready() {
                    if this.armed == Some(true) {
                        tracing::debug!("Client did not finish its request head in time.");
                        this.timed_out = Some(0);
                        return this.poll_write_408(cx, 0);
                    }
                    // Idle keep-alive connection: report EOF, hyper closes quietly.
                    return Poll::Ready(Ok(()));
                }
                Poll::Pending
            }
        }
    }
}

impl<I: AsyncWrite + Unpin> TimedIo<I> {
    fn poll_write_408(&mut self, cx: &mut Context<'_>, mut written: usize) -> Poll<io::Result<()>> {
        while written < RESPONSE_408.len() {
            match Pin::new(&mut self.inner).poll_write(cx, &RESPONSE_408[written..]) {
                Poll::Ready(Ok(0)) => break,
                Poll::Ready(Ok(n)) => {
                    written += n;
                    self.timed_out = Some(written);
                }
                Poll::Ready(Err(_)) => break,
                Poll::Pending => return Poll::Pending,
            }
        }
        let _ = Pin::new(&mut self.inner).poll_flush(cx);
        Poll::Ready(Err(io::Error::new(
            io::ErrorKind::TimedOut,
            "request head timeout",
        )))
    }
}

impl<I: AsyncWrite + Unpin> AsyncWrite for TimedIo<I> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
