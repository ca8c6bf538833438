//! The API's contract: tokens and roles, clear 4xx answers to bad input that change nothing
//! stored, idempotent ingestion, export and import.
#![allow(clippy::unwrap_used)]

mod support;

use serde_json::json;
use support::{examples_dir, request, PageClient, TestServer};

const NOW: i64 = 1_700_000_000;

fn release_body(id: &str) -> serde_json::Value {
    json!({
        "id": id, "app": "shop", "version": "2",
        "hosts": ["a", "b"], "batches": [{"hosts": ["a"]}, {"hosts": ["b"]}],
        "reference": {"type": "hosts", "hosts": ["c"]},
    })
}

#[test]
fn every_route_but_health_needs_a_token_with_the_right_role() {
    let server = TestServer::start(NOW);
    let (status, answer) = request(&server.base, "GET", "/api/v1/releases", "", None);
    assert_eq!(status, 401, "{answer}");
    assert!(answer["error"].as_str().unwrap().contains("token"));
    let (status, _) = server.get("/api/v1/releases", "vgl_not_a_token");
    assert_eq!(status, 401);
    let (status, answer) = server.post("/api/v1/releases", &server.viewer, &release_body("r1"));
    assert_eq!(status, 403, "{answer}");
    let (status, _) = server.get("/api/v1/releases", &server.ingest);
    assert_eq!(status, 403, "ingest tokens cannot read releases");
    let (status, _) = server.post(
        "/api/v1/ingest/samples",
        &server.viewer,
        &json!({"samples": []}),
    );
    assert_eq!(status, 403, "viewers cannot ingest");
    let (status, _) = server.get("/api/v1/releases", &server.viewer);
    assert_eq!(status, 200);
    let (status, document) = request(&server.base, "GET", "/api/v1/openapi.json", "", None);
    assert_eq!(status, 200);
    assert_eq!(document["openapi"], "3.0.3");
}

#[test]
fn ingestion_takes_the_token_as_a_query_parameter_too() {
    let server = TestServer::start(NOW);
    let samples = json!({"samples": [{"host": "a", "metric": "cpu", "time": NOW, "value": 1.0}]});
    let body = samples.to_string().into_bytes();
    let path = |token: &str| format!("/api/v1/ingest/samples?token={token}");
    let (status, answer) = request(
        &server.base,
        "POST",
        &path(&server.ingest),
        "",
        Some(body.clone()),
    );
    // The empty bearer header of `request` is absent here only when the token is empty.
    assert_eq!(
        status, 401,
        "a present but empty authorization header wins: {answer}"
    );
    let (status, answer) =
        request_without_header(&server.base, &path(&server.ingest), body.clone());
    assert_eq!(status, 200, "{answer}");
    let (status, _) = request_without_header(&server.base, &path("vgl_unknown"), body.clone());
    assert_eq!(status, 401);
    let (status, _) = request_without_header(&server.base, &path(&server.viewer), body);
    assert_eq!(status, 403);
}

/// A POST with no authorization header at all.
fn request_without_header(base: &str, path: &str, body: Vec<u8>) -> (u16, serde_json::Value) {
    let mut response = support::agent()
        .post(&format!("{base}{path}"))
        .header("Content-Type", "application/json")
        .send(&body[..])
        .unwrap();
    let status = response.status().as_u16();
    let text = response.body_mut().read_to_string().unwrap_or_default();
    (
        status,
        serde_json::from_str(&text).unwrap_or(json!({ "text": text })),
    )
}

#[test]
fn the_openapi_document_lists_every_route() {
    let document: serde_json::Value = serde_json::from_str(vigil_web::OPENAPI).unwrap();
    let paths = document["paths"].as_object().unwrap();
    let source = include_str!("../../vigil-web/src/lib.rs");
    let mut routes = 0;
    for line in source.lines() {
        let Some(start) = line.find("\"/") else {
            continue;
        };
        let rest = &line[start + 1..];
        let Some(end) = rest.find('"') else { continue };
        let route = &rest[..end];
        routes += 1;
        assert!(
            paths.contains_key(route),
            "{route} is missing from openapi.json"
        );
    }
    assert!(routes >= 20, "found only {routes} routes in the router");
}

