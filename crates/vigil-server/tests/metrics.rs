//! `/metrics`: Vigil's own metrics in Prometheus' text format, read by the test and scraped by
//! a real Prometheus (Debian's `prometheus` binary, or `VIGIL_PROMETHEUS`; without it the
//! scrape test says SKIPPED loudly and passes, unless `VIGIL_REQUIRE_PROMETHEUS` is set).
//!
//! The metrics belong to the process, so the tests of this file run one at a time and compare
//! what moved between two reads.
#![allow(clippy::unwrap_used, clippy::print_stdout, clippy::print_stderr)]

mod support;

use std::sync::Mutex;
use std::time::Duration;

use serde_json::json;
use support::prometheus::{prometheus_or_skip, Prometheus};
use support::{TempDir, TestServer};
use vigil_core::Clock;
use vigil_server::ServerConfig;

/// One test of this file at a time: they read the same process-wide metrics.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

fn server(replica: &str) -> TestServer {
    let now = vigil_core::SystemClock.now();
    let dir = TempDir::new("metrics");
    let database = dir.0.join("vigil.db").display().to_string();
    let mut config = ServerConfig::default();
    config.replica.id = replica.to_string();
    TestServer::start_with(now, &database, Some(dir), config)
}

/// The text `/metrics` answers, checked to be the text format 0.0.4.
fn scrape(server: &TestServer) -> String {
    let mut response = support::agent()
        .get(&format!("{}/metrics", server.base))
        .call()
        .unwrap();
    assert_eq!(response.status(), 200);
    let content_type = response
        .headers()
        .get("content-type")
        .unwrap()
        .to_str()
        .unwrap()
        .to_string();
    assert_eq!(content_type, "text/plain; version=0.0.4; charset=utf-8");
    response.body_mut().read_to_string().unwrap()
}

/// The value of the series written exactly `series` (name and labels), 0 when absent.
fn value(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
        .map_or(0.0, |number| number.parse().unwrap())
}

fn samples(hosts: &[&str], at: i64, value: f64) -> Vec<serde_json::Value> {
    hosts
        .iter()
        .map(|host| json!({"host": host, "app": "shop", "metric": "latency_ms", "time": at, "value": value}))
        .collect()
}

