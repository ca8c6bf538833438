//! Vigil with a real Prometheus (Debian's `prometheus` binary, or `VIGIL_PROMETHEUS`):
//! - pull: a faulty fleet's metrics sit in Prometheus; Vigil pulls them with the app's PromQL
//!   query and pauses the release;
//! - push: Prometheus scrapes a fleet and remote-writes to Vigil, which pauses the release when
//!   the release hosts turn faulty.
//!
//! Without the binary the tests say SKIPPED loudly and pass, unless `VIGIL_REQUIRE_PROMETHEUS`
//! is set (as CI does), when they fail.
#![allow(clippy::unwrap_used, clippy::print_stdout, clippy::print_stderr)]

mod support;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use support::prometheus::{prometheus_or_skip, serve_text, Prometheus};
use support::TestServer;
use vigil_core::Clock;
use vigil_ingest::remote_write::{encode_remote_write, WriteSample, WriteSeries};

const RELEASE_HOSTS: [&str; 4] = ["r1", "r2", "r3", "r4"];
const REFERENCE_HOSTS: [&str; 4] = ["k1", "k2", "k3", "k4"];

fn latency(host_index: usize, step: i64, faulty: bool) -> f64 {
    let noise = ((step * 7 + host_index as i64 * 13) % 11) as f64 - 5.0;
    let base = 100.0 + noise;
    if faulty {
        base * 3.0
    } else {
        base
    }
}

fn create_release(server: &TestServer, id: &str, step: i64, settings: serde_json::Value) {
    let (status, created) = server.post(
        "/api/v1/releases",
        &server.admin,
        &json!({
            "id": id, "app": "shop", "version": "2",
            "hosts": RELEASE_HOSTS,
            "reference": {"type": "hosts", "hosts": REFERENCE_HOSTS},
            "step_seconds": step, "observe_seconds": 3600,
            "metrics": [{"name": "latency_ms", "kind": "middleware", "direction": "increase", "critical": true}],
            "settings": settings,
        }),
    );
    assert_eq!(status, 201, "{created}");
}

