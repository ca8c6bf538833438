//! Against a real Prometheus: samples pushed with the remote-write encoder come back through
//! the pull client with the same values and hosts.
//!
//! Needs the `prometheus` binary on PATH or in `VIGIL_PROMETHEUS` (Debian package
//! `prometheus`); without it the test says SKIPPED loudly and passes.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::Duration;

use vigil_core::{Clock, SystemClock};
use vigil_ingest::prometheus::{PrometheusClient, PrometheusError, PrometheusOptions, RangeQuery};
use vigil_ingest::remote_write::{encode_remote_write, WriteSeries};

fn find_prometheus() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("VIGIL_PROMETHEUS") {
        return Some(PathBuf::from(path));
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|folder| folder.join("prometheus"))
        .find(|candidate| candidate.is_file())
}

/// A Prometheus process and its folder, both gone when dropped.
struct RunningPrometheus {
    child: Child,
    folder: PathBuf,
    url: String,
}

impl Drop for RunningPrometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.folder);
    }
}

impl RunningPrometheus {
    fn start(binary: &Path) -> RunningPrometheus {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|listener| listener.local_addr())
            .expect("a free loopback port")
            .port();
        let folder =
            std::env::temp_dir().join(format!("vigil-prometheus-{}-{port}", std::process::id()));
        std::fs::create_dir_all(folder.join("data")).expect("creates the folder");
        let config = folder.join("prometheus.yml");
        std::fs::write(&config, "global:\n  scrape_interval: 1m\n").expect("writes the config");
        let log = std::fs::File::create(folder.join("prometheus.log")).expect("creates the log");
        let child = Command::new(binary)
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                folder.join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg("--web.enable-remote-write-receiver")
            .arg("--log.level=warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("starts prometheus");
        let mut running = RunningPrometheus {
            child,
            folder,
            url: format!("http://127.0.0.1:{port}"),
        };
        running.wait_until_ready();
        running
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.folder.join("prometheus.log")).unwrap_or_default()
    }

    fn wait_until_ready(&mut self) {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .proxy(None)
            .timeout_global(Some(Duration::from_secs(2)))
            .build()
            .into();
        for _ in 0..300 {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("prometheus exited with {status}:\n{}", self.log());
            }
            let ready = agent.get(format!("{}/-/ready", self.url)).call();
            if ready.is_ok_and(|response| response.status() == 200) {
                return;
            }
            thread::sleep(Duration::from_millis(200));
        }
        panic!("prometheus was not ready after 60 s:\n{}", self.log());
    }

    fn push(&self, body: Vec<u8>) {
        let response = ureq::post(format!("{}/api/v1/write", self.url))
            .header("Content-Encoding", "snappy")
            .header("Content-Type", "application/x-protobuf")
            .header("X-Prometheus-Remote-Write-Version", "0.1.0")
            .send(body)
            .expect("remote write answers 2xx");
        assert_eq!(response.status(), 204, "remote write status");
    }
}

const HOSTS: [&str; 3] = ["web-1", "web-2", "web-3"];
const STEP: i64 = 30;
const STEPS: i64 = 20;

fn value_of(host_index: usize, step: i64) -> f64 {
    host_index as f64 * 100.0 + step as f64 * 0.5
}

