//! `vigil train` and `vigil replay --model` as a user runs them: on the repository's example
//! releases always, and on the public corpus when it sits beside the checkout (CI has it),
//! where the learned stage must meet the recommendation targets out of fold.
#![allow(clippy::unwrap_used, clippy::print_stderr)]

mod support;

use std::path::{Path, PathBuf};
use std::process::Output;

use support::{vigil, Dir};

fn examples() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples")
}

fn corpus(name: &str) -> Option<PathBuf> {
    let root = std::env::var_os("VIGIL_CORPUS")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/corpus"));
    let dir = root.join(name);
    if dir.join("labels.jsonl").is_file() {
        return Some(dir);
    }
    eprintln!(
        "\n*** SKIPPED: corpus {name} not found at {} (set VIGIL_CORPUS) ***\n",
        dir.display()
    );
    None
}

fn run_ok(args: &[&str]) -> String {
    let output: Output = vigil().args(args).output().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "vigil {args:?} failed: {stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

/// The `summary {json}` line of a replay report.
fn summary(report: &str) -> serde_json::Value {
    let line = report
        .lines()
        .find_map(|line| line.strip_prefix("summary "))
        .unwrap_or_else(|| panic!("no summary in {report}"));
    serde_json::from_str(line).unwrap()
}

/// The figures of one row of the cross-validation table: fold (`all` for pooled) and stage.
fn fold_row(report: &str, fold: &str, stage: &str) -> Vec<f64> {
    let line = report
        .lines()
        .find(|line| {
            let mut words = line.split_whitespace();
            words.next() == Some(fold) && words.next() == Some(stage)
        })
        .unwrap_or_else(|| panic!("no row {fold} {stage} in {report}"));
    line.split_whitespace()
        .skip(2)
        .map(|word| word.parse::<f64>().unwrap_or(f64::NAN))
        .collect()
}

#[test]
fn a_model_trained_on_the_examples_replays_them_with_the_same_pauses() {
    let dir = Dir::new("train-examples");
    let model = dir.0.join("model.json");
    let examples = examples();
    let report = run_ok(&[
        "train",
        examples.to_str().unwrap(),
        "--out",
        model.to_str().unwrap(),
        "--folds",
        "3",
    ]);
    assert!(report.contains("cross-validation, 3 folds"), "{report}");
    let written: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&model).unwrap()).unwrap();
    assert_eq!(written["model"]["format"], "vigil-model/1");
    assert_eq!(
        written["scores"][0]["on"],
        "held-out: 3-fold cross-validation of ".to_owned() + examples.to_str().unwrap()
    );
    assert!(
        written["model"]["threshold"].as_f64().unwrap() > 0.0,
        "{written}"
    );

    let funnel = summary(&run_ok(&[
        "replay",
        examples.to_str().unwrap(),
        "--out",
        dir.0.join("funnel.jsonl").to_str().unwrap(),
    ]));
    let learned = summary(&run_ok(&[
        "replay",
        examples.to_str().unwrap(),
        "--model",
        model.to_str().unwrap(),
        "--out",
        dir.0.join("learned.jsonl").to_str().unwrap(),
    ]));
    for key in ["tp", "fp", "fn", "tn", "delay_min_median"] {
        assert_eq!(funnel[key], learned[key], "{key}: {funnel} / {learned}");
    }
    assert!(
        learned["healthy_recommended"].as_f64().unwrap()
            <= funnel["healthy_recommended"].as_f64().unwrap(),
        "{funnel} / {learned}"
    );
}

#[test]
fn a_model_of_other_features_is_refused_by_name() {
    let dir = Dir::new("train-refused");
    let model = dir.0.join("model.json");
    std::fs::write(
        &model,
        r#"{"format":"vigil-model/1","features":["cpu"],"mean":[0],"scale":[1],"weights":[1],
            "intercept":0,"threshold":0.5,"target_precision":0.7}"#,
    )
    .unwrap();
    let output = vigil()
        .args(["replay", examples().to_str().unwrap(), "--out", "-"])
        .arg("--model")
        .arg(&model)
        .output()
        .unwrap();
    assert!(!output.status.success());
    let error = String::from_utf8_lossy(&output.stderr);
    assert!(error.contains("model features"), "{error}");
    assert!(error.contains("train a new model"), "{error}");
}

/// The acceptance figures: trained on four folds of the public corpus and replayed on the
/// fifth, the learned stage keeps precision and recall and recommends at least 60 % of the
/// anomalies while fewer than 10 % of the healthy releases get a recommendation.
#[test]
fn out_of_fold_the_learned_stage_meets_the_recommendation_targets_on_the_public_corpus() {
    let Some(public) = corpus("public") else {
        return;
    };
    let dir = Dir::new("train-public");
    let model = dir.0.join("model.json");
    let report = run_ok(&[
        "train",
        public.to_str().unwrap(),
        "--out",
        model.to_str().unwrap(),
    ]);
    eprintln!("{report}");
    // releases, precision, recall, anomaly rec, healthy rec, rec precision
    let funnel = fold_row(&report, "all", "funnel");
    let learned = fold_row(&report, "all", "learned");
    assert_eq!(funnel[..3], learned[..3], "{report}");
    assert!(
        learned[3] >= 0.60,
        "anomalies recommended {}: {report}",
        learned[3]
    );
    assert!(
        learned[4] < 0.10,
        "false recommendations {}: {report}",
        learned[4]
    );
    for fold in ["1", "2", "3", "4", "5"] {
        let fold_funnel = fold_row(&report, fold, "funnel");
        let fold_learned = fold_row(&report, fold, "learned");
        assert_eq!(fold_funnel[..3], fold_learned[..3], "fold {fold}: {report}");
    }

    let replayed = summary(&run_ok(&[
        "replay",
        public.to_str().unwrap(),
        "--model",
        model.to_str().unwrap(),
        "--out",
        dir.0.join("learned.jsonl").to_str().unwrap(),
    ]));
    assert_eq!(replayed["fn"], 0, "{replayed}");
    assert!(
        replayed["healthy_recommended"].as_f64().unwrap() < 0.10,
        "{replayed}"
    );
    assert!(
        replayed["anomaly_recommended"].as_f64().unwrap() >= 0.60,
        "{replayed}"
    );

    // The file carries its cross-validated scores: imported, it passes the promotion gate
    // against the funnel on them (its recommendations' precision and F1 rose, pauses held).
    let database_path = dir.0.join("vigil.db");
    let database = database_path.to_str().unwrap();
    run_ok(&[
        "model",
        "import",
        model.to_str().unwrap(),
        "--database",
        database,
    ]);
    let promoted = run_ok(&["model", "promote", "1", "--database", database]);
    assert!(promoted.contains("promoted model v1"), "{promoted}");
}
