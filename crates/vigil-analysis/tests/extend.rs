//! The live guard keeps one evaluator per release and extends it step by step with the
//! window's new or changed steps ([`Evaluator::extend`]); it must judge exactly as an
//! evaluator built on the whole window from scratch, whatever changed between two steps.

#![allow(clippy::unwrap_used)]

use vigil_analysis::{Evaluator, Settings};
use vigil_core::bundle::SeriesByHost;
use vigil_core::Bundle;

mod support;

/// The example bundles, their log templates in id order as in an assembled live window.
fn example_bundles() -> Vec<Bundle> {
    let mut bundles = support::bundles_in(&support::examples_dir());
    for bundle in &mut bundles {
        bundle
            .logs
            .templates
            .sort_by(|left, right| left.id.cmp(&right.id));
    }
    bundles
}

/// `bundle` as the guard assembles a live window: only the log templates with lines in it.
fn as_assembled(mut bundle: Bundle) -> Bundle {
    let logged = |counts: Option<&SeriesByHost<f64>>| {
        counts.is_some_and(|by_host| {
            by_host
                .values()
                .flatten()
                .any(|count| count.is_some_and(|count| count > 0.0))
        })
    };
    let counts = bundle.logs.counts.clone();
    bundle
        .logs
        .templates
        .retain(|template| logged(counts.get(&template.id)));
    bundle
        .logs
        .counts
        .retain(|_, by_host| logged(Some(by_host)));
    bundle
}

/// The steps of `bundle` from `from` on, as the guard assembles them.
fn tail_of(bundle: &Bundle, from: usize) -> Bundle {
    let slice = |by_host: &SeriesByHost<f64>| -> SeriesByHost<f64> {
        by_host
            .iter()
            .map(|(host, values)| (host.clone(), values[from..].to_vec()))
            .collect()
    };
    let mut tail = bundle.clone();
    tail.start = bundle.time_of(from);
    tail.points = bundle.points - from;
    tail.series = bundle
        .series
        .iter()
        .map(|(metric, by_host)| (metric.clone(), slice(by_host)))
        .collect();
    tail.logs.counts = bundle
        .logs
        .counts
        .iter()
        .map(|(template, by_host)| (template.clone(), slice(by_host)))
        .collect();
    tail
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
        state.push_str(&format!("{:?} {:?}\n", log.template, log.counts));
    }
    state
}

fn assert_same_as_fresh(extended: &Evaluator, bundle: &Bundle, what: &str) {
    let fresh = Evaluator::new(bundle, &Settings::default());
    let now = bundle.points - 1;
    assert_eq!(
        state_of(extended, now),
        state_of(&fresh, now),
        "{} ({what}): the extended evaluator disagrees with a fresh one",
        bundle.id
    );
}

#[test]
fn extending_step_by_step_judges_as_a_fresh_evaluator() {
    let settings = Settings::default();
    let mut extended = 0;
    let mut templates_new_in_a_tail = 0;
    for bundle in example_bundles() {
        let Some(first) = Evaluator::new(&bundle, &settings).first_step() else {
            continue;
        };
        let mut evaluator = Evaluator::new(&as_assembled(bundle.truncated(first)), &settings);
        for now in first + 1..bundle.points {
            let cut = as_assembled(bundle.truncated(now));
            let seen = evaluator.points();
            let tail = as_assembled(tail_of(&cut, seen));
            let new_templates = tail
                .logs
                .templates
                .iter()
                .filter(|template| {
                    !evaluator
                        .prepared()
                        .logs
                        .iter()
                        .any(|log| log.template.id == template.id)
                })
                .count();
            match evaluator.extend(&tail, seen, &settings) {
                Ok(()) => {
                    extended += 1;
                    templates_new_in_a_tail += new_templates;
                }
                Err(_) => evaluator = Evaluator::new(&cut, &settings),
            }
            assert_eq!(
                state_of(&evaluator, now),
                state_of(&Evaluator::new(&cut, &settings), now),
                "{} at step {now}",
                bundle.id
            );
        }
        assert_same_as_fresh(&evaluator, &as_assembled(bundle), "whole window");
    }
    assert!(
        extended > 100,
        "only {extended} steps were extended instead of rebuilt"
    );
    assert!(
        templates_new_in_a_tail > 0,
        "no log template appeared after the first deploy"
    );
}