#[test]
fn bad_requests_get_a_clear_4xx_and_change_nothing() {
    let server = TestServer::start(NOW);
    let (status, _) = server.post("/api/v1/releases", &server.admin, &release_body("r1"));
    assert_eq!(status, 201);

    let cases: Vec<(&str, Vec<u8>, u16, &str)> = vec![
        (
            "/api/v1/releases",
            b"{not json".to_vec(),
            400,
            "invalid json",
        ),
        (
            "/api/v1/releases",
            json!({"app": "shop", "version": "1", "hosts": []})
                .to_string()
                .into_bytes(),
            400,
            "hosts",
        ),
        (
            "/api/v1/releases",
            json!({"app": "shop", "version": "1", "hosts": ["a"], "settings": {"shift_zz": 1}})
                .to_string()
                .into_bytes(),
            400,
            "shift_zz",
        ),
        (
            "/api/v1/releases",
            release_body("r1").to_string().into_bytes(),
            409,
            "already exists",
        ),
        (
            "/api/v1/releases/nope/pause",
            Vec::new(),
            404,
            "no release nope",
        ),
        (
            "/api/v1/releases/r1/batches/1/deployed",
            Vec::new(),
            409,
            "before batch 0",
        ),
        (
            "/api/v1/releases/r1/batches/7/deployed",
            Vec::new(),
            409,
            "not in the release's plan",
        ),
        (
            "/api/v1/releases/r1/resume",
            Vec::new(),
            409,
            "cannot resume",
        ),
        ("/api/v1/ingest/samples", b"[1,2".to_vec(), 400, ""),
        (
            "/api/v1/ingest/samples",
            json!({"samples": [{"host": "a", "metric": "cpu", "time": NOW, "value": "x"}]})
                .to_string()
                .into_bytes(),
            400,
            "samples[0]",
        ),
        (
            "/api/v1/ingest/prometheus",
            b"definitely not snappy".to_vec(),
            400,
            "snappy",
        ),
        (
            "/api/v1/ingest/prometheus",
            snap::raw::Encoder::new()
                .compress_vec(b"\x0a\xff\xff\xff\x0f")
                .unwrap(),
            400,
            "protobuf",
        ),
        (
            "/api/v1/ingest/logs",
            json!({"lines": [{"host": "a", "time": NOW}]})
                .to_string()
                .into_bytes(),
            400,
            "line",
        ),
    ];
    for (path, body, expected, words) in cases {
        let token = if path.contains("ingest") {
            &server.ingest
        } else {
            &server.admin
        };
        let (status, answer) = server.post_bytes(path, token, body);
        assert_eq!(status, expected, "{path}: {answer}");
        let message = answer["error"].as_str().unwrap_or_default();
        assert!(
            !message.is_empty() && message.contains(words),
            "{path}: {message:?} should say {words:?}"
        );
        assert!(
            message.starts_with(|c: char| !c.is_uppercase()),
            "{path}: {message:?} starts in lowercase"
        );
    }

    // Nothing changed: the release is as created, no data was stored.
    let (_, release) = server.get("/api/v1/releases/r1", &server.viewer);
    assert_eq!(release["state"], "pending");
    let (_, transitions) = server.get("/api/v1/releases/r1/transitions", &server.viewer);
    assert_eq!(transitions.as_array().unwrap().len(), 1);
    let stored = server
        .state
        .store
        .data_between(vigil_store::DataKind::Metrics, 0, i64::MAX)
        .unwrap();
    assert!(stored.is_empty(), "refused requests stored nothing");
}

#[test]
fn an_oversized_body_is_refused_with_413() {
    // A small limit, so that the whole body fits in the socket's buffers and the client reads
    // the answer instead of finding the connection closed under it.
    let config = vigil_server::ServerConfig {
        max_body_bytes: 64 * 1024,
        ..vigil_server::ServerConfig::default()
    };
    let dir = support::TempDir::new("oversized");
    let database = dir.0.join("vigil.db").display().to_string();
    let server = TestServer::start_with(NOW, &database, Some(dir), config);
    let oversized = vec![b' '; 256 * 1024];
    let (status, _) = server.post_bytes("/api/v1/ingest/samples", &server.ingest, oversized);
    assert_eq!(status, 413);
    let stored = server
        .state
        .store
        .data_between(vigil_store::DataKind::Metrics, 0, i64::MAX)
        .unwrap();
    assert!(stored.is_empty());
}

