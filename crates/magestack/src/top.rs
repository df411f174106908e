//! `magestack top`: the status page's figures in a terminal, refreshed,
//! from a running edge's admin listener (`/status.json`): `varnishstat`'s
//! place, for an operator on a bastion host.

use std::io::{IsTerminal, Write};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Result};
use serde_json::Value;

use crate::cli::TopArgs;

pub fn run(args: TopArgs) -> Result<ExitCode> {
    let token = crate::admin_client::token()?;
    let tty = std::io::stdout().is_terminal();
    let interval = Duration::from_secs_f64(args.interval.max(0.2));
    loop {
        let screen = match crate::admin_client::get(&args.admin, "/status.json", token.as_deref()) {
            Ok((200, body)) => match serde_json::from_str::<Value>(&body) {
                Ok(v) => render(&args.admin, &v),
                Err(e) => format!("{}: /status.json is not JSON ({e})\n", args.admin),
            },
            Ok((status, body)) => {
                let msg = format!(
                    "{}: /status.json answered {status}: {}\n",
                    args.admin,
                    body.trim()
                );
                if args.once || status == 401 || status == 403 {
                    bail!("{}", msg.trim_end());
                }
                msg
            }
            Err(e) if args.once => return Err(e),
            Err(e) => format!("{}: {e:#} (retrying)\n", args.admin),
        };
        let mut out = std::io::stdout().lock();
        if tty && !args.once {
            // Home and clear: redraw in place, like top(1).
            write!(out, "\x1b[H\x1b[2J")?;
        }
        out.write_all(screen.as_bytes())?;
        out.flush()?;
        drop(out);
        if args.once {
            return Ok(ExitCode::SUCCESS);
        }
        std::thread::sleep(interval);
    }
}

fn n(v: &Value) -> u64 {
    v.as_u64().unwrap_or(0)
}

fn pct(v: &Value) -> String {
    v.as_f64()
        .map_or_else(|| "–".to_owned(), |r| format!("{:.1} %", r * 100.0))
}

fn mib(b: u64) -> String {
    format!("{:.1} MiB", b as f64 / (1024.0 * 1024.0))
}

/// One screen.
pub fn render(admin: &str, v: &Value) -> String {
    let mut o = String::new();
    let ready = if v["ready"].as_bool() == Some(true) {
        "ready"
    } else {
        "NOT READY"
    };
    o += &format!(
        "magestack top  {admin}  {ready}  (unix {})\n\n",
        n(&v["unix"])
    );
    let c = &v["cache"];
    if c.is_object() {
        let (bytes, max) = (n(&c["bytes"]), n(&c["max_bytes"]));
        o += &format!(
            "CACHE  hit ratio 1m {}  since start {}  hits {}  misses {}  passes {}\n       objects {}  bytes {} / {} ({:.1} %)  purges {} ({:.2}/s 1m)  evictions {}  backend {}\n",
            pct(&c["hit_ratio_1m"]),
            pct(&c["hit_ratio"]),
            n(&c["hits"]),
            n(&c["misses"]),
            n(&c["passes"]),
            n(&c["objects"]),
            mib(bytes),
            mib(max),
            if max == 0 { 0.0 } else { bytes as f64 * 100.0 / max as f64 },
            n(&c["purges"]),
            c["purges_per_sec_1m"].as_f64().unwrap_or(0.0),
            n(&c["evictions"]),
            if c["backend_healthy"].as_bool() == Some(true) { "healthy" } else { "SICK" },
        );
    } else {
        o += "CACHE  off\n";
    }
    if let Some(r) = v["requests"].as_object() {
        o += "REQS  ";
        for (class, count) in r {
            o += &format!(" {class} {}", n(count));
        }
        o += "\n";
    }
    o += &format!(
        "\n{:<12} {:>5} {:>6} {:>9} {:>9} {:>8} {:>7} {:>10}\n",
        "POOL", "BUSY", "CAP", "QUEUE", "REQS", "REFUSED", "ERRORS", "P95 1m"
    );
    for p in v["pools"].as_array().into_iter().flatten() {
        let cap = match n(&p["max_inflight"]) {
            0 => "-".to_owned(),
            c => c.to_string(),
        };
        let p95 = p["p95_ms_1m"]
            .as_f64()
            .map_or_else(|| "–".to_owned(), |ms| format!("≤{ms:.0} ms"));
        o += &format!(
            "{:<12} {:>5} {:>6} {:>9} {:>9} {:>8} {:>7} {:>10}\n",
            p["name"].as_str().unwrap_or("?"),
            n(&p["inflight"]),
            cap,
            format!("{}/{}", n(&p["queued"]), n(&p["queue_size"])),
            n(&p["requests"]),
            n(&p["rejected"]),
            n(&p["errors"]),
            p95
        );
        for e in p["endpoints"].as_array().into_iter().flatten() {
            let fpm = match e["fpm"].as_array() {
                Some(f) if f.len() == 4 => format!(
                    "fpm active {} idle {} total {} queue {}",
                    n(&f[0]),
                    n(&f[1]),
                    n(&f[2]),
                    n(&f[3])
                ),
                _ => "fpm -".to_owned(),
            };
            let health = e["health"].as_str().unwrap_or("?");
            o += &format!(
                "  {:<24} {:<8} {:<10} {:<5} inflight {}  {fpm}\n",
                e["endpoint"].as_str().unwrap_or("?"),
                e["state"].as_str().unwrap_or("?"),
                if health == "unhealthy" {
                    "UNHEALTHY"
                } else {
                    health
                },
                if e["warm"].as_bool() == Some(true) {
                    "warm"
                } else {
                    "cold"
                },
                n(&e["inflight"]),
            );
        }
    }
    let waf: Vec<String> = v["waf"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|w| n(&w[2]) > 0)
        .map(|w| {
            format!(
                "{} {} {}",
                w[0].as_str().unwrap_or("?"),
                w[1].as_str().unwrap_or("?"),
                n(&w[2])
            )
        })
        .collect();
    o += &format!(
        "\nWAF    {}\n",
        if waf.is_empty() {
            "no blocks or rate-limit hits".to_owned()
        } else {
            waf.join("  ")
        }
    );
    let b = &v["bus"];
    o += &if b.is_object() {
        format!(
            "BUS    {}  gaps {}  redis errors {}\n",
            if b["connected"].as_bool() == Some(true) {
                "connected"
            } else {
                "DISCONNECTED"
            },
            n(&b["gaps"]),
            n(&b["redis_errors"])
        )
    } else {
        "BUS    not configured\n".to_owned()
    };
    o += &format!("ROLLOUT {}\n", v["rollout"].as_str().unwrap_or("-"));
    o += "ERRORS ";
    let events: Vec<&Value> = v["events"].as_array().into_iter().flatten().collect();
    if events.is_empty() {
        o += "none since start\n";
    } else {
        o += "\n";
        for e in events.iter().rev().take(8) {
            o += &format!(
                "  {}  {}\n",
                n(&e["unix"]),
                e["text"].as_str().unwrap_or("")
            );
        }
    }
    o
}
