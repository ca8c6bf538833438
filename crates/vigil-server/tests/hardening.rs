//! Hostile and careless input: one rule for every name, id, time and setting whichever way it
//! arrives, bounded work for bodies that expand, and no fetching of a URL a non-admin names.
#![allow(clippy::unwrap_used)]

mod support;

use std::io::Write;

use serde_json::json;
use support::prometheus::{prometheus_or_skip, Prometheus};
use support::{form_encode, request, PageClient, TestServer};
use vigil_ingest::remote_write::{compress_body, encode_remote_write, WriteSeries};

const NOW: i64 = 1_700_000_000;

fn release_body(id: &str) -> serde_json::Value {
    json!({
        "id": id, "app": "shop", "version": "2",
        "hosts": ["a", "b"], "reference": {"type": "hosts", "hosts": ["c"]},
        "step_seconds": 2, "observe_seconds": 60,
        "settings": {"baseline_seconds": 60, "warmup_seconds": 4},
    })
}

fn error_of(answer: &serde_json::Value) -> String {
    answer["error"].as_str().unwrap_or_default().to_owned()
}

#[test]
fn a_baseline_of_i64_max_is_refused_at_creation_naming_the_setting() {
    let server = TestServer::start(NOW);
    let mut body = release_body("r1");
    body["settings"]["baseline_seconds"] = json!(i64::MAX);
    let (status, answer) = server.post("/api/v1/releases", &server.operator, &body);
    assert_eq!(status, 400, "{answer}");
    assert!(
        error_of(&answer).starts_with("settings.baseline_seconds: "),
        "{answer}"
    );
    body["settings"] = json!({"history_days": 1_000_000_000u64});
    let (status, answer) = server.post("/api/v1/releases", &server.operator, &body);
    assert_eq!(status, 400, "{answer}");
    assert!(
        error_of(&answer).contains("settings.history_days"),
        "{answer}"
    );
    let (status, listed) = server.get("/api/v1/releases", &server.viewer);
    assert_eq!((status, listed), (200, json!([])));
}

#[test]
fn release_ids_names_and_reference_hosts_follow_one_rule() {
    let server = TestServer::start(NOW);
    let cases = [
        ("id", json!("..")),
        ("hosts[0]", json!(["r\u{0}1", "b"])),
        ("app", json!("shop\u{1b}[2J")),
        (
            "reference.hosts[1]",
            json!({"type": "hosts", "hosts": ["c", "c"]}),
        ),
    ];
    for (field, value) in cases {
        let mut body = release_body("r2");
        let key = field.split(['[', '.']).next().unwrap();
        body[key] = value;
        let (status, answer) = server.post("/api/v1/releases", &server.operator, &body);
        assert_eq!(status, 400, "{field}: {answer}");
        assert!(error_of(&answer).starts_with(field), "{field}: {answer}");
    }
    let (_, listed) = server.get("/api/v1/releases", &server.viewer);
    assert_eq!(listed, json!([]));
}

#[test]
fn json_ingestion_refuses_control_characters_in_host_and_app_names() {
    let server = TestServer::start(NOW);
    for (field, host, app) in [
        ("samples[0].host", "r\u{0}1", "shop"),
        ("samples[0].host", "r\n1", "shop"),
        ("samples[0].app", "r1", "sh\u{1b}op"),
    ] {
        let body = json!({"samples": [
            {"host": host, "app": app, "metric": "cpu", "time": NOW, "value": 1.0}
        ]});
        let (status, answer) = server.post("/api/v1/ingest/samples", &server.ingest, &body);
        assert_eq!(status, 400, "{answer}");
        assert!(error_of(&answer).starts_with(field), "{answer}");
    }
    let (_, apps) = server.get("/api/v1/apps", &server.viewer);
    assert_eq!(apps, json!({}));
}