#[test]
fn resent_samples_and_keyed_log_batches_are_not_counted_twice() {
    let server = TestServer::start(NOW);
    let samples = json!({"samples": [
        {"host": "a", "app": "shop", "metric": "cpu", "time": NOW, "value": 1.0},
        {"host": "a", "app": "shop", "metric": "cpu", "time": NOW + 30, "value": 2.0},
    ]});
    for _ in 0..2 {
        let (status, answer) = server.post("/api/v1/ingest/samples", &server.ingest, &samples);
        assert_eq!(status, 200, "{answer}");
    }
    let index = server.state.guard.index().read().unwrap();
    assert_eq!(index.sample_count(), 2, "a resent sample replaces itself");
    drop(index);

    let lines = json!({"key": "batch-1", "lines": [
        {"host": "a", "app": "shop", "time": NOW, "line": "2024-01-01 00:00:00 ERROR failed to charge order 17"},
        {"host": "a", "app": "shop", "time": NOW, "line": "2024-01-01 00:00:00 ERROR failed to charge order 18"},
    ]});
    let (status, first) = server.post("/api/v1/ingest/logs", &server.ingest, &lines);
    assert_eq!(status, 200, "{first}");
    assert_eq!(first["duplicate"], false);
    let (status, second) = server.post("/api/v1/ingest/logs", &server.ingest, &lines);
    assert_eq!(status, 200, "{second}");
    assert_eq!(second["duplicate"], true);
    let index = server.state.guard.index().read().unwrap();
    let logs = &index.host("a").unwrap().logs;
    assert_eq!(logs.len(), 1, "both lines fall in one template: {logs:?}");
    let total: u64 = logs.values().flat_map(|counts| counts.values()).sum();
    assert_eq!(total, 2, "the resent batch was not counted again");
    drop(index);
    let templates = server.state.store.templates("shop").unwrap();
    assert_eq!(templates.len(), 1);
    assert_eq!(templates[0].level, "ERROR");
}

#[test]
fn actions_are_audited_and_the_verdict_tells_a_pipeline_what_to_do() {
    let server = TestServer::start(NOW);
    server.post("/api/v1/releases", &server.admin, &release_body("r1"));
    let (_, verdict) = server.get("/api/v1/releases/r1/verdict", &server.viewer);
    assert_eq!(verdict["decision"], "proceed");
    let (status, _) = server.post(
        "/api/v1/releases/r1/batches/0/deployed",
        &server.admin,
        &json!({}),
    );
    assert_eq!(status, 200);
    let (_, verdict) = server.get("/api/v1/releases/r1/verdict", &server.viewer);
    assert_eq!(
        verdict["decision"], "hold",
        "no verdict yet after a deploy: {verdict}"
    );
    let (status, paused) = server.post(
        "/api/v1/releases/r1/pause",
        &server.admin,
        &json!({"reason": "looks odd"}),
    );
    assert_eq!(status, 200);
    assert_eq!(paused["state"], "paused");
    let (_, verdict) = server.get("/api/v1/releases/r1/verdict", &server.viewer);
    assert_eq!(verdict["failed"], true);
    assert_eq!(verdict["decision"], "stop");
    let (status, answer) = server.post(
        "/api/v1/releases/r1/batches/1/deployed",
        &server.admin,
        &json!({}),
    );
    assert_eq!(status, 409, "a paused release takes no batch: {answer}");
    server.post("/api/v1/releases/r1/resume", &server.admin, &json!({}));
    let (status, feedback) = server.post(
        "/api/v1/releases/r1/feedback",
        &server.admin,
        &json!({"kind": "false_alarm", "note": "load test"}),
    );
    assert_eq!(status, 201, "{feedback}");
    let (_, transitions) = server.get("/api/v1/releases/r1/transitions", &server.viewer);
    let steps: Vec<(String, String, String)> = transitions
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            (
                t["action"].as_str().unwrap().into(),
                t["actor"].as_str().unwrap().into(),
                t["to"].as_str().unwrap().into(),
            )
        })
        .collect();
    assert_eq!(
        steps,
        vec![
            ("create".into(), "admin".into(), "pending".into()),
            ("batch_deployed".into(), "admin".into(), "observing".into()),
            ("pause".into(), "admin".into(), "paused".into()),
            ("resume".into(), "admin".into(), "observing".into()),
        ]
    );
    assert_eq!(transitions[2]["reason"], "looks odd");
    let (_, feedback) = server.get("/api/v1/releases/r1/feedback", &server.viewer);
    assert_eq!(feedback[0]["kind"], "false_alarm");
}

