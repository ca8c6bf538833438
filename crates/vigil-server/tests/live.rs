//! The live path end to end: a recorded fault release fed step by step through the ingestion
//! API to a server with a test clock pauses at the step `vigil replay` pauses at.

#![allow(clippy::unwrap_used, clippy::print_stdout)]

mod support;

use serde_json::json;
use support::{examples_dir, TestServer};
use vigil_core::learned::{LearnedModel, MODEL_FORMAT};
use vigil_core::{Bundle, HostGroup};

/// Log lines that fall into template `text` (variables filled in), with a level header.
fn line_for(text: &str, level: &str, serial: usize) -> String {
    let filled = text.replace("<*>", &format!("{}", 1000 + serial % 7919));
    format!("2024-01-01 00:00:00,000 {level} [main] {filled}")
}

/// What a release fed live showed: the time of its pause and of its first recommendation.
#[derive(Debug, Default, PartialEq)]
struct Fed {
    paused_at: Option<i64>,
    recommended_at: Option<i64>,
}

/// Feeds `bundle` to a fresh server step by step and returns the time of the pause, if any.
fn feed(bundle: &Bundle) -> Option<i64> {
    feed_with(bundle, None).paused_at
}

/// Feeds `bundle` to a fresh server, with `model` promoted in its store, step by step.
fn feed_with(bundle: &Bundle, model: Option<&LearnedModel>) -> Fed {
    let server = TestServer::start(bundle.start);
    if let Some(model) = model {
        let store = &server.state.store;
        let version = store
            .add_model(&vigil_store::NewModel {
                created_at: bundle.start,
                created_by: "trainer".to_owned(),
                model: model.clone(),
                training: vigil_core::TrainingSet::default(),
                scores: Vec::new(),
                note: String::new(),
            })
            .unwrap();
        store.promote_model(version, "admin", bundle.start).unwrap();
    }
    let mut fed = Fed::default();
    let release_hosts: Vec<&str> = bundle
        .hosts
        .iter()
        .filter(|host| host.group == HostGroup::Release)
        .map(|host| host.name.as_str())
        .collect();
    let reference: Vec<&str> = bundle
        .hosts
        .iter()
        .filter(|host| host.group == HostGroup::Reference)
        .map(|host| host.name.as_str())
        .collect();
    let batches: Vec<_> = bundle
        .batches
        .iter()
        .map(|batch| json!({ "hosts": batch.hosts }))
        .collect();
    let reference_spec = if reference.is_empty() {
        json!({ "type": "none" })
    } else {
        json!({ "type": "hosts", "hosts": reference })
    };
    let (status, created) = server.post(
        "/api/v1/releases",
        &server.admin,
        &json!({
            "id": bundle.id,
            "app": bundle.app,
            "version": "2",
            "hosts": release_hosts,
            "reference": reference_spec,
            "batches": batches,
            "step_seconds": bundle.step_seconds,
            "observe_seconds": 86_400,
            "metrics": bundle.metrics,
        }),
    );
    assert_eq!(status, 201, "{created}");
    let mut reported = 0;
    let mut serial = 0;
    for step in 0..bundle.points {
        let at = bundle.time_of(step);
        server.clock.set(at);
        while reported < bundle.batches.len() && bundle.batches[reported].at <= at {
            let batch = &bundle.batches[reported];
            let (status, answer) = server.post(
                &format!(
                    "/api/v1/releases/{}/batches/{}/deployed",
                    bundle.id, batch.index
                ),
                &server.admin,
                &json!({ "at": batch.at }),
            );
            assert_eq!(status, 200, "{answer}");
            reported += 1;
        }
        // Log lines first: a step whose every series has reported is judged at once, and its
        // log counts must be in by then.
        let mut lines = Vec::new();
        for template in &bundle.logs.templates {
            let Some(by_host) = bundle.logs.counts.get(&template.id) else {
                continue;
            };
            for (host, values) in by_host {
                let count = values[step].unwrap_or(0.0).round() as usize;
                for _ in 0..count {
                    serial += 1;
                    lines.push(json!({
                        "host": host, "app": bundle.app, "time": at,
                        "line": line_for(&template.text, &template.level, serial),
                    }));
                }
            }
        }
        if !lines.is_empty() {
            let (status, answer) = server.post(
                "/api/v1/ingest/logs",
                &server.ingest,
                &json!({ "lines": lines, "key": format!("logs-{step}") }),
            );
            assert_eq!(status, 200, "{answer}");
        }
        let mut samples = Vec::new();
        for (metric, by_host) in &bundle.series {
            for (host, values) in by_host {
                if let Some(value) = values[step] {
                    samples.push(json!({
                        "host": host, "app": bundle.app, "metric": metric,
                        "time": at, "value": value,
                    }));
                }
            }
        }
        let (status, answer) = server.post(
            "/api/v1/ingest/samples",
            &server.ingest,
            &json!({ "samples": samples, "key": format!("step-{step}") }),
        );
        assert_eq!(status, 200, "{answer}");
        // Past the grace time, the step is judged whether or not every series reported.
        server
            .clock
            .set(at + server.state.guard.config().grace_seconds);
        server.state.guard.pass().expect("a guard pass");
        let (_, release) = server.get(&format!("/api/v1/releases/{}", bundle.id), &server.viewer);
        let (_, findings) = server.get(
            &format!("/api/v1/releases/{}/findings", bundle.id),
            &server.viewer,
        );
        if release["state"] == "paused" {
            fed.paused_at = findings["latest"]["at"].as_i64();
            return fed;
        }
        let recommends = findings["latest"]["findings"]
            .as_array()
            .is_some_and(|list| list.iter().any(|finding| finding["severity"] == "anomaly"));
        if recommends && fed.recommended_at.is_none() {
            fed.recommended_at = findings["latest"]["at"].as_i64();
        }
    }
    fed
}

