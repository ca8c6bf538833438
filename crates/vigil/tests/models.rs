//! `vigil model` as people run it: a model file imported as a candidate (a model of other
//! features refused), listed, promoted through the gate on held-out labelled releases (a
//! model that sets every recommendation aside refused with both sets of figures, one that
//! keeps them promoted), shown with its promotions, and rolled back down to the funnel alone.
//! On SQLite, and on PostgreSQL when `VIGIL_TEST_POSTGRES` names a server.
#![allow(clippy::unwrap_used, clippy::print_stdout)]

mod support;

use std::ffi::OsStr;
use std::path::{Path, PathBuf};

use support::{scratch_postgres, vigil, Dir};

/// The held-out releases: a fault, two anomalies and three healthy releases of the examples.
const HELD_OUT: &[&str] = &[
    "nab013", "pub0003", "pub0031", "pub0077", "pub0087", "pub0217",
];

/// Their labels, written for this test.
const LABELS: &str = r#"{"id": "nab013", "label": "healthy", "cause": null, "onset": null, "metrics": [], "confounders": []}
{"id": "pub0003", "label": "healthy", "cause": null, "onset": null, "metrics": [], "confounders": ["global_surge"]}
{"id": "pub0031", "label": "fault", "cause": "latency_up", "onset": 1716469920, "metrics": ["http.rt_ms"], "confounders": []}
{"id": "pub0077", "label": "anomaly", "cause": "minor_latency", "onset": 1714278480, "metrics": ["http.rt_ms"], "confounders": []}
{"id": "pub0087", "label": "healthy", "cause": null, "onset": null, "metrics": [], "confounders": ["reference_glitch"]}
{"id": "pub0217", "label": "anomaly", "cause": "rare_exception", "onset": 1711231680, "metrics": [], "confounders": []}
"#;

fn examples() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/releases")
}

/// A corpus folder of the held-out releases with their labels.
fn held_out_corpus(dir: &Path) -> PathBuf {
    let corpus = dir.join("held-out");
    std::fs::create_dir_all(corpus.join("releases")).unwrap();
    for id in HELD_OUT {
        let name = format!("{id}.json.gz");
        std::fs::copy(examples().join(&name), corpus.join("releases").join(&name)).unwrap();
    }
    std::fs::write(corpus.join("labels.jsonl"), LABELS).unwrap();
    corpus
}

/// A model file as `vigil train --out` writes it: one weight on the effect's size, the
/// rest zero, and `threshold` (1 sets every recommendation aside, 0 none).
fn model_file(features: &[&str], threshold: f64, note: &str) -> serde_json::Value {
    let zeros = vec![0.0; features.len()];
    let mut weights = zeros.clone();
    weights[0] = 0.5;
    serde_json::json!({
        "model": {
            "format": "vigil-model/1",
            "features": features,
            "mean": zeros,
            "scale": vec![1.0; features.len()],
            "weights": weights,
            "intercept": 0.0,
            "threshold": threshold,
            "target_precision": 0.8
        },
        "training": {"sources": ["corpus/public"], "releases": 240, "examples": 900, "positives": 130},
        "scores": [],
        "note": note
    })
}

/// Runs `vigil model ARGS --database DATABASE`: its exit code and output.
fn model_command(database: &str, args: &[&str]) -> (i32, String) {
    let output = vigil()
        .arg("model")
        .args(args)
        .arg("--database")
        .arg(OsStr::new(database))
        .env("USER", "alice")
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.code().unwrap_or(-1), text)
}

