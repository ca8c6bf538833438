//! The demo's story, told through the API as an operator would: upload two builds of `shop`,
//! ship the healthy one batch by batch until it succeeds, then the faulty one until Vigil
//! pauses it, printing each step.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, bail, Context};
use serde_json::{json, Value};
use vigil_core::Clock;

use super::fleet;

/// The app the simulated fleet runs.
pub const APP: &str = "shop";

/// A healthy build: the version the fleet moves to first.
pub const HEALTHY_BUILD: &str = "# shop 2: a healthy build\nerror_ratio=0\nlatency_factor=1.0\n";
/// A faulty build: its checkout throws on a missing reservation, and requests fail more and
/// more.
pub const FAULTY_BUILD: &str =
    "# shop 3: checkout reserves stock after charging, and throws when it is gone\n\
error_ratio=0.06\n\
latency_factor=1.15\n\
ramp_seconds=30\n\
exception=java.lang.IllegalStateException: no reservation for order\n\
exceptions_per_minute=12\n";

/// Bytes of an artifact: its settings, then filler lines as a build's payload would be.
const ARTIFACT_BYTES: usize = 2 << 20;

/// How the story is timed and whom it talks to.
#[derive(Debug, Clone)]
pub struct Story {
    pub base_url: String,
    pub admin_token: String,
    pub hosts: usize,
    /// Seconds of data before the first release, the baseline the guard compares with.
    pub baseline_seconds: i64,
    /// Seconds each batch is watched before the next.
    pub observe_seconds: i64,
    pub clock: Arc<dyn Clock>,
    /// When the demo started (Unix seconds), for the elapsed times printed.
    pub started_at: i64,
}

impl Story {
    fn say(&self, line: &str) {
        let elapsed = (self.clock.now() - self.started_at).max(0);
        crate::say(&format!("[{:>2}:{:02}] {line}", elapsed / 60, elapsed % 60));
    }
}

/// A JSON client of the demo's own server.
#[derive(Debug)]
struct Client {
    agent: ureq::Agent,
    base_url: String,
    authorization: String,
}

impl Client {
    fn new(story: &Story) -> Client {
        Client {
            agent: ureq::Agent::config_builder()
                .timeout_global(Some(Duration::from_secs(30)))
                .http_status_as_error(false)
                .build()
                .into(),
            base_url: story.base_url.clone(),
            authorization: format!("Bearer {}", story.admin_token),
        }
    }

    fn answer(
        response: Result<ureq::http::Response<ureq::Body>, ureq::Error>,
        what: &str,
    ) -> anyhow::Result<(u16, Value)> {
        let mut response = response.with_context(|| format!("{what} failed"))?;
        let status = response.status().as_u16();
        let text = response.body_mut().read_to_string().unwrap_or_default();
        let value = serde_json::from_str(&text).unwrap_or(Value::String(text));
        Ok((status, value))
    }

    fn get(&self, path: &str) -> anyhow::Result<Value> {
        let response = self
            .agent
            .get(&format!("{}{path}", self.base_url))
            .header("Authorization", &self.authorization)
            .call();
        match Self::answer(response, &format!("GET {path}"))? {
            (200, value) => Ok(value),
            (status, value) => bail!("GET {path} answered {status}: {value}"),
        }
    }

    fn post_json(&self, path: &str, body: &Value) -> anyhow::Result<Value> {
        let response = self
            .agent
            .post(&format!("{}{path}", self.base_url))
            .header("Authorization", &self.authorization)
            .header("Content-Type", "application/json")
            .send(body.to_string().as_bytes());
        match Self::answer(response, &format!("POST {path}"))? {
            (200 | 201, value) => Ok(value),
            (status, value) => bail!("POST {path} answered {status}: {value}"),
        }
    }

    fn post_bytes(&self, path: &str, body: &[u8]) -> anyhow::Result<Value> {
        let response = self
            .agent
            .post(&format!("{}{path}", self.base_url))
            .header("Authorization", &self.authorization)
            .header("Content-Type", "application/octet-stream")
            .send(body);
        match Self::answer(response, &format!("POST {path}"))? {
            (200 | 201, value) => Ok(value),
            (status, value) => bail!("POST {path} answered {status}: {value}"),
        }
    }
}

