//! The API description is true: every route of the router is sent a real request, and the
//! request body, the status and the JSON answer are checked against the route's schema in
//! `openapi.json`. A route the router has and this test does not send fails it.
#![allow(clippy::unwrap_used)]

mod support;

use std::collections::BTreeSet;
use std::io::Read;

use serde_json::{json, Value};
use support::openapi::{check, document, operation, operations, request_schema, response_schema};
use support::{examples_dir, request, TestServer};
use vigil_ingest::remote_write::{encode_remote_write, WriteSeries};

/// After the imported example's window, so that its import is judged as history.
const NOW: i64 = 1_800_000_000;

/// Sends requests and checks each against the document, remembering which operations were
/// sent and what did not fit.
struct Contract {
    server: TestServer,
    document: Value,
    sent: BTreeSet<String>,
    problems: Vec<String>,
}

/// One request: its method, the route's template, the path sent, the token and the body.
struct Call<'call> {
    method: &'call str,
    template: &'call str,
    path: &'call str,
    token: &'call str,
    body: Option<Vec<u8>>,
}

impl Contract {
    fn new() -> Contract {
        Contract {
            server: TestServer::start(NOW),
            document: document(),
            sent: BTreeSet::new(),
            problems: Vec::new(),
        }
    }

    /// Sends a JSON body (or none), checks it and its answer, and returns the answer.
    fn send(
        &mut self,
        method: &str,
        template: &str,
        path: &str,
        token: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        let body = body.map(|value| value.to_string().into_bytes());
        self.send_call(Call {
            method,
            template,
            path,
            token,
            body,
        })
    }

    fn send_call(&mut self, call: Call<'_>) -> (u16, Value) {
        let name = format!("{} {}", call.method, call.template);
        self.sent.insert(name.clone());
        let operation = operation(&self.document, call.method, call.template).clone();
        let request_body = call.body.clone();
        let (status, answer) = request(
            &self.server.base,
            call.method,
            call.path,
            call.token,
            call.body,
        );
        // A request the server takes must be one the document describes; one it refuses is
        // usually wrong on purpose.
        if (200..300).contains(&status) {
            self.check_request(&name, &operation, request_body.as_deref());
        }
        let found = match response_schema(&self.document, &operation, status) {
            Err(problem) => vec![format!("{problem} (answer {})", shortened(&answer))],
            Ok(Some(schema)) => check(&self.document, schema, &answer, &format!("{status}")),
            Ok(None) if answer.get("text").is_none() => vec![format!(
                "{status}: answers JSON that the document does not describe: {}",
                shortened(&answer)
            )],
            Ok(None) => Vec::new(),
        };
        self.note(&name, found);
        (status, answer)
    }

    fn check_request(&mut self, name: &str, operation: &Value, body: Option<&[u8]>) {
        let (Some(schema), Some(bytes)) = (request_schema(&self.document, operation), body) else {
            return;
        };
        let found = match serde_json::from_slice::<Value>(bytes) {
            Ok(body) => check(&self.document, schema, &body, "request"),
            Err(error) => vec![format!("request: not JSON: {error}")],
        };
        self.note(name, found);
    }

    fn note(&mut self, name: &str, found: Vec<String>) {
        self.problems.extend(
            found
                .into_iter()
                .map(|problem| format!("{name}: {problem}")),
        );
    }
}

/// The start of an answer, enough to tell it in a failure.
fn shortened(answer: &Value) -> String {
    let text = answer.to_string();
    match text.char_indices().nth(160) {
        Some((end, _)) => format!("{}...", &text[..end]),
        None => text,
    }
}

/// Every route path the router declares (`"/api/..."` and `"/healthz"` in its source).
fn router_paths() -> BTreeSet<String> {
    let source = include_str!("../../vigil-web/src/lib.rs");
    let router = &source[source.find("pub fn router").unwrap()..];
    let router = &router[..router.find("\n}\n").unwrap()];
    router
        .lines()
        .filter_map(|line| {
            let start = line.find("\"/")? + 1;
            let end = line[start..].find('"')? + start;
            Some(line[start..end].to_string())
        })
        .collect()
}

fn samples(hosts: &[&str], at: i64) -> Value {
    let samples: Vec<Value> = hosts
        .iter()
        .map(|host| {
            json!({"host": host, "app": "shop", "metric": "latency_ms", "time": at, "value": 12.5,
                           "labels": {"rollouts_pod_template_hash": "abc123"}})
        })
        .collect();
    json!({ "samples": samples })
}

