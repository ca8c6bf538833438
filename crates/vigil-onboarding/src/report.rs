//! An app's onboarding report: what arrives from it, which signals are covered, whether it is
//! connected, and the next step for each signal missing.

use serde::{Deserialize, Serialize};
use vigil_core::model::MetricMeta;
use vigil_guard::apps::PullSource;

use crate::discover::Discovery;
use crate::signals::{MetricType, Signal, SignalFamily};

/// How much of an app Vigil sees.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ConnectionState {
    /// System and middleware metrics arrive.
    Connected,
    /// Some data arrives, not both system and middleware metrics.
    Partial,
    /// Nothing arrives.
    NotConnected,
}

/// Everything known about an app's onboarding; what the Apps page shows.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Onboarding {
    pub app: String,
    /// When the report was made, Unix seconds.
    pub at: i64,
    pub state: ConnectionState,
    pub hosts: HostsSeen,
    /// Metric families received from the app's hosts, most hosts first.
    pub metrics: Vec<MetricSource>,
    pub logs: LogSources,
    /// One entry per family: system, middleware, logs.
    pub coverage: Vec<FamilyCoverage>,
    /// One step per missing signal.
    pub next_steps: Vec<NextStep>,
    /// The app's configured pull source.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pull: Option<PullSource>,
    /// What the app's Prometheus holds and the queries proposed for it, when asked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub discovery: Option<Discovery>,
    /// Why discovery from the app's configured pull source failed, when it did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub discovery_error: Option<String>,
}

/// The app's hosts with data in the index.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostsSeen {
    pub count: usize,
    /// Newest data of any host, Unix seconds.
    pub last_seen: Option<i64>,
    /// Sorted by name.
    pub hosts: Vec<HostSeen>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostSeen {
    pub host: String,
    /// Newest sample or log line, Unix seconds.
    pub last_seen: i64,
    pub metric_series: usize,
    pub log_templates: usize,
}

/// One metric family (the name before any labels) received from the app's hosts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MetricSource {
    pub name: String,
    /// Distinct series (label sets) over every host.
    pub series: usize,
    pub hosts_reporting: usize,
    /// Hosts of the app that send other data but not this family.
    pub hosts_missing: Vec<String>,
    /// Newest sample, Unix seconds.
    pub last_sample: i64,
    pub metric_type: MetricType,
    /// Guessed from the name's suffix or the values; empty when unknown.
    pub unit: String,
    /// The signals it fills; `["other"]` when none.
    pub signals: Vec<Signal>,
    /// Why it was classified so, one short sentence each.
    pub evidence: Vec<String>,
    /// Fetched by the app's pull source.
    pub pulled: bool,
    /// What a release should declare of it, when it is one series per host and fills a
    /// signal.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub suggested: Option<MetricMeta>,
}

