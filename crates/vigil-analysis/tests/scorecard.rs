//! The scorecard holds every finding of the judgement at the same step, with the same figures,
//! on the example bundles (a corpus sample) at every step from the first deploy.

#![allow(clippy::unwrap_used)]

mod support;

use vigil_analysis::{Evaluator, Settings};
use vigil_core::scorecard::RowVerdict;

#[test]
fn every_finding_of_every_step_is_a_scorecard_row_with_the_same_figures() {
    let settings = Settings::default();
    let mut findings = 0usize;
    let mut passing = 0usize;
    for bundle in support::bundles_in(&support::examples_dir()) {
        let evaluator = Evaluator::new(&bundle, &settings);
        let Some(first) = evaluator.first_step() else {
            continue;
        };
        for now in first..evaluator.points() {
            let scorecard = support::scorecard_holding_the_findings(&evaluator, now);
            findings += scorecard
                .rows
                .iter()
                .filter(|row| matches!(row.verdict, RowVerdict::Fail | RowVerdict::Recommend))
                .count();
            passing += scorecard
                .rows
                .iter()
                .filter(|row| row.verdict == RowVerdict::Pass)
                .count();
        }
    }
    // The examples hold faults and healthy releases: both kinds of rows were checked.
    assert!(findings > 0, "no finding in the examples");
    assert!(passing > 0, "no passing row in the examples");
}

#[test]
fn before_the_warm_up_every_row_lacks_data() {
    let settings = Settings::default();
    let mut checked = 0usize;
    for bundle in support::bundles_in(&support::examples_dir()) {
        let evaluator = Evaluator::new(&bundle, &settings);
        let Some(first) = evaluator.first_step() else {
            continue;
        };
        // With a step longer than the warm-up, the deploy step is judged already.
        if evaluator.prepared().warmup_steps == 0 {
            continue;
        }
        checked += 1;
        let scorecard = evaluator.scorecard_at(first);
        assert!(
            scorecard
                .rows
                .iter()
                .all(|row| row.verdict == RowVerdict::NotEnoughData),
            "{}: {:?}",
            bundle.id,
            scorecard.rows
        );
        assert_eq!(scorecard.rows.len(), bundle.metrics.len() + 1);
    }
    assert!(checked > 0);
}