#[test]
fn an_imported_bundle_is_replayed_and_exports_back() {
    // Imported long after it happened.
    let server = TestServer::start(1_800_000_000);
    let bytes = std::fs::read(examples_dir().join("releases/pub0031.json.gz")).unwrap();
    let (status, release) =
        server.post_bytes("/api/v1/releases/import", &server.admin, bytes.clone());
    assert_eq!(status, 201, "{release}");
    assert_eq!(release["state"], "paused");
    let (status, again) = server.post_bytes("/api/v1/releases/import", &server.admin, bytes);
    assert_eq!(status, 409, "{again}");
    let (status, exported) = server.get("/api/v1/releases/pub0031/export", &server.viewer);
    assert_eq!(status, 200);
    let bundle = vigil_core::Bundle::from_bytes(exported.to_string().as_bytes(), "export").unwrap();
    let original =
        vigil_core::Bundle::read(&examples_dir().join("releases/pub0031.json.gz")).unwrap();
    assert_eq!(
        bundle.series, original.series,
        "the exported window holds the imported data"
    );
    let settings = vigil_analysis::Settings::default();
    assert_eq!(
        vigil_analysis::replay(&bundle, &settings).paused_at,
        vigil_analysis::replay(&original, &settings).paused_at
    );
    let (status, series) = server.get(
        "/api/v1/releases/pub0031/series?metric=http.rt_ms",
        &server.viewer,
    );
    assert_eq!(status, 200, "{series}");
    assert!(!series["hosts"].as_array().unwrap().is_empty());
}

/// Pushes one latency sample per host at `at` and lets the guard judge the step.
fn push_and_judge(server: &TestServer, at: i64) {
    push_from_and_judge(server, at, &["a", "b", "c"]);
}

/// [`push_and_judge`] with samples of `hosts` only.
fn push_from_and_judge(server: &TestServer, at: i64, hosts: &[&str]) {
    let samples: Vec<serde_json::Value> = hosts
        .iter()
        .enumerate()
        .map(|(number, host)| {
            json!({"host": host, "app": "shop", "metric": "latency_ms", "time": at,
                   "value": 100.0 + number as f64 + (at % 7) as f64})
        })
        .collect();
    post_and_judge(server, at, &json!(samples));
}

/// Posts `samples` and lets the guard judge the step at `at`.
fn post_and_judge(server: &TestServer, at: i64, samples: &serde_json::Value) {
    let (status, answer) = server.post(
        "/api/v1/ingest/samples",
        &server.ingest,
        &json!({ "samples": samples }),
    );
    assert_eq!(status, 200, "{answer}");
    server
        .clock
        .set(at + server.state.guard.config().grace_seconds);
    server.state.guard.pass().unwrap();
}

/// When the releases of the guard tests below deploy: on the 30 s grid of their steps.
const DEPLOY: i64 = NOW + 10;

/// A server with release `body` (30 s steps) created and two minutes of samples of hosts a, b
/// and c judged before [`DEPLOY`], its clock at [`DEPLOY`].
fn server_with_baseline(body: &serde_json::Value) -> TestServer {
    let server = TestServer::start(DEPLOY - 150);
    let (status, answer) = server.post("/api/v1/releases", &server.admin, body);
    assert_eq!(status, 201, "{answer}");
    for at in (DEPLOY - 120..DEPLOY).step_by(30) {
        push_and_judge(&server, at);
    }
    server.clock.set(DEPLOY);
    server
}