#[test]
fn metrics_move_by_what_was_ingested_and_asked() {
    let _one = ONE_AT_A_TIME
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let server = server("replica-metrics");
    let now = server.clock.now();
    let before = scrape(&server);
    assert_eq!(
        value(&before, "vigil_replica_info{replica=\"replica-metrics\"}"),
        1.0
    );

    // Four samples, then the same request again under its key: a duplicate adds nothing.
    let body =
        json!({"key": "first", "samples": samples(&["r1", "r2", "k1", "k2"], now - 5, 100.0)});
    for duplicate in [false, true] {
        let (status, answer) = server.post("/api/v1/ingest/samples", &server.ingest, &body);
        assert_eq!(status, 200, "{answer}");
        assert_eq!(answer["duplicate"], duplicate, "{answer}");
    }
    // Three more without a key.
    server.ingest_samples(samples(&["r1", "r2", "k1"], now - 4, 101.0));
    let lines = json!({"key": "logs-1", "lines": [
        {"host": "r1", "app": "shop", "time": now - 3, "line": "2024-01-01 00:00:00 ERROR failed to charge order 17"},
        {"host": "r2", "app": "shop", "time": now - 3, "line": "2024-01-01 00:00:00 ERROR failed to charge order 18"},
    ]});
    let (status, logs_answer) = server.post("/api/v1/ingest/logs", &server.ingest, &lines);
    assert_eq!(status, 200, "{logs_answer}");
    let log_counts = logs_answer["accepted"].as_f64().unwrap();
    assert!(log_counts >= 1.0, "{logs_answer}");
    // A known route refused, and a path no route takes.
    let (status, _) = server.get("/api/v1/releases/nope", &server.viewer);
    assert_eq!(status, 404);
    let (status, _) = server.get("/api/v1/no/such/route/123", &server.viewer);
    assert_eq!(status, 404);

    let after = scrape(&server);
    let moved = |series: &str| value(&after, series) - value(&before, series);
    assert_eq!(moved("vigil_ingested_samples_total{kind=\"metrics\"}"), 7.0);
    assert_eq!(
        moved("vigil_ingested_samples_total{kind=\"logs\"}"),
        log_counts
    );
    assert_eq!(
        moved("vigil_http_requests_total{route=\"/api/v1/ingest/samples\",method=\"POST\",status=\"200\"}"),
        3.0
    );
    assert_eq!(
        moved("vigil_http_requests_total{route=\"/api/v1/releases/{id}\",method=\"GET\",status=\"404\"}"),
        1.0
    );
    assert_eq!(
        moved("vigil_http_requests_total{route=\"unmatched\",method=\"GET\",status=\"404\"}"),
        1.0
    );
    // The first scrape was answered before the second one was counted.
    assert_eq!(
        moved("vigil_http_requests_total{route=\"/metrics\",method=\"GET\",status=\"200\"}"),
        1.0
    );
    assert!(
        !after.contains("/api/v1/no/such/route"),
        "unmatched paths are not labels"
    );
    // Each ingestion request stored one chunk, the duplicate too (it was looked up).
    assert!(moved("vigil_store_seconds_count{operation=\"append_data\"}") >= 4.0);
    assert!(
        value(
            &after,
            "vigil_store_seconds_bucket{operation=\"append_data\",le=\"+Inf\"}"
        ) >= 4.0
    );

    // The guard passes every second; a release observing is one it guards.
    let (status, created) = server.post(
        "/api/v1/releases",
        &server.admin,
        &json!({"id": "shop-1", "app": "shop", "version": "1", "hosts": ["r1", "r2"],
            "reference": {"type": "hosts", "hosts": ["k1", "k2"]}, "step_seconds": 10,
            "observe_seconds": 3600,
            "metrics": [{"name": "latency_ms", "kind": "middleware", "direction": "increase", "critical": true}]}),
    );
    assert_eq!(status, 201, "{created}");
    let (status, deployed) = server.post(
        "/api/v1/releases/shop-1/batches/0/deployed",
        &server.admin,
        &json!({}),
    );
    assert_eq!(status, 200, "{deployed}");
    let passes_before = value(&after, "vigil_guard_pass_seconds_count");
    let guarding = support::wait_until(
        &server,
        20,
        || scrape(&server),
        |text| {
            value(text, "vigil_releases_guarded") == 1.0
                && value(text, "vigil_guard_pass_seconds_count") > passes_before
        },
    );
    // The one server holds the lease of the one release it guards.
    assert_eq!(value(&guarding, "vigil_leases_held"), 1.0);
    assert!(guarding.contains("# TYPE vigil_guard_judgements_total counter"));
    assert!(guarding.contains("# TYPE vigil_notifications_sent_total counter"));
    assert!(guarding.contains("# TYPE vigil_notifications_failed_total counter"));
}

#[test]
fn a_real_prometheus_scrapes_vigil_and_answers_a_query_on_its_metrics() {
    let _one = ONE_AT_A_TIME
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let Some(binary) = prometheus_or_skip("prometheus scraping vigil's /metrics") else {
        return;
    };
    let server = server("replica-scraped");
    let now = server.clock.now();
    server.ingest_samples(samples(&["r1", "r2", "k1", "k2", "k3"], now - 2, 7.0));
    let ingested = value(
        &scrape(&server),
        "vigil_ingested_samples_total{kind=\"metrics\"}",
    );
    assert!(ingested >= 5.0);
    let target = server.base.trim_start_matches("http://");
    let prometheus = Prometheus::start(
        &binary,
        &format!(
            "global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: vigil\n    \
             static_configs:\n      - targets: ['{target}']\n"
        ),
    );
    let query = |promql: &str| -> serde_json::Value {
        let mut response = support::agent()
            .get(&format!("{}/api/v1/query", prometheus.url))
            .query("query", promql)
            .call()
            .unwrap();
        serde_json::from_str(&response.body_mut().read_to_string().unwrap()).unwrap()
    };
    let mut last = serde_json::Value::Null;
    for _ in 0..60 {
        last = query("vigil_ingested_samples_total{job=\"vigil\",kind=\"metrics\"}");
        if let Some(found) = last["data"]["result"][0]["value"][1].as_str() {
            assert_eq!(found.parse::<f64>().unwrap(), ingested, "{last}");
            let up = query("up{job=\"vigil\"}");
            assert_eq!(up["data"]["result"][0]["value"][1], "1", "{up}");
            let replica = query("vigil_replica_info{replica=\"replica-scraped\"}");
            assert_eq!(replica["data"]["result"][0]["value"][1], "1", "{replica}");
            println!("prometheus: {last}");
            return;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    panic!("prometheus never had vigil_ingested_samples_total: {last}");
}
