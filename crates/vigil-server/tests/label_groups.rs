//! Groups by label, live: a canary's pods and the stable pods are found by their
//! `rollouts_pod_template_hash` label at every step, and pods are replaced mid-release. A
//! latency fault of the canary pods is still caught; without it, the replaced pods are not taken
//! for silent hosts and the release succeeds.

#![allow(clippy::unwrap_used, clippy::print_stdout)]

mod support;

use serde_json::{json, Value};
use support::TestServer;

const START: i64 = 1_800_000_000;
const STEP: i64 = 20;
/// The canary's pods start and batch 0 is reported after ten minutes of baseline.
const DEPLOY: i64 = START + 600;
/// One canary pod and one stable pod are replaced then.
const REPLACED_AT: i64 = DEPLOY + 200;
/// When the faulty run's canary pods slow down.
const FAULT_AT: i64 = DEPLOY + 300;
const OBSERVE_SECONDS: i64 = 600;
const CANARY: &str = "abc123";
const STABLE: &str = "def456";

/// A pod: its name, its template hash, when it sends (from, until), its usual latency.
struct Pod {
    name: &'static str,
    hash: &'static str,
    from: i64,
    until: i64,
    level: f64,
}

fn pods() -> Vec<Pod> {
    let pod = |name, hash, from, until, level| Pod {
        name,
        hash,
        from,
        until,
        level,
    };
    vec![
        pod("shop-def456-s1", STABLE, START, REPLACED_AT, 100.0),
        pod("shop-def456-s2", STABLE, START, i64::MAX, 104.0),
        pod("shop-def456-s3", STABLE, START, i64::MAX, 97.0),
        pod("shop-def456-s4", STABLE, START, i64::MAX, 102.0),
        pod("shop-def456-s5", STABLE, REPLACED_AT, i64::MAX, 99.0),
        pod("shop-abc123-c1", CANARY, DEPLOY, REPLACED_AT, 101.0),
        pod("shop-abc123-c2", CANARY, DEPLOY, i64::MAX, 98.0),
        pod("shop-abc123-c3", CANARY, REPLACED_AT, i64::MAX, 103.0),
    ]
}

/// A small deterministic wobble in [-1, 1] per pod and time.
fn wobble(seed: usize, at: i64) -> f64 {
    let mixed = (at as u64)
        .wrapping_mul(6_364_136_223_846_793_005)
        .wrapping_add(seed as u64 * 1_442_695_040_888_963_407);
    ((mixed >> 33) % 2001) as f64 / 1000.0 - 1.0
}

/// What a run ended with: the release as the API shows it, its verdict answer and findings.
struct Outcome {
    release: Value,
    verdict: Value,
    findings: Value,
    paused_at: Option<i64>,
}

