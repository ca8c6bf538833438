//! A release's scorecard: every signal judged at one step (metrics, log templates, the team's
//! rules, alerts), healthy ones too, each with its own verdict and figures.
//!
//! The judgement lists only what moved; the scorecard lists everything that was looked at, so
//! that a person can see that a metric was compared and passed, and how close it came.

use serde::{Deserialize, Serialize};

use crate::verdict::{Signal, Verdict};

/// One signal's outcome on the scorecard.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RowVerdict {
    /// The signal moved enough to pause the release (or a `fault` rule broke, or a critical
    /// alert fired on release hosts only).
    Fail,
    /// A milder deviation: recommend a look.
    Recommend,
    /// Compared, and within bounds.
    Pass,
    /// Too few samples to compare (or a rule's query returned nothing).
    NotEnoughData,
}

impl RowVerdict {
    pub fn as_str(self) -> &'static str {
        match self {
            RowVerdict::Fail => "fail",
            RowVerdict::Recommend => "recommend",
            RowVerdict::Pass => "pass",
            RowVerdict::NotEnoughData => "not_enough_data",
        }
    }

    /// The row verdict of a finding's severity: `fault` fails, `anomaly` recommends.
    pub fn of_severity(severity: Verdict) -> RowVerdict {
        match severity {
            Verdict::Fault => RowVerdict::Fail,
            Verdict::Anomaly => RowVerdict::Recommend,
            Verdict::Healthy => RowVerdict::Pass,
            Verdict::InsufficientData => RowVerdict::NotEnoughData,
        }
    }
}

impl std::fmt::Display for RowVerdict {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One judged signal.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScorecardRow {
    pub signal: Signal,
    pub verdict: RowVerdict,
    /// Typical value on the release hosts at the step judged, when there is one.
    pub observed: Option<f64>,
    /// What it is compared with: the reference hosts' value, the forecast from history, or a
    /// rule's bound.
    pub reference: Option<f64>,
    /// Relative size of the change: observed / reference - 1 (for log templates the rate
    /// ratio), when both are known.
    pub effect: Option<f64>,
    /// Size of the change in units of the signal's own variability, when it has one.
    pub score: Option<f64>,
    /// What `reference` is: `reference`, `history`, `bound`, `alert`.
    pub compared_with: String,
    /// Release hosts that show the change, and release hosts judged.
    pub hosts_affected: usize,
    pub hosts_judged: usize,
    /// One line a person understands: why this verdict.
    pub note: String,
    /// Where the signal comes from, to look at it at its source (a Prometheus graph link for a
    /// pulled metric), when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
}

/// Every signal judged at one step of a release.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Scorecard {
    /// Unix time of the step judged.
    pub at: i64,
    /// The release's verdict at that step.
    pub verdict: Verdict,
    /// Rows, failing first, then recommended, not enough data, passing; by signal label within.
    pub rows: Vec<ScorecardRow>,
}

impl Scorecard {
    /// Puts the rows in their order: failing first, then recommended, then not enough data,
    /// then passing; by signal label within each.
    pub fn sort_rows(&mut self) {
        self.rows.sort_by(|left, right| {
            row_rank(left.verdict)
                .cmp(&row_rank(right.verdict))
                .then_with(|| left.signal.label().cmp(&right.signal.label()))
        });
    }
}

/// A column the rows may be sorted by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RowSort {
    /// Failing first, then recommended, not enough data, passing (by signal label within).
    Verdict,
    /// By signal label.
    Signal,
    /// By the size of the effect, whatever its sign.
    Effect,
    /// By the score.
    Score,
}

impl RowSort {
    pub const ALL: [RowSort; 4] = [
        RowSort::Verdict,
        RowSort::Signal,
        RowSort::Effect,
        RowSort::Score,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            RowSort::Verdict => "verdict",
            RowSort::Signal => "signal",
            RowSort::Effect => "effect",
            RowSort::Score => "score",
        }
    }

    /// The column named `name`, if any.
    pub fn parse(name: &str) -> Option<RowSort> {
        RowSort::ALL.into_iter().find(|sort| sort.as_str() == name)
    }

    /// The order a column is first sorted in: the most telling first (failing verdicts, the
    /// largest effects and scores; labels from a to z).
    pub fn natural_descending(self) -> bool {
        matches!(self, RowSort::Effect | RowSort::Score)
    }
}

