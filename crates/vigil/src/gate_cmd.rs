//! `vigil gate`: waits for a release's outcome; exit 0 when it passed, 1 when it was stopped,
//! 2 when the wait timed out. One step for a CI pipeline.

use std::time::Duration;

use anyhow::Context;
use clap::Args;
use serde::Deserialize;

#[derive(Debug, Args)]
pub struct GateArgs {
    /// The release to wait for.
    release: String,
    /// The Vigil server, for example http://127.0.0.1:7070.
    #[arg(long)]
    server: String,
    /// API token (viewer is enough) [default: $VIGIL_TOKEN].
    #[arg(long)]
    token: Option<String>,
    /// Give up after this many seconds.
    #[arg(long, default_value_t = 3 * 3600)]
    timeout: u64,
    /// Seconds between two polls.
    #[arg(long, default_value_t = 10)]
    interval: u64,
}

#[derive(Debug, Deserialize)]
struct VerdictAnswer {
    state: String,
    decision: String,
    failed: bool,
    passed: bool,
    reason: String,
}

/// How the gate ended.
#[derive(Debug, PartialEq, Eq)]
pub enum GateOutcome {
    Passed,
    Stopped,
    TimedOut,
}

pub fn run(args: GateArgs) -> anyhow::Result<GateOutcome> {
    let token = match args.token {
        Some(token) => token,
        None => {
            std::env::var("VIGIL_TOKEN").context("no token: pass --token or set VIGIL_TOKEN")?
        }
    };
    let url = format!(
        "{}/api/v1/releases/{}/verdict",
        args.server.trim_end_matches('/'),
        args.release
    );
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_secs(30)))
        .http_status_as_error(false)
        .build()
        .into();
    let polls = (args.timeout / args.interval.max(1)).max(1);
    let mut last_line = String::new();
    for poll in 0..=polls {
        if poll > 0 {
            std::thread::sleep(Duration::from_secs(args.interval.max(1)));
        }
        let mut response = match agent
            .get(&url)
            .header("Authorization", &format!("Bearer {token}"))
            .call()
        {
            Ok(response) => response,
            Err(error) => {
                crate::say(&format!("cannot reach {url}: {error}; retrying"));
                continue;
            }
        };
        let status = response.status();
        let body = response
            .body_mut()
            .read_to_string()
            .context("cannot read the server's answer")?;
        if !status.is_success() {
            anyhow::bail!("server answered {status}: {}", body.trim());
        }
        let answer: VerdictAnswer =
            serde_json::from_str(&body).context("unexpected answer from the server")?;
        let line = format!(
            "release {}: {} ({}) {}",
            args.release, answer.state, answer.decision, answer.reason
        );
        if line != last_line {
            crate::say(&line);
            last_line = line;
        }
        if answer.passed {
            return Ok(GateOutcome::Passed);
        }
        if answer.failed {
            return Ok(GateOutcome::Stopped);
        }
    }
    crate::say(&format!(
        "release {}: no outcome after {} s",
        args.release, args.timeout
    ));
    Ok(GateOutcome::TimedOut)
}
