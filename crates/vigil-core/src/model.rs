//! Domain types shared by every layer.

use serde::{Deserialize, Serialize};

/// Which side of the comparison a host is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HostGroup {
    /// Gets the new version, in one of the batches.
    Release,
    /// Keeps the old version for the whole window.
    Reference,
}

/// One host of the app.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Host {
    pub name: String,
    pub group: HostGroup,
}

/// One deployment batch: the hosts that got the new version at `at` (Unix seconds).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Batch {
    pub index: u32,
    pub at: i64,
    pub hosts: Vec<String>,
}

/// Where a metric comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MetricKind {
    System,
    Middleware,
    Business,
}

/// The direction in which a change of the metric hurts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    Increase,
    Decrease,
    Either,
}

impl Direction {
    /// +1 when up is harmful, -1 when down is, 0 when both are.
    pub fn sign(self) -> f64 {
        match self {
            Direction::Increase => 1.0,
            Direction::Decrease => -1.0,
            Direction::Either => 0.0,
        }
    }
}

/// What Vigil knows of a metric: never its name, always its metadata.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MetricMeta {
    pub name: String,
    pub kind: MetricKind,
    #[serde(default)]
    pub unit: String,
    pub direction: Direction,
    #[serde(default)]
    pub critical: bool,
    /// Whether a change of this metric may pause the release. A metric the release does not
    /// list (it was only sent) is not judged: it may recommend, never pause, unless the release
    /// asks to judge every metric (`judge_unlisted_metrics`).
    #[serde(default = "judged_by_default", skip_serializing_if = "is_judged")]
    pub judged: bool,
}

fn judged_by_default() -> bool {
    true
}

fn is_judged(judged: &bool) -> bool {
    *judged
}

impl MetricMeta {
    /// True when the unit says the metric is a share of a whole (percent, ratio, fraction).
    pub fn unit_is_share(&self) -> bool {
        let unit = self.unit.trim().to_ascii_lowercase();
        matches!(
            unit.as_str(),
            "%" | "percent" | "pct" | "ratio" | "fraction" | "percentunit"
        )
    }
}

/// A log template: the constant part of a family of log lines.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogTemplate {
    pub id: String,
    pub text: String,
    #[serde(default)]
    pub level: String,
}

impl LogTemplate {
    /// Exceptions are the templates logged at error level (or worse).
    pub fn is_exception(&self) -> bool {
        let level = self.level.trim().to_ascii_uppercase();
        matches!(
            level.as_str(),
            "ERROR" | "FATAL" | "CRITICAL" | "PANIC" | "SEVERE" | "EMERG" | "ALERT" | "CRIT"
        )
    }
}
