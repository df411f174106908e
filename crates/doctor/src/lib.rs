//! `magestack doctor`, pure: the configuration pitfalls behind most outages
//! of Magento on PHP-FPM (the two case studies' post-mortems), checked over
//! inputs the binary has already read. No file, process or socket I/O
//! here, so every check runs on a fixture in a unit test.
//!
//! - [`ini`]: php.ini and PHP-FPM pool files.
//! - [`magento`]: env.php (as JSON) or the deploy kit's `MAGENTO_*` variables.
//! - [`k8s`]: rendered manifests → pods with their FPM, php.ini, edge config
//!   and memory limit; Services; replica counts.
//! - [`checks`]: [`audit`] runs them all and returns [`Finding`]s, errors first.
//!
//! Not here: reading files, running `php -r` or `kubectl kustomize`,
//! asking a live edge (the binary's `doctor` module does that).

#![forbid(unsafe_code)]
#![warn(missing_docs)]
#![cfg_attr(not(test), deny(clippy::unwrap_used))]

pub mod checks;
mod edge_file;
pub mod finding;
pub mod ini;
pub mod inputs;
pub mod k8s;
pub mod magento;

pub use checks::audit;
pub use edge_file::edge_facts;
pub use finding::{Finding, Severity};
pub use inputs::{CodeStats, EdgeFacts, Inputs, LiveEdge, MagentoSettings, Unit};
