//! A release's rules in the live guard: judged at every step on the evaluator's window beside
//! the funnel ([`vigil_analysis::rules`]), their findings merged into the judgement before the
//! guard acts on it.
//!
//! A query rule's results are pulled by the [`crate::pull::Puller`] into the series
//! `rule:NAME` of each host; the puller's failures of that series (a query Prometheus refused,
//! an app without a Prometheus server) make the rule failing, which is said, never skipped.

use std::collections::BTreeMap;

use vigil_analysis::rules::{evaluate_rules, rule_findings, RuleOutcome};
use vigil_analysis::Evaluator;
use vigil_core::release::Release;
use vigil_core::rules::{query_series, RuleSource};
use vigil_core::Judgement;

use crate::pull::PullFailures;

/// Why each of the release's query rules could not be run, by rule name.
pub fn rule_failures(release: &Release, failures: &PullFailures) -> BTreeMap<String, String> {
    let failing = failures.of_app(&release.spec.app);
    release
        .spec
        .rules
        .iter()
        .filter(|rule| matches!(rule.source(), RuleSource::Query(_)))
        .filter_map(|rule| {
            let series = query_series(&rule.name);
            let failure = failing.iter().find(|failure| failure.metric == series)?;
            Some((rule.name.clone(), failure.error.clone()))
        })
        .collect()
}

/// The release's rules judged at step `step` of the evaluator's window (the guard judges the
/// last one; a scorecard the step it shows).
pub fn rule_outcomes(
    evaluator: &Evaluator,
    release: &Release,
    failures: &PullFailures,
    step: usize,
) -> Vec<RuleOutcome> {
    if release.spec.rules.is_empty() || step >= evaluator.points() {
        return Vec::new();
    }
    evaluate_rules(
        evaluator.prepared(),
        &release.spec.rules,
        step,
        &rule_failures(release, failures),
    )
}

/// The judgement of the evaluator's last step with the release's rule findings added and the
/// verdict recomputed ([`Judgement::with_findings`]): a broken `fault` rule pauses the release.
pub fn with_rule_findings(
    judgement: Judgement,
    evaluator: &Evaluator,
    release: &Release,
    failures: &PullFailures,
) -> Judgement {
    let Some(last_step) = evaluator.points().checked_sub(1) else {
        return judgement;
    };
    let outcomes = rule_outcomes(evaluator, release, failures, last_step);
    judgement.with_findings(rule_findings(&outcomes))
}
