//! The models through the API and the page: viewers list them, only admins promote and roll
//! back; the API's promotion is the gate on stored held-out scores (refused with both sets
//! of figures when a figure falls beyond the tolerance, or when there are none to judge by);
//! rollbacks walk the promotions back to the funnel alone; `/models` shows each model beside
//! the funnel.
#![allow(clippy::unwrap_used)]

mod support;

use serde_json::json;
use support::{request, PageClient, TestServer};
use vigil_analysis::learned::FEATURES;
use vigil_analysis::promotion::{baseline_on, held_out, Baseline};
use vigil_core::learned::{LearnedModel, ModelScores, TrainingSet, MODEL_FORMAT};
use vigil_store::NewModel;

const NOW: i64 = 1_700_000_000;

fn scores(on: &str, anomalies_recommended: f64, false_recommendations: f64) -> ModelScores {
    ModelScores {
        on: on.to_owned(),
        releases: 60,
        precision: 0.962,
        recall: 1.0,
        f1: 0.98,
        anomaly_recommended: Some(anomalies_recommended),
        healthy_recommended: Some(false_recommendations),
        recommendation_precision: Some(0.6),
        delay_min_median: Some(4.0),
    }
}

fn new_model(note: &str, scores: Vec<ModelScores>) -> NewModel {
    NewModel {
        created_at: NOW - 3_600,
        created_by: "trainer".to_owned(),
        model: LearnedModel {
            format: MODEL_FORMAT.to_owned(),
            features: FEATURES.iter().map(|name| (*name).to_owned()).collect(),
            mean: vec![0.0; FEATURES.len()],
            scale: vec![1.0; FEATURES.len()],
            weights: vec![0.1; FEATURES.len()],
            intercept: -0.5,
            threshold: 0.35,
            target_precision: 0.8,
        },
        training: TrainingSet {
            sources: vec!["corpus/public".to_owned()],
            releases: 240,
            examples: 800,
            positives: 120,
        },
        scores,
        note: note.to_owned(),
    }
}

fn post(
    server: &TestServer,
    path: &str,
    token: &str,
    body: Option<serde_json::Value>,
) -> (u16, serde_json::Value) {
    request(
        &server.base,
        "POST",
        path,
        token,
        body.map(|value| value.to_string().into_bytes()),
    )
}

