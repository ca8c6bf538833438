use std::path::Path;

use super::*;

fn label(id: &str, kind: &str) -> Label {
    Label {
        id: id.to_owned(),
        label: kind.to_owned(),
        cause: None,
        onset: None,
        confounders: None,
    }
}

/// A trace whose one candidate per step has feature 0 at `level` (the others zero).
fn synthetic(id: &str, kind: &str, level: f64, steps: usize) -> Trace {
    let mut features = vec![0.0; learned::FEATURES.len()];
    features[0] = level;
    Trace {
        label: label(id, kind),
        paused_at: None,
        steps: vec![vec![features]; steps],
    }
}

/// Anomalies stand out on feature 0, healthy releases do not; a few of each cross over.
fn separable() -> Vec<Trace> {
    let mut traces = Vec::new();
    for index in 0..60 {
        let noise = (index % 7) as f64 * 0.1;
        traces.push(synthetic(&format!("a{index}"), "anomaly", 2.0 + noise, 3));
        traces.push(synthetic(&format!("h{index}"), "healthy", 0.3 + noise, 2));
    }
    traces.push(synthetic("a-low", "anomaly", 0.4, 1));
    traces.push(synthetic("h-high", "healthy", 2.2, 1));
    traces
}

#[test]
fn a_fitted_model_ranks_what_mattered_above_what_did_not() {
    let traces = separable();
    let trained = train(&traces, &TrainOptions::default(), &["synthetic".to_owned()]).unwrap();
    let model = &trained.model;
    assert!(model.weights[0] > 0.0, "{model:?}");
    let high = &traces[0].steps[0][0];
    let low = &traces[1].steps[0][0];
    assert!(model.probability(high) > model.threshold, "{model:?}");
    assert!(model.probability(low) < model.threshold, "{model:?}");
    assert_eq!(trained.training.releases, traces.len());
    assert_eq!(trained.training.examples, 60 * 3 + 60 * 2 + 2);
    assert_eq!(trained.training.positives, 60 * 3 + 1);
}

#[test]
fn the_model_cuts_false_recommendations_the_funnel_makes() {
    let traces = separable();
    let options = TrainOptions {
        target_precision: 0.95,
        ..TrainOptions::default()
    };
    let trained = train(&traces, &options, &[]).unwrap();
    let funnel = evaluate(&traces, None, "all");
    let learned = evaluate(&traces, Some(&trained.model), "all");
    assert_eq!(funnel.healthy_recommended, Some(1.0));
    assert!(learned.healthy_recommended.unwrap() < 0.05, "{learned:?}");
    assert!(learned.anomaly_recommended.unwrap() > 0.95, "{learned:?}");
    assert!(
        learned.recommendation_precision.unwrap() >= 0.95,
        "{learned:?}"
    );
}

#[test]
fn one_class_or_no_example_is_refused_clearly() {
    let only_healthy = vec![
        synthetic("h1", "healthy", 1.0, 2),
        synthetic("h2", "healthy", 2.0, 2),
    ];
    assert_eq!(
        train(&only_healthy, &TrainOptions::default(), &[]).unwrap_err(),
        LearnError::OneClass("only healthy releases")
    );
    let silent = vec![synthetic("h1", "healthy", 1.0, 0)];
    assert_eq!(
        train(&silent, &TrainOptions::default(), &[]).unwrap_err(),
        LearnError::NoExamples
    );
}

#[test]
fn folds_are_stable_and_balanced() {
    assert_eq!(fold_of("pub0001", 5), fold_of("pub0001", 5));
    let mut counts = [0usize; 5];
    for index in 0..1000 {
        counts[fold_of(&format!("pub{index:04}"), 5)] += 1;
    }
    assert!(
        counts.iter().all(|count| (150..250).contains(count)),
        "{counts:?}"
    );
}