#[test]
fn remote_write_drops_times_and_names_json_refuses_and_says_so() {
    let server = TestServer::start(NOW);
    let long_host = "h".repeat(100_000);
    let now_ms = NOW * 1000;
    let series = [
        WriteSeries::new(&[("__name__", "up"), ("host", "h1")])
            .with_sample(-1000, 1.0)
            .with_sample(i64::MAX, 1.0)
            .with_sample(253_402_300_800_000, 1.0)
            .with_sample(now_ms, 1.0),
        WriteSeries::new(&[("__name__", "up"), ("host", long_host.as_str())])
            .with_sample(now_ms, 1.0),
    ];
    let body = encode_remote_write(&series, &[]).unwrap();
    let (status, answer) = server.post_bytes("/api/v1/ingest/prometheus", &server.ingest, body);
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["accepted"], 1, "{answer}");
    let skipped = answer["skipped"].to_string();
    assert!(
        skipped.contains("1 series with an invalid name (for example host: is 100000 bytes"),
        "{answer}"
    );
    assert!(
        skipped.contains("3 samples with a time before 1970 or after the year 9999"),
        "{answer}"
    );
}

#[test]
fn alert_routes_take_only_ingest_tokens_bounded_bodies_and_name_bad_fields() {
    let server = TestServer::start(NOW);
    let one = json!({"alerts": [{"name": "Down", "labels": {"host": "a"}, "severity": "critical",
        "status": "firing", "starts_at": NOW}]});
    let (status, answer) = server.post("/api/v1/alerts", &server.viewer, &one);
    assert_eq!(status, 403, "{answer}");
    // Senders that cannot set headers give the token in the query, as on the other ingest routes.
    let mut response = support::agent()
        .post(&format!(
            "{}/api/v1/alerts?token={}",
            server.base, server.ingest
        ))
        .header("Content-Type", "application/json")
        .send(one.to_string().as_bytes())
        .unwrap();
    let answer: serde_json::Value =
        serde_json::from_str(&response.body_mut().read_to_string().unwrap()).unwrap();
    assert_eq!(response.status().as_u16(), 200, "{answer}");
    assert_eq!(answer["accepted"], 1);
    let many: Vec<serde_json::Value> = (0..10_001)
        .map(|index| {
            json!({"name": "Down", "labels": {"host": format!("h{index}")}, "severity": "",
                   "status": "firing", "starts_at": NOW})
        })
        .collect();
    let (status, answer) = server.post("/api/v1/alerts", &server.ingest, &json!({"alerts": many}));
    assert_eq!(status, 413, "{answer}");
    assert_eq!(error_of(&answer), "alerts: more than 10000 entries");
    let large = format!(
        r#"{{"version": "4", "alerts": [], "receiver": "{}"}}"#,
        "x".repeat(5 << 20)
    );
    let (status, answer) = server.post_bytes(
        "/api/v1/alerts/alertmanager",
        &server.ingest,
        large.into_bytes(),
    );
    assert_eq!(status, 413, "{answer}");
    let (status, answer) = server.post(
        "/api/v1/alerts/alertmanager",
        &server.ingest,
        &json!({"version": "4", "alerts": [{"status": "firing", "labels": {"alertname": "Down"},
            "startsAt": "2023-11-14T22:13:20+25:00"}]}),
    );
    assert_eq!(status, 400, "{answer}");
    assert!(
        error_of(&answer).starts_with("alerts[0].startsAt: expected an RFC 3339 time"),
        "{answer}"
    );
    // Nothing of a refused body was stored.
    let stored = server.state.store.alerts("", 0, i64::MAX).unwrap();
    assert_eq!(stored.len(), 1, "{stored:?}");
}

#[test]
fn a_pause_reason_of_a_megabyte_is_refused() {
    let server = TestServer::start(NOW);
    let (status, _) = server.post("/api/v1/releases", &server.operator, &release_body("r3"));
    assert_eq!(status, 201);
    let reason = "x".repeat(1 << 20);
    let (status, answer) = server.post(
        "/api/v1/releases/r3/pause",
        &server.operator,
        &json!({"reason": reason}),
    );
    assert_eq!(status, 400, "{answer}");
    assert!(
        error_of(&answer).starts_with("reason: is 1048576 bytes"),
        "{answer}"
    );
    let (_, release) = server.get("/api/v1/releases/r3", &server.viewer);
    assert_eq!(release["state"], "pending");
}

