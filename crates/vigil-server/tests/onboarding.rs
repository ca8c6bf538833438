//! App onboarding through the API:
//! - from ingested data only: JSON samples and log lines, then the report;
//! - with a real Prometheus scraping a fake fleet (node exporter families and an HTTP
//!   histogram): discovery finds the families, apply stores the proposed queries next to the
//!   app's own, and the server's puller then fetches a series for every host;
//! - bad input: unknown app, bad selector, unreachable Prometheus, wrong role.
#![allow(clippy::unwrap_used, clippy::print_stdout, clippy::print_stderr)]

mod support;

use std::collections::BTreeSet;

use serde_json::{json, Value};
use support::prometheus::{
    free_port, node_exporter_text, prometheus_or_skip, scrape_config, serve_hosts, Prometheus,
};
use support::{wait_until, TestServer};
use vigil_core::Clock;

const NOW: i64 = 1_700_000_000;

/// Percent-encodes a query parameter's value.
fn encoded(text: &str) -> String {
    text.bytes()
        .map(|byte| match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (byte as char).to_string()
            }
            other => format!("%{other:02X}"),
        })
        .collect()
}

fn strings(value: &Value) -> Vec<String> {
    value
        .as_array()
        .unwrap()
        .iter()
        .map(|item| item.as_str().unwrap().to_string())
        .collect()
}

/// The entries of `list` as `field` values.
fn fields(list: &Value, field: &str) -> Vec<String> {
    list.as_array()
        .unwrap()
        .iter()
        .map(|item| item[field].as_str().unwrap().to_string())
        .collect()
}

fn metric<'a>(report: &'a Value, name: &str) -> &'a Value {
    report["metrics"]
        .as_array()
        .unwrap()
        .iter()
        .find(|entry| entry["name"] == name)
        .unwrap_or_else(|| panic!("{name} is not in the report: {}", report["metrics"]))
}

#[test]
fn pushed_samples_and_log_lines_make_a_report() {
    let server = TestServer::start(NOW);
    let mut samples = Vec::new();
    for (index, host) in ["a1", "a2"].iter().enumerate() {
        for step in 0..10 {
            let time = NOW - 600 + step * 60;
            let wobble = (step % 3) as f64 * 0.01 + index as f64 * 0.02;
            samples.push(json!({"host": host, "app": "cart", "metric": "cpu", "time": time, "value": 0.3 + wobble}));
            samples.push(json!({"host": host, "app": "cart", "metric": "mem_used_ratio", "time": time, "value": 0.5 + wobble}));
            samples.push(json!({"host": host, "app": "cart", "metric": "latency_ms", "time": time, "value": 120.0 + wobble * 100.0}));
            samples.push(json!({"host": host, "app": "cart", "metric": "http.errors", "time": time, "value": wobble}));
            samples.push(json!({"host": host, "app": "cart", "metric": "basket_items", "time": time, "value": 3.0 - wobble}));
        }
    }
    let (status, answer) = server.post(
        "/api/v1/ingest/samples",
        &server.ingest,
        &json!({ "samples": samples }),
    );
    assert_eq!(status, 200, "{answer}");
    let mut lines = Vec::new();
    for second in 0..6 {
        let time = NOW - 60 + second;
        lines.push(json!({"host": "a1", "app": "cart", "time": time,
            "line": format!("2023-11-14 22:12:{second:02} INFO served GET /cart in {} ms", 10 + second)}));
    }
    lines.push(json!({"host": "a2", "app": "cart", "time": NOW - 30,
        "line": "2023-11-14 22:12:50 ERROR payment gateway refused order 8812: timeout"}));
    let (status, answer) = server.post(
        "/api/v1/ingest/logs",
        &server.ingest,
        &json!({ "key": "logs-1", "lines": lines }),
    );
    assert_eq!(status, 200, "{answer}");

    let (status, report) = server.get("/api/v1/apps/cart/onboarding", &server.viewer);
    assert_eq!(status, 200, "{report}");
    println!("{report:#}");
    assert_eq!(report["app"], "cart");
    assert_eq!(report["state"], "connected");
    assert_eq!(report["hosts"]["count"], 2);
    assert_eq!(report["hosts"]["last_seen"], NOW - 30);
    assert!(report.get("discovery").is_none());
    let signals = [
        ("cpu", "cpu"),
        ("mem_used_ratio", "memory"),
        ("latency_ms", "latency"),
        ("http.errors", "errors"),
        ("basket_items", "other"),
    ];
    for (name, signal) in signals {
        assert_eq!(
            strings(&metric(&report, name)["signals"]),
            [signal],
            "{name}"
        );
    }
    assert_eq!(metric(&report, "cpu")["unit"], "ratio");
    assert_eq!(metric(&report, "cpu")["suggested"]["kind"], "system");
    assert_eq!(metric(&report, "latency_ms")["hosts_reporting"], 2);
    assert_eq!(metric(&report, "latency_ms")["last_sample"], NOW - 60);

    let logs = &report["logs"];
    assert_eq!(fields(&logs["hosts"], "host"), ["a1", "a2"]);
    assert_eq!(logs["lines"], 7);
    assert_eq!(logs["exception_lines"], 1);
    assert_eq!(logs["exception_templates"], 1);
    assert!(logs["templates"].as_u64().unwrap() >= 2, "{logs}");
    assert!(logs["top_exceptions"][0]["text"]
        .as_str()
        .unwrap()
        .contains("payment gateway refused"));

    let steps = &report["next_steps"];
    assert_eq!(fields(steps, "signal"), ["load", "request_rate"]);
    assert_eq!(
        fields(steps, "action"),
        ["discover_prometheus", "discover_prometheus"]
    );
    let coverage = &report["coverage"];
    assert_eq!(fields(coverage, "family"), ["system", "middleware", "logs"]);
    assert!(coverage
        .as_array()
        .unwrap()
        .iter()
        .all(|family| family["covered"] == true));

    let (status, answer) = server.get("/api/v1/apps/cart/onboarding", &server.ingest);
    assert_eq!(status, 403, "{answer}");
}

