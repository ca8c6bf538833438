//! The signals a release is judged on, as onboarding names them: what an app should send
//! (CPU, memory, load, request rate, latency, errors, logs), their families, and the metric
//! types Prometheus declares.

use serde::{Deserialize, Serialize};
use vigil_core::model::{Direction, MetricKind, MetricMeta};

/// A signal Vigil expects of an app, or `other` for a metric filling none.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Signal {
    Cpu,
    Memory,
    Load,
    RequestRate,
    Latency,
    Errors,
    Logs,
    Other,
}

/// The signals every app should send, in the order they are shown.
pub const EXPECTED_SIGNALS: [Signal; 7] = [
    Signal::Cpu,
    Signal::Memory,
    Signal::Load,
    Signal::RequestRate,
    Signal::Latency,
    Signal::Errors,
    Signal::Logs,
];

/// The metric signals a Prometheus server can provide.
pub const METRIC_SIGNALS: [Signal; 6] = [
    Signal::Cpu,
    Signal::Memory,
    Signal::Load,
    Signal::RequestRate,
    Signal::Latency,
    Signal::Errors,
];

impl Signal {
    /// The family it belongs to; `None` for `other`.
    pub fn family(self) -> Option<SignalFamily> {
        match self {
            Signal::Cpu | Signal::Memory | Signal::Load => Some(SignalFamily::System),
            Signal::RequestRate | Signal::Latency | Signal::Errors => {
                Some(SignalFamily::Middleware)
            }
            Signal::Logs => Some(SignalFamily::Logs),
            Signal::Other => None,
        }
    }

    /// Words for a sentence: "request latency".
    pub fn describe(self) -> &'static str {
        match self {
            Signal::Cpu => "CPU",
            Signal::Memory => "memory",
            Signal::Load => "load",
            Signal::RequestRate => "request rate",
            Signal::Latency => "request latency",
            Signal::Errors => "errors",
            Signal::Logs => "logs",
            Signal::Other => "none of the expected signals",
        }
    }

    /// What a release should declare of a metric `name` filling this signal: its kind, the
    /// harmful direction, whether it is critical; `None` for `other` and `logs`.
    pub fn suggested_meta(self, name: &str, unit: &str) -> Option<MetricMeta> {
        let (kind, direction, critical) = match self {
            Signal::Cpu | Signal::Memory | Signal::Load => {
                (MetricKind::System, Direction::Increase, false)
            }
            Signal::RequestRate => (MetricKind::Middleware, Direction::Either, false),
            Signal::Latency | Signal::Errors => (MetricKind::Middleware, Direction::Increase, true),
            Signal::Logs | Signal::Other => return None,
        };
        Some(MetricMeta {
            name: name.to_owned(),
            kind,
            unit: unit.to_owned(),
            direction,
            critical,
            judged: true,
        })
    }
}

/// A family of signals.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SignalFamily {
    System,
    Middleware,
    Logs,
}

/// A metric's type, as declared by its sender or guessed from its labels and values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MetricType {
    Counter,
    Gauge,
    Histogram,
    Summary,
    Unknown,
}

impl MetricType {
    /// A type as Prometheus' metadata writes it.
    pub fn from_metadata(text: &str) -> MetricType {
        match text {
            "counter" => MetricType::Counter,
            "gauge" => MetricType::Gauge,
            "histogram" | "gaugehistogram" => MetricType::Histogram,
            "summary" => MetricType::Summary,
            _ => MetricType::Unknown,
        }
    }
}