/// An artifact's bytes: the build's settings, then filler up to [`ARTIFACT_BYTES`].
pub fn artifact_bytes(settings: &str) -> Vec<u8> {
    let mut bytes = settings.as_bytes().to_vec();
    let mut line = 0u64;
    while bytes.len() < ARTIFACT_BYTES {
        bytes.extend_from_slice(
            format!("# payload {line:08} ................................................\n")
                .as_bytes(),
        );
        line += 1;
    }
    bytes
}

/// What the guard judges in the demo's releases.
fn metrics() -> Value {
    json!([
        {"name": fleet::ERRORS, "kind": "middleware", "direction": "increase", "critical": true, "unit": "ratio"},
        {"name": fleet::LATENCY, "kind": "middleware", "direction": "increase", "critical": true, "unit": "ms"},
        {"name": fleet::REQUESTS, "kind": "business", "direction": "decrease"},
        {"name": fleet::CPU, "kind": "system", "direction": "increase", "unit": "ratio"},
        {"name": fleet::MEMORY, "kind": "system", "direction": "increase", "unit": "ratio"},
        {"name": fleet::LOAD, "kind": "system", "direction": "increase"},
    ])
}

/// Runs the story to the faulty release's pause (or whatever stops it), printing each step.
pub fn run(story: &Story) -> anyhow::Result<()> {
    let client = Client::new(story);
    wait_for_fleet(story, &client)?;
    let healthy = upload(story, &client, "shop-2.conf", HEALTHY_BUILD)?;
    let faulty = upload(story, &client, "shop-3.conf", FAULTY_BUILD)?;

    story.say(&format!(
        "collecting {} s of baseline from the fleet before the first release",
        story.baseline_seconds
    ));
    std::thread::sleep(Duration::from_secs(story.baseline_seconds.max(0) as u64));

    let observe = story.observe_seconds;
    let first = order(
        story,
        "shop-2",
        "2",
        &healthy,
        json!([
            {"size": "1", "observe_seconds": observe},
            {"size": "50%", "observe_seconds": observe},
            {"size": "100%", "observe_seconds": observe},
        ]),
    );
    let ended = ship(story, &client, "shop-2", &first)?;
    if ended["state"] != "succeeded" {
        story.say(&format!(
            "shop-2 ended {} instead of succeeding: {}",
            ended["state"], ended["reason"]
        ));
    }

    let second = order(
        story,
        "shop-3",
        "3",
        &faulty,
        json!([
            {"size": "25%", "observe_seconds": observe * 3},
            {"size": "100%", "observe_seconds": observe},
        ]),
    );
    let stopped = ship(story, &client, "shop-3", &second)?;
    if stopped["state"] == "paused" {
        story.say(&format!(
            "first paused release: shop-3, {} after the demo started",
            elapsed_words(story.clock.now() - story.started_at)
        ));
        story.say(&format!(
            "see why at {}/releases/shop-3 (evidence, charts, the hosts' progress); roll it back there or with POST /api/v1/releases/shop-3/rollback",
            story.base_url
        ));
    }
    Ok(())
}

fn elapsed_words(seconds: i64) -> String {
    format!("{} min {:02} s", seconds / 60, seconds % 60)
}

