//! Prints, for every release of one or more corpora, a fingerprint of what the analysis computes:
//! a hash of every transformed value and every z of every metric (to the bit), and a hash of the
//! judgement at every step from the first deploy on. Two builds that print the same lines agree
//! on everything, not only on the verdicts: the check for a change that must not change results.
//! `cargo run --release -p vigil-analysis --example fingerprint -- DIR [DIR ...]` (each DIR holds
//! `releases/`).
#![allow(clippy::print_stdout, clippy::unwrap_used)]

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};

use vigil_analysis::{Evaluator, Settings};
use vigil_core::Bundle;

fn main() {
    let settings = Settings::default();
    for dir in std::env::args().skip(1) {
        let mut paths: Vec<PathBuf> = std::fs::read_dir(Path::new(&dir).join("releases"))
            .unwrap()
            .map(|entry| entry.unwrap().path())
            .collect();
        paths.sort();
        for path in paths {
            let bundle = Bundle::read(&path).unwrap();
            let evaluator = Evaluator::new(&bundle, &settings);
            println!(
                "{} {:016x} {:016x}",
                bundle.id,
                scores_hash(&evaluator),
                judgements_hash(&evaluator)
            );
        }
    }
}

/// Every metric's transform, transformed values and z scores.
fn scores_hash(evaluator: &Evaluator) -> u64 {
    let mut hasher = DefaultHasher::new();
    for (index, metric) in evaluator.prepared().metrics.iter().enumerate() {
        format!("{:?}", metric.transform).hash(&mut hasher);
        hash_rows(&metric.values, &mut hasher);
        match evaluator.metric_scores(index) {
            Some(z) => hash_rows(z, &mut hasher),
            None => "no scores".hash(&mut hasher),
        }
    }
    hasher.finish()
}

fn hash_rows(rows: &[Vec<f64>], hasher: &mut DefaultHasher) {
    for value in rows.iter().flatten() {
        value.to_bits().hash(hasher);
    }
}

/// The judgement at every step from the first deploy on, as written out (floats in full).
fn judgements_hash(evaluator: &Evaluator) -> u64 {
    let mut hasher = DefaultHasher::new();
    let first = evaluator.first_step().unwrap_or(0);
    for now in first..evaluator.points() {
        serde_json::to_string(&evaluator.judge_at(now))
            .unwrap()
            .hash(&mut hasher);
    }
    hasher.finish()
}
