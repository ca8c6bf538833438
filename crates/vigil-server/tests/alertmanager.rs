//! Alerts from a real Alertmanager (Debian's `prometheus-alertmanager`, or
//! `VIGIL_ALERTMANAGER`), posted by its webhook receiver to Vigil: an alert on a release host
//! only pauses the release; the same alert on a reference host too does not.
//!
//! Two releases run at once on a server started in-process, each with healthy data: `shop-1`
//! (hosts r1, r2; reference k1, k2) and `cart-1` (hosts c1, c2; reference d1, d2). After their
//! deploy, the test pushes alerts into Alertmanager's own API, as Prometheus would: a critical
//! `HighErrorRate` of app shop on `r1:9100`, and the same of app cart on `c1:9100` and
//! `d1:9100`. Alertmanager groups them and posts them to `POST /api/v1/alerts/alertmanager`
//! with the ingest token.
//!
//! Without the binary the test says SKIPPED loudly and passes, unless
//! `VIGIL_REQUIRE_ALERTMANAGER` is set (as CI does), when it fails.
#![allow(clippy::unwrap_used, clippy::print_stdout, clippy::print_stderr)]

mod support;

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::{json, Value};
use support::prometheus::{binary_or_skip, free_port};
use support::{TempDir, TestServer};
use vigil_core::{Clock, SystemClock};

/// An Alertmanager on a loopback port, its data in a temporary directory, killed on drop.
struct Alertmanager {
    child: Child,
    url: String,
    dir: TempDir,
}

impl Alertmanager {
    fn start(binary: &PathBuf, config: &str) -> Alertmanager {
        let dir = TempDir::new("alertmanager");
        let config_path = dir.0.join("alertmanager.yml");
        std::fs::write(&config_path, config).unwrap();
        let port = free_port();
        let child = Command::new(binary)
            .arg(format!("--config.file={}", config_path.display()))
            .arg(format!("--storage.path={}", dir.0.join("data").display()))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            // No gossip with peers: a single instance.
            .arg("--cluster.listen-address=")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.0.join("alertmanager.log")).unwrap())
            .spawn()
            .unwrap();
        let alertmanager = Alertmanager {
            child,
            url: format!("http://127.0.0.1:{port}"),
            dir,
        };
        for _ in 0..200 {
            if let Ok(response) = support::agent()
                .get(&format!("{}/-/ready", alertmanager.url))
                .call()
            {
                if response.status() == 200 {
                    return alertmanager;
                }
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("alertmanager did not become ready: {}", alertmanager.log());
    }

    /// Pushes alerts as Prometheus does (`POST /api/v2/alerts`); Alertmanager sets their
    /// start to now.
    fn push(&self, alerts: &Value) {
        let mut response = support::agent()
            .post(&format!("{}/api/v2/alerts", self.url))
            .header("Content-Type", "application/json")
            .send(alerts.to_string().as_bytes())
            .unwrap();
        let status = response.status().as_u16();
        let text = response.body_mut().read_to_string().unwrap_or_default();
        assert_eq!(status, 200, "alertmanager refused the alerts: {text}");
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.0.join("alertmanager.log")).unwrap_or_default()
    }
}