#[test]
fn a_pipeline_holds_until_the_last_batch_is_judged_and_may_retry_a_batch_report() {
    let server = server_with_baseline(&json!({
        "id": "r1", "app": "shop", "version": "2", "step_seconds": 30, "observe_seconds": 3600,
        "hosts": ["a", "b"], "batches": [{"hosts": ["a"]}, {"hosts": ["b"]}],
        "reference": {"type": "hosts", "hosts": ["c"]},
        "settings": {"baseline_seconds": 120, "warmup_seconds": 60},
    }));
    let decision = || {
        let (_, verdict) = server.get("/api/v1/releases/r1/verdict", &server.viewer);
        verdict["decision"].as_str().unwrap().to_owned()
    };
    let report = |batch: u32, body: serde_json::Value| {
        server.post(
            &format!("/api/v1/releases/r1/batches/{batch}/deployed"),
            &server.admin,
            &body,
        )
    };
    let (status, first) = report(0, json!({}));
    assert_eq!(status, 200, "{first}");
    // A pipeline retries the same report: the release as it is, nothing recorded again.
    let (status, again) = report(0, json!({"hosts": ["a"]}));
    assert_eq!(status, 200, "{again}");
    assert_eq!(again, first);
    let (status, other) = report(0, json!({"hosts": ["b"]}));
    assert_eq!(
        status, 409,
        "another host list for a reported batch: {other}"
    );
    assert!(
        other["error"]
            .as_str()
            .unwrap()
            .contains("already reported deployed to hosts [\"a\"]"),
        "{other}"
    );
    let (_, transitions) = server.get("/api/v1/releases/r1/transitions", &server.viewer);
    assert_eq!(transitions.as_array().unwrap().len(), 2, "{transitions}");

    for at in (DEPLOY + 30..=DEPLOY + 90).step_by(30) {
        push_and_judge(&server, at);
    }
    assert_eq!(decision(), "proceed", "batch 0 was judged past its warm-up");
    let (status, second) = report(1, json!({}));
    assert_eq!(status, 200, "{second}");
    assert_eq!(decision(), "hold", "batch 1 is not judged yet");
    for at in [DEPLOY + 120, DEPLOY + 150] {
        push_and_judge(&server, at);
        assert_eq!(decision(), "hold", "batch 1 is warming up at {at}");
    }
    push_and_judge(&server, DEPLOY + 180);
    assert_eq!(decision(), "proceed", "batch 1 was judged past its warm-up");
}

#[test]
fn the_silent_host_fault_time_is_checked_at_creation() {
    let server = TestServer::start(NOW);
    for bad in [json!(0), json!(-60), json!(59), json!(86_401)] {
        let mut body = release_body("r1");
        body["settings"] = json!({ "silent_host_fault_seconds": bad });
        let (status, answer) = server.post("/api/v1/releases", &server.admin, &body);
        assert_eq!(status, 400, "{bad}: {answer}");
        assert!(
            answer["error"]
                .as_str()
                .unwrap()
                .contains("silent_host_fault_seconds"),
            "{answer}"
        );
    }
    let mut body = release_body("r1");
    body["settings"] = json!({ "silent_host_fault_seconds": 300 });
    let (status, answer) = server.post("/api/v1/releases", &server.admin, &body);
    assert_eq!(status, 201, "{answer}");
}

#[test]
fn a_release_host_that_falls_silent_holds_the_release_then_pauses_it() {
    let server = server_with_baseline(&json!({
        "id": "r1", "app": "shop", "version": "2", "step_seconds": 30, "observe_seconds": 120,
        "hosts": ["a", "b"], "reference": {"type": "hosts", "hosts": ["c"]},
        "settings": {"baseline_seconds": 120, "warmup_seconds": 60,
                     "silent_host_fault_seconds": 300},
    }));
    let (status, _) = server.post(
        "/api/v1/releases/r1/batches/0/deployed",
        &server.admin,
        &json!({}),
    );
    assert_eq!(status, 200);
    let verdict = || server.get("/api/v1/releases/r1/verdict", &server.viewer).1;
    // b sends nothing after its deploy (its last sample was at DEPLOY - 30): held past the
    // observation time, not passed, until it has been silent for 300 s.
    for at in (DEPLOY + 30..=DEPLOY + 240).step_by(30) {
        push_from_and_judge(&server, at, &["a", "c"]);
    }
    let held = verdict();
    assert_eq!(held["decision"], "hold", "{held}");
    assert_eq!(held["verdict"], "insufficient_data", "{held}");
    assert!(
        held["reason"]
            .as_str()
            .unwrap()
            .starts_with("waiting for data: b sent nothing since"),
        "{held}"
    );
    push_from_and_judge(&server, DEPLOY + 270, &["a", "c"]);
    let paused = verdict();
    assert_eq!(paused["state"], "paused", "{paused}");
    assert!(
        paused["reason"]
            .as_str()
            .unwrap()
            .contains("while the reference hosts kept reporting"),
        "{paused}"
    );
    // The page shows the finding without a chart of a metric it is not about.
    let mut client = PageClient::new(&server.base);
    client.sign_in(&server.viewer);
    let page = client.get("/releases/r1").body;
    assert!(
        page.contains("<span class=\"signal-kind\">Silence</span> <code>no data</code>"),
        "{page}"
    );
    assert!(
        page.contains("<dt>Effect</dt><dd>no samples</dd>"),
        "{page}"
    );
}