fn release_body(id: &str) -> Value {
    json!({
        "id": id, "app": "shop", "version": "2",
        "hosts": ["a", "b"], "batches": [{"hosts": ["a"]}, {"hosts": ["b"]}],
        "reference": {"type": "hosts", "hosts": ["c"]},
        "step_seconds": 30, "observe_seconds": 600,
        "metrics": [{"name": "latency_ms", "kind": "middleware", "direction": "increase",
                     "unit": "ms", "critical": true}],
    })
}

/// The example bundle, as the JSON an operator sends.
fn example_bundle() -> Vec<u8> {
    let compressed = std::fs::read(examples_dir().join("releases/pub0031.json.gz")).unwrap();
    let mut json = Vec::new();
    flate2::read::GzDecoder::new(&compressed[..])
        .read_to_end(&mut json)
        .unwrap();
    json
}

fn send_ingestion(contract: &mut Contract) {
    let ingest = contract.server.ingest.clone();
    for at in (NOW - 300..=NOW).step_by(30) {
        let (status, _) = contract.send(
            "POST",
            "/api/v1/ingest/samples",
            "/api/v1/ingest/samples",
            &ingest,
            Some(samples(&["a", "b", "c"], at)),
        );
        assert_eq!(status, 200);
    }
    let lines = json!({"key": "batch-1", "lines": [
        {"host": "a", "app": "shop", "time": NOW, "line": "ERROR failed to charge order 17"},
    ]});
    let (status, _) = contract.send(
        "POST",
        "/api/v1/ingest/logs",
        "/api/v1/ingest/logs",
        &ingest,
        Some(lines),
    );
    assert_eq!(status, 200);
    let series = [WriteSeries::new(&[
        ("__name__", "cpu_seconds_total"),
        ("instance", "a"),
        ("job", "shop"),
    ])
    .with_sample(NOW * 1000, 4.0)];
    let body = encode_remote_write(&series, &[]).unwrap();
    let (status, _) = contract.send_call(Call {
        method: "POST",
        template: "/api/v1/ingest/prometheus",
        path: "/api/v1/ingest/prometheus",
        token: &ingest,
        body: Some(body),
    });
    assert_eq!(status, 200);
    let (status, _) = contract.send(
        "POST",
        "/api/v1/ingest/samples",
        "/api/v1/ingest/samples",
        &ingest,
        Some(json!({"samples": [{"host": "a"}]})),
    );
    assert_eq!(status, 400);
    let (status, answer) = contract.send(
        "POST",
        "/api/v1/alerts",
        "/api/v1/alerts",
        &ingest,
        Some(
            json!({"alerts": [{"name": "HighErrorRate", "labels": {"app": "shop",
            "instance": "a:9100"}, "severity": "critical", "status": "firing",
            "starts_at": NOW, "summary": "5xx above 5 %"}]}),
        ),
    );
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["accepted"], 1);
    let (status, _) = contract.send(
        "POST",
        "/api/v1/alerts",
        "/api/v1/alerts",
        &ingest,
        Some(json!({"alerts": [{"name": "HighErrorRate", "labels": {},
            "severity": "critical", "status": "firing", "starts_at": "now"}]})),
    );
    assert_eq!(status, 400);
    let (status, answer) = contract.send(
        "POST",
        "/api/v1/alerts/alertmanager",
        "/api/v1/alerts/alertmanager",
        &ingest,
        Some(
            json!({"version": "4", "status": "resolved", "receiver": "vigil",
            "groupLabels": {}, "commonLabels": {}, "externalURL": "http://127.0.0.1:9093",
            "alerts": [{"status": "resolved", "labels": {"alertname": "HighErrorRate",
            "app": "shop", "instance": "a:9100", "severity": "critical"},
            "annotations": {"summary": "5xx above 5 %"}, "startsAt": "2027-01-15T08:00:00Z",
            "endsAt": "2027-01-15T08:05:00.5Z", "fingerprint": "c0ffee"}]}),
        ),
    );
    assert_eq!(status, 200, "{answer}");
    let (status, answer) = contract.send(
        "POST",
        "/api/v1/alerts/alertmanager",
        "/api/v1/alerts/alertmanager",
        &ingest,
        Some(json!({"version": "4", "alerts": [{"status": "firing",
            "labels": {"severity": "critical"}, "startsAt": "2027-01-15T08:00:00Z"}]})),
    );
    assert_eq!(status, 400);
    assert_eq!(
        answer["error"], "alerts[0].labels.alertname: missing",
        "{answer}"
    );
}