fn wait_for_pause(
    server: &TestServer,
    id: &str,
    seconds: u64,
    mut tick: impl FnMut(),
) -> serde_json::Value {
    for _ in 0..seconds * 5 {
        tick();
        let (_, release) = server.get(&format!("/api/v1/releases/{id}"), &server.viewer);
        if release["state"] == "paused" {
            let (_, findings) =
                server.get(&format!("/api/v1/releases/{id}/findings"), &server.viewer);
            return findings["latest"].clone();
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let (_, verdict) = server.get(&format!("/api/v1/releases/{id}/verdict"), &server.viewer);
    panic!("release {id} did not pause: {verdict}");
}

fn finding_metrics(latest: &serde_json::Value) -> Vec<String> {
    latest["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|finding| finding["signal"]["name"].as_str().unwrap_or("").to_string())
        .collect()
}

#[test]
fn vigil_pulls_a_faulty_fleet_from_prometheus_and_pauses() {
    let Some(binary) = prometheus_or_skip("pull from prometheus") else {
        return;
    };
    let prometheus = Prometheus::start(&binary, "global:\n  scrape_interval: 1h\n");
    // The fleet's last 50 minutes at 30 s steps, pushed into Prometheus (which takes recent
    // samples only); the release hosts got the new version 20 minutes ago and it tripled their
    // latency.
    let step = 30i64;
    let now = vigil_core::SystemClock.now() / step * step;
    let first = now - 50 * 60;
    let deploy = now - 20 * 60;
    let series: Vec<WriteSeries> = RELEASE_HOSTS
        .iter()
        .chain(REFERENCE_HOSTS.iter())
        .enumerate()
        .map(|(index, host)| {
            let release_host = index < RELEASE_HOSTS.len();
            let mut one =
                WriteSeries::new(&[("__name__", "latency_ms"), ("app", "shop"), ("host", host)]);
            let mut t = first;
            while t <= now - step {
                let faulty = release_host && t >= deploy + 60;
                one.samples.push(WriteSample {
                    ms: t * 1000,
                    value: latency(index, t / step, faulty),
                });
                t += step;
            }
            one
        })
        .collect();
    let body = encode_remote_write(&series, &[]).unwrap();
    let response = support::agent()
        .post(&format!("{}/api/v1/write", prometheus.url))
        .header("Content-Encoding", "snappy")
        .header("Content-Type", "application/x-protobuf")
        .header("X-Prometheus-Remote-Write-Version", "0.1.0")
        .send(&body[..])
        .unwrap();
    assert_eq!(response.status(), 204);

    let server = TestServer::start(now);
    let (status, answer) = server.put(
        "/api/v1/apps/shop",
        &server.admin,
        &json!({"prometheus": {"url": prometheus.url, "host_label": "host", "step_seconds": step,
            "queries": [{"metric": "latency_ms", "query": "latency_ms"}]}}),
    );
    assert_eq!(status, 200, "{answer}");
    create_release(&server, "pulled", step, json!({"baseline_seconds": 1200}));
    let (status, answer) = server.post(
        "/api/v1/releases/pulled/batches/0/deployed",
        &server.admin,
        &json!({"at": deploy}),
    );
    assert_eq!(status, 200, "{answer}");
    // The puller runs every second on its own; the guard judges as soon as the data is in.
    let latest = wait_for_pause(&server, "pulled", 60, || {});
    println!("paused: {}", latest["explanation"]);
    assert_eq!(latest["verdict"], "fault");
    assert!(finding_metrics(&latest).contains(&"latency_ms".to_string()));
    let at = latest["at"].as_i64().unwrap();
    assert!(at >= deploy + 60 && at <= now, "paused at {at}");
}

/// Serves `/metrics/<host>` in Prometheus' text format: each host's latency, tripled on the
/// release hosts once `faulty` is set.
fn serve_fleet(faulty: Arc<AtomicBool>) -> u16 {
    let mut scrape = 0i64;
    serve_text(move |path| {
        let host = path.trim_start_matches("/metrics/");
        let index = RELEASE_HOSTS
            .iter()
            .chain(REFERENCE_HOSTS.iter())
            .position(|name| *name == host)
            .unwrap_or(0);
        scrape += 1;
        let bad = index < RELEASE_HOSTS.len() && faulty.load(Ordering::SeqCst);
        format!(
            "# TYPE latency_ms gauge\nlatency_ms {}\n",
            latency(index, scrape / 8, bad)
        )
    })
}

#[test]
fn prometheus_remote_writes_a_fleet_to_vigil_which_pauses_the_release() {
    let Some(binary) = prometheus_or_skip("remote write from prometheus") else {
        return;
    };
    let server = TestServer::start(vigil_core::SystemClock.now());
    let faulty = Arc::new(AtomicBool::new(false));
    let fleet_port = serve_fleet(Arc::clone(&faulty));
    let mut config =
        String::from("global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\nscrape_configs:\n");
    for host in RELEASE_HOSTS.iter().chain(REFERENCE_HOSTS.iter()) {
        config.push_str(&format!(
            "  - job_name: {host}\n    metrics_path: /metrics/{host}\n    static_configs:\n      - targets: ['127.0.0.1:{fleet_port}']\n        labels: {{host: {host}, app: shop}}\n"
        ));
    }
    config.push_str(&format!(
        "remote_write:\n  - url: {}/api/v1/ingest/prometheus\n    authorization:\n      credentials: {}\n    queue_config:\n      batch_send_deadline: 1s\n      min_backoff: 100ms\n",
        server.base, server.ingest
    ));
    let _prometheus = Prometheus::start(&binary, &config);
    let keep_time = || server.clock.set(vigil_core::SystemClock.now());

    // A short baseline, then the deploy, then the fault.
    let step = 2i64;
    for _ in 0..40 {
        keep_time();
        std::thread::sleep(Duration::from_secs(1));
    }
    create_release(
        &server,
        "pushed",
        step,
        json!({"baseline_seconds": 30, "warmup_seconds": 4}),
    );
    let deploy = vigil_core::SystemClock.now();
    let (status, answer) = server.post(
        "/api/v1/releases/pushed/batches/0/deployed",
        &server.admin,
        &json!({"at": deploy}),
    );
    assert_eq!(status, 200, "{answer}");
    for _ in 0..8 {
        keep_time();
        std::thread::sleep(Duration::from_secs(1));
    }
    let (_, before) = server.get("/api/v1/releases/pushed", &server.viewer);
    assert_eq!(
        before["state"], "observing",
        "paused before the fault: {before}"
    );
    faulty.store(true, Ordering::SeqCst);
    let fault_from = vigil_core::SystemClock.now();
    let latest = wait_for_pause(&server, "pushed", 90, keep_time);
    println!(
        "paused {} s after the fault: {}",
        latest["at"].as_i64().unwrap() - fault_from,
        latest["explanation"]
    );
    assert_eq!(latest["verdict"], "fault");
    assert!(finding_metrics(&latest).contains(&"latency_ms".to_string()));
    assert!(latest["at"].as_i64().unwrap() >= fault_from - step);
}
