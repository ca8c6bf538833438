//! The feature library end to end, through the API and the pages as people use them: a benign
//! change (CPU +10 % on the release hosts from the deploy on) is marked a false alarm on two
//! releases of an app; on the third release the same change is suppressed, shown with who
//! marked it, and the release succeeds without a recommendation; a real fault on the same
//! metric (CPU tripled) still pauses; a release that pauses on another metric while the benign
//! change is set aside, rolled back after the pause, drops the signature. On SQLite, and on
//! PostgreSQL when `VIGIL_TEST_POSTGRES` names a server.

#![allow(clippy::unwrap_used)]

mod support;

use serde_json::{json, Value};
use support::{input_value, PageClient, TestServer};
use vigil_core::release::Role;
use vigil_core::Clock;
use vigil_server::ServerConfig;
use vigil_store::testing::ScratchPostgres;

const STEP: i64 = 60;
/// The first release's deploy; each next one three hours later.
const FIRST_DEPLOY: i64 = 1_800_000_000;
const RELEASES_APART: i64 = 3 * 3600;
const BASELINE_STEPS: i64 = 65;
/// Steps fed after the deploy: past the observation time (600 s), so a healthy release ends.
const STEPS_AFTER: i64 = 13;
const REFERENCE: [&str; 3] = ["ref-1", "ref-2", "ref-3"];

/// What the release hosts do from their deploy on.
#[derive(Debug, Clone, Copy)]
struct Change {
    cpu: f64,
    latency: f64,
}

const BENIGN: Change = Change {
    cpu: 1.10,
    latency: 1.0,
};
const CPU_TRIPLED: Change = Change {
    cpu: 3.0,
    latency: 1.0,
};
const BENIGN_AND_SLOW: Change = Change {
    cpu: 1.10,
    latency: 3.0,
};

/// A steady value with a little deterministic jitter (about 1 %), different per host.
fn jittered(level: f64, host: usize, step: i64) -> f64 {
    let phase = step as f64 * 1.7 + host as f64 * 0.9;
    level * (1.0 + 0.01 * phase.sin())
}

fn release_hosts(number: i64) -> [String; 2] {
    [format!("r{number}-a"), format!("r{number}-b")]
}

fn deploy_time(number: i64) -> i64 {
    FIRST_DEPLOY + (number - 1) * RELEASES_APART
}

/// Every host's cpu and latency sample at `at`; the release hosts changed by `change` from
/// `deploy` on.
fn samples_at(number: i64, change: Change, at: i64) -> Vec<Value> {
    let deploy = deploy_time(number);
    let step = (at - FIRST_DEPLOY) / STEP;
    let mut samples = Vec::new();
    let changed: Vec<String> = release_hosts(number).to_vec();
    let hosts = changed
        .iter()
        .map(String::as_str)
        .chain(REFERENCE)
        .enumerate();
    for (position, host) in hosts {
        let after = at >= deploy && position < changed.len();
        let (cpu, latency) = if after {
            (40.0 * change.cpu, 100.0 * change.latency)
        } else {
            (40.0, 100.0)
        };
        samples.push(
            json!({"host": host, "app": "shop", "metric": "cpu", "time": at,
            "value": jittered(cpu, position, step)}),
        );
        samples.push(
            json!({"host": host, "app": "shop", "metric": "latency_ms", "time": at,
            "value": jittered(latency, position + 7, step)}),
        );
    }
    samples
}

fn ingest(server: &TestServer, samples: Vec<Value>, key: &str) {
    let (status, answer) = server.post(
        "/api/v1/ingest/samples",
        &server.ingest,
        &json!({ "samples": samples, "key": key }),
    );
    assert_eq!(status, 200, "{answer}");
}

