//! Releases and canary rollouts, decided in the edge: the pure core.
//!
//! - [`release`]: release ids (the cache namespace of a track);
//! - [`plan`]: steps of weight and pause (`"10%/5m"`), checked;
//! - [`assign`]: sticky visitor buckets, the assignment cookie, checkout pins;
//! - [`stats`]: latency histogram, Wilson bounds, quantile confidence ranks;
//! - [`analysis`]: the judgement of a canary against stable, with the
//!   statistical reasoning behind the minimum sample and the window;
//! - [`machine`]: the rollout's state and transitions (start, pause,
//!   resume, promote, abort, and the analysis tick).
//!
//! Data in, decisions out: no sockets, no clocks, no threads (time and
//! randomness are parameters), so every rule is unit- and property-tested
//! without I/O. The edge's `rollout` module is the I/O shell: it counts,
//! keeps the state in a file or Redis, and applies the split.

#![forbid(unsafe_code)]
#![cfg_attr(not(test), deny(clippy::unwrap_used))]
#![warn(missing_docs)]

pub mod analysis;
pub mod assign;
pub mod machine;
pub mod plan;
pub mod release;
pub mod stats;

pub use analysis::{judge, Judgement, ReasonCode, Thresholds, TrackWindow, Verdict};
pub use assign::{assign, AssignInput, Assignment, Split, Track};
pub use machine::{Action, Decision, Phase, Refused, RolloutState};
pub use plan::{Plan, PlanError, Step, DEFAULT_STEPS};
pub use release::{is_release_id, MAX_RELEASE_ID_LEN};