fn models_are_imported_promoted_through_the_gate_and_rolled_back(database: &str, dir: &Path) {
    let features = vigil_analysis::learned::FEATURES;
    let corpus = held_out_corpus(dir);
    let corpus_arg = corpus.to_str().unwrap();
    let write = |name: &str, value: serde_json::Value| {
        let path = dir.join(name);
        std::fs::write(&path, value.to_string()).unwrap();
        path.to_str().unwrap().to_owned()
    };
    let silent = write("silent.json", model_file(features, 1.0, "sets all aside"));
    let keeping = write("keeping.json", model_file(features, 0.0, "keeps all"));
    let stale = write(
        "stale.json",
        model_file(&features[..features.len() - 1], 0.0, ""),
    );

    let (code, said) = model_command(database, &["import", &stale]);
    assert_eq!(code, 1, "{said}");
    assert!(said.contains("cannot be applied by this build"), "{said}");
    assert!(said.contains("train a new model"), "{said}");
    let (code, said) = model_command(database, &["import", &silent]);
    assert_eq!(code, 0, "{said}");
    assert!(said.contains("imported model v1 as a candidate"), "{said}");
    let (code, said) = model_command(database, &["import", &keeping, "--note", "the keeper"]);
    assert_eq!(code, 0, "{said}");
    assert!(said.contains("imported model v2"), "{said}");

    let (code, listed) = model_command(database, &["list"]);
    assert_eq!(code, 0, "{listed}");
    let lines: Vec<&str> = listed.lines().collect();
    assert_eq!(lines.len(), 3, "{listed}");
    assert!(
        lines[1].trim_start().starts_with("v2  candidate"),
        "{listed}"
    );
    assert!(lines[2].contains("alice"), "{listed}");
    assert!(
        lines[2].contains("corpus/public (240 releases, 900 examples)"),
        "{listed}"
    );

    // Without held-out scores there is nothing to judge it on.
    let (code, said) = model_command(database, &["promote", "2"]);
    assert_eq!(code, 1, "{said}");
    assert!(
        said.contains("model v2 carries no held-out scores against the funnel"),
        "{said}"
    );

    // Setting every recommendation aside loses the anomalies: refused, both figures named.
    let (code, said) = model_command(database, &["promote", "1", "--corpus", corpus_arg]);
    assert_eq!(code, 1, "{said}");
    assert!(said.contains("model v1 is not promoted"), "{said}");
    assert!(
        said.contains("anomalies recommended 1.000 -> 0.000,"),
        "{said}"
    );
    assert!(said.contains("-> 0.000 (fell)"), "{said}");
    assert!(said.contains("funnel -> candidate"), "{said}");
    let (_, listed) = model_command(database, &["list"]);
    assert!(!listed.contains("promoted"), "{listed}");

    let (code, said) = model_command(database, &["promote", "2", "--corpus", corpus_arg]);
    assert_eq!(code, 0, "{said}");
    assert!(said.contains("promoted model v2"), "{said}");
    let (_, listed) = model_command(database, &["list"]);
    let promoted_line = listed
        .lines()
        .find(|line| line.contains("promoted"))
        .unwrap();
    assert!(promoted_line.trim_start().starts_with("v2"), "{listed}");
    // Precision 1, recall 1 (the fault paused), every anomaly and some healthy recommended.
    assert!(promoted_line.contains("1.000  1.000"), "{listed}");
    assert!(
        promoted_line.contains(&format!("held-out: {corpus_arg}")),
        "{listed}"
    );

    let (code, shown) = model_command(database, &["show", "2"]);
    assert_eq!(code, 0, "{shown}");
    let record: serde_json::Value = serde_json::from_str(&shown).unwrap();
    assert_eq!(record["state"], "promoted");
    assert_eq!(record["note"], "the keeper");
    let on: Vec<&str> = record["scores"]
        .as_array()
        .unwrap()
        .iter()
        .map(|row| row["on"].as_str().unwrap())
        .collect();
    assert_eq!(
        on,
        [
            format!("held-out: {corpus_arg}"),
            format!("funnel on held-out: {corpus_arg}")
        ]
    );
    assert_eq!(record["promotions"][0]["action"], "promoted");
    assert_eq!(record["promotions"][0]["by"], "alice");

    // Model 1's stored scores were against the funnel, not against v2.
    let (code, said) = model_command(database, &["promote", "1"]);
    assert_eq!(code, 1, "{said}");
    assert!(said.contains("against the current v2"), "{said}");

    let (code, said) = model_command(database, &["rollback"]);
    assert_eq!(code, 0, "{said}");
    assert!(
        said.contains(
            "rolled back model v2; no model is promoted: the guard runs the funnel alone"
        ),
        "{said}"
    );
    let (code, said) = model_command(database, &["rollback"]);
    assert_eq!(code, 1, "{said}");
    assert!(said.contains("nothing to roll back"), "{said}");
    let (code, said) = model_command(database, &["show", "9"]);
    assert_eq!(code, 1, "{said}");
    assert!(said.contains("no model version 9"), "{said}");
}

#[test]
fn models_on_sqlite() {
    let dir = Dir::new("models");
    let database = dir.0.join("vigil.db");
    models_are_imported_promoted_through_the_gate_and_rolled_back(
        database.to_str().unwrap(),
        &dir.0,
    );
}

#[test]
fn models_on_postgres() {
    let Some(scratch) = scratch_postgres("the models test") else {
        return;
    };
    let dir = Dir::new("models-postgres");
    models_are_imported_promoted_through_the_gate_and_rolled_back(scratch.url(), &dir.0);
}
