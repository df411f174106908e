//! File descriptors: the edge raises its soft `RLIMIT_NOFILE` to the hard
//! limit at start (what systemd's and Kubernetes' defaults allow without
//! privileges), and sizes `server.max_client_connections` from it when the
//! config leaves it at 0, so that idle or slow clients can never take the
//! descriptors that PHP-FPM, Redis, files and spooled bodies need.

/// Descriptors kept for everything that is not a client connection, on
/// top of one upstream connection per client.
const RESERVE: u64 = 128;

/// Smallest automatic cap (a tiny limit still serves someone).
const MIN_CLIENTS: u64 = 32;

/// Raises the soft descriptor limit to the hard one; the soft limit in
/// force afterwards (`None` when it cannot be read).
pub fn raise() -> Option<u64> {
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(n) => Some(n),
        Err(e) => {
            tracing::warn!(error = %e, "Could not raise the file descriptor limit.");
            rlimit::Resource::NOFILE.get().ok().map(|(soft, _)| soft)
        }
    }
}

/// The client connection cap for a configured value (0 = automatic).
pub fn client_connections(configured: u64) -> usize {
    let n = if configured > 0 {
        configured
    } else {
        match rlimit::Resource::NOFILE.get() {
            Ok((soft, _)) => automatic(soft),
            Err(_) => 0,
        }
    };
    usize::try_from(n).unwrap_or(usize::MAX)
}

/// Half the descriptors, less the reserve: each client may need an upstream
/// connection too.
fn automatic(soft: u64) -> u64 {
    if soft == u64::MAX || soft == rlimit::INFINITY {
        return 0; // no limit to protect
    }
    (soft / 2).saturating_sub(RESERVE).max(MIN_CLIENTS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn automatic_cap_leaves_room_for_upstreams_and_files() {
        assert_eq!(automatic(1024), 384);
        assert_eq!(automatic(65_536), 32_640);
        assert_eq!(automatic(256), MIN_CLIENTS);
        assert_eq!(automatic(rlimit::INFINITY), 0);
        assert_eq!(client_connections(500), 500);
    }
}
