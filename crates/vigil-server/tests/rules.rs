//! A team's own rules through the API, as a pipeline and a person use them: an app's rules set
//! with `PUT /api/v1/apps/{app}/rules` (bad ones refused naming the field, viewers refused),
//! copied into a release when it is created, so that a later edit leaves it alone; a release
//! whose release hosts break a `fault` rule pauses with "rule: ..." evidence in the verdict
//! route and the findings; a release's own rule replaces the app's of the same name.

#![allow(clippy::unwrap_used)]

mod support;

use serde_json::{json, Value};
use support::TestServer;

const START: i64 = 1_700_000_000;
const STEP: i64 = 30;
/// Steps fed in all, and the step of the deploy.
const POINTS: i64 = 40;
const DEPLOY: i64 = 20;

/// The success rate of `host` at `step`: 0.999, or `after` on release hosts (`r…`) from the
/// deploy on.
fn success_rate(host: &str, step: i64, after: f64) -> f64 {
    if host.starts_with('r') && step >= DEPLOY {
        after
    } else {
        0.999
    }
}

/// Creates release `id` of `app` (two release hosts, two reference hosts, one batch), with
/// `own_rules` of its own, and answers the release as created.
fn create_release(server: &TestServer, id: &str, app: &str, own_rules: Value) -> Value {
    let (status, created) = server.post(
        "/api/v1/releases",
        &server.operator,
        &json!({
            "id": id, "app": app, "version": "2",
            "hosts": ["r1", "r2"],
            "reference": {"type": "hosts", "hosts": ["f1", "f2"]},
            "step_seconds": STEP,
            "observe_seconds": 86_400,
            "rules": own_rules,
        }),
    );
    assert_eq!(status, 201, "{created}");
    created
}

/// Feeds release `id` of `app` step by step from `start`, the release hosts' success rate
/// falling to `after` at the deploy, judging each step; answers the release's state at the
/// end (or at its pause).
fn feed(server: &TestServer, id: &str, app: &str, start: i64, after: f64) -> String {
    for step in 0..POINTS {
        let at = start + step * STEP;
        server.clock.set(at);
        if step == DEPLOY {
            let (status, answer) = server.post(
                &format!("/api/v1/releases/{id}/batches/0/deployed"),
                &server.operator,
                &json!({ "at": at }),
            );
            assert_eq!(status, 200, "{answer}");
        }
        let samples: Vec<Value> = ["r1", "r2", "f1", "f2"]
            .iter()
            .flat_map(|host| {
                [
                    json!({"host": host, "app": app, "metric": "success_rate", "time": at,
                           "value": success_rate(host, step, after)}),
                    json!({"host": host, "app": app, "metric": "latency_ms", "time": at,
                           "value": 100.0 + (step % 3) as f64}),
                ]
            })
            .collect();
        server.ingest_samples(samples);
        server
            .clock
            .set(at + server.state.guard.config().grace_seconds);
        server.state.guard.pass().expect("a guard pass");
        let (_, release) = server.get(&format!("/api/v1/releases/{id}"), &server.viewer);
        if release["state"] == "paused" {
            return "paused".to_owned();
        }
    }
    let (_, release) = server.get(&format!("/api/v1/releases/{id}"), &server.viewer);
    release["state"].as_str().unwrap().to_owned()
}

