//! The stored history replayed through the guard layer: releases imported with their data and
//! given feedback are rebuilt from the store, replayed as their bundles replay, and a model in
//! the stage changes what is recommended but no pause.
#![allow(clippy::unwrap_used)]

use std::path::PathBuf;
use std::sync::{Arc, RwLock};

use vigil_analysis::learned::FEATURES;
use vigil_analysis::{Stage, StageModel};
use vigil_core::learned::{LearnedModel, MODEL_FORMAT};
use vigil_core::release::{Feedback, FeedbackKind};
use vigil_core::{Bundle, ManualClock};
use vigil_guard::history::{replay_history, HistoryReport, HistoryRequest};
use vigil_guard::import::import_bundle;
use vigil_guard::intake::Intake;
use vigil_guard::{DataIndex, Guard, GuardConfig};
use vigil_ingest::remote_write::RemoteWriteOptions;
use vigil_store::Store;

/// After the bundles' releases.
const NOW: i64 = 1_800_000_000;

fn example(name: &str) -> Bundle {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../examples/releases")
        .join(format!("{name}.json.gz"));
    Bundle::read(&path).unwrap()
}

struct History {
    store: Arc<dyn Store>,
    guard: Guard,
    intake: Intake,
}

/// A paused fault confirmed, a recommended healthy release marked a false alarm, a healthy
/// release passed unreviewed.
fn stored_history() -> History {
    let store = vigil_store::open(vigil_store::SQLITE_MEMORY).unwrap();
    let index = Arc::new(RwLock::new(DataIndex::new()));
    let intake = Intake::new(
        Arc::clone(&store),
        Arc::clone(&index),
        Arc::new(|| {}),
        RemoteWriteOptions::default(),
    );
    let guard = Guard::new(
        Arc::clone(&store),
        index,
        Arc::new(ManualClock::new(NOW)),
        GuardConfig::default(),
    );
    for name in ["pub0031", "pub0003", "pub0087"] {
        import_bundle(&intake, example(name), "ops".into(), NOW).unwrap();
    }
    for (id, kind) in [
        ("pub0031", FeedbackKind::ConfirmFault),
        ("pub0003", FeedbackKind::FalseAlarm),
    ] {
        store
            .add_feedback(&Feedback {
                release_id: id.into(),
                kind,
                note: String::new(),
                actor: "alice".into(),
                at: NOW,
                signal: None,
                onset: None,
            })
            .unwrap();
    }
    History {
        store,
        guard,
        intake,
    }
}

fn replayed(history: &History, stage: Stage) -> (HistoryReport, Vec<(usize, usize)>) {
    let mut progress = Vec::new();
    let request = HistoryRequest { app: None, stage };
    let report = replay_history(
        history.store.as_ref(),
        &history.guard,
        &history.intake,
        &request,
        |done, total| progress.push((done, total)),
    )
    .unwrap();
    (report, progress)
}

/// A model that scores every finding far below its threshold.
fn silencing_model() -> LearnedModel {
    LearnedModel {
        format: MODEL_FORMAT.to_owned(),
        features: FEATURES.iter().map(|name| (*name).to_owned()).collect(),
        mean: vec![0.0; FEATURES.len()],
        scale: vec![1.0; FEATURES.len()],
        weights: vec![0.0; FEATURES.len()],
        intercept: -10.0,
        threshold: 0.5,
        target_precision: 0.9,
    }
}

#[test]
fn stored_releases_replay_as_their_bundles_and_report_progress() {
    let history = stored_history();
    let (report, progress) = replayed(&history, Stage::default());
    assert_eq!(progress, vec![(0, 3), (1, 3), (2, 3), (3, 3)]);
    assert_eq!(report.model_version, None);
    for row in &report.releases {
        let outcome =
            vigil_analysis::replay(&example(&row.id), &vigil_analysis::Settings::default());
        assert_eq!(row.verdict, Some(outcome.verdict), "{row:?}");
        assert_eq!(row.paused_at, outcome.paused_at, "{row:?}");
        assert_eq!(row.recommended_at, outcome.recommended_at, "{row:?}");
    }
    let overall = &report.overall;
    assert_eq!(
        (overall.tp, overall.fp, overall.fn_, overall.tn),
        (1, 0, 0, 2)
    );
    assert_eq!(overall.healthy_recommended, Some(0.5));
}

#[test]
fn a_model_in_the_stage_drops_recommendations_but_no_pause() {
    let history = stored_history();
    let (funnel, _) = replayed(&history, Stage::default());
    let stage = Stage::new(
        Some(StageModel {
            version: 9,
            model: silencing_model(),
        }),
        Vec::new(),
    )
    .unwrap();
    let (with_model, _) = replayed(&history, stage);
    assert_eq!(with_model.model_version, Some(9));
    assert_eq!(funnel.overall.healthy_recommended, Some(0.5));
    assert_eq!(with_model.overall.healthy_recommended, Some(0.0));
    assert_eq!(with_model.overall.tp, funnel.overall.tp);
    assert_eq!(
        with_model.overall.delay_min_median,
        funnel.overall.delay_min_median
    );
    let paused = |report: &HistoryReport| -> Vec<Option<i64>> {
        report.releases.iter().map(|row| row.paused_at).collect()
    };
    assert_eq!(paused(&with_model), paused(&funnel));
}