fn send_app_routes(contract: &mut Contract) {
    let admin = contract.server.admin.clone();
    let viewer = contract.server.viewer.clone();
    let settings = json!({"metrics": [{"name": "latency_ms", "kind": "middleware",
        "direction": "increase", "unit": "ms", "critical": true}]});
    let (status, _) = contract.send(
        "PUT",
        "/api/v1/apps/{app}",
        "/api/v1/apps/shop",
        &admin,
        Some(settings),
    );
    assert_eq!(status, 200);
    let (status, _) = contract.send("GET", "/api/v1/apps", "/api/v1/apps", &viewer, None);
    assert_eq!(status, 200);
    let rules = json!({"rules": [
        {"name": "success", "metric": "success_rate", "below": 0.99, "duration_seconds": 120,
         "severity": "fault"},
        {"name": "latency", "query": "avg by (host) (latency_ms)", "relative_to": "reference",
         "above_by": 0.2, "severity": "anomaly"}]});
    let (status, _) = contract.send(
        "PUT",
        "/api/v1/apps/{app}/rules",
        "/api/v1/apps/shop/rules",
        &admin,
        Some(rules),
    );
    assert_eq!(status, 200);
    let (status, _) = contract.send(
        "PUT",
        "/api/v1/apps/{app}/rules",
        "/api/v1/apps/shop/rules",
        &admin,
        Some(json!({"rules": [{"name": "x", "metric": "m", "severity": "fault"}]})),
    );
    assert_eq!(status, 400);
    let (status, answer) = contract.send(
        "GET",
        "/api/v1/apps/{app}/rules",
        "/api/v1/apps/shop/rules",
        &viewer,
        None,
    );
    assert_eq!(status, 200);
    assert_eq!(answer["rules"][1]["relative_to"], "reference");
    let (status, _) = contract.send(
        "GET",
        "/api/v1/apps/{app}/onboarding",
        "/api/v1/apps/shop/onboarding",
        &viewer,
        None,
    );
    assert_eq!(status, 200);
    let (status, _) = contract.send(
        "GET",
        "/api/v1/apps/{app}/onboarding",
        "/api/v1/apps/ghost/onboarding",
        &viewer,
        None,
    );
    assert_eq!(status, 404);
    // With no Prometheus server named, applying is refused: the answer is still checked.
    let (status, _) = contract.send(
        "POST",
        "/api/v1/apps/{app}/onboarding/apply",
        "/api/v1/apps/shop/onboarding/apply",
        &admin,
        Some(json!({})),
    );
    assert_eq!(status, 400);
}

fn send_release_reads(contract: &mut Contract, id: &str, metric: &str) {
    let viewer = contract.server.viewer.clone();
    let reads = [
        ("/api/v1/releases/{id}", String::new()),
        ("/api/v1/releases/{id}/verdict", String::new()),
        ("/api/v1/releases/{id}/findings", String::new()),
        ("/api/v1/releases/{id}/scorecard", String::new()),
        (
            "/api/v1/releases/{id}/scorecard",
            "?sort=effect&order=asc".to_owned(),
        ),
        ("/api/v1/releases/{id}/transitions", String::new()),
        ("/api/v1/releases/{id}/series", format!("?metric={metric}")),
        ("/api/v1/releases/{id}/export", String::new()),
        ("/api/v1/releases/{id}/notifications", String::new()),
        ("/api/v1/releases/{id}/feedback", String::new()),
    ];
    for (template, query) in reads {
        let path = format!("{}{query}", template.replace("{id}", id));
        let (status, answer) = contract.send("GET", template, &path, &viewer, None);
        assert_eq!(status, 200, "{path}: {answer}");
    }
    let (status, _) = contract.send(
        "GET",
        "/api/v1/releases/{id}",
        "/api/v1/releases/nobody",
        &viewer,
        None,
    );
    assert_eq!(status, 404);
    let (status, _) = contract.send(
        "GET",
        "/api/v1/releases/{id}/scorecard",
        "/api/v1/releases/nobody/scorecard",
        &viewer,
        None,
    );
    assert_eq!(status, 404);
    let (status, _) = contract.send(
        "GET",
        "/api/v1/releases/{id}/scorecard",
        &format!("/api/v1/releases/{id}/scorecard?sort=size"),
        &viewer,
        None,
    );
    assert_eq!(status, 400);
}