impl Drop for Alertmanager {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The receiver: every alert to Vigil's route, grouped by app and name, sent a second after it
/// arrives, resolutions too.
fn config(vigil: &str, token: &str) -> String {
    format!(
        "route:\n  receiver: vigil\n  group_by: [app, alertname]\n  group_wait: 1s\n  \
         group_interval: 1s\n  repeat_interval: 1h\nreceivers:\n  - name: vigil\n    \
         webhook_configs:\n      - url: {vigil}/api/v1/alerts/alertmanager\n        \
         send_resolved: true\n        http_config:\n          authorization:\n            \
         credentials: {token}\n"
    )
}

/// One release of `app` on `hosts`, compared with `reference`, at 2 s steps.
fn release(id: &str, app: &str, hosts: [&str; 2], reference: [&str; 2]) -> Value {
    json!({
        "id": id, "app": app, "version": "2",
        "hosts": hosts, "reference": {"type": "hosts", "hosts": reference},
        "step_seconds": 2, "observe_seconds": 3600,
        "metrics": [{"name": "latency_ms", "kind": "middleware", "direction": "increase",
                     "critical": true}],
        "settings": {"baseline_seconds": 60, "warmup_seconds": 4},
    })
}

const HOSTS: [(&str, &str); 8] = [
    ("shop", "r1"),
    ("shop", "r2"),
    ("shop", "k1"),
    ("shop", "k2"),
    ("cart", "c1"),
    ("cart", "c2"),
    ("cart", "d1"),
    ("cart", "d2"),
];

/// Every host's latency at `at`: the same level on every host, a little noise, no fault.
fn push_samples(server: &TestServer, at: i64) {
    let samples = HOSTS
        .iter()
        .enumerate()
        .map(|(number, (app, host))| {
            let wobble = ((at as f64) * 0.7 + number as f64 * 1.3).sin() * 2.0;
            json!({"host": host, "app": app, "metric": "latency_ms", "time": at,
                   "value": 100.0 + wobble})
        })
        .collect();
    server.ingest_samples(samples);
}

fn now() -> i64 {
    SystemClock.now()
}

fn state_of(server: &TestServer, id: &str) -> Value {
    let (status, release) = server.get(&format!("/api/v1/releases/{id}"), &server.viewer);
    assert_eq!(status, 200, "{release}");
    release
}

/// Keeps the server's clock and data going, a second at a time, until `done` or `seconds`
/// have passed; whether `done` came.
fn run_until(server: &TestServer, seconds: i64, mut done: impl FnMut() -> bool) -> bool {
    let started = now();
    while now() - started < seconds {
        let at = now();
        server.clock.set(at);
        push_samples(server, at);
        if done() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(1000));
    }
    false
}

