//! Restart safety: `vigil serve` killed with SIGKILL in the middle of a live release, then
//! started again on the same store, carries on: the release keeps its state and its data, and
//! pauses when the fault comes. On SQLite, and on PostgreSQL when `VIGIL_TEST_POSTGRES` names a
//! server (a database of its own).
#![allow(clippy::unwrap_used, clippy::print_stdout)]

mod support;

use std::time::Duration;

use serde_json::json;
use support::{call, create_token, free_port, now_seconds, scratch_postgres, serve, Dir};

const STEP: i64 = 2;

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
fn a_server_killed_mid_release_resumes_it_and_pauses_on_the_fault_on_sqlite() {
    let dir = Dir::new("restart");
    let database = dir.0.join("vigil.db");
    killed_mid_release_resumes_and_pauses(&database.display().to_string());
}

#[test]
fn a_server_killed_mid_release_resumes_it_and_pauses_on_the_fault_on_postgres() {
    let Some(scratch) = scratch_postgres("the restart test") else {
        return;
    };
    killed_mid_release_resumes_and_pauses(scratch.url());
}

fn killed_mid_release_resumes_and_pauses(database: &str) {
    let token = create_token(database, "admin");

    let port = free_port();
    let first = serve(database, port);
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
            "metrics": [{"name": "latency_ms", "kind": "middleware", "direction": "increase",
                         "critical": true}],
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

    let _second = serve(database, port);
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
