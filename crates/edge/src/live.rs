//! The edge currently serving, replaceable by a config reload.
//!
//! Connections and listeners belong to the server; every request loads the
//! current [`Edge`] (lock-free, one refcount increment), so a reload takes
//! effect on the next request of every connection, kept-alive ones
//! included, and requests already running finish on the edge they started
//! on (their pool slots, their background-free edge).

use std::sync::Arc;

use arc_swap::ArcSwap;

use crate::Edge;

/// A cheap, cloneable handle to the serving edge.
#[derive(Clone, Debug)]
pub struct LiveEdge(Arc<ArcSwap<Edge>>);

impl LiveEdge {
    /// Starts with `edge`.
    pub fn new(edge: Arc<Edge>) -> LiveEdge {
        LiveEdge(Arc::new(ArcSwap::new(edge)))
    }

    /// The edge serving now.
    pub fn current(&self) -> Arc<Edge> {
        self.0.load_full()
    }

    /// Serves `next` from now on: its background tasks start, the previous
    /// edge's stop. Returns the previous edge.
    pub fn replace(&self, next: Arc<Edge>) -> Arc<Edge> {
        next.start_background();
        let previous = self.0.swap(next);
        previous.stop_background();
        previous
    }
}
