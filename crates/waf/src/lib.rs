//! The edge's security layer, pure: no sockets, no clock, no threads of its
//! own (time comes in as nanoseconds of a monotonic clock).
//!
//! - [`limiter`]: GCRA rate limiting keyed by (rule, client IP) in a table
//!   whose size is bounded, so a flood of distinct addresses costs a fixed
//!   amount of memory.
//! - [`ipset`]: allow/deny lists and reputation feeds as sorted ranges.
//! - [`rules`]: which requests a limit applies to; the defaults protect
//!   Magento's credential endpoints (customer login, account creation,
//!   password reset, admin login, REST token endpoints) with no config.
//! - [`graphql`]: the mutations a GraphQL request runs (a JSON parse and a
//!   small GraphQL tokenizer), for the rules on GraphQL mutations.
//! - [`inject`]: SQL injection and XSS detection on path, query, cookies
//!   and bodies, with the Magento exclusion profile.

#![forbid(unsafe_code)]
#![warn(missing_docs)]
#![cfg_attr(not(test), deny(clippy::unwrap_used))]

pub mod admin;
pub mod graphql;
pub mod inject;
pub mod ipset;
pub mod limiter;
pub mod rules;

pub use admin::is_admin_front;
pub use ipset::IpSet;
pub use limiter::{client_key, Decision, Limiter, Quota};
pub use rules::{default_rules, magento_path, PathMatch, RateRule, RateRules, RuleError, RuleHit};
