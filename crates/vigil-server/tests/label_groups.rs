//! Groups by label, live: a canary's pods and the stable pods are found by their
//! `rollouts_pod_template_hash` label at every step, and pods are replaced mid-release. A
//! latency fault of the canary pods is still caught; without it, the replaced pods are not taken
//! for silent hosts and the release succeeds. The README's Argo Rollouts `AnalysisTemplate` is
//! read and its `jsonPath` and conditions checked against the verdict route's answers.

#![allow(clippy::unwrap_used, clippy::print_stdout)]

mod support;

use std::collections::BTreeMap;

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
/// When a critical alert fires on a canary pod, in the run that sends one.
const ALERT_AT: i64 = DEPLOY + 260;
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
    /// The verdict route's first answer of each `decision` seen during the run.
    answers: BTreeMap<String, Value>,
    /// The verdict route's path of the release.
    verdict_path: String,
    /// The scorecard route's answer at the end of the run.
    scorecard: Value,
}

/// Runs a selector release of `shop` from the baseline to the end of its observation (or its
/// pause), with the canary pods' latency tripled from [`FAULT_AT`] when `faulty`.
fn run(id: &str, faulty: bool) -> Outcome {
    run_with(id, faulty, CANARY, false)
}

/// [`run`] with the release group's selector on template hash `release_hash`, and with a
/// critical alert on the canary pod `shop-abc123-c2` at [`ALERT_AT`] when `alert` is set.
fn run_with(id: &str, faulty: bool, release_hash: &str, alert: bool) -> Outcome {
    let server = TestServer::start(START);
    let (status, created) = server.post(
        "/api/v1/releases",
        &server.admin,
        &json!({
            "id": id, "app": "shop", "version": "2",
            "hosts": {"selector": format!("rollouts_pod_template_hash=\"{release_hash}\"")},
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
        format!("rollouts_pod_template_hash=\"{release_hash}\"")
    );
    let pods = pods();
    let verdict_path = format!("/api/v1/releases/{id}/verdict");
    let mut answers: BTreeMap<String, Value> = BTreeMap::new();
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
        if alert && at == ALERT_AT {
            let (status, answer) = server.post(
                "/api/v1/alerts",
                &server.ingest,
                &json!({"alerts": [{"name": "PodOOMKilled", "severity": "critical",
                    "status": "firing", "starts_at": ALERT_AT,
                    "labels": {"app": "shop", "pod": "shop-abc123-c2"}}]}),
            );
            assert_eq!(status, 200, "{answer}");
        }
        server
            .clock
            .set(at + server.state.guard.config().grace_seconds);
        server.state.guard.pass().expect("a guard pass");
        let (_, answer) = server.get(&verdict_path, &server.viewer);
        if let Some(decision) = answer["decision"].as_str() {
            answers.entry(decision.to_owned()).or_insert(answer.clone());
        }
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
    let (_, verdict) = server.get(&verdict_path, &server.viewer);
    if let Some(decision) = verdict["decision"].as_str() {
        answers
            .entry(decision.to_owned())
            .or_insert(verdict.clone());
    }
    let (_, findings) = server.get(&format!("/api/v1/releases/{id}/findings"), &server.viewer);
    let (status, scorecard) =
        server.get(&format!("/api/v1/releases/{id}/scorecard"), &server.viewer);
    assert_eq!(status, 200, "{scorecard}");
    Outcome {
        release,
        verdict,
        findings,
        paused_at,
        answers,
        verdict_path,
        scorecard,
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
fn a_critical_alert_on_a_canary_pod_found_by_its_label_pauses_and_joins_the_scorecard() {
    let outcome = run_with("shop-canary-alert", false, CANARY, true);
    assert_eq!(
        outcome.paused_at,
        Some(ALERT_AT),
        "{} / {}",
        outcome.release,
        outcome.findings
    );
    let findings = outcome.findings.to_string();
    assert!(
        findings.contains("alert: PodOOMKilled firing on shop-abc123-c2"),
        "{findings}"
    );
    let row = outcome.scorecard["rows"]
        .as_array()
        .unwrap()
        .iter()
        .find(|row| row["signal"]["type"] == "alert")
        .cloned()
        .unwrap_or_else(|| panic!("no alert row: {}", outcome.scorecard));
    assert_eq!(row["verdict"], "fail", "{row}");
    assert_eq!(row["hosts_affected"], 1, "{row}");
    assert_eq!(
        outcome.scorecard["verdict"], "fault",
        "{}",
        outcome.scorecard
    );
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

/// The README's `AnalysisTemplate`: the YAML block of its "Argo Rollouts" section.
fn readme_analysis_template() -> String {
    let readme = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../README.md"),
    )
    .unwrap();
    let section_start = readme
        .find("### Argo Rollouts")
        .expect("the README has an Argo Rollouts section");
    let section = &readme[section_start..];
    let block_start = section.find("```yaml\n").expect("a YAML block") + "```yaml\n".len();
    let block_end = block_start + section[block_start..].find("```").expect("its end");
    let block = section[block_start..block_end].to_owned();
    assert!(block.contains("kind: AnalysisTemplate"), "{block}");
    block
}

/// The value of the first `key:` line of a YAML block, unquoted.
fn yaml_value(block: &str, key: &str) -> String {
    let prefix = format!("{key}:");
    let line = block
        .lines()
        .map(str::trim)
        .find(|line| line.starts_with(&prefix))
        .unwrap_or_else(|| panic!("no {key} in {block}"));
    let value = line[prefix.len()..].trim();
    match value
        .strip_prefix('"')
        .and_then(|rest| rest.strip_suffix('"'))
    {
        Some(quoted) => quoted.to_owned(),
        None => value.to_owned(),
    }
}

/// `value` at a path of dotted field names (`decision`, `a.b`), if there.
fn at_path<'a>(value: &'a Value, path: &str) -> Option<&'a Value> {
    path.split('.')
        .filter(|segment| !segment.is_empty())
        .try_fold(value, |inner, segment| inner.get(segment))
}

/// What Argo's Web provider reads from an answer with a JSONPath of the form `{$}` or
/// `{$.field.field}`; the test knows no other form.
fn json_path(answer: &Value, expression: &str) -> Value {
    let inner = expression
        .strip_prefix('{')
        .and_then(|rest| rest.strip_suffix('}'))
        .and_then(|rest| rest.strip_prefix('$'))
        .unwrap_or_else(|| panic!("a JSONPath this test cannot read: {expression}"));
    at_path(answer, inner)
        .unwrap_or_else(|| panic!("{expression} is not in the verdict route's answer {answer}"))
        .clone()
}

/// An Argo condition of the forms `result.path == "text"` or `!=`, joined by `&&` and `||`
/// (`&&` first, as in expr); a term this test cannot read fails it. A path the result lacks
/// fails it too: the condition would read a field the route does not give.
fn condition_holds(condition: &str, result: &Value) -> bool {
    condition.split("||").any(|all_of| {
        all_of.split("&&").all(|term| {
            let (left, negated, right) = match (term.split_once("!="), term.split_once("==")) {
                (Some((left, right)), _) => (left, true, right),
                (None, Some((left, right))) => (left, false, right),
                _ => panic!("a condition this test cannot read: {term}"),
            };
            let path = left
                .trim()
                .strip_prefix("result")
                .unwrap_or_else(|| panic!("a condition not on result: {term}"));
            let expected = right
                .trim()
                .strip_prefix('"')
                .and_then(|rest| rest.strip_suffix('"'))
                .unwrap_or_else(|| panic!("a condition not against a string: {term}"));
            let actual = at_path(result, path)
                .unwrap_or_else(|| panic!("{} is not in {result}", left.trim()))
                .as_str()
                .unwrap_or_else(|| panic!("{} is not a string in {result}", left.trim()));
            (actual == expected) != negated
        })
    })
}

#[test]
fn the_readme_analysis_template_reads_the_verdict_route() {
    let template = readme_analysis_template();
    let url = yaml_value(&template, "url");
    let json_path_expression = yaml_value(&template, "jsonPath");
    let success = yaml_value(&template, "successCondition");
    let failure = yaml_value(&template, "failureCondition");
    let count: i64 = yaml_value(&template, "count").parse().unwrap();
    let interval = yaml_value(&template, "interval");
    assert!(
        count > 1 && interval.ends_with('s'),
        "count {count}, interval {interval}"
    );
    let route = &url[url.find("/api/v1/").expect("a route of the API")..];

    let healthy = run("shop-argo-healthy", false);
    let faulty = run("shop-argo-faulty", true);
    assert_eq!(
        route.replace("{{args.release}}", "shop-argo-healthy"),
        healthy.verdict_path
    );
    let mut answers = healthy.answers.clone();
    answers.extend(faulty.answers.clone());
    // What a pipeline must do on each decision: (success, failure).
    let intended = [
        ("proceed", (true, false)),
        ("hold", (false, false)),
        ("stop", (false, true)),
        ("passed", (true, false)),
    ];
    for (decision, (succeeds, fails)) in intended {
        let answer = answers
            .get(decision)
            .unwrap_or_else(|| panic!("the runs never answered {decision}: {answers:?}"));
        let result = json_path(answer, &json_path_expression);
        assert_eq!(
            (
                condition_holds(&success, &result),
                condition_holds(&failure, &result)
            ),
            (succeeds, fails),
            "{decision}: {answer}"
        );
    }
}

#[test]
fn the_condition_reader_can_tell_a_wrong_condition() {
    let answer = json!({"decision": "hold"});
    assert!(!condition_holds("result.decision == \"proceed\"", &answer));
    assert!(condition_holds(
        "result.decision == \"proceed\" || result.decision != \"stop\"",
        &answer
    ));
    let missing =
        std::panic::catch_unwind(|| condition_holds("result.verdict_decision == \"x\"", &answer));
    assert!(missing.is_err(), "a field the route does not give fails");
    assert_eq!(json_path(&answer, "{$.decision}"), json!("hold"));
}

#[test]
fn a_release_group_that_finds_no_pod_holds_and_never_succeeds() {
    let outcome = run_with("shop-canary-nobody", false, "no-such-hash", false);
    assert_eq!(outcome.paused_at, None);
    assert_eq!(outcome.release["state"], "observing", "{}", outcome.release);
    assert_eq!(outcome.verdict["decision"], "hold", "{}", outcome.verdict);
    let reason = outcome.verdict["reason"].as_str().unwrap_or_default();
    assert!(
        reason.contains("no host of shop labelled rollouts_pod_template_hash=\"no-such-hash\""),
        "{reason}"
    );
}

#[test]
fn a_selector_releases_page_shows_its_selector_escaped() {
    let server = TestServer::start(START);
    let (status, created) = server.post(
        "/api/v1/releases",
        &server.admin,
        &json!({
            "id": "shop-page", "app": "shop", "version": "2",
            "hosts": {"selector": "rollouts_pod_template_hash=~\"<b>abc'1\""},
        }),
    );
    assert_eq!(status, 201, "{created}");
    let mut client = support::PageClient::new(&server.base);
    client.sign_in(&server.viewer);
    let page = client.get("/releases/shop-page");
    assert_eq!(page.status, 200);
    assert!(
        page.body
            .contains("the hosts labelled <code>rollouts_pod_template_hash=~&quot;&lt;b&gt;abc&#39;1&quot;</code>"),
        "{}",
        page.body
    );
}