/// Runs a selector release of `shop` from the baseline to the end of its observation (or its
/// pause), with the canary pods' latency tripled from [`FAULT_AT`] when `faulty`.
fn run(id: &str, faulty: bool) -> Outcome {
    let server = TestServer::start(START);
    let (status, created) = server.post(
        "/api/v1/releases",
        &server.admin,
        &json!({
            "id": id, "app": "shop", "version": "2",
            "hosts": {"selector": format!("rollouts_pod_template_hash=\"{CANARY}\"")},
            "reference": {"type": "selector",
                          "selector": format!("rollouts_pod_template_hash=\"{STABLE}\"")},
            "step_seconds": STEP, "observe_seconds": OBSERVE_SECONDS,
            "metrics": [{"name": "latency_ms", "kind": "middleware", "direction": "increase",
                         "critical": true}],
            "settings": {"baseline_seconds": 600, "warmup_seconds": 30}
        }),
    );
    assert_eq!(status, 201, "{created}");
    assert_eq!(
        created["spec"]["hosts"]["selector"],
        format!("rollouts_pod_template_hash=\"{CANARY}\"")
    );
    let pods = pods();
    let mut paused_at = None;
    let mut at = START;
    while at <= DEPLOY + OBSERVE_SECONDS + 2 * STEP {
        server.clock.set(at);
        if at == DEPLOY {
            let (status, answer) = server.post(
                &format!("/api/v1/releases/{id}/batches/0/deployed"),
                &server.admin,
                &json!({ "at": DEPLOY }),
            );
            assert_eq!(status, 200, "{answer}");
        }
        let samples: Vec<Value> = pods
            .iter()
            .enumerate()
            .filter(|(_, pod)| pod.from <= at && at < pod.until)
            .map(|(seed, pod)| {
                let slow = faulty && pod.hash == CANARY && at >= FAULT_AT;
                let level = if slow { 3.0 * pod.level } else { pod.level };
                json!({
                    "host": pod.name, "app": "shop", "metric": "latency_ms", "time": at,
                    "value": level + 2.0 * wobble(seed, at),
                    "labels": {"rollouts_pod_template_hash": pod.hash},
                })
            })
            .collect();
        server.ingest_samples(samples);
        server
            .clock
            .set(at + server.state.guard.config().grace_seconds);
        server.state.guard.pass().expect("a guard pass");
        let (_, release) = server.get(&format!("/api/v1/releases/{id}"), &server.viewer);
        if std::env::var_os("LABEL_GROUPS_DEBUG").is_some() {
            println!(
                "{id} {}: {} {} {}",
                at - DEPLOY,
                release["state"],
                release["verdict"],
                release["reason"]
            );
        }
        if release["state"] == "paused" {
            paused_at = Some(at);
            break;
        }
        if release["state"] == "succeeded" {
            break;
        }
        at += STEP;
    }
    let (_, release) = server.get(&format!("/api/v1/releases/{id}"), &server.viewer);
    let (_, verdict) = server.get(&format!("/api/v1/releases/{id}/verdict"), &server.viewer);
    let (_, findings) = server.get(&format!("/api/v1/releases/{id}/findings"), &server.viewer);
    Outcome {
        release,
        verdict,
        findings,
        paused_at,
    }
}

#[test]
fn a_canary_found_by_its_label_is_paused_on_a_fault_after_pods_are_replaced() {
    let outcome = run("shop-canary-faulty", true);
    let paused_at = outcome.paused_at.unwrap_or_else(|| {
        panic!(
            "the faulty canary was not paused: {} / {}",
            outcome.release, outcome.verdict
        )
    });
    println!(
        "paused at {} s after the fault; {}",
        paused_at - FAULT_AT,
        outcome.verdict["reason"]
    );
    assert!(
        paused_at >= FAULT_AT,
        "paused before the fault at {paused_at}"
    );
    assert!(
        paused_at - FAULT_AT <= 120,
        "paused {} s late",
        paused_at - FAULT_AT
    );
    assert_eq!(outcome.verdict["decision"], "stop");
    // The replaced canary pod left the group; its replacement is judged in its place.
    let reason = outcome.verdict["reason"].as_str().unwrap_or_default();
    assert!(reason.contains("2 of 2 release hosts"), "{reason}");
    let findings = outcome.findings.to_string();
    assert!(findings.contains("latency_ms"), "{findings}");
    assert!(!findings.contains("\"silence\""), "{findings}");
}

#[test]
fn replaced_pods_of_label_groups_are_not_silent_hosts() {
    let outcome = run("shop-canary-healthy", false);
    assert_eq!(outcome.paused_at, None, "paused: {}", outcome.findings);
    assert_eq!(
        outcome.release["state"], "succeeded",
        "{} / {}",
        outcome.release, outcome.verdict
    );
    assert_eq!(outcome.verdict["decision"], "passed");
    // No step held for a silent pod, and none was judged a silent host.
    let findings = outcome.findings.to_string();
    assert!(!findings.contains("sent nothing"), "{findings}");
    assert!(!findings.contains("\"silence\""), "{findings}");
    assert!(!findings.contains("shop-abc123-c1"), "{findings}");
}
