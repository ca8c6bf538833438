//! The README's walk-through against the real `vigil serve` on PostgreSQL: tokens made with
//! `vigil token create --database postgres://...`, the release created, a minute of samples
//! pushed, the deploy reported, the fault pushed, and the release paused with its reason,
//! findings and transitions. Skipped loudly without `VIGIL_TEST_POSTGRES` (failed when
//! `VIGIL_REQUIRE_POSTGRES` is set).
#![allow(clippy::unwrap_used, clippy::print_stdout)]

mod support;

use std::time::Duration;

use serde_json::json;
use support::{call, create_token, free_port, now_seconds, scratch_postgres, serve};

/// One sample per host at `t`: the release hosts at `release_latency` (and 3 more on `r2`), the
/// reference hosts at 101 and 99, as the README's `push` sends them.
fn push(port: u16, ingest_token: &str, t: i64, release_latency: i64) {
    let sample = |host: &str, value: i64| json!({"host": host, "app": "shop", "metric": "latency_ms", "time": t, "value": value});
    let body = json!({"samples": [
        sample("r1", release_latency),
        sample("r2", release_latency + 3),
        sample("k1", 101),
        sample("k2", 99),
    ]});
    let (status, answer) = call(
        port,
        "POST",
        "/api/v1/ingest/samples",
        ingest_token,
        Some(body),
    );
    assert_eq!(status, 200, "{answer}");
}

#[test]
fn the_readme_walk_through_pauses_the_release_on_postgres() {
    let Some(scratch) = scratch_postgres("the walk-through") else {
        return;
    };
    let database = scratch.url();
    let admin = create_token(database, "admin");
    let ingest = create_token(database, "ingest");
    let port = free_port();
    let _server = serve(database, port);

    let (status, created) = call(
        port,
        "POST",
        "/api/v1/releases",
        &admin,
        Some(json!({
            "id": "shop-42", "app": "shop", "version": "42",
            "hosts": ["r1", "r2"], "reference": {"type": "hosts", "hosts": ["k1", "k2"]},
            "step_seconds": 2, "observe_seconds": 600,
            "metrics": [{"name": "latency_ms", "kind": "middleware", "direction": "increase",
                         "critical": true}],
            "settings": {"baseline_seconds": 60, "warmup_seconds": 4},
        })),
    );
    assert_eq!(status, 201, "{created}");
    // The README pushes a minute of samples, one a second; the same minute, already past.
    let start = now_seconds() as i64;
    for (offset, t) in (start - 65..=start).enumerate() {
        push(port, &ingest, t, 98 + (offset as i64 + 1) % 5);
    }
    let (status, deployed) = call(
        port,
        "POST",
        "/api/v1/releases/shop-42/batches/0/deployed",
        &admin,
        None,
    );
    assert_eq!(status, 200, "{deployed}");

    // The new version triples the latency: pushed every second until the release pauses.
    let deadline = now_seconds() + 60.0;
    let mut last_pushed = start;
    let mut verdict = json!(null);
    while now_seconds() < deadline {
        let t = now_seconds() as i64;
        if t > last_pushed {
            push(port, &ingest, t, 300);
            last_pushed = t;
        }
        let (status, answer) = call(
            port,
            "GET",
            "/api/v1/releases/shop-42/verdict",
            &admin,
            None,
        );
        assert_eq!(status, 200, "{answer}");
        if answer["state"] == "paused" {
            verdict = answer;
            break;
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    println!("verdict: {verdict}");
    assert_eq!(verdict["state"], "paused", "the release did not pause");
    assert_eq!(verdict["verdict"], "fault", "{verdict}");
    assert_eq!(verdict["failed"], true, "{verdict}");
    let reason = verdict["reason"].as_str().unwrap();
    assert!(reason.contains("latency_ms"), "{reason}");

    let (status, findings) = call(
        port,
        "GET",
        "/api/v1/releases/shop-42/findings",
        &admin,
        None,
    );
    assert_eq!(status, 200, "{findings}");
    let signals: Vec<&str> = findings["latest"]["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|finding| finding["signal"]["name"].as_str())
        .collect();
    assert!(signals.contains(&"latency_ms"), "{signals:?}");
    let (status, transitions) = call(
        port,
        "GET",
        "/api/v1/releases/shop-42/transitions",
        &admin,
        None,
    );
    assert_eq!(status, 200, "{transitions}");
    let actions: Vec<&str> = transitions
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|transition| transition["action"].as_str())
        .collect();
    assert_eq!(actions, vec!["create", "batch_deployed", "pause"]);

    // An ingest token pushes data and nothing else.
    let (status, refused) = call(port, "GET", "/api/v1/releases/shop-42", &ingest, None);
    assert_eq!(status, 403, "{refused}");
}
