//! Two servers on one PostgreSQL database, as two `vigil serve` replicas behind a load
//! balancer: data ingested at one reaches the other's index once, log templates mined at both
//! agree, and a release judged by one pauses on a fault in data only the other received.
//!
//! Skipped loudly without `VIGIL_TEST_POSTGRES` (failed when `VIGIL_REQUIRE_POSTGRES` is set).
#![allow(clippy::unwrap_used, clippy::print_stderr)]

mod support;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde_json::json;
use support::TestServer;
use vigil_server::{ReplicaSettings, ServerConfig};
use vigil_store::testing::ScratchPostgres;

const NOW: i64 = 1_700_000_000;

/// A scratch database, or `None` (the test is skipped) without a server to make it on.
fn scratch_database(test: &str) -> Option<ScratchPostgres> {
    let scratch = ScratchPostgres::from_env("vigil_replicas").unwrap();
    if scratch.is_none() {
        assert!(
            std::env::var_os("VIGIL_REQUIRE_POSTGRES").is_none(),
            "VIGIL_REQUIRE_POSTGRES is set but VIGIL_TEST_POSTGRES is not"
        );
        eprintln!("SKIPPED {test}: set VIGIL_TEST_POSTGRES to a PostgreSQL server URL");
    }
    scratch
}

/// A server of replica `id` on `database`, its clock at `now`.
fn replica(database: &ScratchPostgres, id: &str, now: i64) -> TestServer {
    let config = ServerConfig {
        replica: ReplicaSettings {
            id: id.to_owned(),
            ..ReplicaSettings::default()
        },
        ..ServerConfig::default()
    };
    TestServer::start_with(now, database.url(), None, config)
}

