//! The scorecard at one step: every signal the funnel judged, healthy ones too.
//!
//! A finding's row is the finding itself (same signal, severity, observed, expected, effect and
//! score): the rows are built around the judgement of [`Evaluator::judge_at`], never beside it.
//! The other rows take their figures from the same code the findings do (a host's change over
//! its last `persistence_steps` samples, the log templates' surge test), over every judged host.

use vigil_core::scorecard::{RowVerdict, Scorecard, ScorecardRow};
use vigil_core::text::change_words;
use vigil_core::{Finding, Judgement, Signal};

use super::{may_pause, Evaluator, MetricTrack};
use crate::hosts::harmful;
use crate::logs::log_test;
use crate::prepare::MetricData;
use crate::stats;

/// What a metric without a finding showed on the release hosts judged at one step.
struct MetricSummary {
    judged: usize,
    observed: f64,
    expected: f64,
    effect: f64,
    score: f64,
}

impl Evaluator {
    /// The scorecard at step `now`: one row per metric (listed or not), per log template
    /// logged on judged release hosts in the surge test's window, and for silence, with the
    /// verdict of [`Evaluator::judge_at`] at the same step. Every finding of that judgement is
    /// a row with the same figures.
    pub fn scorecard_at(&self, now: usize) -> Scorecard {
        let judgement = self.judge_at(now);
        self.scorecard_of(&judgement, now)
    }

    /// The scorecard at step `now` around `judgement`, which must be `self.judge_at(now)`.
    pub fn scorecard_of(&self, judgement: &Judgement, now: usize) -> Scorecard {
        let finding_of = |signal: &Signal| {
            judgement
                .findings
                .iter()
                .find(|finding| finding.signal == *signal)
        };
        let mut rows = Vec::with_capacity(self.prepared.metrics.len() + 1);
        for (metric, track) in self.prepared.metrics.iter().zip(&self.tracks) {
            let signal = Signal::Metric {
                name: metric.meta.name.clone(),
            };
            let row = match finding_of(&signal) {
                Some(finding) => finding_row(finding),
                None => self.metric_row(signal, metric, track.as_ref(), now),
            };
            rows.push(row);
        }
        for log in &self.prepared.logs {
            let signal = Signal::Log {
                template: log.template.id.clone(),
                text: log.template.text.clone(),
                level: log.template.level.clone(),
            };
            if let Some(finding) = finding_of(&signal) {
                rows.push(finding_row(finding));
                continue;
            }
            let Some(test) = log_test(&self.prepared, log, now, &self.settings) else {
                continue;
            };
            let evidence = &test.evidence;
            if evidence.observed <= 0.0 {
                continue;
            }
            let ratio = evidence.observed / evidence.expected.max(f64::MIN_POSITIVE);
            rows.push(ScorecardRow {
                signal,
                verdict: RowVerdict::Pass,
                observed: Some(evidence.observed),
                reference: Some(evidence.expected),
                effect: Some(ratio - 1.0),
                score: Some(-evidence.tail_ln),
                compared_with: self.peer_baseline().to_owned(),
                hosts_affected: 0,
                hosts_judged: evidence.hosts_judged,
                note: format!(
                    "{:.0} lines against {:.2} expected: no surge",
                    evidence.observed, evidence.expected
                ),
                source: None,
            });
        }
        rows.push(match finding_of(&Signal::Silence) {
            Some(finding) => finding_row(finding),
            None => self.silence_row(now),
        });
        let mut scorecard = Scorecard {
            at: judgement.at,
            verdict: judgement.verdict,
            rows,
        };
        scorecard.sort_rows();
        scorecard
    }

