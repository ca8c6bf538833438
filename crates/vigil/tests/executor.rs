//! Vigil ships releases to real agents: three `vigil agent` processes on loopback against a real
//! `vigil serve` (SQLite), a real artifact uploaded through the API, each agent's deploy step a
//! small shell template. Each host's "app" (a thread here) reads the version its agent put on
//! disk and sends its request metrics through the ingest API as an exporter would; the faulty
//! build's error ratio climbs. In turn: a two-batch release completes; a faulty one is paused
//! before its second batch and rolled back on request (every host's disk holds the previous
//! version again); the server is killed with SIGKILL mid-batch and restarted, and the release
//! goes on without deploying a host twice; an agent is killed mid-batch and the release pauses
//! with that reason.
#![allow(clippy::unwrap_used, clippy::print_stdout)]

mod support;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};
use support::{
    call, create_token, free_port, now_seconds, scratch_postgres, serve_with_config,
    upload_artifact, vigil, Dir, Server,
};

const APP: &str = "shop";
const HOSTS: [&str; 3] = ["h1", "h2", "h3"];
const ERRORS: &str = "http_error_ratio";

/// A `vigil agent` child process and where it keeps its state.
struct Agent {
    child: Child,
    host: String,
    state: PathBuf,
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What the agent's deploy step does: installs the artifact as the version's `app.conf`, after
/// a short pause (a restart), and notes the run in the host's own record.
fn deploy_template(state: &Path) -> String {
    let runs = state.join("runs.log");
    format!(
        "sleep 1; mkdir -p {{dir}} && (test {{artifact}} -ef {{dir}}/app.conf || cp {{artifact}} {{dir}}/app.conf) && echo {{version}} >> {}",
        runs.display()
    )
}

fn start_agent(port: u16, token: &str, host: &str, root: &Path) -> Agent {
    let state = root.join(host);
    std::fs::create_dir_all(&state).unwrap();
    let log = std::fs::File::create(root.join(format!("{host}.log"))).unwrap();
    let child = vigil()
        .args(["agent", "--server", &format!("http://127.0.0.1:{port}")])
        .args(["--token", token, "--app", APP, "--host", host])
        .args(["--label", "role=web", "--metrics-interval", "1"])
        .args(["--peer-listen", "127.0.0.1:0"])
        .arg("--state-dir")
        .arg(&state)
        .arg("--deploy-command")
        .arg(deploy_template(&state))
        .stdout(Stdio::null())
        .stderr(Stdio::from(log))
        .spawn()
        .unwrap();
    Agent {
        child,
        host: host.to_string(),
        state,
    }
}

/// The version the agent says the host runs (`<state>/current`).
fn current(state: &Path) -> Option<String> {
    std::fs::read_to_string(state.join("current"))
        .ok()
        .map(|text| text.trim().to_string())
}

/// The versions the host's deploy step installed, in order (its own record).
fn runs(state: &Path) -> Vec<String> {
    std::fs::read_to_string(state.join("runs.log"))
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect()
}

/// The error ratio a build ships with (`error_ratio=0.2` on its first line).
fn shipped_error_ratio(state: &Path, version: &str) -> f64 {
    let installed = state.join("versions").join(version).join("app.conf");
    let text = std::fs::read(installed).unwrap_or_default();
    let first_line = text.split(|byte| *byte == b'\n').next().unwrap_or_default();
    String::from_utf8_lossy(first_line)
        .strip_prefix("error_ratio=")
        .and_then(|value| value.trim().parse().ok())
        .unwrap_or(0.0)
}

/// POSTs without panicking (the server may be down for a while): the status, or None.
fn try_post(port: u16, token: &str, path: &str, body: &Value) -> Option<u16> {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_secs(5)))
        .http_status_as_error(false)
        .build()
        .into();
    agent
        .post(&format!("http://127.0.0.1:{port}{path}"))
        .header("Authorization", &format!("Bearer {token}"))
        .header("Content-Type", "application/json")
        .send(body.to_string().as_bytes())
        .ok()
        .map(|response| response.status().as_u16())
}

/// A host's base error ratio at `t`, with a little noise.
fn base_ratio(host_index: usize, t: i64) -> f64 {
    0.01 + ((t * 7 + host_index as i64 * 13) % 11 - 5) as f64 * 0.0005
}

fn samples(host_index: usize, t: i64, ratio: f64) -> Value {
    let host = HOSTS[host_index];
    json!([
        {"host": host, "app": APP, "metric": ERRORS, "time": t, "value": ratio},
        {"host": host, "app": APP, "metric": "http_requests_per_second", "time": t,
         "value": 100.0 + ((t + host_index as i64) % 7) as f64},
    ])
}