/// Release `r{number}`: its baseline hour, its creation and deploy, then step by step until
/// past its observation time or its pause. Returns its state.
fn run_release(server: &TestServer, number: i64, change: Change) -> String {
    let id = format!("r{number}");
    let deploy = deploy_time(number);
    for step in (1..=BASELINE_STEPS).rev() {
        let at = deploy - step * STEP;
        ingest(
            server,
            samples_at(number, change, at),
            &format!("{id}-before-{step}"),
        );
    }
    server.clock.set(deploy - 30);
    let (status, created) = server.post(
        "/api/v1/releases",
        &server.admin,
        &json!({
            "id": id,
            "app": "shop",
            "version": format!("1.{number}"),
            "hosts": release_hosts(number),
            "reference": {"type": "hosts", "hosts": REFERENCE},
            "batches": [{"hosts": release_hosts(number)}],
            "step_seconds": STEP,
            "observe_seconds": 600,
            "metrics": [
                {"name": "cpu", "kind": "system", "direction": "increase", "unit": "percent",
                 "critical": false},
                {"name": "latency_ms", "kind": "middleware", "direction": "increase",
                 "unit": "ms", "critical": true},
            ],
        }),
    );
    assert_eq!(status, 201, "{created}");
    let (status, answer) = server.post(
        &format!("/api/v1/releases/{id}/batches/0/deployed"),
        &server.operator,
        &json!({ "at": deploy }),
    );
    assert_eq!(status, 200, "{answer}");
    for step in 0..=STEPS_AFTER {
        let at = deploy + step * STEP;
        server.clock.set(at);
        ingest(
            server,
            samples_at(number, change, at),
            &format!("{id}-after-{step}"),
        );
        server
            .clock
            .set(at + server.state.guard.config().grace_seconds);
        server.state.guard.pass().expect("a guard pass");
        let state = release_state(server, &id);
        if state != "observing" {
            return state;
        }
    }
    release_state(server, &id)
}

fn release_state(server: &TestServer, id: &str) -> String {
    let (status, release) = server.get(&format!("/api/v1/releases/{id}"), &server.viewer);
    assert_eq!(status, 200, "{release}");
    release["state"].as_str().unwrap().to_owned()
}

fn findings(server: &TestServer, id: &str) -> Value {
    let (status, answer) = server.get(&format!("/api/v1/releases/{id}/findings"), &server.viewer);
    assert_eq!(status, 200, "{answer}");
    answer
}

fn signatures(server: &TestServer) -> Vec<Value> {
    let (status, answer) = server.get("/api/v1/apps/shop/signatures", &server.viewer);
    assert_eq!(status, 200, "{answer}");
    answer["signatures"].as_array().unwrap().clone()
}

/// A token of `name` with the operator role, as `vigil token create` makes one.
fn operator_named(server: &TestServer, name: &str) -> String {
    let secret = vigil_web::new_token().unwrap();
    server
        .state
        .store
        .create_token(
            name,
            Role::Operator,
            &vigil_web::hash_token(&secret),
            server.clock.now(),
        )
        .unwrap();
    secret
}

