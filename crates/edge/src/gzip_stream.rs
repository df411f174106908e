//! A gzip stream whose deflate state is reused across responses.
//!
//! zlib's state for one stream (window, hash heads and chains, the pending
//! buffer) is over 100 KiB; allocating and clearing it for every 2 KB page
//! cost as much as compressing the page. Each thread keeps a few states per
//! window size and resets one for the next response instead (zlib's
//! `deflateReset`), so a steady stream of responses allocates nothing here.

use std::cell::RefCell;
use std::io::{self, Write};

use flate2::{Compress, Compression, FlushCompress, Status};

/// States kept per thread (all window sizes together).
const POOL_PER_THREAD: usize = 8;
/// Spare room kept in the output before a deflate call.
const MIN_SPARE: usize = 1024;

thread_local! {
    static POOL: RefCell<Vec<(u8, u32, Compress)>> = const { RefCell::new(Vec::new()) };
}

/// A gzip stream writing into memory.
pub struct GzipStream {
    c: Option<Compress>,
    wbits: u8,
    level: u32,
    out: Vec<u8>,
}

impl std::fmt::Debug for GzipStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GzipStream")
            .field("wbits", &self.wbits)
            .field("level", &self.level)
            .finish_non_exhaustive()
    }
}

impl GzipStream {
    /// A stream at `level` with a `wbits` window, its output starting in `out`.
    pub fn new(level: u32, wbits: u8, out: Vec<u8>) -> Self {
        let reused = POOL.with(|p| {
            let mut p = p.borrow_mut();
            let i = p.iter().position(|(w, l, _)| *w == wbits && *l == level)?;
            Some(p.swap_remove(i).2)
        });
        let c = reused.unwrap_or_else(|| Compress::new_gzip(Compression::new(level), wbits));
        Self {
            c: Some(c),
            wbits,
            level,
            out,
        }
    }

    /// The bytes produced so far (the caller may take them).
    pub fn output(&mut self) -> &mut Vec<u8> {
        &mut self.out
    }

    /// Ends the stream; the rest of the output.
    pub fn finish(mut self) -> io::Result<Vec<u8>> {
        let Some(c) = self.c.as_mut() else {
            return Err(io::Error::other("gzip stream already failed"));
        };
        loop {
            if self.out.capacity() - self.out.len() < MIN_SPARE {
                self.out.reserve(4096);
            }
            match c.compress_vec(&[], &mut self.out, FlushCompress::Finish) {
                Ok(Status::StreamEnd) => break,
                Ok(_) => continue,
                Err(e) => {
                    self.c = None;
                    return Err(io::Error::other(e));
                }
            }
        }
        Ok(std::mem::take(&mut self.out))
    }
}

impl Write for GzipStream {
    fn write(&mut self, input: &[u8]) -> io::Result<usize> {
        let Some(c) = self.c.as_mut() else {
            return Err(io::Error::other("gzip stream already failed"));
        };
        if input.is_empty() {
            return Ok(0);
        }
        loop {
            if self.out.capacity() - self.out.len() < MIN_SPARE {
                self.out.reserve(input.len().clamp(4096, 64 * 1024));
            }
            let before = c.total_in();
            if let Err(e) = c.compress_vec(input, &mut self.out, FlushCompress::None) {
                self.c = None;
                return Err(io::Error::other(e));
            }
            let used = (c.total_in() - before) as usize;
            if used > 0 {
                return Ok(used);
            }
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Drop for GzipStream {
    fn drop(&mut self) {
        // A state that failed is dropped; a used one is reset and kept.
        if let Some(mut c) = self.c.take() {
            c.reset();
            let (wbits, level) = (self.wbits, self.level);
            POOL.with(|p| {
                let mut p = p.borrow_mut();
                if p.len() < POOL_PER_THREAD {
                    p.push((wbits, level, c));
                }
            });
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::io::Read;

    fn gunzip(b: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(b)
            .read_to_end(&mut out)
            .unwrap();
        out
    }

    #[test]
    fn reused_states_give_complete_independent_streams() {
        for round in 0..20 {
            let data: Vec<u8> = (0..(round * 997 + 10))
                .map(|i| b"<li class=item>magento</li>"[i % 26])
                .collect();
            let mut g = GzipStream::new(6, 12 + (round % 4) as u8, Vec::new());
            // In pieces, as a response streams.
            for chunk in data.chunks(700) {
                g.write_all(chunk).unwrap();
            }
            let mut out = std::mem::take(g.output());
            out.extend(g.finish().unwrap());
            assert_eq!(gunzip(&out), data, "round {round}");
        }
        // A stream dropped half-way leaves a clean state for the next one.
        let mut g = GzipStream::new(6, 12, Vec::new());
        g.write_all(b"abandoned half-way").unwrap();
        drop(g);
        let mut g = GzipStream::new(6, 12, Vec::new());
        g.write_all(b"next").unwrap();
        assert_eq!(gunzip(&g.finish().unwrap()), b"next");
    }
}