/// A release without a reference group reaches `history_days` (7) back: at 5 s steps that is
/// 120 960 steps, of 100 series here, past the values a window may hold. Its export is the
/// window from the first step its hosts' data covers (its baseline at the most), and judges
/// as the full one would.
#[test]
fn a_history_release_exports_the_steps_its_data_covers() {
    let server = TestServer::start(NOW);
    let (status, created) = server.post(
        "/api/v1/releases",
        &server.admin,
        &json!({
            "id": "r1", "app": "shop", "version": "2",
            "hosts": ["a"], "reference": {"type": "none"},
            "batches": [{"hosts": ["a"]}], "step_seconds": 5,
        }),
    );
    assert_eq!(status, 201, "{created}");
    let samples: Vec<serde_json::Value> = (0..100)
        .flat_map(|metric| {
            (NOW - 300..=NOW + 60).step_by(5).map(move |time| {
                json!({"host": "a", "metric": format!("m{metric}"), "time": time, "value": 1.0})
            })
        })
        .collect();
    server.ingest_samples(samples);
    let (status, deployed) = server.post(
        "/api/v1/releases/r1/batches/0/deployed",
        &server.admin,
        &json!({"at": NOW}),
    );
    assert_eq!(status, 200, "{deployed}");
    server.clock.set(NOW + 60);
    let (status, exported) = server.get("/api/v1/releases/r1/export", &server.viewer);
    assert_eq!(status, 200, "{exported}");
    let bundle = vigil_core::Bundle::from_bytes(exported.to_string().as_bytes(), "export").unwrap();
    assert_eq!(bundle.series.len(), 100);
    // The hour of baseline before the deploy, and the minute since.
    assert_eq!(bundle.start, NOW - 3600);
    assert_eq!(bundle.points, (3600 + 60) / 5 + 1);
}

/// The latency the app declares judged in every release.
fn declared_latency() -> serde_json::Value {
    json!({"name": "latency_ms", "kind": "middleware", "direction": "increase",
           "unit": "ms", "critical": true})
}

/// Release r1 of `shop` on a and b, compared with c, created without a metric list; ten
/// minutes of even latency before its deploy at [`DEPLOY`], then a latency three times as
/// high on a and b. Returns the server and the release as created.
fn latency_fault_without_a_metric_list(
    app_settings: &serde_json::Value,
) -> (TestServer, serde_json::Value) {
    let server = TestServer::start(DEPLOY - 650);
    let (status, answer) = server.put("/api/v1/apps/shop", &server.admin, app_settings);
    assert_eq!(status, 200, "{answer}");
    let (status, created) = server.post(
        "/api/v1/releases",
        &server.admin,
        &json!({
            "id": "r1", "app": "shop", "version": "2", "step_seconds": 30,
            "observe_seconds": 1800, "hosts": ["a", "b"],
            "reference": {"type": "hosts", "hosts": ["c"]},
            "settings": {"baseline_seconds": 600, "warmup_seconds": 60},
        }),
    );
    assert_eq!(status, 201, "{created}");
    // Once created, the release keeps its judging whatever the app declares later.
    let (status, answer) = server.put("/api/v1/apps/shop", &server.admin, &json!({}));
    assert_eq!(status, 200, "{answer}");
    for at in (DEPLOY - 600..DEPLOY).step_by(30) {
        push_latency_and_judge(&server, at, 1.0);
    }
    server.clock.set(DEPLOY);
    let (status, answer) = server.post(
        "/api/v1/releases/r1/batches/0/deployed",
        &server.admin,
        &json!({}),
    );
    assert_eq!(status, 200, "{answer}");
    for at in (DEPLOY + 30..=DEPLOY + 600).step_by(30) {
        push_latency_and_judge(&server, at, 3.0);
        let (_, release) = server.get("/api/v1/releases/r1", &server.viewer);
        if release["state"] == "paused" {
            break;
        }
    }
    (server, created)
}

