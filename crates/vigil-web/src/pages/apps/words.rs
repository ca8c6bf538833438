//! The words of an app's pages: what a family, a state, a metric type and a declaration are
//! called. Pure rules, no HTML.

use vigil_core::model::{Direction, MetricKind, MetricMeta};
use vigil_onboarding::{ConnectionState, MetricType, Signal, SignalFamily};

pub(super) fn family_words(family: SignalFamily) -> &'static str {
    match family {
        SignalFamily::System => "system",
        SignalFamily::Middleware => "middleware",
        SignalFamily::Logs => "logs",
    }
}

/// What a state means, in one sentence.
pub(super) fn state_meaning(state: ConnectionState) -> &'static str {
    match state {
        ConnectionState::Connected => "System and middleware metrics arrive.",
        ConnectionState::Partial => {
            "Some data arrives, but not both system and middleware metrics."
        }
        ConnectionState::NotConnected => "Nothing arrives from this app yet.",
    }
}

pub(super) fn metric_type_words(metric_type: MetricType) -> &'static str {
    match metric_type {
        MetricType::Counter => "counter",
        MetricType::Gauge => "gauge",
        MetricType::Histogram => "histogram",
        MetricType::Summary => "summary",
        MetricType::Unknown => "unknown",
    }
}

/// What a release should declare of a metric: `middleware, harmful when it increases,
/// critical`.
pub(super) fn declaration_words(meta: &MetricMeta) -> String {
    let kind = match meta.kind {
        MetricKind::System => "system",
        MetricKind::Middleware => "middleware",
        MetricKind::Business => "business",
    };
    let direction = match meta.direction {
        Direction::Increase => "harmful when it increases",
        Direction::Decrease => "harmful when it decreases",
        Direction::Either => "harmful either way",
    };
    let critical = if meta.critical { ", critical" } else { "" };
    format!("{kind}, {direction}{critical}")
}

/// Signals as a person reads them: `CPU, memory`.
pub(super) fn signal_list(signals: &[Signal]) -> String {
    signals
        .iter()
        .map(|signal| signal.describe())
        .collect::<Vec<_>>()
        .join(", ")
}
