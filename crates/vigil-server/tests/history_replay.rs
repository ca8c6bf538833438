//! The replay of a team's stored history, as people use it: releases imported with their data
//! through the API (the guard judges each as it is stored), people's feedback and a rollback
//! after a pause, then `POST /api/v1/replays` and its progress polled until the figures come,
//! checked against the same releases replayed from their bundles; and the `/replay` page with
//! its chart. On SQLite, and on PostgreSQL when `VIGIL_TEST_POSTGRES` names a server.
#![allow(clippy::unwrap_used, clippy::print_stderr)]

mod support;

use std::time::Duration;

use serde_json::{json, Value};
use support::{examples_dir, import_example, PageClient, TestServer};
use vigil_server::ServerConfig;

/// After every example's window.
const NOW: i64 = 1_800_000_000;

/// The examples stored, what people say of each, and what its label becomes.
/// pub0031 and pub0059 pause on a fault; nab021 is a fault the funnel only recommends;
/// pub0003 is healthy but recommended; pub0087 healthy and passed.
const CONFIRMED: &str = "pub0031";
const ROLLED_BACK: &str = "pub0059";
const MISSED: &str = "nab021";
const FALSE_ALARM: &str = "pub0003";
const UNREVIEWED: &str = "pub0087";

fn feedback(server: &TestServer, id: &str, kind: &str) {
    let (status, answer) = server.post(
        &format!("/api/v1/releases/{id}/feedback"),
        &server.operator,
        &json!({"kind": kind, "note": "from the history test"}),
    );
    assert_eq!(status, 201, "{answer}");
}

fn action(server: &TestServer, id: &str, tail: &str) -> Value {
    let (status, answer) = server.post(
        &format!("/api/v1/releases/{id}/{tail}"),
        &server.operator,
        &json!({}),
    );
    assert_eq!(status, 200, "{answer}");
    answer
}