/// One latency sample of a, b and c at `at`, a and b's times `factor`, and a guard pass.
fn push_latency_and_judge(server: &TestServer, at: i64, factor: f64) {
    let even = |number: i64| 100.0 + number as f64 + (at % 7) as f64;
    let samples = json!([
        {"host": "a", "app": "shop", "metric": "latency_ms", "time": at, "value": even(0) * factor},
        {"host": "b", "app": "shop", "metric": "latency_ms", "time": at, "value": even(1) * factor},
        {"host": "c", "app": "shop", "metric": "latency_ms", "time": at, "value": even(2)},
    ]);
    post_and_judge(server, at, &samples);
}

#[test]
fn a_metric_the_app_declares_judges_a_release_that_lists_no_metric() {
    let (server, created) =
        latency_fault_without_a_metric_list(&json!({ "metrics": [declared_latency()] }));
    // The release record says what it is judged on: the app's declaration, copied.
    assert_eq!(created["spec"]["metrics"], json!([declared_latency()]));
    let (_, release) = server.get("/api/v1/releases/r1", &server.viewer);
    assert_eq!(release["state"], "paused", "{release}");
    assert!(
        release["reason"].as_str().unwrap().contains("latency_ms"),
        "{release}"
    );
    // An export carries the same metadata, so a replay judges as the live guard did.
    let (status, exported) = server.get("/api/v1/releases/r1/export", &server.viewer);
    assert_eq!(status, 200, "{exported}");
    assert_eq!(exported["metrics"], json!([declared_latency()]));
}

#[test]
fn an_undeclared_unlisted_metric_only_recommends() {
    let (server, created) = latency_fault_without_a_metric_list(&json!({}));
    assert_eq!(created["spec"]["metrics"], json!([]));
    let (_, release) = server.get("/api/v1/releases/r1", &server.viewer);
    assert_ne!(release["state"], "paused", "{release}");
    let (_, verdict) = server.get("/api/v1/releases/r1/verdict", &server.viewer);
    assert_eq!(verdict["verdict"], "anomaly", "{verdict}");
}

#[test]
fn declared_metrics_are_refused_by_the_field_that_is_wrong() {
    let server = TestServer::start(NOW);
    let mut repeated = declared_latency();
    repeated["direction"] = json!("either");
    let mut unnamed = declared_latency();
    unnamed["name"] = json!("a\u{0}b");
    let mut unknown_kind = declared_latency();
    unknown_kind["kind"] = json!("network");
    let refused = [
        (
            json!({ "metrics": [declared_latency(), repeated] }),
            "metrics[1].name: describes metric \"latency_ms\" a second time",
        ),
        (
            json!({ "metrics": [unnamed] }),
            "metrics[0].name: holds a control character",
        ),
        (json!({ "metrics": [unknown_kind] }), "metrics[0].kind"),
    ];
    for (settings, expected) in &refused {
        let (status, answer) = server.put("/api/v1/apps/shop", &server.admin, settings);
        assert_eq!(status, 400, "{settings}: {answer}");
        let error = answer["error"].as_str().unwrap();
        assert!(error.contains(expected), "{error}");
    }
    let (_, apps) = server.get("/api/v1/apps", &server.viewer);
    assert_eq!(apps, json!({}), "nothing refused was stored");
    // A release's own list takes the same rules.
    let mut body = release_body("r1");
    body["metrics"] = json!([declared_latency(), declared_latency()]);
    let (status, answer) = server.post("/api/v1/releases", &server.admin, &body);
    assert_eq!(status, 400, "{answer}");
    assert!(
        answer["error"]
            .as_str()
            .unwrap()
            .contains("metrics[1].name: describes metric"),
        "{answer}"
    );
    let (status, answer) = server.put(
        "/api/v1/apps/shop",
        &server.operator,
        &json!({ "metrics": [declared_latency()] }),
    );
    assert_eq!(status, 403, "{answer}");
}

