//! The `magestack` binary: wires the CLI and configuration to the edge.
//! Everything of substance lives in the library crates; this file only connects them.

#![forbid(unsafe_code)]
#![cfg_attr(not(test), deny(clippy::unwrap_used))]

mod cdn;
mod cli;
mod fd_limit;
mod log_writer;
mod run;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    match run::main(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("magestack: {e:#}");
            ExitCode::FAILURE
        }
    }
}