fn send_release_actions(contract: &mut Contract) {
    let operator = contract.server.operator.clone();
    let create = |contract: &mut Contract, id: &str| {
        let (status, answer) = contract.send(
            "POST",
            "/api/v1/releases",
            "/api/v1/releases",
            &operator,
            Some(release_body(id)),
        );
        assert_eq!(status, 201, "{answer}");
    };
    create(contract, "r1");
    create(contract, "r2");
    let (status, _) = contract.send(
        "GET",
        "/api/v1/releases",
        "/api/v1/releases?app=shop&limit=10",
        &operator,
        None,
    );
    assert_eq!(status, 200);
    let (status, _) = contract.send(
        "POST",
        "/api/v1/releases",
        "/api/v1/releases",
        &operator,
        Some(json!({"app": "shop", "version": "3", "hosts": []})),
    );
    assert_eq!(status, 400);
    // Groups by label: both shapes the document gives, and a selector refused by its field.
    let (status, answer) = contract.send(
        "POST",
        "/api/v1/releases",
        "/api/v1/releases",
        &operator,
        Some(json!({
            "id": "r-selector", "app": "shop", "version": "3",
            "hosts": {"selector": "rollouts_pod_template_hash=\"abc123\""},
            "reference": {"type": "selector", "selector": "rollouts_pod_template_hash=~\"def.*\""},
        })),
    );
    assert_eq!(status, 201, "{answer}");
    let (status, answer) = contract.send(
        "POST",
        "/api/v1/releases",
        "/api/v1/releases",
        &operator,
        Some(json!({"app": "shop", "version": "3", "hosts": {"selector": "hash=~\"(\""}})),
    );
    assert_eq!(status, 400);
    assert!(
        answer["error"]
            .as_str()
            .unwrap_or_default()
            .starts_with("hosts.selector: "),
        "{answer}"
    );
    let steps = [
        (
            "/api/v1/releases/{id}/batches/{n}/deployed",
            "batches/0/deployed",
            json!({"at": NOW - 120}),
            200,
        ),
        (
            "/api/v1/releases/{id}/batches/{n}/deployed",
            "batches/5/deployed",
            json!({}),
            409,
        ),
        (
            "/api/v1/releases/{id}/pause",
            "pause",
            json!({"reason": "looks odd"}),
            200,
        ),
        ("/api/v1/releases/{id}/resume", "resume", json!({}), 200),
        (
            "/api/v1/releases/{id}/feedback",
            "feedback",
            json!({"kind": "false_alarm", "note": "load test"}),
            201,
        ),
        (
            "/api/v1/releases/{id}/rollback",
            "rollback",
            json!({"reason": "to be safe"}),
            200,
        ),
        (
            "/api/v1/releases/{id}/rolled-back",
            "rolled-back",
            json!({}),
            200,
        ),
        ("/api/v1/releases/{id}/pause", "pause", json!({}), 409),
    ];
    for (template, tail, body, expected) in steps {
        let path = format!("/api/v1/releases/r1/{tail}");
        let (status, answer) = contract.send("POST", template, &path, &operator, Some(body));
        assert_eq!(status, expected, "{path}: {answer}");
    }
    let (status, _) = contract.send(
        "POST",
        "/api/v1/releases/{id}/cancel",
        "/api/v1/releases/r2/cancel",
        &operator,
        Some(json!({"reason": "not today"})),
    );
    assert_eq!(status, 200);
    send_release_reads(contract, "r1", "latency_ms");
}

fn send_import(contract: &mut Contract) {
    let admin = contract.server.admin.clone();
    let (status, answer) = contract.send_call(Call {
        method: "POST",
        template: "/api/v1/releases/import",
        path: "/api/v1/releases/import",
        token: &admin,
        body: Some(example_bundle()),
    });
    assert_eq!(status, 201, "{answer}");
    send_release_reads(contract, "pub0031", "http.rt_ms");
}