#[test]
fn samples_pushed_by_remote_write_come_back_through_the_pull_client() {
    let Some(binary) = find_prometheus() else {
        assert!(
            std::env::var_os("VIGIL_REQUIRE_PROMETHEUS").is_none(),
            "VIGIL_REQUIRE_PROMETHEUS is set but no prometheus binary was found"
        );
        eprintln!(
            "\n*** SKIPPED: prometheus not installed (apt-get install prometheus, or set \
             VIGIL_PROMETHEUS to the binary) ***\n"
        );
        return;
    };
    let prometheus = RunningPrometheus::start(&binary);

    // Recent samples on whole steps, ending a minute ago: Prometheus takes nothing too old.
    let now = SystemClock.now();
    let start = (now - 60 - STEP * STEPS) / STEP * STEP;
    let end = start + STEP * (STEPS - 1);
    let mut series: Vec<WriteSeries> = HOSTS
        .iter()
        .enumerate()
        .map(|(host_index, host)| {
            let mut one = WriteSeries::new(&[
                ("__name__", "vigil_test_latency_seconds"),
                ("app", "shop"),
                ("host", host),
                ("rollouts_pod_template_hash", "abc123"),
            ]);
            for step in 0..STEPS {
                one = one.with_sample((start + step * STEP) * 1000, value_of(host_index, step));
            }
            one
        })
        .collect();
    let mut hostless = WriteSeries::new(&[("__name__", "vigil_test_latency_seconds")]);
    let mut other_metric = WriteSeries::new(&[("__name__", "vigil_test_other"), ("host", "web-1")]);
    for step in 0..STEPS {
        hostless = hostless.with_sample((start + step * STEP) * 1000, 7.0);
        other_metric = other_metric.with_sample((start + step * STEP) * 1000, 1.0);
    }
    series.push(hostless);
    series.push(other_metric);
    prometheus.push(encode_remote_write(&series, &[]).expect("encodes"));

    let client =
        PrometheusClient::new(&prometheus.url, PrometheusOptions::default()).expect("client");
    let query = RangeQuery {
        query: "vigil_test_latency_seconds".into(),
        host_label: "host".into(),
        metric: "latency".into(),
        app: "shop".into(),
        counter: false,
        start,
        end,
        step_seconds: STEP as u32,
    };
    let result = client.query_range(&query).expect("query answers");
    let mut hosts: Vec<&str> = result
        .chunk
        .series
        .iter()
        .map(|key| key.host.as_str())
        .collect();
    hosts.sort_unstable();
    assert_eq!(hosts, HOSTS);
    assert_eq!(
        result.without_host,
        vec![r#"vigil_test_latency_seconds"#.to_owned()]
    );
    assert_eq!(result.chunk.points.len(), HOSTS.len() * STEPS as usize);
    // Each host's labels come with it, a pod's template hash among them.
    let mut labelled: Vec<&str> = result
        .chunk
        .host_labels
        .iter()
        .filter(|host| {
            host.labels
                .contains(&("rollouts_pod_template_hash".to_owned(), "abc123".to_owned()))
        })
        .map(|host| host.host.as_str())
        .collect();
    labelled.sort_unstable();
    assert_eq!(labelled, HOSTS);
    for point in &result.chunk.points {
        let key = &result.chunk.series[point.series as usize];
        let host_index = HOSTS
            .iter()
            .position(|host| *host == key.host)
            .expect("a known host");
        let step = (point.ms / 1000 - start) / STEP;
        assert_eq!(point.ms, (start + step * STEP) * 1000);
        assert_eq!(
            point.value,
            value_of(host_index, step),
            "{} at step {step}",
            key.host
        );
        assert_eq!((key.metric.as_str(), key.app.as_str()), ("latency", "shop"));
    }

    // Prometheus' own refusals come back as such.
    let broken = RangeQuery {
        query: "rate(vigil_test_latency_seconds[".into(),
        ..query.clone()
    };
    match client.query_range(&broken) {
        Err(PrometheusError::Query {
            status, error_type, ..
        }) => assert_eq!((status, error_type.as_str()), (400, "bad_data")),
        other => panic!("expected a bad_data refusal, got {other:?}"),
    }
    // Two series for one host: the query must aggregate by host.
    let mixed = RangeQuery {
        query: r#"{__name__=~"vigil_test_.+", host="web-1"}"#.into(),
        ..query
    };
    assert_eq!(
        client
            .query_range(&mixed)
            .expect_err("two series for web-1"),
        PrometheusError::DuplicateHost {
            host: "web-1".into(),
            label: "host".into()
        }
    );
}
