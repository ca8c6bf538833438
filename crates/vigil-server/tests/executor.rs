//! Vigil's executor through the agent routes, as three agents drive it over HTTP: register,
//! poll, report. A two-batch release gated by the guard's verdict completes; a failed deploy
//! and a silent agent pause with their reason; a rollback runs on the deployed hosts and ends
//! rolled back (a pipeline's batch report or rollback report refused); a server restarted mid-batch on the same store goes on without a second
//! deploy task. On SQLite, and on PostgreSQL when `VIGIL_TEST_POSTGRES` names a server.
#![allow(clippy::unwrap_used)]

mod support;

use std::time::Duration;

use serde_json::{json, Value};
use support::{TempDir, TestServer};
use vigil_server::ServerConfig;
use vigil_store::testing::ScratchPostgres;

/// The deployment's first batch starts here (a multiple of the 30 s step).
const NOW: i64 = 1_800_000_000;
const ARTIFACT: &str = "5ca1ab1e5ca1ab1e5ca1ab1e5ca1ab1e5ca1ab1e5ca1ab1e5ca1ab1e5ca1ab1e";
const HOSTS: [&str; 3] = ["a1", "a2", "a3"];

/// Asks `ask` every 100 ms of real time (the server's clock stays where it is) until `done`
/// holds; panics with the last answer after 20 s.
fn eventually<T: std::fmt::Debug>(mut ask: impl FnMut() -> T, done: impl Fn(&T) -> bool) -> T {
    let mut last = None;
    for _ in 0..200 {
        let answer = ask();
        if done(&answer) {
            return answer;
        }
        last = Some(answer);
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("gave up waiting; last answer: {last:#?}");
}

fn register(server: &TestServer, host: &str) {
    let (status, answer) = server.post(
        "/api/v1/agents",
        &server.ingest,
        &json!({"host": host, "app": "shop", "labels": {"role": "web"}, "version": "1.0",
                "agent_version": "test"}),
    );
    assert_eq!(status, 200, "{answer}");
}

/// One poll of `host`, holding the artifact verified, with `reports`.
fn poll(server: &TestServer, host: &str, reports: Vec<Value>) -> Value {
    let (status, orders) = server.post(
        &format!("/api/v1/agents/{host}/poll"),
        &server.ingest,
        &json!({"reports": reports,
                "artifacts": [{"artifact": ARTIFACT, "pieces_held": 4, "pieces": 4,
                               "verified": true}]}),
    );
    assert_eq!(status, 200, "{orders}");
    orders
}

/// Every agent polls; those in `outcomes` run their tasks and report them started then
/// ended with that state. Returns the task ids each host was given.
fn everyone_polls(server: &TestServer, outcomes: &[(&str, &str)]) -> Vec<(String, i64)> {
    let mut given = Vec::new();
    for host in HOSTS {
        let orders = poll(server, host, Vec::new());
        let tasks = orders["tasks"].as_array().unwrap().clone();
        for task in &tasks {
            given.push((host.to_owned(), task["id"].as_i64().unwrap()));
        }
        let Some((_, outcome)) = outcomes.iter().find(|(named, _)| *named == host) else {
            continue;
        };
        let reports: Vec<Value> = tasks
            .iter()
            .flat_map(|task| {
                [
                    json!({"task": task["id"], "state": "started", "at": NOW}),
                    json!({"task": task["id"], "state": outcome, "at": NOW,
                           "message": format!("deploy command ended: {outcome}")}),
                ]
            })
            .collect();
        let acknowledged = poll(server, host, reports);
        for task in &tasks {
            assert!(
                acknowledged["acknowledged"]
                    .as_array()
                    .unwrap()
                    .contains(&task["id"]),
                "{acknowledged}"
            );
        }
    }
    given
}

fn release(server: &TestServer) -> Value {
    let (status, release) = server.get("/api/v1/releases/r1", &server.viewer);
    assert_eq!(status, 200, "{release}");
    release
}

fn execution(server: &TestServer) -> Value {
    let (status, execution) = server.get("/api/v1/releases/r1/execution", &server.viewer);
    assert_eq!(status, 200, "{execution}");
    execution
}

/// Tasks of release r1 as (host, kind, state).
fn tasks(server: &TestServer) -> Vec<(String, String, String)> {
    execution(server)["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|task| {
            (
                task["host"].as_str().unwrap().to_owned(),
                task["kind"].as_str().unwrap().to_owned(),
                task["state"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

fn wait_for_state(server: &TestServer, state: &str) -> Value {
    eventually(|| release(server), |release| release["state"] == state)
}

/// Steady latency for every host from `from` to `to`, one sample a step.
fn ingest_latency(server: &TestServer, from: i64, to: i64) {
    let samples: Vec<Value> = (from..=to)
        .step_by(30)
        .flat_map(|at| {
            HOSTS.iter().enumerate().map(move |(index, host)| {
                let wobble = ((at / 30 + index as i64) % 5) as f64;
                json!({"host": host, "app": "shop", "metric": "latency_ms", "time": at,
                       "value": 100.0 + wobble})
            })
        })
        .collect();
    if !samples.is_empty() {
        server.ingest_samples(samples);
    }
}

/// Three registered agents holding the artifact, and release r1 ordered over them: one host
/// then the other two, each observed `observe_seconds`.
fn fleet_with_deployment(server: &TestServer, observe_seconds: i64) {
    for host in HOSTS {
        register(server, host);
    }
    let (status, created) = server.post(
        "/api/v1/deployments",
        &server.operator,
        &json!({
            "id": "r1", "app": "shop", "version": "2.0", "artifact": ARTIFACT,
            "hosts": {"selector": "role=\"web\""},
            "plan": [{"size": "1", "observe_seconds": observe_seconds},
                     {"size": "100%", "observe_seconds": observe_seconds}],
            "step_seconds": 30,
            "metrics": [{"name": "latency_ms", "kind": "middleware", "direction": "increase",
                         "unit": "ms", "critical": true}],
            "settings": {"baseline_seconds": 600, "warmup_seconds": 30},
        }),
    );
    assert_eq!(status, 201, "{created}");
    assert_eq!(created["spec"]["hosts"], json!(HOSTS));
    assert_eq!(
        created["spec"]["batches"],
        json!([{"hosts": ["a1"]}, {"hosts": ["a2", "a3"]}])
    );
    assert_eq!(
        created["spec"]["reference"],
        json!({"type": "not_yet_deployed"})
    );
}

/// Batch 0 (a1) deployed through the agents.
fn first_batch_deployed(server: &TestServer) {
    everyone_polls(server, &[]);
    wait_for_state(server, "deploying");
    everyone_polls(server, &[("a1", "succeeded")]);
    let observing = wait_for_state(server, "observing");
    assert_eq!(observing["deployed"][0]["hosts"], json!(["a1"]));
}

fn a_two_batch_release_completes(server: &TestServer) {
    ingest_latency(server, NOW - 900, NOW);
    fleet_with_deployment(server, 60);
    first_batch_deployed(server);
    // Time goes on 10 s at a time, agents polling and data arriving, until the guard's verdict
    // lets the second batch start.
    let mut now = NOW;
    let mut second_started = false;
    for _ in 0..60 {
        now += 10;
        server.clock.set(now);
        if now % 30 == 0 {
            ingest_latency(server, now, now);
        }
        everyone_polls(server, &[]);
        std::thread::sleep(Duration::from_millis(300));
        if release(server)["state"] == "deploying" {
            second_started = true;
            break;
        }
    }
    assert!(second_started, "{:#}", release(server));
    assert!(
        now >= NOW + 60,
        "the second batch started before batch 0's observation"
    );
    everyone_polls(server, &[("a2", "succeeded"), ("a3", "succeeded")]);
    let done = eventually(
        || release(server),
        |release| release["deployed"].as_array().unwrap().len() == 2,
    );
    assert_eq!(done["deployed"][1]["hosts"], json!(["a2", "a3"]));
    let deploys: Vec<_> = tasks(server);
    assert_eq!(deploys.len(), 3, "{deploys:?}");
    assert!(deploys
        .iter()
        .all(|(_, kind, state)| kind == "deploy" && state == "succeeded"));
    let batches = execution(server)["batches"].clone();
    assert_eq!(batches[0]["state"], "deployed");
    assert_eq!(batches[1]["state"], "deployed");
}

#[test]
fn a_two_batch_release_completes_on_sqlite() {
    let server = TestServer::start(NOW);
    a_two_batch_release_completes(&server);
}

#[test]
fn a_two_batch_release_completes_on_postgres() {
    let Some(scratch) = ScratchPostgres::from_env("vigil_executor").unwrap() else {
        assert!(
            std::env::var_os("VIGIL_REQUIRE_POSTGRES").is_none(),
            "VIGIL_REQUIRE_POSTGRES is set but VIGIL_TEST_POSTGRES is not"
        );
        eprintln!("SKIPPED: set VIGIL_TEST_POSTGRES to a PostgreSQL server URL");
        return;
    };
    let server = TestServer::start_with(NOW, scratch.url(), None, ServerConfig::default());
    a_two_batch_release_completes(&server);
}

#[test]
fn a_failed_deploy_pauses_with_the_reason() {
    let server = TestServer::start(NOW);
    fleet_with_deployment(&server, 60);
    everyone_polls(&server, &[]);
    wait_for_state(&server, "deploying");
    everyone_polls(&server, &[("a1", "failed")]);
    let paused = wait_for_state(&server, "paused");
    let reason = paused["reason"].as_str().unwrap();
    assert!(
        reason.contains("failed on host a1: deploy command ended: failed"),
        "{reason}"
    );
    // Paused: nothing more is sent, no task is made.
    let given = everyone_polls(&server, &[]);
    assert!(given.is_empty(), "{given:?}");
    assert_eq!(tasks(&server).len(), 1);
    assert_eq!(execution(&server)["batches"][0]["state"], "failed");
}

#[test]
fn a_silent_agent_pauses_with_the_reason() {
    let server = TestServer::start(NOW);
    fleet_with_deployment(&server, 600);
    first_batch_deployed(&server);
    // a3 stops polling; the others go on.
    for step in 1..=3 {
        server.clock.set(NOW + step * 8);
        for host in ["a1", "a2"] {
            poll(&server, host, Vec::new());
        }
    }
    let paused = wait_for_state(&server, "paused");
    let reason = paused["reason"].as_str().unwrap();
    assert!(reason.contains("host a3"), "{reason}");
    assert!(reason.contains("silent"), "{reason}");
    let (status, agents) = server.get("/api/v1/agents", &server.viewer);
    assert_eq!(status, 200, "{agents}");
    let online: Vec<bool> = agents
        .as_array()
        .unwrap()
        .iter()
        .map(|agent| agent["online"].as_bool().unwrap())
        .collect();
    assert_eq!(online, [true, true, false]);
}

/// A pipeline's report on a release the executor ships is refused (409), naming the executor.
fn pipeline_report_is_refused(server: &TestServer, path: &str) {
    let (status, refused) = server.post(path, &server.operator, &json!({}));
    assert_eq!(status, 409, "{path}: {refused}");
    assert!(
        refused["error"].as_str().unwrap().contains("executor"),
        "{path}: {refused}"
    );
}

#[test]
fn a_rollback_makes_rollback_tasks_and_ends_rolled_back() {
    let server = TestServer::start(NOW);
    fleet_with_deployment(&server, 600);
    first_batch_deployed(&server);
    // The executor alone reports its batches and its rollback done: a pipeline's report is
    // refused, naming why.
    pipeline_report_is_refused(&server, "/api/v1/releases/r1/batches/1/deployed");
    let (status, answer) = server.post(
        "/api/v1/releases/r1/rollback",
        &server.operator,
        &json!({"reason": "checking the rollback"}),
    );
    assert_eq!(status, 200, "{answer}");
    eventually(
        || tasks(&server),
        |tasks| tasks.iter().any(|(_, kind, _)| kind == "rollback"),
    );
    let given = everyone_polls(&server, &[("a1", "succeeded")]);
    assert_eq!(given.len(), 1, "one rollback task, for a1 only: {given:?}");
    let rolled_back = wait_for_state(&server, "rolled_back");
    assert!(
        rolled_back["reason"]
            .as_str()
            .unwrap()
            .contains("rolled back on 1 host"),
        "{rolled_back}"
    );
    let tasks = tasks(&server);
    assert!(tasks.contains(&(
        "a1".to_owned(),
        "rollback".to_owned(),
        "succeeded".to_owned()
    )));
    assert_eq!(tasks.len(), 2, "{tasks:?}");
    pipeline_report_is_refused(&server, "/api/v1/releases/r1/rolled-back");
}

#[test]
fn a_server_restarted_mid_batch_goes_on_without_a_second_deploy_task() {
    let dir = TempDir::new("executor-restart");
    let database = dir.0.join("vigil.db").display().to_string();
    let first = TestServer::start_with(NOW, &database, None, ServerConfig::default());
    fleet_with_deployment(&first, 600);
    everyone_polls(&first, &[]);
    wait_for_state(&first, "deploying");
    // a1 has its task and started it; the server stops before it hears the end.
    let given = everyone_polls(&first, &[]);
    assert_eq!(given.len(), 1, "{given:?}");
    let (_, task_id) = given[0].clone();
    poll(
        &first,
        "a1",
        vec![json!({"task": task_id, "state": "started", "at": NOW})],
    );
    drop(first);

    let second = TestServer::start_with(NOW + 5, &database, None, ServerConfig::default());
    // The restarted server's tokens are new ones; its store is the same.
    std::thread::sleep(Duration::from_millis(1500));
    let again = everyone_polls(&second, &[]);
    assert_eq!(
        again,
        [("a1".to_owned(), task_id)],
        "the same task, sent again"
    );
    poll(
        &second,
        "a1",
        vec![json!({"task": task_id, "state": "succeeded", "at": NOW + 5})],
    );
    let observing = wait_for_state(&second, "observing");
    assert_eq!(observing["deployed"][0]["hosts"], json!(["a1"]));
    let tasks = tasks(&second);
    assert_eq!(
        tasks,
        [("a1".to_owned(), "deploy".to_owned(), "succeeded".to_owned())]
    );
    drop(second);
    drop(dir);
}

#[test]
fn the_pages_show_the_progress_and_the_agents_and_the_pause_button_stops_dispatch() {
    let server = TestServer::start(NOW);
    fleet_with_deployment(&server, 600);
    first_batch_deployed(&server);
    let mut pages = support::PageClient::new(&server.base);
    pages.sign_in(&server.operator);
    let page = pages.get("/releases/r1");
    assert_eq!(page.status, 200, "{}", page.body);
    let body = &page.body;
    assert!(
        body.contains("<h2 id=\"execution-title\">Executor</h2>"),
        "{body}"
    );
    assert!(body.contains("1 of 3 hosts deployed"), "{body}");
    assert!(
        body.contains("<progress id=\"execution-progress\" value=\"1\" max=\"3\">"),
        "{body}"
    );
    assert!(body.contains("data-batch-state=\"deployed\""), "{body}");
    assert!(body.contains("data-batch-state=\"waiting\""), "{body}");
    assert!(body.contains("deploy command ended: succeeded"), "{body}");
    let agents = pages.get("/agents");
    assert_eq!(agents.status, 200, "{}", agents.body);
    for host in HOSTS {
        assert!(
            agents.body.contains(&format!("<td>{host}</td>")),
            "{}",
            agents.body
        );
    }
    assert!(
        agents.body.contains("3 of 3 agents online"),
        "{}",
        agents.body
    );
    assert!(agents.body.contains("href=\"/agents\""), "{}", agents.body);
    // The page's pause button acts on the shipped release: nothing more is dispatched, even
    // once its observation is over.
    let form_key = support::input_value(&page.body, "form_key").unwrap();
    let paused = pages.post_form(
        "/releases/r1/actions",
        &[
            ("form_key", &form_key),
            ("action", "pause"),
            ("reason", "by hand"),
        ],
    );
    assert!(
        paused.status == 303 || paused.status == 200,
        "{}",
        paused.body
    );
    assert_eq!(release(&server)["state"], "paused");
    server.clock.set(NOW + 700);
    std::thread::sleep(Duration::from_millis(1500));
    let given = everyone_polls(&server, &[]);
    assert!(given.is_empty(), "{given:?}");
    assert_eq!(tasks(&server).len(), 1);
}