    /// `reference` with a reference group, `history` without.
    fn peer_baseline(&self) -> &'static str {
        if self.prepared.reference.is_empty() {
            "history"
        } else {
            "reference"
        }
    }

    fn metric_row(
        &self,
        signal: Signal,
        metric: &MetricData,
        track: Option<&MetricTrack>,
        now: usize,
    ) -> ScorecardRow {
        let unlisted = if may_pause(metric, &self.settings) {
            ""
        } else {
            " (not listed by the release: it may only recommend)"
        };
        let empty = |compared_with: &str, note: String| ScorecardRow {
            signal: signal.clone(),
            verdict: RowVerdict::NotEnoughData,
            observed: None,
            reference: None,
            effect: None,
            score: None,
            compared_with: compared_with.to_owned(),
            hosts_affected: 0,
            hosts_judged: 0,
            note,
            source: None,
        };
        let Some(track) = track else {
            return empty(
                self.peer_baseline(),
                format!("too few samples to compare it{unlisted}"),
            );
        };
        let Some(summary) = self.metric_summary(metric, track, now) else {
            return empty(
                track.baseline,
                format!("no release host has samples past its warm-up yet{unlisted}"),
            );
        };
        ScorecardRow {
            signal,
            verdict: RowVerdict::Pass,
            observed: Some(summary.observed),
            reference: Some(summary.expected),
            effect: Some(summary.effect),
            score: Some(summary.score),
            compared_with: track.baseline.to_owned(),
            hosts_affected: 0,
            hosts_judged: summary.judged,
            note: format!(
                "within bounds on {}: {} against {}{unlisted}",
                judged_hosts(summary.judged),
                change_words(summary.effect),
                track.compared_with
            ),
            source: None,
        }
    }

    /// The figures of a metric on every release host judged at `now`, as a finding states
    /// them: each host's medians over its last `persistence_steps` samples, then the medians
    /// over the hosts, and the effect between these two; the score is the median over the
    /// hosts of their median harmful z over the same samples. `None` when no host is judged.
    fn metric_summary(
        &self,
        metric: &MetricData,
        track: &MetricTrack,
        now: usize,
    ) -> Option<MetricSummary> {
        let mut observed = Vec::new();
        let mut expected = Vec::new();
        let mut scores = Vec::new();
        let mut judged = 0usize;
        for &host in &self.prepared.release {
            let Some(deploy) = self.prepared.hosts[host].deploy else {
                continue;
            };
            if self
                .judged_scores(track, host, deploy, deploy + self.transient_steps, now)
                .is_none()
            {
                continue;
            }
            judged += 1;
            let steps = self.recent_steps(now);
            let (host_observed, host_expected) =
                self.change_over(metric, track, host, steps.clone(), false);
            if host_observed.is_finite() && host_expected.is_finite() {
                observed.push(host_observed);
                expected.push(host_expected);
            }
            let host_z: Vec<f64> = track.z()[host][steps]
                .iter()
                .copied()
                .filter(|z| z.is_finite())
                .collect();
            if !host_z.is_empty() {
                scores.push(harmful(metric.harmful_sign, stats::median(&host_z)));
            }
        }
        if judged == 0 {
            return None;
        }
        let observed = stats::median(&observed);
        let expected = stats::median(&expected);
        Some(MetricSummary {
            judged,
            observed,
            expected,
            effect: metric.transform.effect_between(observed, expected),
            score: stats::median(&scores),
        })
    }

    fn silence_row(&self, now: usize) -> ScorecardRow {
        let prepared = &self.prepared;
        let judged = prepared
            .release
            .iter()
            .filter(|&&host| {
                prepared.hosts[host]
                    .deploy
                    .is_some_and(|deploy| deploy + prepared.warmup_steps <= now)
            })
            .count();
        let mut row = ScorecardRow {
            signal: Signal::Silence,
            verdict: RowVerdict::NotEnoughData,
            observed: None,
            reference: None,
            effect: None,
            score: None,
            compared_with: self.peer_baseline().to_owned(),
            hosts_affected: 0,
            hosts_judged: judged,
            note: "no release host is past its warm-up yet".to_owned(),
            source: None,
        };
        if judged == 0 {
            return row;
        }
        match self.coverage_at(now).reason(prepared) {
            Some(reason) => row.note = reason,
            None => {
                row.verdict = RowVerdict::Pass;
                row.note = format!("{} report every judged metric", judged_hosts(judged));
            }
        }
        row
    }
}

/// "the judged release host" or "all N judged release hosts".
fn judged_hosts(count: usize) -> String {
    if count == 1 {
        "the judged release host".to_owned()
    } else {
        format!("all {count} judged release hosts")
    }
}

/// A finding as its row: the same signal, verdict by severity, and the same figures.
fn finding_row(finding: &Finding) -> ScorecardRow {
    ScorecardRow {
        signal: finding.signal.clone(),
        verdict: RowVerdict::of_severity(finding.severity),
        observed: Some(finding.observed),
        reference: Some(finding.expected),
        effect: Some(finding.effect),
        score: Some(finding.score),
        compared_with: finding.baseline.clone(),
        hosts_affected: finding.hosts.len(),
        hosts_judged: finding.hosts_judged,
        note: finding.explanation.clone(),
        source: None,
    }
}