fn wait_for_fleet(story: &Story, client: &Client) -> anyhow::Result<()> {
    for _ in 0..120 {
        let agents = client.get("/api/v1/agents")?;
        let online = agents
            .as_array()
            .map(|list| list.iter().filter(|agent| agent["online"] == true).count())
            .unwrap_or(0);
        if online >= story.hosts {
            story.say(&format!(
                "{online} agents registered and sending metrics and logs"
            ));
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    Err(anyhow!(
        "the simulated agents did not register within a minute"
    ))
}

fn upload(story: &Story, client: &Client, name: &str, settings: &str) -> anyhow::Result<String> {
    let record = client.post_bytes(
        &format!("/api/v1/artifacts?name={name}"),
        &artifact_bytes(settings),
    )?;
    let sha256 = record["manifest"]["sha256"]
        .as_str()
        .ok_or_else(|| anyhow!("the artifact upload answered without a sha256: {record}"))?
        .to_string();
    let pieces = record["manifest"]["pieces"]
        .as_array()
        .map(Vec::len)
        .unwrap_or(0);
    story.say(&format!(
        "uploaded {name}: {} pieces, sha256 {}…",
        pieces,
        sha256.get(..12).unwrap_or(&sha256)
    ));
    Ok(sha256)
}

fn order(story: &Story, id: &str, version: &str, artifact: &str, plan: Value) -> Value {
    json!({
        "id": id, "app": APP, "version": version, "artifact": artifact,
        "hosts": {"selector": "role=\"web\""},
        "plan": plan,
        "step_seconds": 2,
        "metrics": metrics(),
        "settings": {"baseline_seconds": story.baseline_seconds, "warmup_seconds": 6},
    })
}

/// States in which a release moves no further by itself.
fn is_settled(state: &str) -> bool {
    matches!(
        state,
        "succeeded" | "paused" | "rolled_back" | "cancelled" | "failed"
    )
}

/// Orders the release and prints its progress until it settles; returns the release.
fn ship(story: &Story, client: &Client, id: &str, order: &Value) -> anyhow::Result<Value> {
    let created = client.post_json("/api/v1/deployments", order)?;
    let batches = created["spec"]["batches"]
        .as_array()
        .map(Vec::len)
        .unwrap_or(0);
    story.say(&format!(
        "{id}: release of version {} to {} hosts in {batches} batches ordered",
        order["version"].as_str().unwrap_or_default(),
        created["spec"]["hosts"]
            .as_array()
            .map(Vec::len)
            .unwrap_or(0),
    ));
    let mut said: BTreeMap<String, String> = BTreeMap::new();
    let mut tell = |key: String, line: String| {
        if said.get(&key) != Some(&line) {
            story.say(&line);
            said.insert(key, line);
        }
    };
    // Long enough for every batch's observation, with room for distribution and holds.
    for _ in 0..1800 {
        let release = client.get(&format!("/api/v1/releases/{id}"))?;
        let execution = client.get(&format!("/api/v1/releases/{id}/execution"))?;
        for line in progress_lines(id, &execution) {
            tell(line.0, line.1);
        }
        let state = release["state"].as_str().unwrap_or("unknown").to_string();
        let reason = release["reason"].as_str().unwrap_or("").to_string();
        let state_line = if reason.is_empty() {
            format!("{id}: {state}")
        } else {
            format!("{id}: {state}: {reason}")
        };
        tell("state".to_string(), state_line);
        if is_settled(&state) {
            return Ok(release);
        }
        std::thread::sleep(Duration::from_secs(1));
    }
    Err(anyhow!("{id} did not settle within half an hour"))
}

/// One line per batch and per step of the distribution, keyed so that each is printed when it
/// changes.
fn progress_lines(id: &str, execution: &Value) -> Vec<(String, String)> {
    let mut lines = Vec::new();
    let distribution = execution["distribution"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    if !distribution.is_empty() {
        let verified = distribution
            .iter()
            .filter(|host| host["verified"] == true)
            .count();
        let done = if verified == distribution.len() {
            "done".to_string()
        } else {
            "under way".to_string()
        };
        lines.push((
            "distribution".to_string(),
            format!(
                "{id}: artifact on {verified} of {} hosts, verified ({done})",
                distribution.len()
            ),
        ));
    }
    for batch in execution["batches"].as_array().cloned().unwrap_or_default() {
        let hosts: Vec<&str> = batch["hosts"]
            .as_array()
            .map(|list| list.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        let state = batch["state"].as_str().unwrap_or("");
        lines.push((
            format!("batch {}", batch["index"]),
            format!(
                "{id}: batch {} ({}) {state}",
                batch["index"],
                hosts.join(", ")
            ),
        ));
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_builds_say_how_they_behave_through_the_fleet_s_own_reader() {
        let healthy =
            fleet::Behaviour::parse(std::str::from_utf8(&artifact_bytes(HEALTHY_BUILD)).unwrap())
                .unwrap();
        let faulty =
            fleet::Behaviour::parse(std::str::from_utf8(&artifact_bytes(FAULTY_BUILD)).unwrap())
                .unwrap();
        assert_eq!(healthy.error_ratio, 0.0);
        assert!(faulty.error_ratio > 0.05);
        assert!(faulty.exception.is_some());
        assert!(artifact_bytes(FAULTY_BUILD).len() >= ARTIFACT_BYTES);
    }

    #[test]
    fn progress_names_each_batch_and_the_distribution() {
        let execution = json!({
            "batches": [{"index": 0, "hosts": ["web-1"], "state": "deploying"}],
            "distribution": [{"host": "web-1", "verified": true}, {"host": "web-2", "verified": false}],
        });
        let lines = progress_lines("shop-2", &execution);
        assert_eq!(
            lines[0].1,
            "shop-2: artifact on 1 of 2 hosts, verified (under way)"
        );
        assert_eq!(lines[1].1, "shop-2: batch 0 (web-1) deploying");
    }
}