/// `bundle` with the first release host's first metric at `step` set to `value`, if that host
/// has that metric.
fn with_sample(bundle: &Bundle, step: usize, value: f64) -> Option<Bundle> {
    let mut changed = bundle.clone();
    let release_host = changed
        .hosts
        .iter()
        .find(|host| host.group == vigil_core::HostGroup::Release)?
        .name
        .clone();
    let metric = changed.metrics.first()?.name.clone();
    let row = changed.series.get_mut(&metric)?.get_mut(&release_host)?;
    row[step] = Some(value);
    Some(changed)
}

#[test]
fn a_late_sample_after_the_last_deploy_rescores_from_its_step() {
    let settings = Settings::default();
    let mut checked = 0;
    for bundle in example_bundles() {
        let mut evaluator = Evaluator::new(&bundle, &settings);
        let step = bundle.points - 3;
        if step < evaluator.horizon() {
            continue;
        }
        let Some(changed) = with_sample(&bundle, step, 12_345.0) else {
            continue;
        };
        let transforms_fitted_before_deploy = evaluator
            .prepared()
            .metrics
            .iter()
            .all(|metric| metric.transform_from_history);
        let outcome = evaluator.extend(&tail_of(&changed, step), step, &settings);
        if !transforms_fitted_before_deploy {
            assert!(outcome.is_err(), "{}", bundle.id);
            continue;
        }
        assert_eq!(outcome, Ok(()), "{}", bundle.id);
        assert_same_as_fresh(&evaluator, &changed, "late sample");
        checked += 1;
    }
    assert!(
        checked > 5,
        "only {checked} bundles had a late sample to try"
    );
}

#[test]
fn what_the_models_rest_on_cannot_change_by_extension() {
    let settings = Settings::default();
    for bundle in example_bundles() {
        let evaluator = Evaluator::new(&bundle, &settings);
        let Some(first) = evaluator.first_step() else {
            continue;
        };
        let before_deploy = first.saturating_sub(5);
        if let Some(changed) = with_sample(&bundle, before_deploy, 98_765.0) {
            let mut kept = Evaluator::new(&bundle, &settings);
            let outcome = kept.extend(&tail_of(&changed, before_deploy), before_deploy, &settings);
            assert!(outcome.is_err(), "{}: a baseline sample changed", bundle.id);
            assert_same_as_fresh(&kept, &bundle, "refused tail left it as it was");
        }
        // Seen before its last batch, then with it.
        let last_batch_at = bundle.batches.iter().map(|batch| batch.at).max().unwrap();
        let before_last_batch = bundle.index_at(last_batch_at - 1).unwrap();
        if bundle.batches.len() > 1 {
            let mut kept = Evaluator::new(&bundle.truncated(before_last_batch), &settings);
            let seen = kept.points();
            assert!(
                kept.extend(&tail_of(&bundle, seen), seen, &settings)
                    .is_err(),
                "{}: a new batch",
                bundle.id
            );
        }
        let stricter = Settings {
            shift_z: settings.shift_z + 1.0,
            ..settings.clone()
        };
        let mut kept = Evaluator::new(&bundle.truncated(bundle.points - 2), &settings);
        let seen = kept.points();
        assert!(kept
            .extend(&tail_of(&bundle, seen), seen, &stricter)
            .is_err());
        // A tail that does not start where the evaluator stopped.
        assert!(kept
            .extend(&tail_of(&bundle, seen - 1), seen, &settings)
            .is_err());
    }
}