#[test]
fn putting_an_array_as_app_settings_keeps_the_settings() {
    let server = TestServer::start(NOW);
    let settings = json!({"log_pattern": "(?P<message>.*)"});
    let (status, answer) = server.put("/api/v1/apps/shop", &server.admin, &settings);
    assert_eq!(status, 200, "{answer}");
    let (status, answer) = server.put("/api/v1/apps/shop", &server.admin, &json!([]));
    assert_eq!(status, 400, "{answer}");
    assert!(
        error_of(&answer).contains("body: expected a JSON object"),
        "{answer}"
    );
    let (_, apps) = server.get("/api/v1/apps", &server.viewer);
    assert_eq!(apps["shop"], settings);
}

/// A loopback port nobody listens on.
fn closed_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

#[test]
fn only_admins_make_the_server_fetch_a_url_and_viewers_see_no_socket_details() {
    let server = TestServer::start(NOW);
    let target = format!("http://127.0.0.1:{}", closed_port());
    let path = format!(
        "/api/v1/apps/shop/onboarding?prometheus={}",
        form_encode(&target)
    );
    let (status, answer) = server.get(&path, &server.viewer);
    assert_eq!(status, 403, "{answer}");
    assert!(
        error_of(&answer).starts_with("prometheus: only admins"),
        "{answer}"
    );
    let (status, answer) = server.get(&path, &server.admin);
    assert_eq!(status, 502, "admins are told what failed: {answer}");

    let mut pages = PageClient::new(&server.base);
    pages.sign_in(&server.viewer);
    let page = pages.get(&format!("/apps/shop?prometheus={}", form_encode(&target)));
    assert_eq!(page.status, 403, "{}", page.body);

    // The app's configured source may be queried for a viewer, but its failure is not told
    // in the socket's words.
    let settings =
        json!({"prometheus": {"url": target, "queries": [{"metric": "up", "query": "up"}]}});
    let (status, answer) = server.put("/api/v1/apps/shop", &server.admin, &settings);
    assert_eq!(status, 200, "{answer}");
    let (status, report) = server.get("/api/v1/apps/shop/onboarding", &server.viewer);
    assert_eq!(status, 200, "{report}");
    assert_eq!(
        report["discovery_error"], "could not reach the app's Prometheus",
        "{report}"
    );
    let (_, report) = server.get("/api/v1/apps/shop/onboarding", &server.admin);
    assert_ne!(
        report["discovery_error"],
        "could not reach the app's Prometheus"
    );
}

fn gzip(plain_chunk: &[u8], times: usize) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    for _ in 0..times {
        encoder.write_all(plain_chunk).unwrap();
    }
    encoder.finish().unwrap()
}

#[test]
fn an_import_that_expands_past_the_limit_is_a_413_naming_it() {
    let server = TestServer::start(NOW);
    let bomb = gzip(&vec![b' '; 1 << 20], 48);
    let (status, answer) = server.post_bytes("/api/v1/releases/import", &server.operator, bomb);
    assert_eq!(status, 413, "{answer}");
    assert!(
        error_of(&answer).contains("more than the limit of 33554432 bytes"),
        "{answer}"
    );
    let mut bundle: serde_json::Value = {
        let path = support::examples_dir().join("releases/pub0031.json.gz");
        let bytes = std::fs::read(path).unwrap();
        let parsed = vigil_core::Bundle::from_bytes(&bytes, "example").unwrap();
        serde_json::to_value(parsed).unwrap()
    };
    bundle["id"] = json!("..");
    let (status, answer) = server.post("/api/v1/releases/import", &server.operator, &bundle);
    assert_eq!(status, 400, "{answer}");
    assert!(error_of(&answer).starts_with("id: "), "{answer}");
}

#[test]
fn a_remote_write_body_expanding_past_the_limit_is_a_413_before_decoding() {
    let server = TestServer::start(NOW);
    let bomb = compress_body(&vec![0u8; 100 << 20]).unwrap();
    let (status, answer) = request(
        &server.base,
        "POST",
        "/api/v1/ingest/prometheus",
        &server.ingest,
        Some(bomb),
    );
    assert_eq!(status, 413, "{answer}");
    assert!(
        error_of(&answer).contains("more than the limit of 33554432"),
        "{answer}"
    );
}

