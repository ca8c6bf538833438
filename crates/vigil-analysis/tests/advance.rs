//! The live guard keeps one evaluator per release and advances it step by step
//! ([`Evaluator::advance`]); it must judge exactly as an evaluator built on the same window
//! from scratch, whatever changed between two steps.

#![allow(clippy::unwrap_used)]

use vigil_analysis::{Advance, Evaluator, Settings};
use vigil_core::Bundle;

mod support;

fn example_bundles() -> Vec<Bundle> {
    support::bundles_in(&support::examples_dir())
}

/// Everything an evaluator computes that a judgement can rest on, printed to the bit (`{:?}`
/// of an `f64` is its shortest exact form).
fn state_of(evaluator: &Evaluator, now: usize) -> String {
    let mut state = format!("{:?}\n", evaluator.judge_at(now));
    for (index, metric) in evaluator.prepared().metrics.iter().enumerate() {
        state.push_str(&format!("{:?}\n", metric.values));
        state.push_str(&format!("{:?}\n", evaluator.metric_scores(index)));
    }
    for log in &evaluator.prepared().logs {
        state.push_str(&format!("{:?}\n", log.counts));
    }
    state
}

fn assert_same_as_fresh(advanced: &Evaluator, bundle: &Bundle, what: &str) {
    let fresh = Evaluator::new(bundle, &Settings::default());
    let now = bundle.points - 1;
    assert_eq!(
        state_of(advanced, now),
        state_of(&fresh, now),
        "{} ({what}): the advanced evaluator disagrees with a fresh one",
        bundle.id
    );
}

#[test]
fn advancing_step_by_step_judges_as_a_fresh_evaluator() {
    let settings = Settings::default();
    let mut rescored = 0;
    for bundle in example_bundles() {
        let fresh = Evaluator::new(&bundle, &settings);
        let Some(first) = fresh.first_step() else {
            continue;
        };
        let mut evaluator = Evaluator::new(&bundle.truncated(first), &settings);
        for now in first + 1..bundle.points {
            let cut = bundle.truncated(now);
            if let Advance::Rescored { from } = evaluator.advance(&cut, &settings) {
                assert!(
                    from <= now,
                    "{}: rescored from {from} past {now}",
                    bundle.id
                );
                rescored += 1;
            }
            assert_eq!(
                format!("{:?}", evaluator.judge_at(now)),
                format!("{:?}", Evaluator::new(&cut, &settings).judge_at(now)),
                "{} at step {now}",
                bundle.id
            );
        }
        assert_same_as_fresh(&evaluator, &bundle, "whole window");
    }
    assert!(
        rescored > 100,
        "only {rescored} steps were rescored instead of rebuilt"
    );
}

/// A sample of the first release host's first metric at `step` set to `value`.
fn with_sample(bundle: &Bundle, step: usize, value: f64) -> (Bundle, bool) {
    let mut changed = bundle.clone();
    let release_host = changed
        .hosts
        .iter()
        .find(|host| host.group == vigil_core::HostGroup::Release)
        .unwrap()
        .name
        .clone();
    let metric = changed.metrics[0].name.clone();
    let Some(row) = changed
        .series
        .get_mut(&metric)
        .and_then(|by_host| by_host.get_mut(&release_host))
    else {
        return (changed, false);
    };
    row[step] = Some(value);
    (changed, true)
}

#[test]
fn a_late_sample_after_the_last_deploy_rescores_from_its_step() {
    let settings = Settings::default();
    let mut checked = 0;
    for bundle in example_bundles() {
        let evaluator = Evaluator::new(&bundle, &settings);
        let Some(last_deploy) = evaluator
            .prepared()
            .hosts
            .iter()
            .filter_map(|h| h.deploy)
            .max()
        else {
            continue;
        };
        let step = bundle.points - 3;
        if step <= last_deploy {
            continue;
        }
        let (changed, found) = with_sample(&bundle, step, 12_345.0);
        if !found {
            continue;
        }
        let mut advanced = evaluator;
        let outcome = advanced.advance(&changed, &settings);
        if advanced
            .prepared()
            .metrics
            .iter()
            .all(|metric| metric.transform_from_history)
        {
            assert_eq!(outcome, Advance::Rescored { from: step }, "{}", bundle.id);
        }
        assert_same_as_fresh(&advanced, &changed, "late sample");
        checked += 1;
    }
    assert!(
        checked > 5,
        "only {checked} bundles had a late sample to try"
    );
}

#[test]
fn a_changed_baseline_sample_or_a_new_batch_rebuilds() {
    let settings = Settings::default();
    for bundle in example_bundles() {
        let evaluator = Evaluator::new(&bundle, &settings);
        let Some(first) = evaluator.first_step() else {
            continue;
        };
        let (changed, found) = with_sample(&bundle, first.saturating_sub(5), 98_765.0);
        if found {
            let mut advanced = Evaluator::new(&bundle, &settings);
            assert_eq!(advanced.advance(&changed, &settings), Advance::Rebuilt);
            assert_same_as_fresh(&advanced, &changed, "baseline sample");
        }
        // A bundle seen before its last batch, then with it.
        let last_batch_at = bundle.batches.iter().map(|batch| batch.at).max().unwrap();
        let before_last_batch = bundle.index_at(last_batch_at - 1).unwrap();
        if bundle.batches.len() > 1 {
            let mut advanced = Evaluator::new(&bundle.truncated(before_last_batch), &settings);
            assert_eq!(advanced.advance(&bundle, &settings), Advance::Rebuilt);
            assert_same_as_fresh(&advanced, &bundle, "new batch");
        }
        // Other settings.
        let stricter = Settings {
            shift_z: settings.shift_z + 1.0,
            ..settings.clone()
        };
        let mut advanced = Evaluator::new(&bundle, &settings);
        assert_eq!(advanced.advance(&bundle, &stricter), Advance::Rebuilt);
    }
}