/// Polls a replay until it is no longer running.
fn finished_run(server: &TestServer, id: i64) -> Value {
    for _ in 0..600 {
        let (status, run) = server.get(&format!("/api/v1/replays/{id}"), &server.viewer);
        assert_eq!(status, 200, "{run}");
        if run["state"] != "running" {
            return run;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("the replay did not finish within a minute");
}

/// Stores the history, replays it through the API and checks the figures.
fn replays_stored_history(server: &TestServer) {
    let (status, answer) = server.get("/api/v1/replays/latest", &server.viewer);
    assert_eq!(status, 404, "{answer}");
    for id in [CONFIRMED, ROLLED_BACK, MISSED, FALSE_ALARM, UNREVIEWED] {
        import_example(server, id);
    }
    let state_of = |id: &str| {
        server
            .get(&format!("/api/v1/releases/{id}"), &server.viewer)
            .1["state"]
            .clone()
    };
    assert_eq!(state_of(CONFIRMED), "paused");
    assert_eq!(state_of(ROLLED_BACK), "paused");
    assert_eq!(state_of(UNREVIEWED), "succeeded");
    feedback(server, CONFIRMED, "confirm_fault");
    action(server, ROLLED_BACK, "rollback");
    assert_eq!(
        action(server, ROLLED_BACK, "rolled-back")["state"],
        "rolled_back"
    );
    feedback(server, MISSED, "missed_fault");
    feedback(server, FALSE_ALARM, "false_alarm");
    // A release still waiting for its first batch is left out.
    let (status, answer) = server.post(
        "/api/v1/releases",
        &server.operator,
        &json!({
            "id": "waiting", "app": "shop", "version": "9", "hosts": ["h1"],
            "reference": {"type": "hosts", "hosts": ["h2"]},
            "batches": [{"hosts": ["h1"]}], "step_seconds": 60, "observe_seconds": 600
        }),
    );
    assert_eq!(status, 201, "{answer}");

    // Viewers may read but not start; a bad model is named.
    let (status, _) = server.post("/api/v1/replays", &server.viewer, &json!({"model": "none"}));
    assert_eq!(status, 403);
    let (status, answer) = server.post(
        "/api/v1/replays",
        &server.operator,
        &json!({"model": "best"}),
    );
    assert_eq!(status, 400);
    assert!(
        answer["error"].as_str().unwrap().starts_with("model:"),
        "{answer}"
    );
    let (status, answer) = server.post("/api/v1/replays", &server.operator, &json!({"model": 7}));
    assert_eq!(status, 404, "{answer}");

    let (status, started) = server.post(
        "/api/v1/replays",
        &server.operator,
        &json!({"model": "none"}),
    );
    assert_eq!(status, 202, "{started}");
    assert_eq!(started["model"], "none");
    let id = started["id"].as_i64().unwrap();
    // One at a time: a second start while the first runs is refused.
    let (status, again) = server.post("/api/v1/replays", &server.operator, &json!({}));
    // (It may have finished already on a fast machine: then the second one starts.)
    assert!(status == 409 || status == 202, "{status} {again}");
    let run = if status == 202 {
        finished_run(server, again["id"].as_i64().unwrap())
    } else {
        finished_run(server, id)
    };
    assert_eq!(run["state"], "finished", "{run}");
    assert_eq!(
        (run["done"].as_i64(), run["total"].as_i64()),
        (Some(5), Some(5)),
        "{run}"
    );
    let report = &run["result"];
    let counts = &report["counts"];
    assert_eq!(
        counts,
        &json!({"stored": 6, "running": 1, "unlabelled": 0, "faults": 3,
                "healthy_reviewed": 1, "healthy_unreviewed": 1, "failed": 0}),
        "{report}"
    );

    // Each stored release replays as its bundle does, and is scored by its label.
    let mut delays = Vec::new();
    for row in report["releases"].as_array().unwrap() {
        let id = row["id"].as_str().unwrap();
        let bundle =
            vigil_core::Bundle::read(&examples_dir().join(format!("releases/{id}.json.gz")))
                .unwrap();
        let outcome = vigil_analysis::replay(&bundle, &vigil_analysis::Settings::default());
        assert_eq!(row["paused_at"].as_i64(), outcome.paused_at, "{id}: {row}");
        assert_eq!(row["verdict"], json!(outcome.verdict), "{id}: {row}");
        let first_batch = bundle.batches.iter().map(|batch| batch.at).min().unwrap();
        if let Some(paused_at) = outcome.paused_at {
            delays.push((paused_at - first_batch) as f64 / 60.0);
        }
        let expected_kind = if [CONFIRMED, ROLLED_BACK, MISSED].contains(&id) {
            "fault"
        } else {
            "healthy"
        };
        assert_eq!(row["kind"], expected_kind, "{row}");
        assert_eq!(row["reviewed"], id != UNREVIEWED, "{row}");
    }
    let overall = &report["overall"];
    assert_eq!(
        (
            &overall["tp"],
            &overall["fp"],
            &overall["fn"],
            &overall["tn"]
        ),
        (&json!(2), &json!(0), &json!(1), &json!(2)),
        "{overall}"
    );
    assert_eq!(overall["precision"], 1.0);
    assert_eq!(overall["recall"], 0.6667);
    assert_eq!(overall["healthy_recommended"], 0.5, "{overall}");
    delays.sort_by(f64::total_cmp);
    let median = (delays[0] + delays[1]) / 2.0;
    assert_eq!(
        overall["delay_min_median"],
        (median * 100.0).round() / 100.0,
        "{overall}"
    );
    // Per cause: the confirmed pause is blamed on its deciding finding's metric.
    let causes: Vec<&str> = report["per_cause"]
        .as_array()
        .unwrap()
        .iter()
        .map(|row| row["cause"].as_str().unwrap())
        .collect();
    assert!(causes.contains(&"healthy"), "{causes:?}");
    assert_eq!(causes.len(), 4, "{causes:?}");
    let per_period: i64 = report["over_time"]
        .as_array()
        .unwrap()
        .iter()
        .map(|point| point["figures"]["releases"].as_i64().unwrap())
        .sum();
    assert_eq!(per_period, 5);
    let (status, latest) = server.get("/api/v1/replays/latest", &server.viewer);
    assert_eq!(status, 200);
    assert_eq!(latest["id"], run["id"]);
    let (status, answer) = server.get("/api/v1/replays/x1", &server.viewer);
    assert_eq!(status, 400, "{answer}");
    assert!(
        answer["error"].as_str().unwrap().starts_with("id:"),
        "{answer}"
    );

    // The page: the figures, a table per cause and the chart.
    let mut page = PageClient::new(&server.base);
    page.sign_in(&server.viewer);
    let answer = page.get("/replay");
    assert_eq!(answer.status, 200);
    let html = &answer.body;
    assert!(html.contains("id=\"replay-precision\">100.0 %"), "{html}");
    assert!(html.contains("id=\"replay-recall\">66.7 %"), "{html}");
    assert!(html.contains("class=\"replay-causes\""), "{html}");
    assert!(html.contains("<svg class=\"chart-svg\""), "{html}");
    assert!(
        html.contains("Precision, recall and time to pause per"),
        "{html}"
    );
    assert!(html.contains("data-line=\"Precision\""), "{html}");
    // Inside an SVG no element is left open (an unclosed one would swallow the rest).
    let chart = &html[html.find("<svg class=\"chart-svg\"").unwrap()..];
    let chart = &chart[..chart.find("</svg>").unwrap()];
    for shape in ["rect", "line", "polyline", "circle"] {
        assert_eq!(
            chart.matches(&format!("<{shape} ")).count(),
            chart.matches(&format!("</{shape}>")).count(),
            "{shape} in {chart}"
        );
    }
    assert!(chart.contains("<circle "), "{chart}");
    // Viewers see no start button; operators do, and it starts a replay.
    assert!(!html.contains("Start replay"), "{html}");
    // A viewer's forged start, with their own session's form value, is refused.
    let viewer_key = support::input_value(html, "form_key").unwrap();
    let forged = page.post_form("/replay", &[("form_key", &viewer_key), ("model", "none")]);
    assert_eq!(forged.status, 403, "{}", forged.body);
    let mut operator_page = PageClient::new(&server.base);
    operator_page.sign_in(&server.operator);
    let answer = operator_page.get("/replay");
    assert!(answer.body.contains("Start replay"), "{}", answer.body);
    let form_key = support::input_value(&answer.body, "form_key").unwrap();
    let answer = operator_page.post_form(
        "/replay",
        &[
            ("form_key", &form_key),
            ("model", "none"),
            ("version", ""),
            ("app", ""),
        ],
    );
    assert_eq!(answer.status, 303, "{}", answer.body);
    let (_, latest) = server.get("/api/v1/replays/latest", &server.viewer);
    assert!(
        latest["id"].as_i64().unwrap() > run["id"].as_i64().unwrap(),
        "{latest}"
    );
    let finished = finished_run(server, latest["id"].as_i64().unwrap());
    assert_eq!(finished["result"]["overall"], report["overall"]);
}

#[test]
fn stored_history_replays_through_the_api_and_the_page_on_sqlite() {
    let server = TestServer::start(NOW);
    replays_stored_history(&server);
}

#[test]
fn stored_history_replays_through_the_api_on_postgres() {
    let Some(database) = vigil_store::testing::ScratchPostgres::from_env("vigil_history").unwrap()
    else {
        assert!(
            std::env::var_os("VIGIL_REQUIRE_POSTGRES").is_none(),
            "VIGIL_REQUIRE_POSTGRES is set but VIGIL_TEST_POSTGRES is not"
        );
        eprintln!("SKIPPED stored history on PostgreSQL: set VIGIL_TEST_POSTGRES");
        return;
    };
    let server = TestServer::start_with(NOW, database.url(), None, ServerConfig::default());
    replays_stored_history(&server);
}