/// The rule findings of the release's latest verdict.
fn rule_evidence(server: &TestServer, id: &str) -> Vec<String> {
    let (status, findings) = server.get(&format!("/api/v1/releases/{id}/findings"), &server.viewer);
    assert_eq!(status, 200, "{findings}");
    findings["latest"]["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|finding| finding["signal"]["type"] == "rule")
        .map(|finding| finding["evidence"].as_str().unwrap().to_owned())
        .collect()
}

const SUCCESS_RULE: &str = "success";

fn success_rule(below: f64) -> Value {
    json!({"name": SUCCESS_RULE, "metric": "success_rate", "below": below,
           "duration_seconds": 60, "severity": "fault"})
}

#[test]
fn app_rules_set_through_the_api_pause_a_release_that_breaks_them() {
    let server = TestServer::start(START);
    // Refusals name the field; a viewer may read but not change.
    let (status, refused) = server.put(
        "/api/v1/apps/shop/rules",
        &server.admin,
        &json!({"rules": [{"name": "x", "metric": "m", "above": 1, "below": 0, "severity": "fault"}]}),
    );
    assert_eq!(status, 400, "{refused}");
    assert_eq!(
        refused["error"],
        "rules[0]: needs exactly one of `above`, `below`, `above_by` and `below_by`"
    );
    let (status, refused) = server.put(
        "/api/v1/apps/shop/rules",
        &server.admin,
        &json!({"rules": [{"name": "x", "metric": "m", "above_by": 0.2, "severity": "fault"}]}),
    );
    assert_eq!(status, 400, "{refused}");
    assert!(refused["error"]
        .as_str()
        .unwrap()
        .starts_with("rules[0].relative_to: "));
    let (status, _) = server.put(
        "/api/v1/apps/shop/rules",
        &server.viewer,
        &json!({"rules": [success_rule(0.99)]}),
    );
    assert_eq!(status, 403);
    let (status, stored) = server.put(
        "/api/v1/apps/shop/rules",
        &server.admin,
        &json!({"rules": [success_rule(0.99)]}),
    );
    assert_eq!(status, 200, "{stored}");
    let (status, read) = server.get("/api/v1/apps/shop/rules", &server.viewer);
    assert_eq!(status, 200);
    assert_eq!(read, stored);
    assert_eq!(read["rules"][0]["below"], 0.99);

    // The release takes the app's rule when it is created...
    server.clock.set(START + DEPLOY * STEP - 60);
    let created = create_release(&server, "falls", "shop", json!([]));
    assert_eq!(created["spec"]["rules"], json!([success_rule(0.99)]));
    // ...and keeps it when the app's rules change later.
    let (status, _) = server.put(
        "/api/v1/apps/shop/rules",
        &server.admin,
        &json!({"rules": []}),
    );
    assert_eq!(status, 200);
    let state = feed(&server, "falls", "shop", START, 0.95);
    assert_eq!(state, "paused");

    let (status, verdict) = server.get("/api/v1/releases/falls/verdict", &server.viewer);
    assert_eq!(status, 200);
    assert_eq!(verdict["verdict"], "fault", "{verdict}");
    assert_eq!(verdict["decision"], "stop");
    let reason = verdict["reason"].as_str().unwrap();
    assert!(
        reason.starts_with("rule: success_rate below 0.990 for 60 s (0.950 on 2 hosts)"),
        "{reason}"
    );
    assert_eq!(
        rule_evidence(&server, "falls"),
        ["rule: success_rate below 0.990 for 60 s (0.950 on 2 hosts)"]
    );
}

#[test]
fn a_release_s_own_rule_replaces_the_app_s_of_the_same_name() {
    let server = TestServer::start(START);
    let (status, stored) = server.put(
        "/api/v1/apps/shop/rules",
        &server.admin,
        &json!({"rules": [success_rule(0.99)]}),
    );
    assert_eq!(status, 200, "{stored}");
    // The release allows down to 0.9: the same fall to 0.95 does not pause it.
    server.clock.set(START + DEPLOY * STEP - 60);
    let created = create_release(&server, "lenient", "shop", json!([success_rule(0.9)]));
    assert_eq!(created["spec"]["rules"], json!([success_rule(0.9)]));
    let state = feed(&server, "lenient", "shop", START, 0.95);
    assert_eq!(state, "observing");
    assert!(rule_evidence(&server, "lenient").is_empty());
    let (_, verdict) = server.get("/api/v1/releases/lenient/verdict", &server.viewer);
    assert_ne!(verdict["verdict"], "fault", "{verdict}");
}