fn send_token_routes(contract: &mut Contract) {
    let admin = contract.server.admin.clone();
    let (status, tokens) = contract.send("GET", "/api/v1/tokens", "/api/v1/tokens", &admin, None);
    assert_eq!(status, 200);
    let viewer_id = tokens
        .as_array()
        .unwrap()
        .iter()
        .find(|token| token["name"] == "viewer")
        .map(|token| token["id"].to_string())
        .unwrap();
    let path = format!("/api/v1/tokens/{viewer_id}/revoke");
    let (status, answer) = contract.send("POST", "/api/v1/tokens/{id}/revoke", &path, &admin, None);
    assert_eq!(status, 200, "{answer}");
    let (status, _) = contract.send(
        "POST",
        "/api/v1/tokens/{id}/revoke",
        "/api/v1/tokens/987654/revoke",
        &admin,
        None,
    );
    assert_eq!(status, 404);
}

/// An app's feature library: listed by an operator (the viewer's token is revoked by then);
/// removing needs an admin, and an unknown signature is not found.
fn send_signature_routes(contract: &mut Contract) {
    let admin = contract.server.admin.clone();
    let operator = contract.server.operator.clone();
    let (status, answer) = contract.send(
        "GET",
        "/api/v1/apps/{app}/signatures",
        "/api/v1/apps/shop/signatures",
        &operator,
        None,
    );
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["app"], "shop", "{answer}");
    let (status, _) = contract.send(
        "DELETE",
        "/api/v1/apps/{app}/signatures/{id}",
        "/api/v1/apps/shop/signatures/987654",
        &operator,
        None,
    );
    assert_eq!(status, 403);
    let (status, answer) = contract.send(
        "DELETE",
        "/api/v1/apps/{app}/signatures/{id}",
        "/api/v1/apps/shop/signatures/987654",
        &admin,
        None,
    );
    assert_eq!(status, 404, "{answer}");
    assert!(
        answer["error"]
            .as_str()
            .unwrap_or_default()
            .starts_with("id: "),
        "{answer}"
    );
}

/// The replicas of the store: this one server, live (asked by an operator: the viewer's token
/// is revoked by then).
fn send_replica_routes(contract: &mut Contract) {
    let operator = contract.server.operator.clone();
    let (status, answer) = contract.send(
        "GET",
        "/api/v1/replicas",
        "/api/v1/replicas",
        &operator,
        None,
    );
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["replicas"].as_array().unwrap().len(), 1, "{answer}");
    assert_eq!(answer["replicas"][0]["live"], true, "{answer}");
    let (status, _) = contract.send("GET", "/api/v1/replicas", "/api/v1/replicas", "", None);
    assert_eq!(status, 401);
}

