//! Restart safety: `vigil serve` killed with SIGKILL in the middle of a live release, then
//! started again on the same store, carries on: the release keeps its state and its data, and
//! pauses when the fault comes.
#![allow(clippy::unwrap_used, clippy::print_stdout)]

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::json;

const STEP: i64 = 2;

struct Dir(PathBuf);

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn vigil() -> Command {
    Command::new(env!("CARGO_BIN_EXE_vigil"))
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn serve(database: &Path, port: u16) -> Server {
    let child = vigil()
        .args([
            "serve",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--database",
        ])
        .arg(database)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let server = Server(child);
    for _ in 0..200 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return server;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("vigil serve did not start listening on {port}");
}

#[allow(clippy::disallowed_methods)] // the server runs on the wall clock; so does its feeder
fn now_seconds() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

fn call(
    port: u16,
    method: &str,
    path: &str,
    token: &str,
    body: Option<serde_json::Value>,
) -> (u16, serde_json::Value) {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_secs(20)))
        .http_status_as_error(false)
        .build()
        .into();
    let url = format!("http://127.0.0.1:{port}{path}");
    let authorization = format!("Bearer {token}");
    let result = match body {
        None if method == "GET" => agent
            .get(&url)
            .header("Authorization", &authorization)
            .call(),
        None => agent
            .post(&url)
            .header("Authorization", &authorization)
            .send_empty(),
        Some(value) => agent
            .post(&url)
            .header("Authorization", &authorization)
            .header("Content-Type", "application/json")
            .send(value.to_string().as_bytes()),
    };
    let mut response = result.unwrap();
    let status = response.status().as_u16();
    let text = response.body_mut().read_to_string().unwrap_or_default();
    (
        status,
        serde_json::from_str(&text).unwrap_or(json!({ "text": text })),
    )
}

const RELEASE_HOSTS: [&str; 4] = ["r1", "r2", "r3", "r4"];
const REFERENCE_HOSTS: [&str; 4] = ["k1", "k2", "k3", "k4"];

/// Latency of a host at time `t`: about 100 ms with a little noise, three times that on release
/// hosts once the fault has started.
fn latency(host_index: usize, t: i64, fault_from: Option<i64>, release_host: bool) -> f64 {
    let noise = ((t * 7 + host_index as i64 * 13) % 11) as f64 - 5.0;
    let base = 100.0 + noise;
    match fault_from {
        Some(from) if release_host && t >= from => base * 3.0,
        _ => base,
    }
}

fn samples_at(t: i64, fault_from: Option<i64>) -> serde_json::Value {
    let mut samples = Vec::new();
    for (index, host) in RELEASE_HOSTS
        .iter()
        .chain(REFERENCE_HOSTS.iter())
        .enumerate()
    {
        let release_host = index < RELEASE_HOSTS.len();
        samples.push(
            json!({"host": host, "app": "shop", "metric": "latency_ms", "time": t,
            "value": latency(index, t, fault_from, release_host)}),
        );
        samples.push(
            json!({"host": host, "app": "shop", "metric": "cpu", "time": t,
            "value": 40.0 + ((t + index as i64) % 5) as f64}),
        );
    }
    json!({ "samples": samples, "key": format!("t{t}") })
}

#[test]
fn a_server_killed_mid_release_resumes_it_and_pauses_on_the_fault() {
    let dir = Dir(std::env::temp_dir().join(format!("vigil-restart-{}", std::process::id())));
    let _ = std::fs::remove_dir_all(&dir.0);
    std::fs::create_dir_all(&dir.0).unwrap();
    let database = dir.0.join("vigil.db");
    let output = vigil()
        .args(["token", "create", "--role", "admin", "--database"])
        .arg(&database)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let token = String::from_utf8(output.stdout).unwrap().trim().to_string();

    let port = free_port();
    let first = serve(&database, port);
    let start = now_seconds() as i64;
    // Two minutes of baseline, already past.
    for t in (start - 130..=start).step_by(1) {
        let (status, answer) = call(
            port,
            "POST",
            "/api/v1/ingest/samples",
            &token,
            Some(samples_at(t, None)),
        );
        assert_eq!(status, 200, "{answer}");
    }
    let (status, created) = call(
        port,
        "POST",
        "/api/v1/releases",
        &token,
        Some(json!({
            "id": "restart-1", "app": "shop", "version": "2",
            "hosts": RELEASE_HOSTS, "reference": {"type": "hosts", "hosts": REFERENCE_HOSTS},
            "step_seconds": STEP, "observe_seconds": 3600,
            "settings": {"baseline_seconds": 120, "warmup_seconds": 4},
        })),
    );
    assert_eq!(status, 201, "{created}");
    let (status, answer) = call(
        port,
        "POST",
        "/api/v1/releases/restart-1/batches/0/deployed",
        &token,
        Some(json!({"at": start})),
    );
    assert_eq!(status, 200, "{answer}");

    let fault_from = start + 20;
    let mut last_fed = start;
    let feed_until = |port: u16, until: f64, last_fed: &mut i64| {
        while now_seconds() < until {
            let t = now_seconds() as i64;
            if t > *last_fed {
                let (status, answer) = call(
                    port,
                    "POST",
                    "/api/v1/ingest/samples",
                    &token,
                    Some(samples_at(t, Some(fault_from))),
                );
                assert_eq!(status, 200, "{answer}");
                *last_fed = t;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    };
    // Healthy for a while, then the server dies without warning.
    feed_until(port, start as f64 + 10.0, &mut last_fed);
    let (_, before) = call(port, "GET", "/api/v1/releases/restart-1", &token, None);
    assert_eq!(before["state"], "observing", "{before}");
    let mut killed = first;
    killed.0.kill().unwrap(); // SIGKILL
    killed.0.wait().unwrap();
    drop(killed);

    let _second = serve(&database, port);
    let (_, after) = call(port, "GET", "/api/v1/releases/restart-1", &token, None);
    assert_eq!(after["state"], "observing", "{after}");
    assert_eq!(after["deployed"], before["deployed"]);

    // The fault starts 20 s after the deploy; the release must pause within a minute of it.
    let deadline = fault_from as f64 + 60.0;
    let mut paused = None;
    while now_seconds() < deadline {
        feed_until(port, now_seconds() + 1.0, &mut last_fed);
        let (_, release) = call(port, "GET", "/api/v1/releases/restart-1", &token, None);
        if release["state"] == "paused" {
            paused = Some(release);
            break;
        }
    }
    let paused = paused.expect("the release did not pause after the restart");
    let (_, findings) = call(
        port,
        "GET",
        "/api/v1/releases/restart-1/findings",
        &token,
        None,
    );
    let latest = &findings["latest"];
    println!("paused: {} at {}", paused["reason"], latest["at"]);
    assert_eq!(latest["verdict"], "fault");
    assert!(
        latest["at"].as_i64().unwrap() >= fault_from,
        "paused before the fault: {latest}"
    );
    let signals: Vec<String> = latest["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|finding| finding["signal"]["name"].as_str().unwrap_or("").to_string())
        .collect();
    assert!(signals.contains(&"latency_ms".to_string()), "{signals:?}");
    // Every transition survived: create, batch deployed, pause.
    let (_, transitions) = call(
        port,
        "GET",
        "/api/v1/releases/restart-1/transitions",
        &token,
        None,
    );
    let actions: Vec<&str> = transitions
        .as_array()
        .unwrap()
        .iter()
        .map(|transition| transition["action"].as_str().unwrap())
        .collect();
    assert_eq!(actions, vec!["create", "batch_deployed", "pause"]);
}
