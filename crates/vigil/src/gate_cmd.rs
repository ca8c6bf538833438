//! `vigil gate`: waits for a release's outcome. One step for a CI pipeline, with an exit code
//! for each way the wait can end (see [`GateOutcome::exit_code`]).

use std::time::Duration;

use anyhow::Context;
use clap::Args;
use serde::Deserialize;

#[derive(Debug, Args)]
pub struct GateArgs {
    /// The release to wait for.
    release: String,
    /// The Vigil server's URL with its scheme, for example http://127.0.0.1:7070.
    #[arg(long, value_parser = server_url)]
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
    /// The server answered, but the release had no outcome within the timeout.
    TimedOut,
    /// The server could not be reached (no connection, or no answer in time) at the last try
    /// before the timeout.
    Unreachable,
    /// The server refused the request (a wrong token, an unknown release) or answered
    /// something else than a verdict.
    Refused,
}

impl GateOutcome {
    /// The documented exit codes (README, `vigil gate --help`); 64 is a wrong invocation.
    pub fn exit_code(&self) -> u8 {
        match self {
            GateOutcome::Passed => 0,
            GateOutcome::Stopped => 1,
            GateOutcome::TimedOut => 2,
            GateOutcome::Unreachable => 3,
            GateOutcome::Refused => 4,
        }
    }
}

/// Exit codes of `vigil gate`, for its `--help`.
pub const EXIT_CODES: &str = "Exit codes: 0 the release passed; 1 it was stopped (paused, rolled \
back, cancelled or failed); 2 no outcome within --timeout; 3 the server could not be reached \
at the last try; 4 the server refused the request (wrong token, unknown release) or answered \
something else; 64 a wrong invocation (a --server without http:// or https://, no token).";

/// Checks `--server` at once: an http or https URL with a host (a bare HOST:PORT would be
/// retried until the timeout).
pub(crate) fn server_url(text: &str) -> Result<String, String> {
    let rest = text
        .strip_prefix("http://")
        .or_else(|| text.strip_prefix("https://"))
        .ok_or_else(|| {
            format!("{text:?} is not a URL: give the scheme, for example http://{text}")
        })?;
    if rest.trim_end_matches('/').is_empty() || rest.starts_with(':') {
        return Err(format!("{text:?} names no host"));
    }
    Ok(text.trim_end_matches('/').to_owned())
}

pub fn run(args: GateArgs) -> anyhow::Result<GateOutcome> {
    let token = match args.token {
        Some(token) => token,
        None => {
            std::env::var("VIGIL_TOKEN").context("no token: pass --token or set VIGIL_TOKEN")?
        }
    };
    let url = format!("{}/api/v1/releases/{}/verdict", args.server, args.release);
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_secs(30)))
        .http_status_as_error(false)
        .build()
        .into();
    let polls = (args.timeout / args.interval.max(1)).max(1);
    let mut last_line = String::new();
    let mut reached = false;
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
                // A restarting server comes back: try again until the timeout.
                crate::say(&format!("cannot reach {url}: {error}; retrying"));
                reached = false;
                continue;
            }
        };
        reached = true;
        let status = response.status();
        let body = match response.body_mut().read_to_string() {
            Ok(body) => body,
            Err(error) => {
                crate::say(&format!(
                    "cannot read the answer of {url}: {error}; retrying"
                ));
                reached = false;
                continue;
            }
        };
        if !status.is_success() {
            crate::say(&format!("server answered {status}: {}", body.trim()));
            return Ok(GateOutcome::Refused);
        }
        let Ok(answer) = serde_json::from_str::<VerdictAnswer>(&body) else {
            crate::say(&format!("unexpected answer from {url}: {}", body.trim()));
            return Ok(GateOutcome::Refused);
        };
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
    if !reached {
        crate::say(&format!(
            "release {}: could not reach {} within {} s",
            args.release, args.server, args.timeout
        ));
        return Ok(GateOutcome::Unreachable);
    }
    crate::say(&format!(
        "release {}: no outcome after {} s",
        args.release, args.timeout
    ));
    Ok(GateOutcome::TimedOut)
}