/// Waits until `done` holds, at most `limit` of wall time (the replicas follow each other in
/// real time, whatever their clocks say); returns how long it took.
#[allow(clippy::disallowed_methods)]
fn wait_for(limit: Duration, mut done: impl FnMut() -> bool) -> Option<Duration> {
    let started = Instant::now();
    while started.elapsed() < limit {
        if done() {
            return Some(started.elapsed());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    None
}

/// How long a replica may take to see what another one stored: its follower polls every
/// 500 ms.
const FOLLOW_LIMIT: Duration = Duration::from_millis(2500);

/// The release's exported window as `server` assembles it.
fn export(server: &TestServer, release: &str) -> vigil_core::Bundle {
    let (status, exported) = server.get(
        &format!("/api/v1/releases/{release}/export"),
        &server.viewer,
    );
    assert_eq!(status, 200, "{exported}");
    vigil_core::Bundle::from_bytes(exported.to_string().as_bytes(), "export").unwrap()
}

/// Samples of `metric` in the bundle, per host: how many steps hold one.
fn samples_by_host(bundle: &vigil_core::Bundle, metric: &str) -> BTreeMap<String, usize> {
    let Some(by_host) = bundle.series.get(metric) else {
        return BTreeMap::new();
    };
    by_host
        .iter()
        .map(|(host, values)| {
            let held = values
                .iter()
                .flatten()
                .filter(|value| value.is_finite())
                .count();
            (host.clone(), held)
        })
        .collect()
}

/// Log lines in the bundle, per template text.
fn lines_by_text(bundle: &vigil_core::Bundle) -> BTreeMap<String, f64> {
    let texts: BTreeMap<&str, &str> = bundle
        .logs
        .templates
        .iter()
        .map(|template| (template.id.as_str(), template.text.as_str()))
        .collect();
    let mut lines = BTreeMap::new();
    for (template, by_host) in &bundle.logs.counts {
        let text = texts.get(template.as_str()).copied().unwrap_or("?");
        let total: f64 = by_host
            .values()
            .flat_map(|values| values.iter().flatten())
            .filter(|value| value.is_finite())
            .sum();
        *lines.entry(text.to_owned()).or_insert(0.0) += total;
    }
    lines
}

/// Log lines the server's index holds, per template text (as the store names them).
fn indexed_lines_by_text(server: &TestServer, app: &str) -> BTreeMap<String, u64> {
    let texts: BTreeMap<String, String> = server
        .state
        .store
        .templates(app)
        .unwrap()
        .into_iter()
        .map(|template| (template.id, template.text))
        .collect();
    let index = server.state.guard.index().read().unwrap();
    let mut lines = BTreeMap::new();
    for host in index.hosts_of_app(app, 0) {
        let Some(data) = index.host(&host) else {
            continue;
        };
        for (template, counts) in &data.logs {
            let text = texts
                .get(template)
                .cloned()
                .unwrap_or_else(|| "?".to_owned());
            *lines.entry(text).or_insert(0) += counts.values().sum::<u64>();
        }
    }
    lines
}

fn log_line(host: &str, time: i64, text: &str) -> serde_json::Value {
    json!({"host": host, "app": "shop", "time": time,
           "line": format!("2023-11-14 22:13:20 ERROR {text}")})
}

#[test]
fn samples_and_log_lines_posted_to_one_replica_reach_the_other_once() {
    let Some(database) = scratch_database("samples_and_log_lines_posted_to_one_replica") else {
        return;
    };
    let first = replica(&database, "a", NOW);
    let second = replica(&database, "b", NOW);
    let (status, created) = first.post(
        "/api/v1/releases",
        &first.admin,
        &json!({
            "id": "r1", "app": "shop", "version": "2", "step_seconds": 30,
            "hosts": ["a", "b"], "reference": {"type": "hosts", "hosts": ["c"]},
            "metrics": [{"name": "latency_ms", "kind": "middleware", "direction": "increase"}],
            "settings": {"baseline_seconds": 300},
        }),
    );
    assert_eq!(status, 201, "{created}");
    let samples: Vec<serde_json::Value> = (NOW - 300..NOW)
        .step_by(30)
        .flat_map(|at| {
            ["a", "b", "c"].map(|host| {
                json!({"host": host, "app": "shop", "metric": "latency_ms", "time": at,
                       "value": 100.0 + (at % 7) as f64})
            })
        })
        .collect();
    first.ingest_samples(samples);
    let lines: Vec<serde_json::Value> = (0..12)
        .map(|number| {
            log_line(
                "a",
                NOW - 200 + number,
                &format!("charge of order {number} failed"),
            )
        })
        .collect();
    let (status, answer) = first.post(
        "/api/v1/ingest/logs",
        &first.ingest,
        &json!({ "lines": lines }),
    );
    assert_eq!(status, 200, "{answer}");
    #[allow(clippy::disallowed_methods)]
    let stored = Instant::now();

    let at_first = export(&first, "r1");
    let every_step = BTreeMap::from([
        ("a".to_owned(), 10),
        ("b".to_owned(), 10),
        ("c".to_owned(), 10),
    ]);
    assert_eq!(samples_by_host(&at_first, "latency_ms"), every_step);
    let first_lines = lines_by_text(&at_first);
    assert_eq!(first_lines.values().sum::<f64>(), 12.0, "{first_lines:?}");

    let took = wait_for(FOLLOW_LIMIT, || {
        let at_second = export(&second, "r1");
        samples_by_host(&at_second, "latency_ms") == every_step
            && lines_by_text(&at_second) == first_lines
    });
    assert!(
        took.is_some(),
        "the second replica's window holds the first one's data"
    );
    eprintln!(
        "the second replica held the data within {} ms of its storing at the first one",
        stored.elapsed().as_millis()
    );
    // Several polls later, nothing was added twice.
    std::thread::sleep(Duration::from_millis(1500));
    let at_second = export(&second, "r1");
    assert_eq!(at_second.series, at_first.series);
    assert_eq!(
        lines_by_text(&at_second),
        first_lines,
        "log counts not doubled"
    );
    assert_eq!(at_second.logs.counts, at_first.logs.counts);
    // The first replica did not take its own data back either.
    assert_eq!(export(&first, "r1").logs.counts, at_first.logs.counts);
}

#[test]
fn log_lines_of_one_app_posted_to_both_replicas_give_one_template_set() {
    let Some(database) = scratch_database("log_lines_of_one_app_posted_to_both_replicas") else {
        return;
    };
    let first = replica(&database, "a", NOW);
    let second = replica(&database, "b", NOW);
    let post = |server: &TestServer, host: &str, texts: &[&str]| {
        let lines: Vec<serde_json::Value> =
            texts.iter().map(|text| log_line(host, NOW, text)).collect();
        let (status, answer) = server.post(
            "/api/v1/ingest/logs",
            &server.ingest,
            &json!({ "lines": lines }),
        );
        assert_eq!(status, 200, "{answer}");
    };
    // Both replicas mine the app.
    post(&first, "h1", &["user 1 signed in"]);
    post(&second, "h2", &["user 2 signed in"]);
    // At the same time, each sees an event the other has not seen, and both see a third one.
    std::thread::scope(|scope| {
        scope.spawn(|| {
            post(
                &first,
                "h1",
                &["payment 7 declined by bank", "disk 3 is full"],
            )
        });
        scope.spawn(|| post(&second, "h2", &["cache miss on key 77", "disk 4 is full"]));
    });
    let templates = first.state.store.templates("shop").unwrap();
    let texts: Vec<&str> = templates
        .iter()
        .map(|template| template.text.as_str())
        .collect();
    for expected in [
        "user <*> signed in",
        "payment <*> declined by bank",
        "cache miss on key <*>",
        "disk <*> is full",
    ] {
        assert_eq!(
            texts.iter().filter(|text| **text == expected).count(),
            1,
            "one template {expected:?} in {texts:?}"
        );
    }
    assert_eq!(templates.len(), 4, "{texts:?}");
    let expected_lines = BTreeMap::from([
        ("user <*> signed in".to_owned(), 2),
        ("payment <*> declined by bank".to_owned(), 1),
        ("cache miss on key <*>".to_owned(), 1),
        ("disk <*> is full".to_owned(), 2),
    ]);
    for server in [&first, &second] {
        let took = wait_for(FOLLOW_LIMIT, || {
            indexed_lines_by_text(server, "shop") == expected_lines
        });
        assert!(
            took.is_some(),
            "{:?} against {expected_lines:?}",
            indexed_lines_by_text(server, "shop")
        );
    }
    // The replicas go on mining with the same templates: a new line of an event the other
    // replica saw first gets the id the store has for it.
    post(&second, "h2", &["payment 8 declined by bank"]);
    post(&first, "h1", &["cache miss on key 78"]);
    assert_eq!(first.state.store.templates("shop").unwrap().len(), 4);
    let expected_lines = BTreeMap::from([
        ("user <*> signed in".to_owned(), 2),
        ("payment <*> declined by bank".to_owned(), 2),
        ("cache miss on key <*>".to_owned(), 2),
        ("disk <*> is full".to_owned(), 2),
    ]);
    for server in [&first, &second] {
        let took = wait_for(FOLLOW_LIMIT, || {
            indexed_lines_by_text(server, "shop") == expected_lines
        });
        assert!(
            took.is_some(),
            "{:?} against {expected_lines:?}",
            indexed_lines_by_text(server, "shop")
        );
    }
}

/// When the fault test's release deploys: on the 30 s grid of its steps.
const DEPLOY: i64 = NOW + 10;

#[test]
fn a_release_judged_by_one_replica_pauses_on_a_fault_only_the_other_received() {
    let Some(database) = scratch_database("a_release_judged_by_one_replica_pauses") else {
        return;
    };
    // The first replica's clock stays before the deploy, so its guard judges none of the
    // release's steps after it: the pause can only come from the second replica.
    let receiver = replica(&database, "a", DEPLOY - 650);
    let judge = replica(&database, "b", DEPLOY - 650);
    let (status, created) = receiver.post(
        "/api/v1/releases",
        &receiver.admin,
        &json!({
            "id": "r1", "app": "shop", "version": "2", "step_seconds": 30,
            "observe_seconds": 1800, "hosts": ["a", "b"],
            "reference": {"type": "hosts", "hosts": ["c"]},
            "metrics": [{"name": "latency_ms", "kind": "middleware", "direction": "increase",
                         "unit": "ms", "critical": true}],
            "settings": {"baseline_seconds": 600, "warmup_seconds": 60},
        }),
    );
    assert_eq!(status, 201, "{created}");
    let mut samples_sent = 0;
    let mut push = |at: i64, factor: f64| {
        let even = |number: i64| 100.0 + number as f64 + (at % 7) as f64;
        receiver.ingest_samples(vec![
            json!({"host": "a", "app": "shop", "metric": "latency_ms", "time": at, "value": even(0) * factor}),
            json!({"host": "b", "app": "shop", "metric": "latency_ms", "time": at, "value": even(1) * factor}),
            json!({"host": "c", "app": "shop", "metric": "latency_ms", "time": at, "value": even(2)}),
        ]);
        samples_sent += 3;
        let expected = samples_sent;
        let took = wait_for(FOLLOW_LIMIT, || {
            judge.state.guard.index().read().unwrap().sample_count() == expected
        });
        assert!(
            took.is_some(),
            "the judging replica holds the samples of {at}"
        );
        judge
            .clock
            .set(at + judge.state.guard.config().grace_seconds);
        judge.state.guard.pass().unwrap();
    };
    for at in (DEPLOY - 600..DEPLOY).step_by(30) {
        push(at, 1.0);
    }
    judge.clock.set(DEPLOY);
    let (status, answer) = judge.post(
        "/api/v1/releases/r1/batches/0/deployed",
        &judge.admin,
        &json!({}),
    );
    assert_eq!(status, 200, "{answer}");
    let mut paused_at = None;
    for at in (DEPLOY + 30..=DEPLOY + 600).step_by(30) {
        push(at, 3.0);
        let (_, release) = judge.get("/api/v1/releases/r1", &judge.viewer);
        if release["state"] == "paused" {
            paused_at = Some(at);
            break;
        }
    }
    let paused_at = paused_at.expect("the release paused");
    assert!(paused_at <= DEPLOY + 300, "paused at {paused_at}");
    let (_, release) = receiver.get("/api/v1/releases/r1", &receiver.viewer);
    assert_eq!(release["state"], "paused", "{release}");
    assert!(
        release["reason"].as_str().unwrap().contains("latency_ms"),
        "{release}"
    );
    assert_eq!(
        receiver.state.guard.index().read().unwrap().sample_count(),
        samples_sent,
        "the receiving replica holds each sample once"
    );
}
