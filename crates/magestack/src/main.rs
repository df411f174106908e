//! The `magestack` binary: wires the CLI and configuration to the edge.
//! Everything of substance lives in the library crates; this file only connects them.

#![forbid(unsafe_code)]
#![cfg_attr(not(test), deny(clippy::unwrap_used))]

mod admin_client;
mod cdn;
mod cli;
mod doctor;
mod fd_limit;
mod log_writer;
mod media_sync;
mod rollout_cmd;
mod run;
mod secrets;
mod sitemap;
mod top;
mod warm;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    match run::main(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("magestack: {e:#}");
            // A usage error (an input named that is not there) is 2, as clap's own.
            if e.downcast_ref::<doctor::Usage>().is_some() {
                ExitCode::from(2)
            } else {
                ExitCode::FAILURE
            }
        }
    }
}