/// Each host's app: every second, the error ratio of the version on its disk, climbing to
/// what the build ships over 15 s after a switch.
fn run_apps(port: u16, token: String, states: Vec<PathBuf>, stop: Arc<AtomicBool>) {
    let mut seen: Vec<(Option<String>, i64)> = vec![(None, 0); states.len()];
    let mut last = 0;
    while !stop.load(Ordering::SeqCst) {
        let t = now_seconds() as i64;
        if t > last {
            let mut all = Vec::new();
            for (index, state) in states.iter().enumerate() {
                let version = current(state);
                if version != seen[index].0 {
                    seen[index] = (version.clone(), t);
                }
                let shipped = version
                    .as_deref()
                    .map(|version| shipped_error_ratio(state, version))
                    .unwrap_or(0.0);
                let climbed = ((t - seen[index].1) as f64 / 15.0).min(1.0);
                let ratio = base_ratio(index, t) + shipped * climbed;
                all.extend(samples(index, t, ratio).as_array().unwrap().clone());
            }
            let body = json!({"samples": all, "key": format!("app-{t}")});
            if try_post(port, &token, "/api/v1/ingest/samples", &body) == Some(200) {
                last = t;
            }
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// An artifact: the build's settings on its first line, then a payload of a few pieces.
fn artifact(path: &Path, error_ratio: f64, salt: u64) -> Vec<u8> {
    let mut bytes = format!("error_ratio={error_ratio}\n").into_bytes();
    let mut state = salt.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    while bytes.len() < 3 << 20 {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        bytes.extend_from_slice(&state.to_le_bytes());
    }
    std::fs::write(path, &bytes).unwrap();
    bytes
}

fn order(port: u16, token: &str, id: &str, version: &str, artifact: &str, plan: Value) {
    let (status, created) = call(
        port,
        "POST",
        "/api/v1/deployments",
        token,
        Some(json!({
            "id": id, "app": APP, "version": version, "artifact": artifact,
            "hosts": HOSTS, "plan": plan, "step_seconds": 2,
            "metrics": [{"name": ERRORS, "kind": "middleware", "direction": "increase",
                         "critical": true, "unit": "ratio"}],
            "settings": {"baseline_seconds": 120, "warmup_seconds": 4},
        })),
    );
    assert_eq!(status, 201, "{created}");
}

fn release(port: u16, token: &str, id: &str) -> Value {
    let (status, answer) = call(port, "GET", &format!("/api/v1/releases/{id}"), token, None);
    assert_eq!(status, 200, "{answer}");
    answer
}

fn execution(port: u16, token: &str, id: &str) -> Value {
    let (status, answer) = call(
        port,
        "GET",
        &format!("/api/v1/releases/{id}/execution"),
        token,
        None,
    );
    assert_eq!(status, 200, "{answer}");
    answer
}

/// Waits until the release is in `state`, failing early when it settles elsewhere.
fn wait_for_state(port: u16, token: &str, id: &str, state: &str, seconds: f64) -> Value {
    let deadline = now_seconds() + seconds;
    let mut last = Value::Null;
    while now_seconds() < deadline {
        last = release(port, token, id);
        if last["state"] == state {
            return last;
        }
        let settled = ["succeeded", "paused", "rolled_back", "cancelled", "failed"];
        let now = last["state"].as_str().unwrap_or("");
        assert!(
            !settled.contains(&now) || now == state,
            "{id} settled {now} waiting for {state}: {last}\n{}",
            execution(port, token, id)
        );
        std::thread::sleep(Duration::from_millis(250));
    }
    panic!(
        "{id} is not {state} after {seconds} s: {last}\n{}",
        execution(port, token, id)
    );
}

/// The release's deploy tasks per host.
fn deploy_tasks(execution: &Value) -> BTreeMap<String, Vec<Value>> {
    let mut tasks: BTreeMap<String, Vec<Value>> = BTreeMap::new();
    for task in execution["tasks"].as_array().unwrap() {
        if task["kind"] == "deploy" {
            tasks
                .entry(task["host"].as_str().unwrap().to_string())
                .or_default()
                .push(task.clone());
        }
    }
    tasks
}

/// Waits until a deploy task of `batch` is under way (sent to or started by its agent) and
/// returns its host.
fn wait_for_batch_under_way(port: u16, token: &str, id: &str, batch: u64, seconds: f64) -> String {
    let deadline = now_seconds() + seconds;
    while now_seconds() < deadline {
        let answer = execution(port, token, id);
        for task in answer["tasks"].as_array().unwrap() {
            let under_way = task["state"] == "sent" || task["state"] == "started";
            if task["kind"] == "deploy" && task["batch"] == batch && under_way {
                return task["host"].as_str().unwrap().to_string();
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("no deploy task of batch {batch} of {id} got under way in {seconds} s");
}

#[test]
fn releases_shipped_to_real_agents_complete_pause_roll_back_and_survive_kills_on_sqlite() {
    let dir = Dir::new("executor");
    let database = dir.0.join("vigil.db").display().to_string();
    ship_to_real_agents(&dir, &database);
}

#[test]
fn releases_shipped_to_real_agents_complete_pause_roll_back_and_survive_kills_on_postgres() {
    let Some(scratch) = scratch_postgres("the executor test with real agents") else {
        return;
    };
    let dir = Dir::new("executor-postgres");
    ship_to_real_agents(&dir, scratch.url());
}

fn ship_to_real_agents(dir: &Dir, database: &str) {
    let admin = create_token(database, "admin");
    let ingest = create_token(database, "ingest");
    let port = free_port();
    // The server keeps the artifacts in the test's folder, whatever the store.
    let config = dir.0.join("server.json");
    let artifacts = dir.0.join("artifacts");
    std::fs::write(
        &config,
        json!({"artifact_dir": artifacts.display().to_string()}).to_string(),
    )
    .unwrap();
    let server_log = dir.0.join("server.log");
    let mut server: Server = serve_with_config(database, port, &config, &server_log);

    // Two minutes of the hosts' history, as their exporters would have sent it.
    let start = now_seconds() as i64;
    for t in start - 130..start {
        let all: Vec<Value> = (0..HOSTS.len())
            .flat_map(|index| {
                samples(index, t, base_ratio(index, t))
                    .as_array()
                    .unwrap()
                    .clone()
            })
            .collect();
        let body = json!({"samples": all, "key": format!("history-{t}")});
        assert_eq!(
            try_post(port, &ingest, "/api/v1/ingest/samples", &body),
            Some(200)
        );
    }

    let agents_root = dir.0.join("agents");
    let mut agents: Vec<Agent> = HOSTS
        .iter()
        .map(|host| start_agent(port, &ingest, host, &agents_root))
        .collect();
    let states: Vec<PathBuf> = agents.iter().map(|agent| agent.state.clone()).collect();
    let stop_apps = Arc::new(AtomicBool::new(false));
    let apps = {
        let (token, states, stop) = (ingest.clone(), states.clone(), Arc::clone(&stop_apps));
        std::thread::spawn(move || run_apps(port, token, states, stop))
    };
    let registered_by = now_seconds() + 30.0;
    loop {
        let (_, listed) = call(port, "GET", "/api/v1/agents", &admin, None);
        let online = listed
            .as_array()
            .map(|list| list.iter().filter(|agent| agent["online"] == true).count())
            .unwrap_or(0);
        if online == HOSTS.len() {
            break;
        }
        assert!(
            now_seconds() < registered_by,
            "agents not registered: {listed}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }

    let healthy = [2, 4, 5].map(|version| {
        let path = dir.0.join(format!("shop-{version}.bin"));
        artifact(&path, 0.0, version);
        upload_artifact(
            port,
            &admin,
            &format!("shop-{version}.bin"),
            &std::fs::read(&path).unwrap(),
        )
    });
    let faulty_path = dir.0.join("shop-3.bin");
    artifact(&faulty_path, 0.2, 3);
    let faulty = upload_artifact(
        port,
        &admin,
        "shop-3.bin",
        &std::fs::read(&faulty_path).unwrap(),
    );

    // (a) Two batches, each watched, and the release completes on every host's disk.
    let began = now_seconds();
    order(
        port,
        &admin,
        "ship-2",
        "2",
        &healthy[0],
        json!([
        {"size": "1", "observe_seconds": 8}, {"size": "100%", "observe_seconds": 8}]),
    );
    wait_for_state(port, &admin, "ship-2", "succeeded", 120.0);
    println!(
        "a two-batch release completed in {:.0} s",
        now_seconds() - began
    );
    let shipped = execution(port, &admin, "ship-2");
    assert_eq!(shipped["batches"].as_array().unwrap().len(), 2, "{shipped}");
    let tasks = deploy_tasks(&shipped);
    for agent in &agents {
        assert_eq!(
            current(&agent.state).as_deref(),
            Some("2"),
            "{}",
            agent.host
        );
        assert_eq!(runs(&agent.state), vec!["2"], "{}", agent.host);
        let host_tasks = &tasks[&agent.host];
        assert_eq!(host_tasks.len(), 1, "{shipped}");
        assert_eq!(host_tasks[0]["state"], "succeeded", "{shipped}");
    }

    // (b) The faulty build's error ratio climbs on the first batch's host: paused before the
    // second batch, then rolled back on request.
    let began = now_seconds();
    order(
        port,
        &admin,
        "ship-3",
        "3",
        &faulty,
        json!([
        {"size": "1", "observe_seconds": 120}, {"size": "100%", "observe_seconds": 8}]),
    );
    let paused = wait_for_state(port, &admin, "ship-3", "paused", 120.0);
    println!(
        "the faulty release paused {:.0} s after its order: {}",
        now_seconds() - began,
        paused["reason"]
    );
    assert!(
        paused["reason"].as_str().unwrap().contains(ERRORS),
        "{paused}"
    );
    let stopped = execution(port, &admin, "ship-3");
    let tasks = deploy_tasks(&stopped);
    assert_eq!(tasks.len(), 1, "only the first batch deployed: {stopped}");
    let (first_host, _) = tasks.iter().next().unwrap();
    for agent in &agents {
        let expected = if &agent.host == first_host { "3" } else { "2" };
        assert_eq!(
            current(&agent.state).as_deref(),
            Some(expected),
            "{}",
            agent.host
        );
    }
    let (status, answer) = call(
        port,
        "POST",
        "/api/v1/releases/ship-3/rollback",
        &admin,
        Some(json!({"reason": "errors climb on the first host"})),
    );
    assert_eq!(status, 200, "{answer}");
    wait_for_state(port, &admin, "ship-3", "rolled_back", 60.0);
    for agent in &agents {
        assert_eq!(
            current(&agent.state).as_deref(),
            Some("2"),
            "{}",
            agent.host
        );
    }
    let rolled = execution(port, &admin, "ship-3");
    let rollbacks: Vec<&Value> = rolled["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|task| task["kind"] == "rollback")
        .collect();
    assert_eq!(rollbacks.len(), 1, "{rolled}");
    assert_eq!(rollbacks[0]["host"], first_host.as_str(), "{rolled}");
    assert_eq!(rollbacks[0]["state"], "succeeded", "{rolled}");

    // (d) The server dies without warning while a batch deploys, and starts again on the same
    // store: the release goes on, and no host is deployed twice.
    order(
        port,
        &admin,
        "ship-4",
        "4",
        &healthy[1],
        json!([
        {"size": "1", "observe_seconds": 6}, {"size": "2", "observe_seconds": 6},
        {"size": "100%", "observe_seconds": 6}]),
    );
    let deploying = wait_for_batch_under_way(port, &admin, "ship-4", 1, 90.0);
    server.0.kill().unwrap(); // SIGKILL
    server.0.wait().unwrap();
    println!("server killed while {deploying} deployed batch 1");
    std::thread::sleep(Duration::from_secs(2));
    server = serve_with_config(database, port, &config, &dir.0.join("server-again.log"));
    wait_for_state(port, &admin, "ship-4", "succeeded", 120.0);
    let continued = execution(port, &admin, "ship-4");
    let tasks = deploy_tasks(&continued);
    assert_eq!(tasks.len(), HOSTS.len(), "{continued}");
    for agent in &agents {
        assert_eq!(tasks[&agent.host].len(), 1, "{continued}");
        assert_eq!(
            current(&agent.state).as_deref(),
            Some("4"),
            "{}",
            agent.host
        );
        let installs = runs(&agent.state)
            .iter()
            .filter(|version| version.as_str() == "4")
            .count();
        assert_eq!(
            installs, 1,
            "{} ran the deploy step {installs} times",
            agent.host
        );
    }

    // (c) An agent killed while its batch deploys: the release pauses, naming it.
    order(
        port,
        &admin,
        "ship-5",
        "5",
        &healthy[2],
        json!([
        {"size": "1", "observe_seconds": 6}, {"size": "100%", "observe_seconds": 6}]),
    );
    let deploying = wait_for_batch_under_way(port, &admin, "ship-5", 0, 90.0);
    let killed_at = now_seconds();
    let victim = agents
        .iter_mut()
        .find(|agent| agent.host == deploying)
        .unwrap();
    victim.child.kill().unwrap(); // SIGKILL
    victim.child.wait().unwrap();
    let paused = wait_for_state(port, &admin, "ship-5", "paused", 60.0);
    println!(
        "paused {:.0} s after the agent of {deploying} was killed: {}",
        now_seconds() - killed_at,
        paused["reason"]
    );
    assert!(
        paused["reason"].as_str().unwrap().contains(&deploying),
        "{paused}"
    );

    stop_apps.store(true, Ordering::SeqCst);
    apps.join().unwrap();
    drop(agents);
    drop(server);
}