#[test]
fn recorded_releases_fed_live_pause_when_replay_does() {
    let mut paths: Vec<_> = std::fs::read_dir(examples_dir().join("releases"))
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .collect();
    paths.sort();
    assert!(paths.len() >= 10, "the example bundles are missing");
    let mut pauses = 0;
    for path in paths {
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        let bundle = Bundle::read(&path).unwrap();
        let replayed = vigil_analysis::replay(&bundle, &vigil_analysis::Settings::default());
        let live = feed(&bundle);
        println!(
            "{name}: replay paused at {:?}, live paused at {live:?}",
            replayed.paused_at
        );
        assert_eq!(live, replayed.paused_at, "{name}");
        pauses += usize::from(live.is_some());
    }
    assert!(pauses >= 5, "too few of the examples paused: {pauses}");
}

/// A promoted model applied by the live guard sets aside the recommendations a replay with it
/// sets aside, at the same steps: it keeps a recommendation only once its signal was
/// recommended at three steps, which the guard counts as a replay does.
#[test]
fn a_promoted_model_recommends_live_when_replay_with_it_does() {
    let features = vigil_analysis::learned::FEATURES;
    let mut model = LearnedModel {
        format: MODEL_FORMAT.to_owned(),
        features: features.iter().map(|name| (*name).to_owned()).collect(),
        mean: vec![0.0; features.len()],
        scale: vec![1.0; features.len()],
        weights: vec![0.0; features.len()],
        intercept: 0.0,
        threshold: 0.5,
        target_precision: 0.7,
    };
    // Feature 0 is ln(1 + steps recommended): positive from the third step on.
    assert_eq!(features[0], "log_steps_recommended");
    model.weights[0] = 10.0;
    model.intercept = -10.0 * 2.5_f64.ln_1p();
    let stage = vigil_analysis::Stage::new(
        Some(vigil_analysis::StageModel {
            version: 1,
            model: model.clone(),
        }),
        Vec::new(),
    )
    .unwrap();
    let settings = vigil_analysis::Settings::default();
    let mut compared = 0;
    for name in ["pub0003", "pub0077", "pub0104", "pub0183", "pub0217"] {
        let bundle =
            Bundle::read(&examples_dir().join(format!("releases/{name}.json.gz"))).unwrap();
        let funnel = vigil_analysis::replay(&bundle, &settings);
        let staged = vigil_analysis::replay_staged(&bundle, &settings, &stage, |_| {});
        let live = feed_with(&bundle, Some(&model));
        println!(
            "{name}: replay recommended at {:?} (funnel alone {:?}), live at {:?}",
            staged.recommended_at, funnel.recommended_at, live.recommended_at
        );
        assert_eq!(live.paused_at, staged.paused_at, "{name}");
        assert_eq!(live.recommended_at, staged.recommended_at, "{name}");
        compared += usize::from(funnel.recommended_at.is_some());
    }
    assert!(
        compared >= 2,
        "too few of the examples recommend: {compared}"
    );
}