/// Asserts an error answer: its status and how its message starts.
fn assert_error((status, answer): (u16, Value), expected_status: u16, expected_start: &str) {
    assert_eq!(status, expected_status, "{answer}");
    let message = answer["error"].as_str().unwrap();
    assert!(message.starts_with(expected_start), "{message}");
}

#[test]
fn bad_requests_get_a_clear_answer() {
    let server = TestServer::start(NOW);
    assert_error(
        server.get("/api/v1/apps/ghost/onboarding", &server.viewer),
        404,
        "app ghost is unknown",
    );

    let closed = format!("http://127.0.0.1:{}", free_port());
    let unreachable = format!(
        "/api/v1/apps/ghost/onboarding?prometheus={}",
        encoded(&closed)
    );
    // Only admins name a server for Vigil to query; they are told why it failed.
    assert_error(
        server.get(&unreachable, &server.viewer),
        403,
        "prometheus: only admins may name a prometheus server",
    );
    assert_error(
        server.get(&unreachable, &server.admin),
        502,
        &format!("cannot query prometheus at {closed}: "),
    );

    // The configured server failing does not hide the report.
    let (status, answer) = server.put(
        "/api/v1/apps/shadow",
        &server.admin,
        &json!({"prometheus": {"url": closed, "queries": [{"metric": "m", "query": "q"}]}}),
    );
    assert_eq!(status, 200, "{answer}");
    let (status, report) = server.get("/api/v1/apps/shadow/onboarding", &server.viewer);
    assert_eq!(status, 200, "{report}");
    assert_eq!(report["state"], "not_connected");
    assert_eq!(
        report["discovery_error"], "could not reach the app's Prometheus",
        "a viewer is not told the socket's words"
    );
    let (_, report) = server.get("/api/v1/apps/shadow/onboarding", &server.admin);
    let failure = report["discovery_error"].as_str().unwrap();
    assert!(
        failure.starts_with(&format!("cannot query prometheus at {closed}: ")),
        "{failure}"
    );

    let cases = [
        ("prometheus=prom%3A9090", "must start with http"),
        (
            "prometheus=http%3A%2F%2Fp&selector=checkout",
            "not a list of label matchers",
        ),
        (
            "prometheus=http%3A%2F%2Fp&host_label=a-b",
            "is not a label name",
        ),
        (
            "prometheus=http%3A%2F%2Fp&step_seconds=x",
            "invalid query parameters",
        ),
        ("selector=job%3D%22x%22", "need prometheus=URL"),
        (
            "prometheus=http%3A%2F%2Fp&unknown=1",
            "invalid query parameters",
        ),
    ];
    for (query, expected) in cases {
        let (status, answer) = server.get(
            &format!("/api/v1/apps/ghost/onboarding?{query}"),
            &server.admin,
        );
        assert_eq!(status, 400, "{query}: {answer}");
        let message = answer["error"].as_str().unwrap();
        assert!(message.contains(expected), "{query}: {message}");
    }

    let (status, answer) = server.post(
        "/api/v1/apps/ghost/onboarding/apply",
        &server.viewer,
        &json!({}),
    );
    assert_eq!(status, 403, "{answer}");
    assert_error(
        server.post(
            "/api/v1/apps/ghost/onboarding/apply",
            &server.admin,
            &json!({}),
        ),
        400,
        "no prometheus server",
    );
    let (status, answer) = server.post(
        "/api/v1/apps/ghost/onboarding/apply",
        &server.admin,
        &json!({"prometheus": closed, "signals": ["cpu"], "extra": 1}),
    );
    assert_eq!(status, 400, "{answer}");
    let (status, answer) = server.post(
        "/api/v1/apps/ghost/onboarding/apply",
        &server.admin,
        &json!({"prometheus": closed}),
    );
    assert_eq!(status, 502, "{answer}");
    let (_, apps) = server.get("/api/v1/apps", &server.viewer);
    assert!(
        apps.get("ghost").is_none(),
        "a failed apply stores nothing: {apps}"
    );
}