/// The executor's routes: an agent registers, polls and is listed; a deployment over it is
/// created (and one naming an unknown host refused) and its progress read. The viewer's token
/// is revoked by then: the operator reads.
fn send_executor_routes(contract: &mut Contract) {
    let ingest = contract.server.ingest.clone();
    let operator = contract.server.operator.clone();
    let viewer = operator.clone();
    let artifact = "ab".repeat(32);
    let (status, answer) = contract.send(
        "POST",
        "/api/v1/agents",
        "/api/v1/agents",
        &ingest,
        Some(
            json!({"host": "agent-1", "app": "shop", "labels": {"role": "web"},
                    "version": "1.0", "peer_addr": "127.0.0.1:7001", "agent_version": "0.1"}),
        ),
    );
    assert_eq!(status, 200, "{answer}");
    let (status, answer) = contract.send(
        "POST",
        "/api/v1/agents",
        "/api/v1/agents",
        &viewer,
        Some(json!({"host": "agent-2", "app": "shop"})),
    );
    assert_eq!(status, 403, "{answer}");
    let (status, answer) = contract.send(
        "POST",
        "/api/v1/agents/{host}/poll",
        "/api/v1/agents/agent-1/poll",
        &ingest,
        Some(
            json!({"reports": [], "artifacts": [{"artifact": artifact, "pieces_held": 2,
                                                  "pieces": 2, "verified": true}]}),
        ),
    );
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["registered"], true, "{answer}");
    let (status, answer) = contract.send(
        "POST",
        "/api/v1/agents/{host}/poll",
        "/api/v1/agents/nobody/poll",
        &ingest,
        Some(json!({})),
    );
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["registered"], false, "{answer}");
    let (status, answer) = contract.send(
        "POST",
        "/api/v1/agents/{host}/poll",
        "/api/v1/agents/agent-1/poll",
        &ingest,
        Some(json!({"reports": [{"task": 1, "state": "pending", "at": 0}]})),
    );
    assert_eq!(status, 400, "{answer}");
    let (status, answer) = contract.send("GET", "/api/v1/agents", "/api/v1/agents", &viewer, None);
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer[0]["online"], true, "{answer}");
    let (status, answer) = contract.send(
        "POST",
        "/api/v1/deployments",
        "/api/v1/deployments",
        &operator,
        Some(
            json!({"id": "d1", "app": "shop", "version": "2.0", "artifact": artifact,
                    "hosts": ["agent-1", "ghost"]}),
        ),
    );
    assert_eq!(status, 400, "{answer}");
    assert!(
        answer["error"].as_str().unwrap().starts_with("hosts[1]"),
        "{answer}"
    );
    // The version names a folder on every host: one that would leave it is refused here,
    // not by each agent after the release started.
    let (status, answer) = contract.send(
        "POST",
        "/api/v1/deployments",
        "/api/v1/deployments",
        &operator,
        Some(
            json!({"id": "d1", "app": "shop", "version": "../2.0", "artifact": artifact,
                    "hosts": ["agent-1"]}),
        ),
    );
    assert_eq!(status, 400, "{answer}");
    assert!(
        answer["error"].as_str().unwrap().starts_with("version: "),
        "{answer}"
    );
    let (status, answer) = contract.send(
        "POST",
        "/api/v1/deployments",
        "/api/v1/deployments",
        &operator,
        Some(
            json!({"id": "d1", "app": "shop", "version": "2.0", "artifact": artifact,
                    "hosts": {"selector": "role=\"web\""},
                    "plan": [{"size": "100%", "observe_seconds": 60}]}),
        ),
    );
    assert_eq!(status, 201, "{answer}");
    let (status, answer) = contract.send(
        "GET",
        "/api/v1/releases/{id}/execution",
        "/api/v1/releases/d1/execution",
        &viewer,
        None,
    );
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["distribution"][0]["verified"], true, "{answer}");
    let (status, _) = contract.send(
        "GET",
        "/api/v1/releases/{id}/execution",
        "/api/v1/releases/missing/execution",
        &viewer,
        None,
    );
    assert_eq!(status, 404);
}

/// The models: one with held-out scores promoted through the gate, one without refused, a
/// rollback to the funnel alone and one with nothing left to roll back.
fn send_model_routes(contract: &mut Contract) {
    let operator = contract.server.operator.clone();
    let admin = contract.server.admin.clone();
    let features = vigil_analysis::learned::FEATURES;
    let scores = |on: String| vigil_core::learned::ModelScores {
        on,
        releases: 10,
        precision: 1.0,
        recall: 1.0,
        f1: 1.0,
        anomaly_recommended: Some(0.5),
        healthy_recommended: None,
        recommendation_precision: Some(0.5),
        delay_min_median: None,
    };
    for rows in [
        vec![
            scores("held-out: h".to_owned()),
            scores("funnel on held-out: h".to_owned()),
        ],
        Vec::new(),
    ] {
        let model = vigil_store::NewModel {
            created_at: NOW,
            created_by: "trainer".to_owned(),
            model: vigil_core::learned::LearnedModel {
                format: vigil_core::learned::MODEL_FORMAT.to_owned(),
                features: features.iter().map(|name| (*name).to_owned()).collect(),
                mean: vec![0.0; features.len()],
                scale: vec![1.0; features.len()],
                weights: vec![0.0; features.len()],
                intercept: 0.0,
                threshold: 0.5,
                target_precision: 0.8,
            },
            training: vigil_core::learned::TrainingSet::default(),
            scores: rows,
            note: String::new(),
        };
        contract.server.state.store.add_model(&model).unwrap();
    }
    let template = "/api/v1/models/{version}/promote";
    let (status, answer) = contract.send(
        "POST",
        template,
        "/api/v1/models/1/promote",
        &admin,
        Some(json!({"tolerance": 0.01})),
    );
    assert_eq!(status, 200, "{answer}");
    let (status, _) = contract.send("POST", template, "/api/v1/models/2/promote", &admin, None);
    assert_eq!(status, 409);
    let (status, answer) =
        contract.send("GET", "/api/v1/models", "/api/v1/models", &operator, None);
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["promotions"][0]["action"], "promoted", "{answer}");
    let rollback = "/api/v1/models/rollback";
    let (status, answer) = contract.send("POST", rollback, rollback, &admin, None);
    assert_eq!(status, 200, "{answer}");
    let (status, _) = contract.send("POST", rollback, rollback, &admin, None);
    assert_eq!(status, 409);
}

