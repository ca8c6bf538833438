//! The rules of a release's page, apart from its HTML: the order of the findings, the words of
//! actions and feedback, a finding's effect row and a log template's counts around the first
//! batch.

use vigil_core::release::{Action, FeedbackKind, VerdictRecord};
use vigil_core::text::{change_words, figure};
use vigil_core::{Bundle, Finding, HostGroup, Signal};

pub(super) fn feedback_words(kind: FeedbackKind) -> &'static str {
    match kind {
        FeedbackKind::ConfirmFault => "confirmed fault",
        FeedbackKind::FalseAlarm => "false alarm",
        FeedbackKind::MissedFault => "missed fault",
    }
}

pub(super) fn action_label(action: Action) -> &'static str {
    match action {
        Action::Pause => "Pause",
        Action::Resume => "Resume",
        Action::Rollback => "Roll back",
        Action::Cancel => "Cancel the release",
        _ => action.as_str(),
    }
}

/// Findings, most severe first, then by the size of the change against the signal's noise.
pub(super) fn ordered_findings(record: Option<&VerdictRecord>) -> Vec<&Finding> {
    let mut findings: Vec<&Finding> = record
        .map(|record| record.findings.iter().collect())
        .unwrap_or_default();
    findings.sort_by(|left, right| {
        left.severity
            .cmp(&right.severity)
            .then(right.score.total_cmp(&left.score))
    });
    findings
}

/// Lines of a log template on release and reference hosts, before and after the first batch.
#[derive(Debug, Default, PartialEq)]
pub(super) struct LogCounts {
    pub(super) release_before: f64,
    pub(super) release_since: f64,
    pub(super) reference_before: f64,
    pub(super) reference_since: f64,
}

pub(super) fn log_counts(bundle: &Bundle, template: &str) -> LogCounts {
    let mut counts = LogCounts::default();
    let Some(by_host) = bundle.logs.counts.get(template) else {
        return counts;
    };
    let first_deploy = bundle.batches.first().map_or(i64::MAX, |batch| batch.at);
    for host in &bundle.hosts {
        let Some(values) = by_host.get(&host.name) else {
            continue;
        };
        for (step, value) in values.iter().enumerate() {
            let lines = value.unwrap_or(0.0);
            let since = bundle.time_of(step) >= first_deploy;
            let slot = match (host.group, since) {
                (HostGroup::Release, false) => &mut counts.release_before,
                (HostGroup::Release, true) => &mut counts.release_since,
                (HostGroup::Reference, false) => &mut counts.reference_before,
                (HostGroup::Reference, true) => &mut counts.reference_since,
            };
            *slot += lines;
        }
    }
    counts
}

/// A finding's Effect row: for a metric, the same words and numbers as its sentence and its
/// chart (one effect, taken between the observed and the expected value shown).
pub(super) fn effect_row(finding: &Finding) -> String {
    if matches!(finding.signal, Signal::Silence) {
        return "no samples".to_owned();
    }
    format!(
        "{} ({} against {} expected, {})",
        change_words(finding.effect),
        figure(finding.observed),
        figure(finding.expected),
        finding.direction
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use vigil_core::Verdict;

    use crate::pages::chart::MetricChart;
    use std::collections::BTreeMap;

    #[test]
    fn log_counts_split_hosts_and_time_at_the_first_batch() {
        let mut by_host = BTreeMap::new();
        by_host.insert(
            "r1".to_string(),
            vec![Some(1.0), None, Some(4.0), Some(5.0)],
        );
        by_host.insert(
            "k1".to_string(),
            vec![Some(2.0), Some(2.0), Some(1.0), None],
        );
        let mut bundle = crate::pages::test_bundle(30, 0, 4, 60);
        bundle.logs.counts.insert("t1".to_string(), by_host);
        assert_eq!(
            log_counts(&bundle, "t1"),
            LogCounts {
                release_before: 1.0,
                release_since: 9.0,
                reference_before: 4.0,
                reference_since: 1.0,
            }
        );
        assert_eq!(log_counts(&bundle, "absent"), LogCounts::default());
    }

    /// The case: reference hosts at 99 and 101, a release host at 102 that goes to
    /// about 302 after its deploy. The sentence, the Effect row and the chart must state one
    /// effect and one expected value (they said "302 vs 102", "+77 %" beside "+69 %" and a
    /// chart with no expected value at all).
    #[test]
    fn sentence_effect_row_and_chart_state_the_same_numbers() {
        let points = 90;
        let deployed = 60;
        let wobble = |step: usize| [0.0, 0.6, -0.4, 0.9, -0.7, 0.2][step % 6];
        let series = |level: f64, after: f64| -> Vec<Option<f64>> {
            (0..points)
                .map(|step| {
                    let base = if step >= deployed { after } else { level };
                    Some(base + wobble(step) * base / 100.0)
                })
                .collect()
        };
        let start = 1_700_000_000;
        let mut bundle = crate::pages::test_bundle(60, start, points, start + 60 * deployed as i64);
        let by_host: BTreeMap<String, Vec<Option<f64>>> = [
            ("r1".to_string(), series(102.0, 302.0)),
            ("k1".to_string(), series(99.0, 99.0)),
            ("k2".to_string(), series(101.0, 101.0)),
        ]
        .into_iter()
        .collect();
        bundle.series.insert("latency".to_string(), by_host);
        bundle.metrics.push(vigil_core::MetricMeta {
            name: "latency".to_string(),
            kind: vigil_core::MetricKind::Middleware,
            unit: "ms".to_string(),
            direction: vigil_core::Direction::Increase,
            critical: true,
            judged: true,
        });
        let judgement =
            vigil_analysis::Evaluator::new(&bundle, &vigil_analysis::Settings::default())
                .judge_at(points - 1);
        let finding = judgement.findings.first().expect("a finding");
        assert_eq!(finding.severity, Verdict::Fault, "{judgement:?}");
        let stated = format!(
            "{} against {} expected",
            figure(finding.observed),
            figure(finding.expected)
        );
        let effect = change_words(finding.effect);
        let ratio = finding.observed / finding.expected - 1.0;
        assert!((finding.effect - ratio).abs() < 1e-6, "{finding:?}");
        let mut chart = String::new();
        MetricChart {
            bundle: &bundle,
            metric: "latency",
            unit: "ms",
            finding_hosts: &finding.hosts,
            pauses: &[],
            id: "chart-0",
            finding: Some(finding),
        }
        .write(&mut chart);
        for (place, text) in [
            ("sentence", finding.explanation.as_str()),
            ("effect row", effect_row(finding).as_str()),
            ("chart", chart.as_str()),
        ] {
            assert!(text.contains(&stated), "{place}: {text} lacks {stated}");
            assert!(text.contains(&effect), "{place}: {text} lacks {effect}");
        }
        assert!(
            finding.evidence.contains(&effect),
            "the evidence line: {}",
            finding.evidence
        );
    }
}