#[test]
fn only_admins_promote_through_the_stored_scores_gate_and_roll_back() {
    let server = TestServer::start(NOW);
    let store = &server.state.store;
    let folder = "corpus/held-out";
    // v1 lowers false recommendations and keeps the anomalies; v2 loses anomalies; v3 has
    // no held-out replay.
    let keeps = store
        .add_model(&new_model(
            "keeps the anomalies",
            vec![
                scores(&held_out(folder), 0.60, 0.08),
                scores(&baseline_on(Baseline::Funnel, folder), 0.605, 0.27),
            ],
        ))
        .unwrap();
    let loses = store
        .add_model(&new_model(
            "loses anomalies",
            vec![
                scores(&held_out(folder), 0.40, 0.02),
                scores(&baseline_on(Baseline::Funnel, folder), 0.605, 0.27),
            ],
        ))
        .unwrap();
    let unscored = store.add_model(&new_model("", Vec::new())).unwrap();
    assert_eq!((keeps, loses, unscored), (1, 2, 3));

    let (status, listed) = server.get("/api/v1/models", &server.viewer);
    assert_eq!(status, 200, "{listed}");
    assert_eq!(listed["models"][0]["version"], 3);
    assert_eq!(listed["models"][2]["state"], "candidate");
    assert_eq!(
        listed["models"][2]["scores"][1]["on"],
        "funnel on held-out: corpus/held-out"
    );
    assert_eq!(listed["promotions"], json!([]));

    for token in [&server.viewer, &server.operator] {
        let (status, _) = post(&server, "/api/v1/models/1/promote", token, None);
        assert_eq!(status, 403);
        let (status, _) = post(&server, "/api/v1/models/rollback", token, None);
        assert_eq!(status, 403);
    }
    let admin = &server.admin;
    let (status, refused) = post(&server, "/api/v1/models/2/promote", admin, None);
    assert_eq!(status, 409, "{refused}");
    let message = refused["error"].as_str().unwrap();
    assert!(message.contains("model v2 is not promoted"), "{message}");
    assert!(
        message.contains("anomalies recommended 0.605 -> 0.400,"),
        "{message}"
    );
    assert!(message.contains("(fell)"), "{message}");
    assert!(
        message.contains("false recommendations 0.270 -> 0.020"),
        "{message}"
    );
    // A wider tolerance lets the same fall through.
    let (status, answer) = post(
        &server,
        "/api/v1/models/2/promote",
        admin,
        Some(json!({"tolerance": 1.5})),
    );
    assert_eq!(status, 400, "{answer}");
    assert!(
        answer["error"].as_str().unwrap().starts_with("tolerance:"),
        "{answer}"
    );
    let (status, answer) = post(
        &server,
        "/api/v1/models/2/promote",
        admin,
        Some(json!({"tolerence": 0.5})),
    );
    assert_eq!(status, 400, "{answer}");
    assert!(
        answer["error"].as_str().unwrap().contains("tolerence"),
        "{answer}"
    );
    let (status, answer) = post(&server, "/api/v1/models/3/promote", admin, None);
    assert_eq!(status, 409, "{answer}");
    assert!(
        answer["error"]
            .as_str()
            .unwrap()
            .contains("model v3 carries no held-out scores against the funnel"),
        "{answer}"
    );
    let (status, _) = post(&server, "/api/v1/models/99/promote", admin, None);
    assert_eq!(status, 404);
    let (status, _) = post(&server, "/api/v1/models/v1/promote", admin, None);
    assert_eq!(status, 400);

    let (status, promoted) = post(&server, "/api/v1/models/1/promote", admin, None);
    assert_eq!(status, 200, "{promoted}");
    assert_eq!(promoted["state"], "promoted");
    assert_eq!(promoted["promoted_at"], NOW);
    assert_eq!(store.promoted_model().unwrap().unwrap().version, 1);
    let (status, again) = post(&server, "/api/v1/models/1/promote", admin, None);
    assert_eq!(status, 409, "{again}");
    // Against v1 now: v2's rows compare it with the funnel, v1's own held-out row counts.
    let (status, answer) = post(
        &server,
        "/api/v1/models/2/promote",
        admin,
        Some(json!({"tolerance": 0.3})),
    );
    assert_eq!(status, 200, "{answer}");

    let (status, rolled) = post(&server, "/api/v1/models/rollback", admin, None);
    assert_eq!(status, 200, "{rolled}");
    assert_eq!(rolled["retired"]["version"], 2);
    assert_eq!(rolled["promoted"]["version"], 1);
    let (status, rolled) = post(&server, "/api/v1/models/rollback", admin, None);
    assert_eq!(status, 200, "{rolled}");
    assert_eq!(rolled["retired"]["version"], 1);
    assert_eq!(rolled["promoted"], serde_json::Value::Null);
    let (status, nothing) = post(&server, "/api/v1/models/rollback", admin, None);
    assert_eq!(status, 409, "{nothing}");
    assert_eq!(
        nothing["error"],
        "no model is promoted: there is nothing to roll back"
    );

    let (_, listed) = server.get("/api/v1/models", &server.viewer);
    let actions: Vec<(i64, &str)> = listed["promotions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|entry| {
            (
                entry["version"].as_i64().unwrap(),
                entry["action"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        actions,
        [
            (1, "promoted"),
            (2, "promoted"),
            (2, "rolled_back"),
            (1, "restored"),
            (1, "rolled_back")
        ]
    );
}

#[test]
fn the_models_page_shows_each_model_beside_the_funnel() {
    let server = TestServer::start(NOW);
    let store = &server.state.store;
    let mut client = PageClient::new(&server.base);
    assert_eq!(
        client.get("/models").status,
        303,
        "no session: sent to sign in"
    );
    client.sign_in(&server.viewer);
    let empty = client.get("/models");
    assert_eq!(empty.status, 200);
    assert!(
        empty
            .body
            .contains("No model is promoted: the guard runs the funnel alone."),
        "{}",
        empty.body
    );
    assert!(empty.body.contains("No model yet."));
    assert!(
        empty
            .body
            .contains("<a href=\"/models\" aria-current=\"page\">Models</a>"),
        "{}",
        empty.body
    );

    let folder = "corpus/<held-out>";
    store
        .add_model(&new_model(
            "trained on <four> folds",
            vec![
                scores(&held_out(folder), 0.60, 0.08),
                scores(&baseline_on(Baseline::Funnel, folder), 0.605, 0.27),
            ],
        ))
        .unwrap();
    store.promote_model(1, "alice", NOW).unwrap();
    let page = client.get("/models");
    assert_eq!(page.status, 200);
    let body = &page.body;
    assert!(
        body.contains("The guard applies model v1, promoted"),
        "{body}"
    );
    assert!(body.contains("promoted: the guard applies it"), "{body}");
    assert!(
        body.contains("corpus/public: 240 releases, 800 findings (120 that mattered)"),
        "{body}"
    );
    assert!(body.contains("trained on &lt;four&gt; folds"), "{body}");
    assert!(
        body.contains("<th scope=\"row\">held-out: corpus/&lt;held-out&gt;</th>"),
        "{body}"
    );
    assert!(
        body.contains("<th scope=\"row\">funnel on held-out: corpus/&lt;held-out&gt;</th>"),
        "{body}"
    );
    assert!(body.contains("<td>0.080</td>"), "{body}");
    assert!(body.contains("<td>0.270</td>"), "{body}");
    assert!(body.contains("<td>alice</td>"), "{body}");
}