/// A replay of the stored history: refused without a run or with a bad model, started,
/// polled until it finishes, then read as the latest.
fn send_replay_routes(contract: &mut Contract) {
    let operator = contract.server.operator.clone();
    let (status, _) = contract.send(
        "GET",
        "/api/v1/replays/latest",
        "/api/v1/replays/latest",
        &operator,
        None,
    );
    assert_eq!(status, 404);
    let (status, _) = contract.send(
        "POST",
        "/api/v1/replays",
        "/api/v1/replays",
        &operator,
        Some(json!({"model": "latest"})),
    );
    assert_eq!(status, 400);
    let (status, started) = contract.send(
        "POST",
        "/api/v1/replays",
        "/api/v1/replays",
        &operator,
        Some(json!({"model": "none"})),
    );
    assert_eq!(status, 202, "{started}");
    let path = format!("/api/v1/replays/{}", started["id"]);
    let mut finished = false;
    for _ in 0..600 {
        let (status, run) = contract.send("GET", "/api/v1/replays/{id}", &path, &operator, None);
        assert_eq!(status, 200, "{run}");
        if run["state"] == "finished" {
            finished = true;
            break;
        }
        assert_eq!(run["state"], "running", "{run}");
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert!(finished, "the replay did not finish within a minute");
    let (status, latest) = contract.send(
        "GET",
        "/api/v1/replays/latest",
        "/api/v1/replays/latest",
        &operator,
        None,
    );
    assert_eq!(status, 200);
    assert_eq!(latest["id"], started["id"]);
    // The imported example is finished: its row and figures were checked against the schema.
    assert!(
        !latest["result"]["releases"].as_array().unwrap().is_empty(),
        "{latest}"
    );
}

/// An artifact uploaded (twice: the second answers the first record), listed, its manifest,
/// the key, a piece from the origin and an announce to the tracker.
fn send_artifact_routes(contract: &mut Contract) {
    let admin = contract.server.admin.clone();
    let ingest = contract.server.ingest.clone();
    let viewer = contract.server.viewer.clone();
    let bytes: Vec<u8> = (0..300_000u32).map(|index| (index % 253) as u8).collect();
    let mut id = String::new();
    for expected in [201, 200] {
        let (status, answer) = contract.send_call(Call {
            method: "POST",
            template: "/api/v1/artifacts",
            path: "/api/v1/artifacts?name=shop-42.tar.gz",
            token: &admin,
            body: Some(bytes.clone()),
        });
        assert_eq!(status, expected, "{answer}");
        id = answer["manifest"]["sha256"].as_str().unwrap().to_string();
    }
    // Refused for its missing name before its body is read: a few bytes, so that the
    // connection is not closed under a body still being sent.
    let (status, answer) = contract.send_call(Call {
        method: "POST",
        template: "/api/v1/artifacts",
        path: "/api/v1/artifacts",
        token: &admin,
        body: Some(b"few bytes".to_vec()),
    });
    assert_eq!(status, 400, "{answer}");
    let (status, list) = contract.send(
        "GET",
        "/api/v1/artifacts",
        "/api/v1/artifacts",
        &viewer,
        None,
    );
    assert_eq!(status, 200);
    assert_eq!(list.as_array().unwrap().len(), 1);
    let manifest = format!("/api/v1/artifacts/{id}/manifest");
    let (status, answer) = contract.send(
        "GET",
        "/api/v1/artifacts/{id}/manifest",
        &manifest,
        &ingest,
        None,
    );
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["pieces"].as_array().unwrap().len(), 2);
    let (status, _) = contract.send(
        "GET",
        "/api/v1/artifacts/{id}/manifest",
        "/api/v1/artifacts/not-hex/manifest",
        &ingest,
        None,
    );
    assert_eq!(status, 400);
    let (status, key) = contract.send(
        "GET",
        "/api/v1/artifact-key",
        "/api/v1/artifact-key",
        &ingest,
        None,
    );
    assert_eq!(status, 200);
    assert_eq!(key["public_key"].as_str().unwrap().len(), 64);
    let template = "/api/v1/artifacts/{id}/pieces/{index}";
    let (status, _) = contract.send(
        "GET",
        template,
        &format!("/api/v1/artifacts/{id}/pieces/1"),
        &ingest,
        None,
    );
    assert_eq!(status, 200);
    let (status, _) = contract.send(
        "GET",
        template,
        &format!("/api/v1/artifacts/{id}/pieces/2"),
        &ingest,
        None,
    );
    assert_eq!(status, 404);
    let announce = format!("/api/v1/artifacts/{id}/announce");
    let body = json!({"host": "a", "addr": "127.0.0.1:7001", "have": "c0"});
    let (status, answer) = contract.send(
        "POST",
        "/api/v1/artifacts/{id}/announce",
        &announce,
        &ingest,
        Some(body),
    );
    assert_eq!(status, 200, "{answer}");
    let body = json!({"host": "b", "addr": "127.0.0.1:7002", "have": "00"});
    let (status, answer) = contract.send(
        "POST",
        "/api/v1/artifacts/{id}/announce",
        &announce,
        &ingest,
        Some(body),
    );
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["peers"][0]["host"], "a");
}

