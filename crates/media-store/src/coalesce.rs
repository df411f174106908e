//! One operation per key in flight: the first caller runs it, the others
//! wait for its result. If the first caller goes away (its client
//! disconnected), a waiter takes over. The entry is removed when the
//! operation completes, so a failure is not remembered: the next request
//! tries again (how the edge recovers when the store returns).

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;

use parking_lot::Mutex;
use tokio::sync::OnceCell;

/// In-flight operations by key.
pub struct Inflight<T> {
    map: Mutex<HashMap<String, Arc<OnceCell<T>>>>,
}

impl<T> Default for Inflight<T> {
    fn default() -> Self {
        Self {
            map: Mutex::new(HashMap::new()),
        }
    }
}

impl<T> std::fmt::Debug for Inflight<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Inflight")
            .field("keys", &self.map.lock().len())
            .finish()
    }
}

impl<T: Clone> Inflight<T> {
    /// Runs `op` for `key` unless it is already running, and returns its
    /// result, with `true` when this caller ran it.
    pub async fn run<F, Fut>(&self, key: &str, op: F) -> (T, bool)
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = T>,
    {
        let cell = self
            .map
            .lock()
            .entry(key.to_owned())
            .or_insert_with(|| Arc::new(OnceCell::new()))
            .clone();
        let mut ran = false;
        let value = cell
            .get_or_init(|| {
                ran = true;
                op()
            })
            .await
            .clone();
        let mut map = self.map.lock();
        if map.get(key).is_some_and(|c| Arc::ptr_eq(c, &cell)) {
            map.remove(key);
        }
        (value, ran)
    }

    /// Keys in flight.
    pub fn len(&self) -> usize {
        self.map.lock().len()
    }

    /// True when nothing is in flight.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[tokio::test]
    async fn fifty_callers_one_run() {
        let inflight = Arc::new(Inflight::<u32>::default());
        let runs = Arc::new(AtomicUsize::new(0));
        let gate = Arc::new(tokio::sync::Notify::new());
        let mut tasks = Vec::new();
        for _ in 0..50 {
            let (i, r, g) = (inflight.clone(), runs.clone(), gate.clone());
            tasks.push(tokio::spawn(async move {
                i.run("k", || async move {
                    r.fetch_add(1, Ordering::SeqCst);
                    g.notified().await;
                    7
                })
                .await
                .0
            }));
        }
        while runs.load(Ordering::SeqCst) == 0 {
            tokio::task::yield_now().await;
        }
        tokio::task::yield_now().await;
        gate.notify_one();
        for t in tasks {
            assert_eq!(t.await.unwrap(), 7);
        }
        assert_eq!(runs.load(Ordering::SeqCst), 1);
        assert!(inflight.is_empty());
        // A later call runs again.
        assert_eq!(inflight.run("k", || async { 8 }).await, (8, true));
    }
}
