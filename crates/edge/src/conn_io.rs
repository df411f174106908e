//! Connection I/O wrapper that enforces the HTTP/1 header-read, body-read and
//! idle timeouts, and refuses smuggling-prone framing ([`crate::framing`]).
//!
//! hyper's own `header_read_timeout` closes the socket silently. Operators (and the
//! acceptance tests) expect nginx-like behaviour instead: a client that started a
//! request head but did not finish it in time gets `408 Request Timeout`; a
//! keep-alive connection that sends nothing is closed quietly after the idle timeout.
//! The wrapper learns where request boundaries are from [`HeadState`], which the
//! service flips when hyper hands it a parsed request and when the response ends.
//! A client that started a body and then goes silent for the body-read timeout
//! (a slow-body attack) gets 408 as well. Every byte read also goes through the
//! framing guard; a refused head gets 400 and the connection is closed before
//! hyper sees it.
//!
//! The edge's own answer (408, 400) is the last thing on the wire: writes
//! hyper attempts afterwards (the handler's error page for the body that
//! just failed) are refused, so a client never reads two answers to one
//! request. If hyper has already started writing the response of the
//! request in flight, the edge writes nothing (it would land inside that
//! response) and only ends the connection.

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

/// The raw bytes of the 400 answer to a refused head.
const RESPONSE_400: &[u8] = b"HTTP/1.1 400 Bad Request\r\nconnection: close\r\ncontent-type: text/plain\r\ncontent-length: 16\r\n\r\n400 Bad Request\n";

/// What hyper writes for `Expect: 100-continue`; an interim answer, not the
/// start of the response.
const CONTINUE_100: &[u8] = b"HTTP/1.1 100 Continue\r\n\r\n";

/// Shared between the I/O wrapper and the request service of one connection.
///
/// A generation counter: even while the connection waits for a request head, odd
/// while a request is being served. The wrapper re-arms its timers whenever the
/// generation moved, so a deadline never leaks from one request to the next.
///
/// When a response ends, the reader is woken: hyper registered its interest
/// in the socket while the request was in flight and would otherwise not
/// read again (and so not arm the idle timer) until the client sent a byte,
/// which an idle client never does.
#[derive(Debug, Default)]
pub(crate) struct HeadState {
    generation: AtomicU32,
    reader: futures_util::task::AtomicWaker,
}

impl HeadState {
    /// hyper parsed a request head: header timers stop until the response ends.
    pub(crate) fn request_started(&self) {
        self.generation.fetch_add(1, Ordering::AcqRel);
    }

    /// The response was written: the connection waits for the next head again.
    pub(crate) fn request_finished(&self) {
        self.generation.fetch_add(1, Ordering::AcqRel);
        self.reader.wake();
    }

    fn generation(&self) -> u32 {
        self.generation.load(Ordering::Acquire)
    }
}

/// Timeouts applied while a connection waits for a request head.
#[derive(Debug, Clone, Copy)]
pub(crate) struct HeadTimeouts {
    /// From the first byte of a head to its end.
    pub(crate) header_read: Duration,
    /// Between two reads of a request body.
    pub(crate) body_read: Duration,
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
    /// The error answer being written (408 or 400) and the bytes written.
    timed_out: Option<(&'static [u8], usize)>,
    /// Follows message framing to refuse smuggling-prone heads.
    guard: crate::framing::FramingGuard,
    /// The body-read timer is armed (inside a body, waiting for bytes).
    body_armed: bool,
    /// Generation of [`HeadState`] in which hyper last wrote response bytes.
    wrote_gen: Option<u32>,
}

impl<I> TimedIo<I> {
    /// `head_deadline` bounds the first request head, from the connection's
    /// accept: a client that sends nothing at all gets the header timeout,
    /// not the (longer) keep-alive idle timeout.
    pub(crate) fn new(
        inner: I,
        state: Arc<HeadState>,
        timeouts: HeadTimeouts,
        framing: crate::framing::GuardLimits,
        head_deadline: Instant,
    ) -> Self {
        Self {
            inner,
            state,
            timeouts,
            // The "idle" state with the head deadline: a silent client is
            // closed quietly at it; its first byte starts the header timer.
            timer: Box::pin(tokio::time::sleep_until(head_deadline)),
            armed: Some(false),
            armed_gen: 0,
            timed_out: None,
            guard: crate::framing::FramingGuard::new(framing),
            body_armed: false,
            wrote_gen: None,
        }
    }

    /// Whether the edge may write its own answer now: not while the
    /// response to the request in flight is partly on the wire.
    fn may_answer(&self) -> bool {
        let generation = self.state.generation();
        generation.is_multiple_of(2) || self.wrote_gen != Some(generation)
    }