#[test]
fn cross_validation_reports_every_fold_against_the_funnel() {
    let reports = cross_validate(&separable(), &TrainOptions::default(), 5);
    assert_eq!(reports.len(), 5);
    let held_out: usize = reports.iter().map(|report| report.learned.releases).sum();
    assert_eq!(held_out, separable().len());
    for report in &reports {
        assert_eq!(report.funnel.releases, report.learned.releases);
        assert!(report.model.is_ok(), "{report:?}");
    }
}

/// What a trace decides with a model is what replaying the release with that model's stage
/// decides, on the repository's example releases: the trace is a faithful shortcut.
#[test]
fn a_trace_decides_as_a_replay_with_the_stage_does() {
    let folder = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples");
    let labels_text = std::fs::read_to_string(folder.join("labels.jsonl")).unwrap();
    let labels = score::parse_labels(&labels_text).unwrap();
    let settings = Settings::default();
    let mut traces = Vec::new();
    let mut bundles = Vec::new();
    for label in labels {
        let bundle = Bundle::read(&folder.join(format!("releases/{}.json.gz", label.id))).unwrap();
        traces.push(trace(&bundle, label, &settings));
        bundles.push(bundle);
    }
    assert!(traces.iter().any(|trace| !trace.steps.is_empty()));
    // A model that keeps findings with a large effect only: some kept, some set aside.
    let mut model = LearnedModel {
        format: MODEL_FORMAT.to_owned(),
        features: learned::FEATURES
            .iter()
            .map(|name| (*name).to_owned())
            .collect(),
        mean: vec![0.0; learned::FEATURES.len()],
        scale: vec![1.0; learned::FEATURES.len()],
        weights: vec![0.0; learned::FEATURES.len()],
        intercept: 0.0,
        threshold: 0.5,
        target_precision: 0.6,
    };
    // Index 2 is the size of the change.
    model.weights[2] = 4.0;
    model.intercept = -4.0 * 0.2_f64.ln_1p();
    let stage = stage_of(&model, 7).unwrap();
    for (bundle, trace) in bundles.iter().zip(&traces) {
        for candidate in [None, Some(&model)] {
            let replayed = match candidate {
                None => vigil_analysis::replay(bundle, &settings),
                Some(_) => vigil_analysis::replay_staged(bundle, &settings, &stage, |_| {}),
            };
            let decided = decide(trace, candidate);
            assert_eq!(decided.paused_at, replayed.paused_at, "{}", bundle.id);
            let replayed_verdict = match replayed.verdict {
                Verdict::Fault | Verdict::Anomaly => replayed.verdict,
                _ => Verdict::Healthy,
            };
            assert_eq!(decided.verdict, replayed_verdict, "{}", bundle.id);
        }
    }
}

/// A guard judges only the newest step at each pass and may skip steps when it falls behind:
/// catching the tally up counts as judging every step does.
#[test]
fn a_tally_caught_up_in_jumps_counts_as_one_kept_at_every_step() {
    let folder = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/releases");
    let settings = Settings::default();
    let mut compared = 0;
    for entry in std::fs::read_dir(folder).unwrap() {
        let bundle = Bundle::read(&entry.unwrap().path()).unwrap();
        let evaluator = vigil_analysis::Evaluator::new(&bundle, &settings);
        let Some(first) = evaluator.first_step() else {
            continue;
        };
        let last = evaluator.points() - 1;
        let mut every_step = Tally::default();
        for now in first..=last {
            every_step.catch_up(&evaluator, now);
        }
        let mut in_jumps = Tally::default();
        let mut now = first + 2;
        while now < last {
            in_jumps.catch_up(&evaluator, now);
            now += 7;
        }
        let newest = in_jumps.catch_up(&evaluator, last);
        assert_eq!(newest, evaluator.judge_at(last), "{}", bundle.id);
        assert_eq!(in_jumps, every_step, "{}", bundle.id);
        assert_eq!(every_step.steps(), last - first + 1, "{}", bundle.id);
        compared += 1;
    }
    assert!(compared >= 10, "{compared}");
}