/// The scorecard of a paused release holds its findings with their figures, every metric of
/// its window, sorts by the column asked for, and names what is wrong in a bad query.
#[test]
fn the_scorecard_holds_the_findings_and_every_metric_sorted_as_asked() {
    let (server, bundle) = support::server_with_paused_release();
    let id = bundle.id.clone();
    let (status, scorecard) =
        server.get(&format!("/api/v1/releases/{id}/scorecard"), &server.viewer);
    assert_eq!(status, 200, "{scorecard}");
    let (status, findings) = server.get(&format!("/api/v1/releases/{id}/findings"), &server.viewer);
    assert_eq!(status, 200);
    let latest = &findings["latest"];
    assert_eq!(scorecard["verdict"], latest["verdict"], "{scorecard}");
    assert_eq!(scorecard["at"], latest["at"]);
    let rows = scorecard["rows"].as_array().unwrap();
    for finding in latest["findings"].as_array().unwrap() {
        let row = rows
            .iter()
            .find(|row| row["signal"] == finding["signal"])
            .unwrap_or_else(|| panic!("no row for {finding}"));
        let verdict = if finding["severity"] == "fault" {
            "fail"
        } else {
            "recommend"
        };
        assert_eq!(row["verdict"], verdict);
        for (row_field, finding_field) in [
            ("observed", "observed"),
            ("reference", "expected"),
            ("effect", "effect"),
        ] {
            assert_eq!(row[row_field], finding[finding_field], "{row} {finding}");
        }
    }
    // Failing first by default.
    assert_eq!(rows[0]["verdict"], "fail", "{}", rows[0]);
    for meta in &bundle.metrics {
        assert!(
            rows.iter()
                .any(|row| row["signal"]["type"] == "metric" && row["signal"]["name"] == meta.name),
            "no row for {}",
            meta.name
        );
    }

    let labels = |answer: &serde_json::Value| -> Vec<String> {
        answer["rows"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|row| row["signal"]["type"] == "metric")
            .map(|row| row["signal"]["name"].as_str().unwrap().to_owned())
            .collect()
    };
    let (status, by_signal) = server.get(
        &format!("/api/v1/releases/{id}/scorecard?sort=signal&order=asc"),
        &server.viewer,
    );
    assert_eq!(status, 200);
    let mut sorted = labels(&by_signal);
    sorted.sort();
    assert_eq!(labels(&by_signal), sorted);
    let (_, by_signal_down) = server.get(
        &format!("/api/v1/releases/{id}/scorecard?sort=signal&order=desc"),
        &server.viewer,
    );
    sorted.reverse();
    assert_eq!(labels(&by_signal_down), sorted);
    let (status, by_effect) = server.get(
        &format!("/api/v1/releases/{id}/scorecard?sort=effect"),
        &server.viewer,
    );
    assert_eq!(status, 200);
    let effects: Vec<f64> = by_effect["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map_while(|row| row["effect"].as_f64())
        .map(f64::abs)
        .collect();
    assert!(effects.len() >= bundle.metrics.len() / 2, "{by_effect}");
    assert!(
        effects.windows(2).all(|pair| pair[0] >= pair[1]),
        "{effects:?}"
    );

    let (status, answer) = server.get(
        &format!("/api/v1/releases/{id}/scorecard?sort=size"),
        &server.viewer,
    );
    assert_eq!(status, 400);
    assert!(
        answer["error"].as_str().unwrap().contains("sort"),
        "{answer}"
    );
    let (status, answer) = server.get(
        &format!("/api/v1/releases/{id}/scorecard?order=up"),
        &server.viewer,
    );
    assert_eq!(status, 400);
    assert!(
        answer["error"].as_str().unwrap().contains("order"),
        "{answer}"
    );
    let (status, _) = server.get("/api/v1/releases/nobody/scorecard", &server.viewer);
    assert_eq!(status, 404);
    let (status, _) = server.get(&format!("/api/v1/releases/{id}/scorecard"), "");
    assert_eq!(status, 401);
}