fn the_library_learns_suppresses_and_forgets(server: &TestServer) {
    let alice = operator_named(server, "alice");

    // Release 1: the benign change is recommended; alice marks the finding a false alarm
    // through the API.
    assert_eq!(run_release(server, 1, BENIGN), "succeeded");
    let first = findings(server, "r1");
    assert_eq!(first["latest"]["verdict"], "anomaly", "{first}");
    assert_eq!(first["latest"]["findings"][0]["signal"]["name"], "cpu");
    let (status, answer) = server.post(
        "/api/v1/releases/r1/feedback",
        &alice,
        &json!({"kind": "false_alarm", "signal": "cpu", "note": "the new cache warms up"}),
    );
    assert_eq!(status, 201, "{answer}");
    assert_eq!(answer["signal"], "cpu");
    // A signal that is no finding of the release, or an onset on a false alarm, is refused.
    let (status, answer) = server.post(
        "/api/v1/releases/r1/feedback",
        &alice,
        &json!({"kind": "false_alarm", "signal": "memory"}),
    );
    assert_eq!(status, 400, "{answer}");
    assert!(
        answer["error"].as_str().unwrap().starts_with("signal: "),
        "{answer}"
    );
    let (status, answer) = server.post(
        "/api/v1/releases/r1/feedback",
        &alice,
        &json!({"kind": "false_alarm", "onset": deploy_time(1) + 60}),
    );
    assert_eq!(status, 400, "{answer}");
    assert!(
        answer["error"].as_str().unwrap().starts_with("onset: "),
        "{answer}"
    );
    let library = signatures(server);
    assert_eq!(library.len(), 1, "{library:?}");
    assert_eq!(library[0]["state"], "learning");
    assert_eq!(library[0]["signal"], "cpu");
    assert_eq!(library[0]["direction"], "up");

    // Release 2: the same; alice marks it from the release page's button on the finding.
    assert_eq!(run_release(server, 2, BENIGN), "succeeded");
    assert_eq!(findings(server, "r2")["latest"]["verdict"], "anomaly");
    let mut page = PageClient::new(&server.base);
    page.sign_in(&alice);
    let detail = page.get("/releases/r2");
    assert_eq!(detail.status, 200, "{}", detail.body);
    assert!(
        detail.body.contains("Mark this finding a false alarm"),
        "{}",
        detail.body
    );
    let key = input_value(&detail.body, "form_key").unwrap();
    let marked = page.post_form(
        "/releases/r2/feedback",
        &[
            ("form_key", &key),
            ("kind", "false_alarm"),
            ("signal", "cpu"),
        ],
    );
    assert_eq!(marked.status, 303, "{}", marked.body);
    let library = signatures(server);
    assert_eq!(library.len(), 1, "{library:?}");
    assert_eq!(library[0]["state"], "active");
    assert_eq!(library[0]["marks"].as_array().unwrap().len(), 2);
    let signature_id = library[0]["id"].as_i64().unwrap();

    // Release 3: the same change is set aside with its reason; nothing is recommended.
    assert_eq!(run_release(server, 3, BENIGN), "succeeded");
    let third = findings(server, "r3");
    for record in third["history"].as_array().unwrap() {
        let verdict = record["verdict"].as_str().unwrap();
        assert!(
            verdict == "healthy" || verdict == "insufficient_data",
            "{record}"
        );
    }
    assert_eq!(third["latest"]["verdict"], "healthy", "{third}");
    let aside = &third["latest"]["suppressed"][0];
    assert_eq!(aside["finding"]["signal"]["name"], "cpu", "{third}");
    assert_eq!(aside["signature"], signature_id);
    let reason = aside["reason"].as_str().unwrap();
    assert!(reason.starts_with("suppressed because cpu up"), "{reason}");
    assert!(
        reason.contains("marked a false alarm by alice on "),
        "{reason}"
    );
    let detail = page.get("/releases/r3");
    assert!(
        detail.body.contains("set aside by the learned stage"),
        "{}",
        detail.body
    );
    assert!(
        detail.body.contains("marked a false alarm by alice"),
        "{}",
        detail.body
    );
    assert!(
        detail
            .body
            .contains("(set aside by the learned stage: see the findings)"),
        "the scorecard's cpu row says so: {}",
        detail.body
    );

    // Release 4: CPU tripled is no benign change: it pauses.
    assert_eq!(run_release(server, 4, CPU_TRIPLED), "paused");
    let fourth = findings(server, "r4");
    assert_eq!(fourth["latest"]["verdict"], "fault");
    assert_eq!(fourth["latest"]["findings"][0]["signal"]["name"], "cpu");
    assert!(fourth["latest"].get("suppressed").is_none(), "{fourth}");

    // Release 5: latency tripled pauses it while the benign CPU change is set aside; the
    // rollback after the pause confirms the fault and drops the signature.
    assert_eq!(run_release(server, 5, BENIGN_AND_SLOW), "paused");
    let fifth = findings(server, "r5");
    assert_eq!(
        fifth["latest"]["findings"][0]["signal"]["name"],
        "latency_ms"
    );
    assert_eq!(fifth["latest"]["suppressed"][0]["signature"], signature_id);
    assert_eq!(signatures(server)[0]["state"], "active");
    let (status, answer) = server.post(
        "/api/v1/releases/r5/rollback",
        &alice,
        &json!({"reason": "latency"}),
    );
    assert_eq!(status, 200, "{answer}");
    let library = signatures(server);
    assert_eq!(library[0]["state"], "dropped", "{library:?}");
    assert_eq!(library[0]["dropped"]["release_id"], "r5");
    assert_eq!(
        library[0]["dropped"]["reason"],
        "release r5 was confirmed a fault"
    );
    assert_eq!(library[0]["dropped"]["actor"], "alice");
    // A missed fault with its onset, from the release page's form (a UTC time).
    let detail = page.get("/releases/r3");
    assert!(detail.body.contains("name=\"onset\""), "{}", detail.body);
    let key = input_value(&detail.body, "form_key").unwrap();
    let missed = page.post_form(
        "/releases/r3/feedback",
        &[
            ("form_key", &key),
            ("kind", "missed_fault"),
            // Release 3 deployed at 2027-01-15T14:00:00Z.
            ("onset", "2027-01-15T14:05"),
            ("note", "errors a customer saw"),
        ],
    );
    assert_eq!(missed.status, 303, "{}", missed.body);
    let (_, said) = server.get("/api/v1/releases/r3/feedback", &server.viewer);
    assert_eq!(said[0]["kind"], "missed_fault", "{said}");
    assert_eq!(said[0]["onset"], deploy_time(3) + 300, "{said}");
    let before_the_deploy = page.post_form(
        "/releases/r3/feedback",
        &[
            ("form_key", &key),
            ("kind", "missed_fault"),
            ("onset", "2027-01-15T13:00"),
        ],
    );
    assert_eq!(before_the_deploy.status, 400, "{}", before_the_deploy.body);
    let app_page = page.get("/apps/shop");
    assert!(
        app_page
            .body
            .contains("dropped: release r5 was confirmed a fault"),
        "{}",
        app_page.body
    );
}