/// The app's log lines in the index.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogSources {
    /// Hosts sending log lines, sorted by name.
    pub hosts: Vec<LogHost>,
    /// Distinct templates seen.
    pub templates: usize,
    /// Of those, logged at error level or worse.
    pub exception_templates: usize,
    pub lines: u64,
    pub exception_lines: u64,
    /// Newest line, Unix seconds.
    pub last_line: Option<i64>,
    /// The most frequent exception templates, at most ten.
    pub top_exceptions: Vec<ExceptionTemplate>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogHost {
    pub host: String,
    pub lines: u64,
    pub exception_lines: u64,
    pub templates: usize,
    pub last_line: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExceptionTemplate {
    pub id: String,
    pub text: String,
    pub level: String,
    pub lines: u64,
    pub hosts: usize,
}

/// Which signals of a family arrive.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FamilyCoverage {
    pub family: SignalFamily,
    /// At least one of its signals arrives.
    pub covered: bool,
    pub signals: Vec<SignalCoverage>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignalCoverage {
    pub signal: Signal,
    pub found: bool,
    /// The metric families filling it (for logs: the hosts sending lines).
    pub sources: Vec<String>,
}

/// What to do next for a missing signal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StepAction {
    /// A discovered query waits: `POST /api/v1/apps/{app}/onboarding/apply`.
    ApplyProposal,
    /// The query is configured but nothing arrived yet.
    CheckPull,
    /// Give a PromQL query returning one series per host.
    ConfigurePullQuery,
    /// Point the report at the app's Prometheus to find the metric.
    DiscoverPrometheus,
    /// Send log lines to `POST /api/v1/ingest/logs`.
    SendLogs,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NextStep {
    pub signal: Signal,
    pub family: SignalFamily,
    pub action: StepAction,
    /// One sentence a person can follow.
    pub text: String,
}

impl Onboarding {
    /// Adds what discovery found and recomputes the next steps.
    pub fn with_discovery(mut self, discovery: Discovery) -> Onboarding {
        self.discovery = Some(discovery);
        self.next_steps = next_steps(
            &self.app,
            &self.coverage,
            self.pull.as_ref(),
            self.discovery.as_ref(),
        );
        self
    }
}

/// The state from the coverage: connected when system and middleware arrive, partial when
/// any data arrives (`data_arrives`: some host of the app sent something).
pub(crate) fn connection_state(coverage: &[FamilyCoverage], data_arrives: bool) -> ConnectionState {
    let covered = |family: SignalFamily| {
        coverage
            .iter()
            .any(|entry| entry.family == family && entry.covered)
    };
    if covered(SignalFamily::System) && covered(SignalFamily::Middleware) {
        return ConnectionState::Connected;
    }
    if data_arrives || coverage.iter().any(|entry| entry.covered) {
        return ConnectionState::Partial;
    }
    ConnectionState::NotConnected
}

/// One step per expected signal that does not arrive.
pub(crate) fn next_steps(
    app: &str,
    coverage: &[FamilyCoverage],
    pull: Option<&PullSource>,
    discovery: Option<&Discovery>,
) -> Vec<NextStep> {
    coverage
        .iter()
        .flat_map(|family| family.signals.iter())
        .filter(|entry| !entry.found)
        .filter_map(|entry| {
            let family = entry.signal.family()?;
            let (action, text) = step_for(app, entry.signal, pull, discovery);
            Some(NextStep {
                signal: entry.signal,
                family,
                action,
                text,
            })
        })
        .collect()
}

fn step_for(
    app: &str,
    signal: Signal,
    pull: Option<&PullSource>,
    discovery: Option<&Discovery>,
) -> (StepAction, String) {
    if signal == Signal::Logs {
        return (
            StepAction::SendLogs,
            format!(
                "send the app's log lines to POST /api/v1/ingest/logs as \
                 {{\"lines\": [{{\"host\", \"app\": \"{app}\", \"time\", \"line\"}}]}} \
                 (an ingest token)"
            ),
        );
    }
    let what = signal.describe();
    if let Some(found) = discovery.and_then(|result| result.found_signal(signal)) {
        let metric = &found.query.metric;
        let configured = pull.is_some_and(|source| {
            source
                .queries
                .iter()
                .any(|query| query.query == found.query.query || query.metric == *metric)
        });
        if configured {
            return (
                StepAction::CheckPull,
                format!(
                    "the pull query {metric} is configured but no {what} data arrived yet: \
                     it is fetched every step; if nothing comes, the server's log names the \
                     failing pull"
                ),
            );
        }
        return (
            StepAction::ApplyProposal,
            format!(
                "apply the proposed pull query {metric} ({}): \
                 POST /api/v1/apps/{app}/onboarding/apply",
                found.query.query
            ),
        );
    }
    if let Some(missing) = discovery.and_then(|result| result.missing_signal(signal)) {
        return (StepAction::ConfigurePullQuery, missing.prompt.clone());
    }
    if pull.is_some() {
        return (
            StepAction::ConfigurePullQuery,
            format!(
                "no {what} metric arrives: add a pull query returning one series per host to \
                 the app's settings (PUT /api/v1/apps/{app})"
            ),
        );
    }
    (
        StepAction::DiscoverPrometheus,
        format!(
            "no {what} metric arrives: give the app's Prometheus to find one \
             (GET /api/v1/apps/{app}/onboarding?prometheus=URL&selector=job=\"{app}\"), \
             or push samples to POST /api/v1/ingest/samples or by remote write to \
             /api/v1/ingest/prometheus"
        ),
    )
}