#[test]
fn every_route_answers_as_the_document_says() {
    let mut contract = Contract::new();
    let (status, _) = contract.send("GET", "/healthz", "/healthz", "", None);
    assert_eq!(status, 200);
    let (status, metrics) = contract.send("GET", "/metrics", "/metrics", "", None);
    assert_eq!(status, 200);
    assert!(
        metrics["text"]
            .as_str()
            .is_some_and(|text| text.contains("# TYPE vigil_http_requests_total counter")),
        "{metrics}"
    );
    let (status, _) = contract.send(
        "GET",
        "/api/v1/openapi.json",
        "/api/v1/openapi.json",
        "",
        None,
    );
    assert_eq!(status, 200);
    let (status, _) = contract.send("GET", "/api/v1/releases", "/api/v1/releases", "", None);
    assert_eq!(status, 401);
    send_app_routes(&mut contract);
    send_ingestion(&mut contract);
    send_artifact_routes(&mut contract);
    send_release_actions(&mut contract);
    send_import(&mut contract);
    send_token_routes(&mut contract);
    send_replica_routes(&mut contract);
    send_model_routes(&mut contract);
    send_signature_routes(&mut contract);
    send_replay_routes(&mut contract);
    send_executor_routes(&mut contract);

    let documented = operations(&contract.document);
    let unsent: Vec<&String> = documented.difference(&contract.sent).collect();
    assert!(
        unsent.is_empty(),
        "operations no request was sent to: {unsent:?}"
    );
    let document_paths: BTreeSet<String> = contract.document["paths"]
        .as_object()
        .unwrap()
        .keys()
        .cloned()
        .collect();
    let routed = router_paths();
    let undocumented: Vec<&String> = routed.difference(&document_paths).collect();
    assert!(
        undocumented.is_empty(),
        "routes of the router missing from openapi.json: {undocumented:?}"
    );
    assert!(
        contract.problems.is_empty(),
        "answers that do not fit openapi.json:\n{}",
        contract.problems.join("\n")
    );
}

#[test]
fn the_checker_refuses_what_does_not_fit() {
    let document = document();
    let release = json!({"$ref": "#/components/schemas/Release"});
    assert!(!check(&document, &release, &json!({"id": 3}), "answer").is_empty());
    let strings = json!({"type": "array", "items": {"type": "string"}});
    assert_eq!(
        check(&document, &strings, &json!(["a", 1]), "answer"),
        vec!["answer[1]: 1 is not of type string"]
    );
    let closed =
        json!({"type": "object", "properties": {"a": {"type": "integer"}}, "required": ["a"]});
    assert_eq!(
        check(&document, &closed, &json!({"b": null}), "answer"),
        vec![
            "answer: required property a is missing",
            "answer.b: not in the schema"
        ]
    );
    let choice = json!({"type": "string", "enum": ["x"], "nullable": true});
    assert!(check(&document, &choice, &Value::Null, "answer").is_empty());
    assert_eq!(check(&document, &choice, &json!("y"), "answer").len(), 1);
}
