//! A release's scorecard, live or finished: every signal judged at its latest judged step (or
//! the last step of its window), each metric row with a link to its source when the app pulls
//! it from Prometheus.
//!
//! The window is the one [`crate::Guard::window`] assembles, judged with the release's own
//! settings, so the rows agree with what the guard judged at that step. Rows of the team's
//! rules and of received alerts come in through [`with_rows`], the one place they join.

use vigil_analysis::rules::{rule_findings, rule_rows};
use vigil_analysis::Evaluator;
use vigil_core::release::Release;
use vigil_core::scorecard::{Scorecard, ScorecardRow};
use vigil_core::text::percent_encode;
use vigil_core::{Bundle, Finding, Signal, Verdict};

use crate::apps::{AppConfig, PullSource};
use crate::error::GuardError;
use crate::pull::PullFailures;
use crate::rules::rule_outcomes;
use crate::window::release_settings;

/// The scorecard of `release` on `window` (its bundle as [`crate::Guard::window`] assembles
/// it) at the step of Unix time `judged_at` (the latest stored verdict's), or at the window's
/// last step when that is not in the window. Metric rows link to the app's Prometheus when
/// `app` pulls them. The release's rules are judged at the same step, as the guard judges them
/// (`pull_failures` says which query rules could not be run), and join through [`with_rows`].
/// Pure: judges the window once, on the calling thread.
pub fn release_scorecard(
    release: &Release,
    window: &Bundle,
    judged_at: Option<i64>,
    app: Option<&AppConfig>,
    pull_failures: &PullFailures,
) -> Result<Scorecard, GuardError> {
    let settings = release_settings(release)?;
    if window.points == 0 {
        return Ok(Scorecard {
            at: window.start,
            verdict: Verdict::InsufficientData,
            rows: Vec::new(),
        });
    }
    let evaluator = Evaluator::new(window, &settings);
    let last = evaluator.points() - 1;
    let step = judged_at
        .and_then(|at| window.index_at(at))
        .map_or(last, |index| index.min(last));
    let mut scorecard = evaluator.scorecard_at(step);
    if let Some(source) = app.and_then(|config| config.prometheus.as_ref()) {
        let end = scorecard.at;
        for row in &mut scorecard.rows {
            let Signal::Metric { name } = &row.signal else {
                continue;
            };
            row.source = graph_link(source, name, window.start, end);
        }
    }
    let rules = rule_outcomes(&evaluator, release, pull_failures, step);
    Ok(with_rows(
        scorecard,
        rule_rows(&rules),
        &rule_findings(&rules),
    ))
}

/// The scorecard with `extra_rows` added (the team's rules, received alerts): its verdict
/// becomes the most severe of its own and of `extra_findings`, the findings the guard adds to
/// its judgement for the same rows (so that a rule whose query fails, a failing row but an
/// `anomaly` finding, recommends as the guard does instead of pausing), and the rows are put
/// back in order. The one place other rows join the scorecard.
pub fn with_rows(
    mut scorecard: Scorecard,
    extra_rows: Vec<ScorecardRow>,
    extra_findings: &[Finding],
) -> Scorecard {
    for finding in extra_findings {
        scorecard.verdict = scorecard.verdict.min(finding.severity);
    }
    scorecard.rows.extend(extra_rows);
    scorecard.sort_rows();
    scorecard
}

/// The Prometheus graph page of the pull query of `metric`, over `start..=end` (Unix
/// seconds), or `None` when the app does not pull it.
pub fn graph_link(source: &PullSource, metric: &str, start: i64, end: i64) -> Option<String> {
    let query = source.queries.iter().find(|query| query.metric == metric)?;
    let range_minutes = ((end - start).max(60) + 59) / 60;
    let end_input = vigil_core::text::utc(end)
        .trim_end_matches(" UTC")
        .to_owned();
    Some(format!(
        "{}/graph?g0.expr={}&g0.tab=0&g0.range_input={range_minutes}m&g0.end_input={}",
        source.url.trim_end_matches('/'),
        percent_encode(&query.query),
        percent_encode(&end_input),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::apps::PullQuery;
    use vigil_core::scorecard::RowVerdict;

    fn source() -> PullSource {
        PullSource {
            url: "http://127.0.0.1:9090/".to_owned(),
            host_label: "instance".to_owned(),
            step_seconds: 30,
            queries: vec![PullQuery {
                metric: "latency_p99".to_owned(),
                query: "histogram_quantile(0.99, sum by (le, instance) (rate(http_seconds_bucket{job=\"checkout\"}[1m])))".to_owned(),
            }],
            selector: None,
        }
    }

    #[test]
    fn a_pulled_metric_links_to_its_query_on_the_graph_page_over_the_window() {
        let link = graph_link(&source(), "latency_p99", 1_700_000_000, 1_700_005_400).unwrap();
        assert_eq!(
            link,
            "http://127.0.0.1:9090/graph?g0.expr=histogram_quantile%280.99%2C%20sum%20by%20%28le%2C%20instance%29%20%28rate%28http_seconds_bucket%7Bjob%3D%22checkout%22%7D%5B1m%5D%29%29%29&g0.tab=0&g0.range_input=90m&g0.end_input=2023-11-14%2023%3A43%3A20"
        );
        assert_eq!(graph_link(&source(), "cpu", 0, 60), None);
    }

    #[test]
    fn extra_rows_take_their_place_and_their_findings_raise_the_verdict() {
        let row = |name: &str, verdict: RowVerdict| ScorecardRow {
            signal: Signal::Rule {
                name: name.to_owned(),
            },
            verdict,
            observed: None,
            reference: None,
            effect: None,
            score: None,
            compared_with: "bound".to_owned(),
            hosts_affected: 0,
            hosts_judged: 1,
            note: String::new(),
            source: None,
        };
        let finding = |name: &str, severity: Verdict| Finding {
            severity,
            signal: Signal::Rule {
                name: name.to_owned(),
            },
            hosts: vec!["r1".to_owned()],
            hosts_judged: 1,
            direction: "up".to_owned(),
            observed: 1.0,
            expected: 0.5,
            effect: 1.0,
            score: 0.0,
            baseline: "bound".to_owned(),
            evidence: "rule: test".to_owned(),
            since: 0,
            explanation: String::new(),
        };
        let healthy = Scorecard {
            at: 0,
            verdict: Verdict::Healthy,
            rows: vec![row("a", RowVerdict::Pass)],
        };
        let recommended = with_rows(
            healthy.clone(),
            vec![row("b", RowVerdict::Recommend)],
            &[finding("b", Verdict::Anomaly)],
        );
        assert_eq!(recommended.verdict, Verdict::Anomaly);
        assert_eq!(recommended.rows[0].signal.label(), "rule:b");
        let failed = with_rows(
            recommended,
            vec![row("c", RowVerdict::Fail)],
            &[finding("c", Verdict::Fault)],
        );
        assert_eq!(failed.verdict, Verdict::Fault);
        assert_eq!(failed.rows.len(), 3);
        // A rule that could not be evaluated fails its row but only recommends, as in the guard.
        let failing_query = with_rows(
            healthy.clone(),
            vec![row("d", RowVerdict::Fail)],
            &[finding("d", Verdict::Anomaly)],
        );
        assert_eq!(failing_query.verdict, Verdict::Anomaly);
        assert_eq!(failing_query.rows[0].verdict, RowVerdict::Fail);
        assert_eq!(
            with_rows(healthy, Vec::new(), &[]).verdict,
            Verdict::Healthy
        );
    }
}