#[test]
fn an_alert_on_a_release_host_pauses_and_on_reference_hosts_too_does_not() {
    let Some(binary) = binary_or_skip(
        "prometheus-alertmanager",
        "VIGIL_ALERTMANAGER",
        "VIGIL_REQUIRE_ALERTMANAGER",
        "alerts from a real alertmanager",
    ) else {
        return;
    };
    let started_at = now();
    let server = TestServer::start(started_at);
    let alertmanager = Alertmanager::start(&binary, &config(&server.base, &server.ingest));

    // Seventy seconds of history, pushed at once, then the releases and their deploys.
    for at in started_at - 70..=started_at {
        push_samples(&server, at);
    }
    for (id, app, hosts, reference) in [
        ("shop-1", "shop", ["r1", "r2"], ["k1", "k2"]),
        ("cart-1", "cart", ["c1", "c2"], ["d1", "d2"]),
    ] {
        let (status, created) = server.post(
            "/api/v1/releases",
            &server.admin,
            &release(id, app, hosts, reference),
        );
        assert_eq!(status, 201, "{created}");
        let (status, deployed) = server.post(
            &format!("/api/v1/releases/{id}/batches/0/deployed"),
            &server.admin,
            &json!({"at": now()}),
        );
        assert_eq!(status, 200, "{deployed}");
    }
    // Past the warm-up, both releases are judged and neither has a fault.
    let judged = run_until(&server, 30, || {
        ["shop-1", "cart-1"]
            .iter()
            .all(|id| matches!(state_of(&server, id)["verdict"].as_str(), Some("healthy")))
    });
    assert!(
        judged,
        "the releases were not judged healthy before the alerts: {} {}",
        state_of(&server, "shop-1"),
        state_of(&server, "cart-1")
    );

    let alert = |app: &str, instance: &str| {
        json!({"labels": {"alertname": "HighErrorRate", "app": app, "instance": instance,
                          "severity": "critical"},
               "annotations": {"summary": "5xx above 5 %"}})
    };
    alertmanager.push(&json!([
        alert("shop", "r1:9100"),
        alert("cart", "c1:9100"),
        alert("cart", "d1:9100"),
    ]));
    let sent_at = now();

    // Case 1: on a release host only, the release pauses with the alert as its finding.
    let paused = run_until(&server, 60, || {
        state_of(&server, "shop-1")["state"] == "paused"
    });
    assert!(
        paused,
        "shop-1 did not pause on the alert: {}\nalertmanager log:\n{}",
        state_of(&server, "shop-1"),
        alertmanager.log()
    );
    let paused_after = now() - sent_at;
    let (_, findings) = server.get("/api/v1/releases/shop-1/findings", &server.viewer);
    let latest = &findings["latest"];
    assert_eq!(latest["verdict"], "fault", "{findings}");
    let finding = latest["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|finding| finding["signal"]["type"] == "alert")
        .unwrap_or_else(|| panic!("no alert finding: {findings}"))
        .clone();
    assert_eq!(finding["signal"]["name"], "HighErrorRate");
    assert_eq!(finding["hosts"], json!(["r1"]));
    assert_eq!(finding["severity"], "fault");
    let evidence = finding["evidence"].as_str().unwrap();
    assert!(
        evidence.starts_with("alert: HighErrorRate firing on r1 since ")
            && evidence.ends_with("(severity critical): 5xx above 5 %"),
        "{evidence}"
    );
    let shop = state_of(&server, "shop-1");
    assert!(
        shop["reason"]
            .as_str()
            .unwrap()
            .starts_with("alert HighErrorRate (critical) fires on 1 of 2 release hosts (r1)"),
        "{shop}"
    );

    // Case 2: the same alert on a release host and a reference host: received (both
    // occurrences stored), weighed, and not blamed on the release.
    let store = std::sync::Arc::clone(&server.state.store);
    let cart_alerts = || store.alerts("cart", 0, i64::MAX).unwrap();
    let received = run_until(&server, 30, || cart_alerts().len() == 2);
    assert!(received, "cart's alerts never arrived: {:?}", cart_alerts());
    for received_alert in cart_alerts() {
        assert_eq!(received_alert.source, "alertmanager");
        assert_eq!(received_alert.ends_at, None, "{received_alert:?}");
        assert_eq!(received_alert.severity, "critical");
    }
    let judged_before = server.state.guard.window_points("cart-1").unwrap_or(0);
    // Several steps judged after the alerts arrived (the verdict is recorded only when it
    // changes: the evaluator's steps tell that the guard kept judging).
    run_until(&server, 10, || false);
    let cart = state_of(&server, "cart-1");
    assert_eq!(cart["state"], "observing", "{cart}");
    let judged_after = server.state.guard.window_points("cart-1").unwrap_or(0);
    assert!(
        judged_after >= judged_before + 3,
        "the guard judged {judged_before} then {judged_after} steps"
    );
    let (_, findings) = server.get("/api/v1/releases/cart-1/findings", &server.viewer);
    let latest = &findings["latest"];
    assert!(
        latest["findings"]
            .as_array()
            .unwrap()
            .iter()
            .all(|finding| finding["signal"]["type"] != "alert"),
        "{findings}"
    );
    // The scorecards say the same: a failing alert row on shop-1, a passing one on cart-1.
    let alert_row = |id: &str| {
        let (status, scorecard) =
            server.get(&format!("/api/v1/releases/{id}/scorecard"), &server.viewer);
        assert_eq!(status, 200, "{scorecard}");
        scorecard["rows"]
            .as_array()
            .unwrap()
            .iter()
            .find(|row| row["signal"]["type"] == "alert")
            .cloned()
            .unwrap_or_else(|| panic!("no alert row on {id}: {scorecard}"))
    };
    let shop_row = alert_row("shop-1");
    assert_eq!(shop_row["verdict"], "fail", "{shop_row}");
    assert_eq!(shop_row["signal"]["name"], "HighErrorRate");
    let cart_row = alert_row("cart-1");
    assert_eq!(cart_row["verdict"], "pass", "{cart_row}");
    assert_eq!(
        cart_row["note"],
        "firing on release hosts c1, also on reference hosts d1: not blamed on the release"
    );
    println!(
        "alertmanager: shop-1 paused {paused_after} s after the alert was pushed; cart-1 (also \
         on a reference host) stayed {} with verdict {}",
        cart["state"], cart["verdict"]
    );
}