/// A real Prometheus with nothing to scrape: it answers a query it can parse (with no series)
/// and refuses PromQL it cannot parse with 400 `bad_data`. None, after a loud SKIPPED, when it
/// is not installed.
fn idle_prometheus(test: &str) -> Option<Prometheus> {
    let binary = prometheus_or_skip(test)?;
    Some(Prometheus::start(
        &binary,
        "global:\n  scrape_interval: 15s\n",
    ))
}

#[test]
fn a_query_prometheus_refuses_is_not_stored_and_a_good_one_is() {
    let Some(prometheus) = idle_prometheus("an own query is tried before it is stored") else {
        return;
    };
    let server = TestServer::start(NOW);
    let apply = |query: &str| {
        server.post(
            "/api/v1/apps/shadow/onboarding/apply",
            &server.admin,
            &json!({"prometheus": prometheus.url, "signals": [],
                    "queries": [{"metric": "load1", "query": query}]}),
        )
    };
    let (status, answer) = apply("bad(");
    assert_eq!(status, 400, "{answer}");
    assert!(
        error_of(&answer).starts_with("queries[0].query: prometheus refused the query"),
        "{answer}"
    );
    let (_, apps) = server.get("/api/v1/apps", &server.viewer);
    assert_eq!(apps, json!({}), "nothing was stored");
    let (status, answer) = apply("max by (instance) (node_load1)");
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["added"][0]["metric"], "load1", "{answer}");

    // The same through the app's page: a good query is added, then found already pulled.
    let mut admin = PageClient::new(&server.base);
    admin.sign_in(&server.admin);
    let page = admin.get("/apps/shadow");
    let key = support::input_value(&page.body, "form_key").unwrap();
    let form = |query: &str| {
        admin.post_form(
            "/apps/shadow/queries",
            &[
                ("form_key", key.as_str()),
                ("metric", "up1"),
                ("query", query),
            ],
        )
    };
    let refused = form("bad(");
    assert_eq!(refused.status, 400, "{}", refused.body);
    let added = form("up");
    assert_eq!(added.status, 303, "{}", added.body);
    let again = form("up");
    assert_eq!(again.status, 409, "{}", again.body);
    assert!(again
        .body
        .contains("the query was not added: already pulled"));
}

#[test]
fn a_failing_pull_query_shows_on_the_app_page_and_an_admin_removes_it() {
    let Some(prometheus) = idle_prometheus("a failing pull query shows on the app page") else {
        return;
    };
    let server = TestServer::start(NOW);
    // Stored as raw settings, where no query is tried: the puller finds it failing.
    let settings = json!({"prometheus": {"url": prometheus.url, "host_label": "instance",
        "queries": [{"metric": "broken", "query": "bad("}, {"metric": "up1", "query": "up"}]}});
    let (status, answer) = server.put("/api/v1/apps/shadow", &server.admin, &settings);
    assert_eq!(status, 200, "{answer}");
    let mut admin = PageClient::new(&server.base);
    admin.sign_in(&server.admin);
    let mut page = admin.get("/apps/shadow");
    for _ in 0..40 {
        if page.body.contains("failing, last at") {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(500));
        page = admin.get("/apps/shadow");
    }
    assert!(
        page.body.contains("prometheus refused the query"),
        "{}",
        page.body
    );
    let mut viewer = PageClient::new(&server.base);
    viewer.sign_in(&server.viewer);
    let seen = viewer.get("/apps/shadow");
    assert!(seen.body.contains("failing, last at"), "{}", seen.body);
    assert!(
        !seen.body.contains("prometheus refused"),
        "viewers get no details"
    );
    assert!(
        !seen.body.contains("/queries/remove"),
        "viewers cannot remove"
    );

    let key = support::input_value(&page.body, "form_key").unwrap();
    let forged = viewer.post_form(
        "/apps/shadow/queries/remove",
        &[("form_key", key.as_str()), ("metric", "broken")],
    );
    assert_eq!(forged.status, 403, "{}", forged.body);
    let removed = admin.post_form(
        "/apps/shadow/queries/remove",
        &[("form_key", key.as_str()), ("metric", "broken")],
    );
    assert_eq!(removed.status, 303, "{}", removed.body);
    let (_, apps) = server.get("/api/v1/apps", &server.viewer);
    assert_eq!(
        apps["shadow"]["prometheus"]["queries"],
        json!([{"metric": "up1", "query": "up"}])
    );
    let missing = admin.post_form(
        "/apps/shadow/queries/remove",
        &[("form_key", key.as_str()), ("metric", "broken")],
    );
    assert_eq!(missing.status, 404, "{}", missing.body);
}