const FLEET: [&str; 3] = ["web1", "web2", "web3"];

/// Node exporter families and a client library's HTTP histogram for one host at its `scrape`-th
/// scrape; only the first host answers some requests with 500.
fn exporter_text(host: &str, scrape: u64) -> String {
    let n = scrape as f64;
    let mut text = node_exporter_text(scrape);
    text.push_str(
        "# HELP http_request_duration_seconds Time spent serving HTTP requests.\n\
         # TYPE http_request_duration_seconds histogram\n",
    );
    let mut codes = vec![("200", 20.0)];
    if host == FLEET[0] {
        codes.push(("500", 2.0));
    }
    for (code, per_scrape) in codes {
        let count = per_scrape * n;
        for (bound, share) in [("0.05", 0.5), ("0.1", 0.9), ("0.5", 1.0), ("+Inf", 1.0)] {
            text.push_str(&format!(
                "http_request_duration_seconds_bucket{{code=\"{code}\",le=\"{bound}\"}} {}\n",
                count * share
            ));
        }
        text.push_str(&format!(
            "http_request_duration_seconds_sum{{code=\"{code}\"}} {}\n\
             http_request_duration_seconds_count{{code=\"{code}\"}} {count}\n",
            count * 0.04
        ));
    }
    text
}

#[test]
fn prometheus_discovery_proposes_queries_that_the_puller_fetches_for_every_host() {
    let Some(binary) = prometheus_or_skip("onboarding with prometheus") else {
        return;
    };
    let fleet_port = serve_hosts(exporter_text);
    let config = scrape_config("checkout", fleet_port, &FLEET);
    let prometheus = Prometheus::start(&binary, &config);
    let server = TestServer::start(vigil_core::SystemClock.now());
    // The app pulls one query of its own already: it must survive the apply.
    let own = json!({"metric": "targets_up", "query": "max by (instance) (up{job=\"checkout\"})"});
    let (status, answer) = server.put(
        "/api/v1/apps/checkout",
        &server.admin,
        &json!({"prometheus": {"url": prometheus.url, "host_label": "instance", "step_seconds": 2,
            "queries": [own]}}),
    );
    assert_eq!(status, 200, "{answer}");

    // Discovery from the configured pull source (the selector defaults to job="checkout"),
    // once Prometheus has scraped every host often enough for each proposal to answer.
    let every_proposal_answers = |report: &Value| {
        let found = &report["discovery"]["found"];
        found.as_array().is_some_and(|entries| {
            entries.len() == 6 && entries.iter().all(|entry| entry["check"]["hosts"] == 3)
        })
    };
    let report = wait_until(
        &server,
        60,
        || {
            server
                .get("/api/v1/apps/checkout/onboarding", &server.viewer)
                .1
        },
        every_proposal_answers,
    );
    println!("{:#}", report["discovery"]);
    let discovery = &report["discovery"];
    assert_eq!(discovery["selector"], "job=\"checkout\"");
    assert_eq!(discovery["host_label"], "instance");
    assert_eq!(strings(&discovery["hosts"]), FLEET);
    assert_eq!(
        fields(&discovery["found"], "signal"),
        ["cpu", "memory", "load", "request_rate", "latency", "errors"]
    );
    assert!(discovery["missing"].as_array().unwrap().is_empty());
    assert!(
        discovery["notes"].as_array().unwrap().is_empty(),
        "{}",
        discovery["notes"]
    );
    let latency = &discovery["found"][4];
    assert_eq!(latency["query"]["metric"], "latency_p99_seconds");
    assert_eq!(latency["help"], "Time spent serving HTTP requests.");
    assert_eq!(latency["metric_type"], "histogram");
    assert_eq!(latency["meta"]["critical"], true);
    // Only the app's own pull query, which fills no signal, may have brought data yet.
    assert_ne!(report["state"], "connected");
    let actions: BTreeSet<String> = fields(&report["next_steps"], "action")
        .into_iter()
        .collect();
    assert_eq!(
        actions,
        ["apply_proposal", "send_logs"]
            .map(String::from)
            .into_iter()
            .collect()
    );
    let logs_step = report["next_steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|step| step["signal"] == "logs")
        .unwrap();
    assert_eq!(logs_step["action"], "send_logs");

    let (status, from_data) = server.get(
        "/api/v1/apps/checkout/onboarding?discover=false",
        &server.viewer,
    );
    assert_eq!(status, 200, "{from_data}");
    assert!(from_data.get("discovery").is_none());

    // Apply: the six proposals join the app's own query.
    let (status, applied) = server.post(
        "/api/v1/apps/checkout/onboarding/apply",
        &server.admin,
        &json!({}),
    );
    assert_eq!(status, 200, "{applied}");
    let added: Vec<String> = applied["added"]
        .as_array()
        .unwrap()
        .iter()
        .map(|query| query["metric"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        added,
        [
            "cpu_busy_ratio",
            "memory_used_ratio",
            "load1",
            "requests_per_second",
            "latency_p99_seconds",
            "error_ratio"
        ]
    );
    let source = &applied["settings"]["prometheus"];
    assert_eq!(source["queries"][0], own);
    assert_eq!(source["queries"].as_array().unwrap().len(), 7);
    assert_eq!(source["selector"], "job=\"checkout\"");
    assert_eq!(source["step_seconds"], 2);
    let (_, apps) = server.get("/api/v1/apps", &server.viewer);
    assert_eq!(apps["checkout"]["prometheus"], *source);
    // Applying again adds nothing and loses nothing.
    let (status, again) = server.post(
        "/api/v1/apps/checkout/onboarding/apply",
        &server.admin,
        &json!({"signals": ["cpu", "latency"]}),
    );
    assert_eq!(status, 200, "{again}");
    assert!(again["added"].as_array().unwrap().is_empty(), "{again}");
    assert_eq!(
        fields(&again["skipped"], "reason"),
        ["already pulled", "already pulled"]
    );
    assert_eq!(
        again["settings"]["prometheus"]["queries"]
            .as_array()
            .unwrap()
            .len(),
        7
    );

    // The server's puller fetches every query for every host; the report then shows the app
    // connected, each pulled metric on all three hosts, and only the logs missing.
    let pulled_names = [
        "cpu_busy_ratio",
        "memory_used_ratio",
        "load1",
        "requests_per_second",
        "latency_p99_seconds",
        "error_ratio",
        "targets_up",
    ];
    let every_host_pulled = |report: &Value| {
        pulled_names.iter().all(|name| {
            report["metrics"].as_array().is_some_and(|metrics| {
                metrics
                    .iter()
                    .any(|entry| entry["name"] == *name && entry["hosts_reporting"] == 3)
            })
        })
    };
    let report = wait_until(
        &server,
        60,
        || {
            server
                .get("/api/v1/apps/checkout/onboarding", &server.viewer)
                .1
        },
        every_host_pulled,
    );
    assert_eq!(report["state"], "connected");
    assert_eq!(
        strings(&metric(&report, "error_ratio")["signals"]),
        ["errors"]
    );
    assert_eq!(metric(&report, "error_ratio")["pulled"], true);
    assert_eq!(
        strings(&metric(&report, "requests_per_second")["signals"]),
        ["request_rate"]
    );
    assert_eq!(
        metric(&report, "latency_p99_seconds")["suggested"]["direction"],
        "increase"
    );
    assert_eq!(fields(&report["next_steps"], "signal"), ["logs"]);
    // A query of the user's own joins without discovery.
    let (status, own_added) = server.post(
        "/api/v1/apps/checkout/onboarding/apply",
        &server.admin,
        &json!({"signals": [], "queries": [{"metric": "scrape_seconds",
            "query": "max by (instance) (scrape_duration_seconds{job=\"checkout\"})"}]}),
    );
    assert_eq!(status, 200, "{own_added}");
    assert_eq!(fields(&own_added["added"], "metric"), ["scrape_seconds"]);
    assert_eq!(
        own_added["settings"]["prometheus"]["queries"]
            .as_array()
            .unwrap()
            .len(),
        8
    );
    // The hosts without a single error pull a zero error ratio, not nothing.
    let index = server.state.guard.index().read().unwrap();
    for host in FLEET {
        let series = &index.host(host).unwrap().series["error_ratio"];
        let (_, last) = *series.points.last().unwrap();
        if host == FLEET[0] {
            assert!(last > 0.05 && last < 0.15, "{host}: {last}");
        } else {
            assert_eq!(last, 0.0, "{host}");
        }
    }
}
