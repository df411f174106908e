//! Batched log output: log lines (one access line per request) are appended
//! to a shared buffer and written to the output by a flusher thread every
//! [`FLUSH_INTERVAL`], or sooner once [`FLUSH_BYTES`] are queued.
//!
//! Why: writing stderr once per line cost one syscall per request, a third of
//! the edge's syscalls at 60k cached hits a second. A channel-per-line writer
//! that flushes whenever its queue runs empty does not help under load (it
//! runs empty after every line and spins). Here the hot path is a short
//! mutex-protected `memcpy`; nothing is dropped: past [`MAX_QUEUED_BYTES`]
//! a logging thread waits for the flusher (back-pressure, not loss).

use std::io::{self, Write};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;

/// Longest a line waits before it is written.
pub const FLUSH_INTERVAL: Duration = Duration::from_millis(50);
/// Queued bytes that wake the flusher early.
pub const FLUSH_BYTES: usize = 64 * 1024;
/// Queued bytes at which logging threads wait for the flusher.
pub const MAX_QUEUED_BYTES: usize = 8 * 1024 * 1024;

struct State {
    buf: Vec<u8>,
    closed: bool,
}

struct Shared {
    state: Mutex<State>,
    /// Wakes the flusher (bytes past `FLUSH_BYTES`, or closing).
    wake: Condvar,
    /// Wakes writers waiting for room.
    room: Condvar,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock leaves a valid buffer: keep logging.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Cloneable handle given to `tracing_subscriber` as its writer.
#[derive(Clone)]
pub struct BatchWriter {
    shared: Arc<Shared>,
}

/// Stops the flusher and writes what is left when dropped (keep it alive in
/// `main` for the life of the process).
pub struct FlushGuard {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

/// Starts the flusher thread writing to `out`.
pub fn batched<W: Write + Send + 'static>(out: W) -> io::Result<(BatchWriter, FlushGuard)> {
    let shared = Arc::new(Shared {
        state: Mutex::new(State {
            buf: Vec::with_capacity(FLUSH_BYTES * 2),
            closed: false,
        }),
        wake: Condvar::new(),
        room: Condvar::new(),
    });
    let s = Arc::clone(&shared);
    let thread = std::thread::Builder::new()
        .name("magestack-log".into())
        .spawn(move || flusher(&s, out))?;
    Ok((
        BatchWriter {
            shared: Arc::clone(&shared),
        },
        FlushGuard {
            shared,
            thread: Some(thread),
        },
    ))
}

fn flusher<W: Write>(shared: &Shared, mut out: W) {
    let mut spare = Vec::with_capacity(FLUSH_BYTES * 2);
    loop {
        let closed = {
            let mut st = shared.lock();
            if !st.closed && st.buf.len() < FLUSH_BYTES {
                st = shared
                    .wake
                    .wait_timeout(st, FLUSH_INTERVAL)
                    .map(|(g, _)| g)
                    .unwrap_or_else(|e| e.into_inner().0);
            }
            std::mem::swap(&mut st.buf, &mut spare);
            st.closed
        };
        shared.room.notify_all();
        if !spare.is_empty() {
            // Nowhere to report a failing stderr; the bytes are dropped then.
            let _ = out.write_all(&spare);
            let _ = out.flush();
            spare.clear();
            if spare.capacity() > MAX_QUEUED_BYTES {
                spare.shrink_to(FLUSH_BYTES * 2);
            }
        }
        if closed && shared.lock().buf.is_empty() {
            return;
        }
    }
}

impl BatchWriter {
    /// Queues `data` (one or more whole lines).
    pub fn push(&self, data: &[u8]) {
        let mut st = self.shared.lock();
        while st.buf.len() >= MAX_QUEUED_BYTES && !st.closed {
            self.shared.wake.notify_one();
            st = self
                .shared
                .room
                .wait(st)
                .unwrap_or_else(PoisonError::into_inner);
        }
        st.buf.extend_from_slice(data);
        if st.buf.len() >= FLUSH_BYTES {
            self.shared.wake.notify_one();
        }
    }
}

impl magestack_edge::access_log::AccessSink for BatchWriter {
    fn write_line(&self, line: &[u8]) {
        self.push(line);
    }
}

impl Write for BatchWriter {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.push(data);
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        // Lines are written by the flusher within `FLUSH_INTERVAL`.
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for BatchWriter {
    type Writer = BatchWriter;

    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

impl Drop for FlushGuard {
    fn drop(&mut self) {
        self.shared.lock().closed = true;
        self.shared.wake.notify_one();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// An output the test can read after the guard is gone.
    #[derive(Clone, Default)]
    struct Sink(Arc<Mutex<Vec<u8>>>);

    impl Write for Sink {
        fn write(&mut self, data: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(data);
            Ok(data.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn every_line_arrives_whole_and_in_order_per_thread() {
        let sink = Sink::default();
        let (w, guard) = batched(sink.clone()).unwrap();
        std::thread::scope(|s| {
            for t in 0..4 {
                let mut w = w.clone();
                s.spawn(move || {
                    for i in 0..50_000 {
                        w.write_all(format!("t{t} line {i}\n").as_bytes()).unwrap();
                    }
                });
            }
        });
        drop(guard);
        let out = String::from_utf8(sink.0.lock().unwrap().clone()).unwrap();
        let mut next = [0usize; 4];
        for line in out.lines() {
            let (t, i) = line.split_once(" line ").unwrap();
            let t: usize = t[1..].parse().unwrap();
            assert_eq!(i.parse::<usize>().unwrap(), next[t], "{line}");
            next[t] += 1;
        }
        assert_eq!(next, [50_000; 4]);
    }

    #[test]
    fn a_lone_line_is_written_within_the_interval() {
        let sink = Sink::default();
        let (mut w, _guard) = batched(sink.clone()).unwrap();
        w.write_all(b"hello\n").unwrap();
        let deadline = std::time::Instant::now() + FLUSH_INTERVAL * 20;
        while sink.0.lock().unwrap().is_empty() {
            assert!(std::time::Instant::now() < deadline, "line not flushed");
            std::thread::sleep(Duration::from_millis(5));
        }
        assert_eq!(&*sink.0.lock().unwrap(), b"hello\n");
    }

    #[test]
    fn a_slow_output_applies_back_pressure_without_loss() {
        #[derive(Clone, Default)]
        struct Slow(Sink);
        impl Write for Slow {
            fn write(&mut self, data: &[u8]) -> io::Result<usize> {
                std::thread::sleep(Duration::from_millis(20));
                self.0.write(data)
            }
            fn flush(&mut self) -> io::Result<()> {
                Ok(())
            }
        }
        let slow = Slow::default();
        let (mut w, guard) = batched(slow.clone()).unwrap();
        let line = vec![b'x'; 1023];
        for _ in 0..(3 * MAX_QUEUED_BYTES / 1024) {
            w.write_all(&line).unwrap();
            w.write_all(b"\n").unwrap();
        }
        drop(guard);
        assert_eq!(slow.0 .0.lock().unwrap().len(), 3 * MAX_QUEUED_BYTES);
    }
}