#[test]
fn an_imported_release_is_never_observing_so_the_guard_never_judges_it_up_to_now() {
    // Observing, a release recorded years ago would be judged over a window from then to
    // today: millions of steps for every series (a server reached 19 GiB on two imports).
    let server = TestServer::start(NOW);
    let bytes = std::fs::read(support::examples_dir().join("releases/pub0031.json.gz")).unwrap();
    let (status, answer) = server.post_bytes("/api/v1/releases/import", &server.operator, bytes);
    assert_eq!(status, 201, "{answer}");
    let id = answer["id"].as_str().unwrap().to_owned();
    let (_, transitions) = server.get(
        &format!("/api/v1/releases/{id}/transitions"),
        &server.viewer,
    );
    let states: Vec<(&str, &str)> = transitions
        .as_array()
        .unwrap()
        .iter()
        .map(|transition| {
            (
                transition["from"].as_str().unwrap(),
                transition["to"].as_str().unwrap(),
            )
        })
        .collect();
    assert!(
        states
            .iter()
            .all(|(from, to)| *from != "observing" && *to != "observing"),
        "{states:?}"
    );
}

/// Each series of `by_name` (metric or log template, then host) ends at `points`, and
/// `silent_host`'s is missing from `from` on.
fn cut(by_name: &mut serde_json::Value, silent_host: &str, from: usize, points: usize) {
    for by_host in by_name.as_object_mut().unwrap().values_mut() {
        for (host, values) in by_host.as_object_mut().unwrap() {
            let values = values.as_array_mut().unwrap();
            values.truncate(points);
            if host == silent_host {
                values
                    .iter_mut()
                    .skip(from)
                    .for_each(|value| *value = json!(null));
            }
        }
    }
}

/// Steps recorded after the deploy: fewer than the ten minutes after which a silent release
/// host beside reporting reference hosts is a fault, so the replay ends with data missing.
const STEPS_AFTER_DEPLOY: usize = 8;

/// An example bundle whose only release host sends nothing from its deploy on (every value of
/// it, metric or log count, is missing from that step), recorded until a few minutes after it.
fn bundle_with_a_silent_release_host() -> (serde_json::Value, String) {
    let path = support::examples_dir().join("releases/pub0087.json.gz");
    let parsed = vigil_core::Bundle::from_bytes(&std::fs::read(path).unwrap(), "example").unwrap();
    let silent_host = parsed.batches[0].hosts[0].clone();
    let deploy_step =
        usize::try_from((parsed.batches[0].at - parsed.start) / parsed.step_seconds).unwrap();
    let points = deploy_step + STEPS_AFTER_DEPLOY;
    let mut bundle = serde_json::to_value(parsed).unwrap();
    bundle["id"] = json!("silent-after-deploy");
    bundle["points"] = json!(points);
    cut(&mut bundle["series"], &silent_host, deploy_step, points);
    cut(
        &mut bundle["logs"]["counts"],
        &silent_host,
        deploy_step,
        points,
    );
    (bundle, silent_host)
}

#[test]
fn an_import_whose_release_host_sent_nothing_after_its_deploy_is_held_not_succeeded() {
    let server = TestServer::start(NOW);
    let (bundle, silent_host) = bundle_with_a_silent_release_host();
    let (status, release) = server.post("/api/v1/releases/import", &server.operator, &bundle);
    assert_eq!(status, 201, "{release}");
    assert_eq!(release["state"], "paused", "{release}");
    let reason = release["reason"].as_str().unwrap();
    assert!(reason.contains("never had the data to pass"), "{reason}");
    assert!(reason.contains(&silent_host), "{reason}");
    let (_, verdict) = server.get(
        "/api/v1/releases/silent-after-deploy/verdict",
        &server.viewer,
    );
    assert_eq!(
        (&verdict["decision"], &verdict["passed"]),
        (&json!("stop"), &json!(false)),
        "{verdict}"
    );
}
