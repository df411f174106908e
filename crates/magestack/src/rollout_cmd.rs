//! `magestack rollout …`: the edge's canary from the command line (and CI):
//! thin calls to the admin API (`GET /rollout`, `POST /admin/rollout/…`).
//!
//! Exit codes of `status` (so a pipeline can `start`, then `status --wait`):
//! 0 promoted, 2 aborted, 3 running or paused, 4 idle, 1 an error (the edge
//! unreachable, a refused token).

use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Result};

use crate::admin_client;
use crate::cli::{RolloutAction, RolloutArgs};

/// Exit code of `status` for a rollout state.
fn code_of(state: &str) -> u8 {
    match state {
        "promoted" => 0,
        "aborted" => 2,
        "running" | "paused" => 3,
        _ => 4,
    }
}

pub fn run(args: RolloutArgs) -> Result<ExitCode> {
    let token = admin_client::token()?;
    let token = token.as_deref();
    let admin = args.admin.as_str();
    let (path, body) = match args.action {
        RolloutAction::Status { wait, interval } => loop {
            let (status, body) = admin_client::get(admin, "/rollout", token)?;
            if status != 200 {
                bail!("GET /rollout on {admin}: {status}: {}", body.trim());
            }
            let v: serde_json::Value = serde_json::from_str(&body)?;
            let state = v["state"].as_str().unwrap_or("idle").to_owned();
            let code = code_of(&state);
            if !wait || code == 0 || code == 2 {
                println!("{}", serde_json::to_string_pretty(&v)?);
                return Ok(ExitCode::from(code));
            }
            eprintln!(
                "rollout {state}: step {}, weight {}%: {}",
                v["step"],
                v["weight"],
                v["reason"].as_str().unwrap_or("")
            );
            std::thread::sleep(Duration::from_secs_f64(interval.clamp(0.1, 3600.0)));
        },
        RolloutAction::Start {
            steps,
            canary_endpoints,
        } => {
            let mut body = serde_json::Map::new();
            if !steps.is_empty() {
                body.insert("steps".into(), steps.into());
            }
            if !canary_endpoints.is_empty() {
                body.insert("canary_endpoints".into(), canary_endpoints.into());
            }
            (
                "/admin/rollout/start",
                Some(serde_json::Value::Object(body).to_string()),
            )
        }
        RolloutAction::Pause => ("/admin/rollout/pause", None),
        RolloutAction::Resume => ("/admin/rollout/resume", None),
        RolloutAction::Promote => ("/admin/rollout/promote", None),
        RolloutAction::Abort => ("/admin/rollout/abort", None),
    };
    let (status, answer) = admin_client::post(admin, path, token, body.as_deref())?;
    if status != 200 {
        bail!("POST {path} on {admin}: {status}: {}", answer.trim());
    }
    println!("{}", answer.trim());
    Ok(ExitCode::SUCCESS)
}
