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
}
