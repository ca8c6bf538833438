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

use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use support::{TempDir, TestServer};
use vigil_core::Clock;
use vigil_ingest::remote_write::{encode_remote_write, WriteSample, WriteSeries};

const RELEASE_HOSTS: [&str; 4] = ["r1", "r2", "r3", "r4"];
const REFERENCE_HOSTS: [&str; 4] = ["k1", "k2", "k3", "k4"];

fn find_prometheus() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("VIGIL_PROMETHEUS") {
        return Some(PathBuf::from(path));
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join("prometheus"))
        .find(|candidate| candidate.is_file())
}

fn prometheus_or_skip(test: &str) -> Option<PathBuf> {
    let found = find_prometheus();
    if found.is_none() {
        assert!(
            std::env::var_os("VIGIL_REQUIRE_PROMETHEUS").is_none(),
            "VIGIL_REQUIRE_PROMETHEUS is set but no prometheus binary was found"
        );
        eprintln!("\n*** SKIPPED: {test}: prometheus not installed (apt-get install prometheus, or set VIGIL_PROMETHEUS) ***\n");
    }
    found
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A Prometheus on a loopback port with its data in a temporary directory, killed on drop.
struct Prometheus {
    child: Child,
    url: String,
    _dir: TempDir,
}

impl Prometheus {
    fn start(binary: &PathBuf, config: &str) -> Prometheus {
        let dir = TempDir::new("prometheus");
        let config_path = dir.0.join("prometheus.yml");
        std::fs::write(&config_path, config).unwrap();
        let port = free_port();
        let child = Command::new(binary)
            .arg(format!("--config.file={}", config_path.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.0.join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg("--web.enable-remote-write-receiver")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.0.join("prometheus.log")).unwrap())
            .spawn()
            .unwrap();
        let url = format!("http://127.0.0.1:{port}");
        let prometheus = Prometheus {
            child,
            url,
            _dir: dir,
        };
        for _ in 0..200 {
            if let Ok(response) = support::agent()
                .get(&format!("{}/-/ready", prometheus.url))
                .call()
            {
                if response.status() == 200 {
                    return prometheus;
                }
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("prometheus did not become ready");
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

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
    let (status, answer) = request_put(
        &server,
        "/api/v1/apps/shop",
        json!({"prometheus": {"url": prometheus.url, "host_label": "host", "step_seconds": step,
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

fn request_put(
    server: &TestServer,
    path: &str,
    body: serde_json::Value,
) -> (u16, serde_json::Value) {
    let mut response = support::agent()
        .put(&format!("{}{path}", server.base))
        .header("Authorization", &format!("Bearer {}", server.admin))
        .header("Content-Type", "application/json")
        .send(body.to_string().as_bytes())
        .unwrap();
    let status = response.status().as_u16();
    let text = response.body_mut().read_to_string().unwrap_or_default();
    (
        status,
        serde_json::from_str(&text).unwrap_or(json!({ "text": text })),
    )
}

/// Serves `/metrics/<host>` in Prometheus' text format: each host's latency, tripled on the
/// release hosts once `faulty` is set.
fn serve_fleet(faulty: Arc<AtomicBool>) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        let mut scrape = 0i64;
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut buffer = [0u8; 4096];
            let read = stream.read(&mut buffer).unwrap_or(0);
            let request = String::from_utf8_lossy(&buffer[..read]).to_string();
            let path = request.split_whitespace().nth(1).unwrap_or("").to_string();
            let host = path.trim_start_matches("/metrics/");
            let index = RELEASE_HOSTS
                .iter()
                .chain(REFERENCE_HOSTS.iter())
                .position(|name| *name == host)
                .unwrap_or(0);
            scrape += 1;
            let bad = index < RELEASE_HOSTS.len() && faulty.load(Ordering::SeqCst);
            let body = format!(
                "# TYPE latency_ms gauge\nlatency_ms {}\n",
                latency(index, scrape / 8, bad)
            );
            let _ = write!(
                stream,
                "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    port
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
