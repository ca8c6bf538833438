//! Onboarding an app (beside the guard, which has no part in it): what Vigil receives from it (hosts, metric sources, log sources), which of
//! the signals a release is judged on are covered, and what to configure for the rest.
//!
//! - [`report`] (`data.rs`) reads the in-memory index: every metric family of the app's hosts
//!   with its hosts, last sample, type and the signal it fills; its log templates and exception
//!   lines.
//! - [`discover`] asks the app's Prometheus which usual families it holds under the app's
//!   labels and proposes a pull query for each signal, one series per host.
//! - [`apply`] merges proposed queries into the app's pull source.
//! - `signals.rs` names the signals and their families; `report.rs` holds the report's types
//!   ([`Onboarding`]) and its next steps.
//!
//! Signals come in three families: system (CPU, memory, load), middleware (request rate,
//! latency, errors) and logs. An app is `connected` when both system and middleware metrics
//! arrive, `partial` when some data arrives, `not_connected` otherwise.

pub mod apply;
mod data;
pub mod discover;
pub mod names;
mod report;
mod signals;

pub use data::{report, ReportInput};
pub use discover::Discovery;
pub use report::{
    ConnectionState, ExceptionTemplate, FamilyCoverage, HostSeen, HostsSeen, LogHost, LogSources,
    MetricSource, NextStep, Onboarding, SignalCoverage, StepAction,
};
pub use signals::{MetricType, Signal, SignalFamily, EXPECTED_SIGNALS, METRIC_SIGNALS};
