//! The live guard trims a history-mode window (no reference group) to the data its hosts hold,
//! instead of reaching `history_days` back over steps without any: the analysis must judge the
//! trimmed window as the full one, at every step.

#![allow(clippy::unwrap_used)]

use std::path::Path;

use vigil_analysis::{Evaluator, Settings};
use vigil_core::bundle::SeriesByHost;
use vigil_core::Bundle;

mod support;

/// The bundles without a reference group: the history-mode examples and a node exporter's.
fn history_mode_bundles() -> Vec<Bundle> {
    let mut bundles: Vec<Bundle> = support::bundles_in(&support::examples_dir())
        .into_iter()
        .filter(|bundle| {
            bundle
                .hosts
                .iter()
                .all(|host| host.group == vigil_core::HostGroup::Release)
        })
        .collect();
    let recording =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/node-exporter-noop.json.gz");
    bundles.push(Bundle::read(&recording).unwrap());
    assert!(
        bundles.len() >= 4,
        "history-mode bundles: {}",
        bundles.len()
    );
    bundles
}

/// `bundle` with `days` more of steps before its start that hold no sample, as the live guard
/// assembles a window that reaches back past the data its index holds: no metric value, and
/// no log line (a count of zero).
fn reaching_back(bundle: &Bundle, days: i64) -> (Bundle, usize) {
    let empty_steps = usize::try_from(days * 86_400 / bundle.step_seconds).unwrap();
    let pad = |by_host: &SeriesByHost<f64>, empty: Option<f64>| -> SeriesByHost<f64> {
        by_host
            .iter()
            .map(|(host, values)| {
                let mut padded = vec![empty; empty_steps];
                padded.extend_from_slice(values);
                (host.clone(), padded)
            })
            .collect()
    };
    let mut full = bundle.clone();
    full.start = bundle.start - empty_steps as i64 * bundle.step_seconds;
    full.points = bundle.points + empty_steps;
    full.series = bundle
        .series
        .iter()
        .map(|(metric, by_host)| (metric.clone(), pad(by_host, None)))
        .collect();
    full.logs.counts = bundle
        .logs
        .counts
        .iter()
        .map(|(template, by_host)| (template.clone(), pad(by_host, Some(0.0))))
        .collect();
    (full, empty_steps)
}

#[test]
fn a_history_window_judges_the_same_whether_or_not_it_reaches_back_over_empty_steps() {
    let settings = Settings::default();
    for bundle in history_mode_bundles() {
        // Past a day before the data, the same time on earlier days is in the full window.
        let (full, empty_steps) = reaching_back(&bundle, 2);
        full.validate("padded").unwrap();
        let trimmed_evaluator = Evaluator::new(&bundle, &settings);
        let full_evaluator = Evaluator::new(&full, &settings);
        for step in 0..bundle.points {
            let trimmed = format!("{:?}", trimmed_evaluator.judge_at(step));
            let reaching = format!("{:?}", full_evaluator.judge_at(empty_steps + step));
            assert_eq!(trimmed, reaching, "{} at step {step}", bundle.id);
        }
    }
}
