//! A no-op release on a real host, live: a real Prometheus node exporter (Debian's
//! `prometheus-node-exporter`, or `VIGIL_NODE_EXPORTER`) on this machine, scraped by a real
//! Prometheus that remote-writes every series to Vigil; a release of the host that lists no
//! metric and has no reference group is deployed and watched for two minutes, and must not
//! pause.
//!
//! Without either binary the test says SKIPPED loudly and passes, unless
//! `VIGIL_REQUIRE_NODE_EXPORTER` is set (as CI does), when it fails.
#![allow(clippy::unwrap_used, clippy::print_stdout, clippy::print_stderr)]

mod support;

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::json;
use support::prometheus::{binary_or_skip, free_port, prometheus_or_skip, Prometheus};
use support::TestServer;

/// The exporter on a free loopback port, killed on drop.
struct NodeExporter {
    child: Child,
    port: u16,
}

impl NodeExporter {
    fn start(binary: &PathBuf) -> NodeExporter {
        let port = free_port();
        // Owned at once, so that a panic below still kills it (on drop).
        let exporter = NodeExporter {
            child: Command::new(binary)
                .arg(format!("--web.listen-address=127.0.0.1:{port}"))
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap(),
            port,
        };
        for _ in 0..100 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return exporter;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("node exporter did not listen on port {port}");
    }
}

impl Drop for NodeExporter {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn a_no_op_release_on_a_host_with_node_exporter_never_pauses() {
    if std::env::var_os("VIGIL_REQUIRE_NODE_EXPORTER").is_some() {
        assert!(
            support::prometheus::find_prometheus().is_some(),
            "VIGIL_REQUIRE_NODE_EXPORTER is set but no prometheus binary was found"
        );
    }
    let Some(exporter_binary) = binary_or_skip(
        "prometheus-node-exporter",
        "VIGIL_NODE_EXPORTER",
        "VIGIL_REQUIRE_NODE_EXPORTER",
        "a no-op release on a real host",
    ) else {
        return;
    };
    let Some(prometheus_binary) = prometheus_or_skip("a no-op release on a real host") else {
        return;
    };
    let exporter = NodeExporter::start(&exporter_binary);
    let server = TestServer::start(vigil_core::Clock::now(&vigil_core::SystemClock));
    let config = format!(
        "global:\n  scrape_interval: 2s\n  scrape_timeout: 2s\nscrape_configs:\n  - job_name: node\n    \
         static_configs:\n      - targets: ['127.0.0.1:{}']\n        labels: {{host: node-1, app: node}}\n\
         remote_write:\n  - url: {}/api/v1/ingest/prometheus\n    authorization:\n      credentials: {}\n    \
         queue_config:\n      batch_send_deadline: 1s\n      min_backoff: 100ms\n",
        exporter.port, server.base, server.ingest
    );
    let _prometheus = Prometheus::start(&prometheus_binary, &config);
    let keep_time = || {
        server
            .clock
            .set(vigil_core::Clock::now(&vigil_core::SystemClock))
    };

    // Ninety seconds of history, then a deploy that changes nothing, watched for two minutes
    // (the first twenty seconds of them its warm-up).
    for _ in 0..90 {
        keep_time();
        std::thread::sleep(Duration::from_secs(1));
    }
    let (status, created) = server.post(
        "/api/v1/releases",
        &server.admin,
        &json!({
            "id": "noop", "app": "node", "version": "2",
            "hosts": ["node-1"], "reference": {"type": "none"},
            "batches": [{"hosts": ["node-1"]}],
            "step_seconds": 5, "observe_seconds": 3600,
            // Without a reference group the window reaches back `history_days` (7 by default),
            // but the guard builds it from the first step the host's data covers: the ninety
            // seconds recorded are the history here.
            "settings": {"warmup_seconds": 20},
        }),
    );
    assert_eq!(status, 201, "{created}");
    let (status, answer) = server.post(
        "/api/v1/releases/noop/batches/0/deployed",
        &server.admin,
        &json!({"at": vigil_core::Clock::now(&vigil_core::SystemClock)}),
    );
    assert_eq!(status, 200, "{answer}");
    let mut judged = false;
    for _ in 0..120 {
        keep_time();
        std::thread::sleep(Duration::from_secs(1));
        let (_, release) = server.get("/api/v1/releases/noop", &server.viewer);
        assert_ne!(
            release["state"], "paused",
            "a no-op release paused: {release}"
        );
        judged |= matches!(release["verdict"].as_str(), Some("healthy" | "anomaly"));
    }
    let (_, findings) = server.get("/api/v1/releases/noop/findings", &server.viewer);
    let latest = &findings["latest"];
    let series = latest["findings"].as_array().map_or(0, Vec::len);
    println!(
        "no-op release on node exporter: verdict {}, {series} findings (recommendations)",
        latest["verdict"]
    );
    assert!(judged, "the release was never judged: {findings}");
}