impl Scorecard {
    /// Sorts the rows by `sort`, descending or ascending; rows without the figure (no effect or
    /// score) last either way, and ties by verdict then label. `Verdict` ascending is
    /// [`Scorecard::sort_rows`]'s order, failing first.
    pub fn sort_rows_by(&mut self, sort: RowSort, descending: bool) {
        use std::cmp::Ordering;
        let by_rank = |left: &ScorecardRow, right: &ScorecardRow| {
            row_rank(left.verdict)
                .cmp(&row_rank(right.verdict))
                .then_with(|| left.signal.label().cmp(&right.signal.label()))
        };
        let directed = |ordering: Ordering| {
            if descending {
                ordering.reverse()
            } else {
                ordering
            }
        };
        let by_figure = |left: Option<f64>, right: Option<f64>| match (
            left.filter(|value| !value.is_nan()),
            right.filter(|value| !value.is_nan()),
        ) {
            (Some(left), Some(right)) => directed(left.total_cmp(&right)),
            (Some(_), None) => Ordering::Less,
            (None, Some(_)) => Ordering::Greater,
            (None, None) => Ordering::Equal,
        };
        self.rows.sort_by(|left, right| match sort {
            RowSort::Verdict => directed(by_rank(left, right)),
            RowSort::Signal => directed(left.signal.label().cmp(&right.signal.label()))
                .then_with(|| by_rank(left, right)),
            RowSort::Effect => by_figure(left.effect.map(f64::abs), right.effect.map(f64::abs))
                .then_with(|| by_rank(left, right)),
            RowSort::Score => by_figure(left.score, right.score).then_with(|| by_rank(left, right)),
        });
    }
}

fn row_rank(verdict: RowVerdict) -> u8 {
    match verdict {
        RowVerdict::Fail => 0,
        RowVerdict::Recommend => 1,
        RowVerdict::NotEnoughData => 2,
        RowVerdict::Pass => 3,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(name: &str, verdict: RowVerdict) -> ScorecardRow {
        ScorecardRow {
            signal: Signal::Metric {
                name: name.to_owned(),
            },
            verdict,
            observed: None,
            reference: None,
            effect: None,
            score: None,
            compared_with: "reference".to_owned(),
            hosts_affected: 0,
            hosts_judged: 2,
            note: String::new(),
            source: None,
        }
    }

    #[test]
    fn rows_sort_failing_first_then_recommended_then_missing_then_passing() {
        let mut scorecard = Scorecard {
            at: 0,
            verdict: Verdict::Fault,
            rows: vec![
                row("b", RowVerdict::Pass),
                row("a", RowVerdict::Pass),
                row("c", RowVerdict::NotEnoughData),
                row("d", RowVerdict::Recommend),
                row("e", RowVerdict::Fail),
            ],
        };
        scorecard.sort_rows();
        let order: Vec<String> = scorecard
            .rows
            .iter()
            .map(|row| row.signal.label())
            .collect();
        assert_eq!(order, ["e", "d", "c", "a", "b"]);
        assert_eq!(
            serde_json::to_value(RowVerdict::NotEnoughData).unwrap(),
            "not_enough_data"
        );
    }

    #[test]
    fn rows_sort_by_each_column_both_ways_with_missing_figures_last() {
        let with_effect = |name: &str, verdict: RowVerdict, effect: Option<f64>| ScorecardRow {
            effect,
            score: effect.map(|effect| effect * 10.0),
            ..row(name, verdict)
        };
        let mut scorecard = Scorecard {
            at: 0,
            verdict: Verdict::Fault,
            rows: vec![
                with_effect("a", RowVerdict::Pass, Some(0.01)),
                with_effect("b", RowVerdict::Fail, Some(-0.9)),
                with_effect("c", RowVerdict::NotEnoughData, None),
                with_effect("d", RowVerdict::Recommend, Some(0.3)),
            ],
        };
        let order = |scorecard: &Scorecard| -> Vec<String> {
            scorecard
                .rows
                .iter()
                .map(|row| row.signal.label())
                .collect()
        };
        scorecard.sort_rows_by(RowSort::Effect, true);
        assert_eq!(order(&scorecard), ["b", "d", "a", "c"]);
        scorecard.sort_rows_by(RowSort::Effect, false);
        assert_eq!(order(&scorecard), ["a", "d", "b", "c"]);
        scorecard.sort_rows_by(RowSort::Score, true);
        assert_eq!(order(&scorecard), ["d", "a", "b", "c"]);
        scorecard.sort_rows_by(RowSort::Signal, true);
        assert_eq!(order(&scorecard), ["d", "c", "b", "a"]);
        scorecard.sort_rows_by(RowSort::Verdict, true);
        assert_eq!(order(&scorecard), ["a", "c", "d", "b"]);
        scorecard.sort_rows_by(RowSort::Verdict, false);
        assert_eq!(order(&scorecard), ["b", "d", "c", "a"]);
        assert_eq!(RowSort::parse("effect"), Some(RowSort::Effect));
        assert_eq!(RowSort::parse("Effect"), None);
    }
}
