//! What discovery answers: the signals found with their proposed queries, the signals missing
//! with what to give, and remarks on the whole.

use serde::{Deserialize, Serialize};
use vigil_core::model::MetricMeta;
use vigil_guard::apps::PullQuery;

use super::params::DiscoveryParams;
use crate::signals::{MetricType, Signal, SignalFamily};

/// What discovery found on the server and proposes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Discovery {
    #[serde(flatten)]
    pub params: DiscoveryParams,
    /// Values of the host label under the selector.
    pub hosts: Vec<String>,
    /// Metric names under the selector.
    pub metric_names: usize,
    /// One entry per signal found, in the order of the signals.
    pub found: Vec<FoundSignal>,
    /// One entry per signal not found, with what the user must give.
    pub missing: Vec<MissingSignal>,
    /// Remarks on the whole (hosts that differ between metrics, unreadable metadata).
    pub notes: Vec<String>,
}

/// A signal found, with the query proposed for it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FoundSignal {
    pub signal: Signal,
    pub family: SignalFamily,
    /// The convention the metric follows, or how it was recognized.
    pub convention: String,
    /// The Prometheus metric names the query reads.
    pub metrics: Vec<String>,
    /// As declared by metadata, or guessed from the name.
    pub metric_type: MetricType,
    /// The metadata's help text, or empty.
    pub help: String,
    /// Hosts carrying the metric.
    pub hosts: usize,
    /// Ready to store in the app's pull source.
    pub query: PullQuery,
    /// What a release should declare of the pulled metric.
    pub meta: MetricMeta,
    pub evidence: Vec<String>,
    /// Other metric names that fill the same signal.
    pub alternatives: Vec<String>,
    /// The query run once against the server, when it was.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub check: Option<QueryCheck>,
}

/// The outcome of running a proposed query once.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueryCheck {
    /// Hosts with a series in the answer.
    pub hosts: usize,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// A signal not found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MissingSignal {
    pub signal: Signal,
    pub family: SignalFamily,
    /// What the user must give, in one or two sentences.
    pub prompt: String,
}

impl Discovery {
    pub fn found_signal(&self, signal: Signal) -> Option<&FoundSignal> {
        self.found.iter().find(|found| found.signal == signal)
    }

    pub fn missing_signal(&self, signal: Signal) -> Option<&MissingSignal> {
        self.missing.iter().find(|missing| missing.signal == signal)
    }

    /// The proposed pull queries, in the order of the signals.
    pub fn proposed_queries(&self) -> Vec<PullQuery> {
        self.found.iter().map(|found| found.query.clone()).collect()
    }
}