    /// Records a write of `written` bytes of hyper's (`first` is the
    /// start of what it wrote).
    fn note_write(&mut self, first: &[u8], written: usize) {
        if written > 0 && !(written == CONTINUE_100.len() && first.starts_with(CONTINUE_100)) {
            self.wrote_gen = Some(self.state.generation());
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
        if let Some((answer, written)) = this.timed_out {
            return this.poll_write_answer(cx, answer, written);
        }
        // Registered before the generation is read: a response that ends
        // in between still wakes this reader.
        this.state.reader.register(cx.waker());
        let generation = this.state.generation();
        let before = buf.filled().len();
        if generation % 2 == 1 {
            this.armed = None;
            return match Pin::new(&mut this.inner).poll_read(cx, buf) {
                Poll::Ready(Ok(())) => {
                    this.body_armed = false;
                    this.check_framing(cx, buf, before)
                }
                Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
                Poll::Pending => {
                    // Inside a body the client started: it may not stall.
                    if this.guard.in_body() {
                        if !this.body_armed {
                            this.timer
                                .as_mut()
                                .reset(Instant::now() + this.timeouts.body_read);
                            this.body_armed = true;
                        }
                        if this.timer.as_mut().poll(cx).is_ready() {
                            tracing::debug!("Client stalled in its request body.");
                            return this.answer(cx, RESPONSE_408);
                        }
                    }
                    Poll::Pending
                }
            };
        }
        this.body_armed = false;
        if this.armed.is_none() || this.armed_gen != generation {
            this.armed_gen = generation;
            this.arm(false);
        }
        match Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                if buf.filled().len() > before && this.armed == Some(false) {
                    // First bytes of a head: from now on the header timer runs.
                    this.arm(true);
                }
                this.check_framing(cx, buf, before)
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => {
                if this.timer.as_mut().poll(cx).is_ready() {
                    if this.armed == Some(true) {
                        tracing::debug!("Client did not finish its request head in time.");
                        return this.answer(cx, RESPONSE_408);
                    }
                    // Idle keep-alive connection: report EOF, hyper closes quietly.
                    return Poll::Ready(Ok(()));
                }
                Poll::Pending
            }
        }
    }
}

impl<I: AsyncRead + AsyncWrite + Unpin> TimedIo<I> {
    /// Runs the bytes just read through the framing guard; a refused head
    /// never reaches hyper: the client gets 400 and the connection closes.
    fn check_framing(
        &mut self,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
        before: usize,
    ) -> Poll<io::Result<()>> {
        match self.guard.feed(&buf.filled()[before..]) {
            Ok(()) => Poll::Ready(Ok(())),
            Err(refusal) => {
                tracing::warn!(
                    reason = refusal.as_str(),
                    "Request refused: ambiguous message framing (request smuggling)."
                );
                buf.set_filled(before);
                self.answer(cx, RESPONSE_400)
            }
        }
    }

    /// Answers the client with `answer` and ends the connection; see the
    /// module docs for when nothing is written.
    fn answer(&mut self, cx: &mut Context<'_>, answer: &'static [u8]) -> Poll<io::Result<()>> {
        if self.may_answer() {
            self.timed_out = Some((answer, 0));
            return self.poll_write_answer(cx, answer, 0);
        }
        // Written nowhere, but later writes must fail all the same.
        self.timed_out = Some((answer, answer.len()));
        Poll::Ready(Err(answer_error(answer)))
    }
}

/// The read error that makes hyper close the connection after an answer.
fn answer_error(answer: &'static [u8]) -> io::Error {
    if std::ptr::eq(answer, RESPONSE_400) {
        io::Error::new(io::ErrorKind::InvalidData, "ambiguous request framing")
    } else {
        io::Error::new(io::ErrorKind::TimedOut, "request timeout")
    }
}

/// What hyper gets when it writes after the edge answered.
fn answered_error() -> io::Error {
    io::Error::new(
        io::ErrorKind::BrokenPipe,
        "the edge already answered on this connection",
    )
}

impl<I: AsyncWrite + Unpin> TimedIo<I> {
    /// Writes a fixed error answer (408, 400), then fails the read so hyper
    /// closes the connection.
    fn poll_write_answer(
        &mut self,
        cx: &mut Context<'_>,
        answer: &'static [u8],
        mut written: usize,
    ) -> Poll<io::Result<()>> {
        while written < answer.len() {
            match Pin::new(&mut self.inner).poll_write(cx, &answer[written..]) {
                Poll::Ready(Ok(0)) => break,
                Poll::Ready(Ok(n)) => {
                    written += n;
                    self.timed_out = Some((answer, written));
                }
                Poll::Ready(Err(_)) => break,
                Poll::Pending => return Poll::Pending,
            }
        }
        let _ = Pin::new(&mut self.inner).poll_flush(cx);
        Poll::Ready(Err(answer_error(answer)))
    }
}

impl<I: AsyncWrite + Unpin> AsyncWrite for TimedIo<I> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        if self.timed_out.is_some() {
            return Poll::Ready(Err(answered_error()));
        }
        let r = Pin::new(&mut self.inner).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = r {
            self.note_write(buf, n);
        }
        r
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        if self.timed_out.is_some() {
            return Poll::Ready(Err(answered_error()));
        }
        let r = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if let Poll::Ready(Ok(n)) = r {
            let first = bufs
                .iter()
                .find(|b| !b.is_empty())
                .map_or(&[][..], |b| &b[..]);
            self.note_write(first, n);
        }
        r
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