#[test]
fn a_benign_change_marked_twice_is_suppressed_on_the_third_release_on_sqlite() {
    let server = TestServer::start(FIRST_DEPLOY - 4000);
    the_library_learns_suppresses_and_forgets(&server);
}

#[test]
fn a_benign_change_marked_twice_is_suppressed_on_the_third_release_on_postgres() {
    let Some(scratch) = ScratchPostgres::from_env("vigil_library").unwrap() else {
        assert!(
            std::env::var_os("VIGIL_REQUIRE_POSTGRES").is_none(),
            "VIGIL_REQUIRE_POSTGRES is set but VIGIL_TEST_POSTGRES is not"
        );
        eprintln!("SKIPPED: set VIGIL_TEST_POSTGRES to a PostgreSQL server URL");
        return;
    };
    let server = TestServer::start_with(
        FIRST_DEPLOY - 4000,
        scratch.url(),
        None,
        ServerConfig::default(),
    );
    the_library_learns_suppresses_and_forgets(&server);
}

#[test]
fn an_admin_removes_a_signature_and_others_may_not() {
    let server = TestServer::start(FIRST_DEPLOY - 4000);
    assert_eq!(run_release(&server, 1, BENIGN), "succeeded");
    // A false alarm on the release as a whole marks its deciding verdict's findings.
    let (status, answer) = server.post(
        "/api/v1/releases/r1/feedback",
        &server.operator,
        &json!({"kind": "false_alarm"}),
    );
    assert_eq!(status, 201, "{answer}");
    let library = signatures(&server);
    assert_eq!(library.len(), 1, "{library:?}");
    let path = format!("/api/v1/apps/shop/signatures/{}", library[0]["id"]);
    let (status, _) = support::request(&server.base, "DELETE", &path, &server.operator, None);
    assert_eq!(status, 403);
    let (status, removed) = support::request(&server.base, "DELETE", &path, &server.admin, None);
    assert_eq!(status, 200, "{removed}");
    assert_eq!(removed["state"], "dropped");
    assert_eq!(removed["dropped"]["reason"], "removed by admin");
    let (status, _) = support::request(
        &server.base,
        "DELETE",
        "/api/v1/apps/shop/signatures/not-a-number",
        &server.admin,
        None,
    );
    assert_eq!(status, 400);
    assert_eq!(signatures(&server)[0]["state"], "dropped");
}
