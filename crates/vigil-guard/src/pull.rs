//! Apps' settings, and the pull source: per app, PromQL queries with a host label, fetched from
//! a Prometheus server every step and fed through the same intake as pushed data.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};
use vigil_core::release::ReleaseSpec;
use vigil_core::samples::MetricChunk;
use vigil_core::validate::{described_metrics, Invalid};
use vigil_core::{Clock, MetricMeta};
use vigil_store::{Store, StoreError};

use crate::intake::Intake;
use crate::onboarding::discover::normalize_selector;

/// An app's settings, as stored and as sent to `PUT /api/v1/apps/{app}`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AppConfig {
    /// Fetch the app's metrics from a Prometheus server.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prometheus: Option<PullSource>,
    /// A regular expression with named groups `message` (and optionally `level`) for the app's
    /// log lines, when the miner does not find the message part itself.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log_pattern: Option<String>,
    /// The metrics judged in every release of the app (they may pause it), described as a
    /// release's `metrics` are. A release's own description of a metric comes first; these
    /// are copied into the release when it is created, so that a later change of the app does
    /// not change how a running release is judged.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub metrics: Vec<MetricMeta>,
}

fn default_host_label() -> String {
    "host".to_string()
}

fn default_pull_step() -> i64 {
    30
}

/// Where and what to pull.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PullSource {
    /// Base URL of the Prometheus server (`http://127.0.0.1:9090`).
    pub url: String,
    /// The label of the query results that names the host.
    #[serde(default = "default_host_label")]
    pub host_label: String,
    /// Seconds between two pulls, and the resolution asked for.
    #[serde(default = "default_pull_step")]
    pub step_seconds: i64,
    pub queries: Vec<PullQuery>,
    /// The app's label matchers on this server (`job="checkout"`), where onboarding looks for
    /// the app's metrics.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<String>,
}

/// One query: its results are stored as metric `metric` of each host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PullQuery {
    pub metric: String,
    pub query: String,
}

/// Why app settings were refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AppConfigError {
    #[error("prometheus.url must start with http:// or https://")]
    Url,
    #[error("prometheus.step_seconds must be between 1 and 3600")]
    Step,
    #[error("prometheus.queries must hold at least one query")]
    NoQuery,
    #[error("prometheus.queries[{0}] needs a metric name and a query")]
    EmptyQuery(usize),
    #[error("prometheus.queries[{index}] repeats metric {metric:?}")]
    DuplicateMetric { index: usize, metric: String },
    #[error("prometheus.selector must be label matchers such as job=\"checkout\"")]
    Selector,
    #[error("log_pattern is not a valid regular expression: {0}")]
    Pattern(String),
    #[error("log_pattern needs a named group `message`")]
    PatternWithoutMessage,
    #[error(transparent)]
    Metrics(#[from] Invalid),
}

impl AppConfig {
    pub fn validate(&self) -> Result<(), AppConfigError> {
        if let Some(source) = &self.prometheus {
            if !(source.url.starts_with("http://") || source.url.starts_with("https://")) {
                return Err(AppConfigError::Url);
            }
            if !(1..=3600).contains(&source.step_seconds) {
                return Err(AppConfigError::Step);
            }
            if source.queries.is_empty() {
                return Err(AppConfigError::NoQuery);
            }
            let selector = source.selector.as_deref();
            if selector.is_some_and(|text| normalize_selector(text).is_none()) {
                return Err(AppConfigError::Selector);
            }
            let mut metrics = std::collections::HashSet::new();
            for (index, query) in source.queries.iter().enumerate() {
                if query.metric.trim().is_empty() || query.query.trim().is_empty() {
                    return Err(AppConfigError::EmptyQuery(index));
                }
                if !metrics.insert(query.metric.as_str()) {
                    return Err(AppConfigError::DuplicateMetric {
                        index,
                        metric: query.metric.clone(),
                    });
                }
            }
        }
        if let Some(pattern) = &self.log_pattern {
            let compiled = regex::Regex::new(pattern)
                .map_err(|error| AppConfigError::Pattern(error.to_string()))?;
            if !compiled
                .capture_names()
                .flatten()
                .any(|name| name == "message")
            {
                return Err(AppConfigError::PatternWithoutMessage);
            }
        }
        described_metrics(&self.metrics, "metrics")?;
        Ok(())
    }
}

/// The metrics a new release of `app` is judged on: the release's own list first, then the
/// app's declared metrics it does not list. Every other metric gets
/// [`crate::assemble::default_meta`] when its window is assembled (it may only recommend).
pub fn release_metrics(listed: Vec<MetricMeta>, app: Option<&AppConfig>) -> Vec<MetricMeta> {
    let declared = app
        .map(|config| config.metrics.as_slice())
        .unwrap_or_default();
    let mut metrics = listed;
    let listed_names: std::collections::HashSet<String> =
        metrics.iter().map(|meta| meta.name.clone()).collect();
    let missing = declared
        .iter()
        .filter(|meta| !listed_names.contains(&meta.name));
    metrics.extend(missing.cloned());
    metrics
}

/// Completes a new release's `metrics` with its app's declared metrics
/// ([`release_metrics`]), before it is stored.
pub fn add_declared_metrics(store: &dyn Store, spec: &mut ReleaseSpec) -> Result<(), StoreError> {
    let app = stored_app_config(store, &spec.app)?;
    let listed = std::mem::take(&mut spec.metrics);
    spec.metrics = release_metrics(listed, app.as_ref());
    Ok(())
}

/// The stored settings of `app`, if it has any; `None` as well, with a warning, for settings
/// that no longer read (they were checked when stored).
pub fn stored_app_config(store: &dyn Store, app: &str) -> Result<Option<AppConfig>, StoreError> {
    let Some((_, value)) = store.apps()?.into_iter().find(|(name, _)| name == app) else {
        return Ok(None);
    };
    match serde_json::from_value::<AppConfig>(value) {
        Ok(config) => Ok(Some(config)),
        Err(error) => {
            tracing::warn!(app = %app, %error, "ignoring the app's unreadable settings");
            Ok(None)
        }
    }
}

/// Fetches one query's results over `[start, end]` (Unix seconds) at `step` seconds, as samples
/// of `query.metric` on each host of `app`.
pub type Fetch =
    dyn Fn(&str, &PullSource, &PullQuery, i64, i64) -> Result<MetricChunk, String> + Send + Sync;

/// The last failure of one pull query: it is shown on the app's page, since a query that fails
/// at every step would otherwise only be a line in the log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PullFailure {
    pub metric: String,
    /// Unix seconds of the failed pull.
    pub at: i64,
    pub error: String,
}

/// The failing pull queries, by app and metric; a query leaves once it pulls again.
#[derive(Debug, Default)]
pub struct PullFailures {
    by_query: Mutex<HashMap<(String, String), PullFailure>>,
}

impl PullFailures {
    fn record(&self, app: &str, failure: PullFailure) {
        self.lock()
            .insert((app.to_owned(), failure.metric.clone()), failure);
    }

    fn clear(&self, key: &(String, String)) {
        self.lock().remove(key);
    }

    /// The failing queries of `app`, by metric name.
    pub fn of_app(&self, app: &str) -> Vec<PullFailure> {
        let mut failing: Vec<PullFailure> = self
            .lock()
            .iter()
            .filter(|((failing_app, _), _)| failing_app == app)
            .map(|(_, failure)| failure.clone())
            .collect();
        failing.sort_by(|left, right| left.metric.cmp(&right.metric));
        failing
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<(String, String), PullFailure>> {
        self.by_query
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// What a pull round did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PullReport {
    pub queries: usize,
    pub samples: usize,
    pub failures: Vec<String>,
}

/// Pulls every app's queries when their step is due.
pub struct Puller {
    store: Arc<dyn Store>,
    intake: Arc<Intake>,
    clock: Arc<dyn Clock>,
    fetch: Arc<Fetch>,
    /// How far back the first pull of an app reaches, in seconds.
    backfill_seconds: i64,
    /// End of the last successful pull, per app and metric.
    pulled_until: Mutex<HashMap<(String, String), i64>>,
    failures: Arc<PullFailures>,
}

impl std::fmt::Debug for Puller {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Puller")
            .field("backfill_seconds", &self.backfill_seconds)
            .finish_non_exhaustive()
    }
}

impl Puller {
    pub fn new(
        store: Arc<dyn Store>,
        intake: Arc<Intake>,
        clock: Arc<dyn Clock>,
        fetch: Arc<Fetch>,
        backfill_seconds: i64,
    ) -> Puller {
        Puller {
            store,
            intake,
            clock,
            fetch,
            backfill_seconds,
            pulled_until: Mutex::new(HashMap::new()),
            failures: Arc::new(PullFailures::default()),
        }
    }

    /// The failing queries, as they are now and after every later pull.
    pub fn failures(&self) -> Arc<PullFailures> {
        Arc::clone(&self.failures)
    }

    /// Pulls every query whose step has come since its last pull.
    pub fn pull_due(&self) -> PullReport {
        let mut report = PullReport::default();
        let apps = match self.store.apps() {
            Ok(apps) => apps,
            Err(error) => {
                report.failures.push(format!("cannot read apps: {error}"));
                return report;
            }
        };
        let now = self.clock.now();
        for (app, value) in apps {
            let Ok(config) = serde_json::from_value::<AppConfig>(value) else {
                report
                    .failures
                    .push(format!("app {app}: stored settings are not valid"));
                continue;
            };
            let Some(source) = config.prometheus else {
                continue;
            };
            let step = source.step_seconds.max(1);
            let end = now.div_euclid(step) * step;
            for query in &source.queries {
                let key = (app.clone(), query.metric.clone());
                let since = self
                    .pulled_until
                    .lock()
                    .unwrap_or_else(|poisoned| poisoned.into_inner())
                    .get(&key)
                    .copied();
                let start = match since {
                    Some(last) if last >= end => continue,
                    Some(last) => last + step,
                    None => end - self.backfill_seconds,
                };
                report.queries += 1;
                let chunk = match (self.fetch)(&app, &source, query, start, end) {
                    Ok(chunk) => chunk,
                    Err(error) => {
                        tracing::warn!(app = %app, metric = %query.metric, %error, "prometheus pull failed");
                        report
                            .failures
                            .push(format!("app {app}, metric {}: {error}", query.metric));
                        self.failures.record(
                            &app,
                            PullFailure {
                                metric: query.metric.clone(),
                                at: now,
                                error,
                            },
                        );
                        continue;
                    }
                };
                self.failures.clear(&key);
                match self.intake.metrics(&chunk, None, now) {
                    Ok(accepted) => {
                        report.samples += accepted.items;
                        self.pulled_until
                            .lock()
                            .unwrap_or_else(|poisoned| poisoned.into_inner())
                            .insert(key, end);
                    }
                    Err(error) => report
                        .failures
                        .push(format!("app {app}, metric {}: {error}", query.metric)),
                }
            }
        }
        report
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn app_settings_are_checked() {
        let good: AppConfig = serde_json::from_str(
            r#"{"prometheus": {"url": "http://127.0.0.1:9090", "queries": [{"metric": "cpu", "query": "rate(x[1m])"}]},
                "log_pattern": "^(?P<level>\\w+) (?P<message>.*)$"}"#,
        )
        .unwrap();
        assert_eq!(good.validate(), Ok(()));
        assert_eq!(good.prometheus.as_ref().unwrap().host_label, "host");
        let mut bad = good.clone();
        bad.log_pattern = Some("(".into());
        assert!(matches!(bad.validate(), Err(AppConfigError::Pattern(_))));
        bad.log_pattern = Some("^(?P<msg>.*)$".into());
        assert_eq!(bad.validate(), Err(AppConfigError::PatternWithoutMessage));
        let mut no_url = good.clone();
        no_url.prometheus.as_mut().unwrap().url = "ftp://x".into();
        assert_eq!(no_url.validate(), Err(AppConfigError::Url));
        let mut selected = good;
        selected.prometheus.as_mut().unwrap().selector = Some("{job=\"shop\"}".into());
        assert_eq!(selected.validate(), Ok(()));
        selected.prometheus.as_mut().unwrap().selector = Some("shop".into());
        assert_eq!(selected.validate(), Err(AppConfigError::Selector));
        assert!(serde_json::from_str::<AppConfig>(
            r#"{"prometheus": {"url": "http://a", "queries": [], "extra": 1}}"#
        )
        .is_err());
    }

    fn described(name: &str, direction: vigil_core::Direction) -> MetricMeta {
        MetricMeta {
            name: name.into(),
            kind: vigil_core::MetricKind::Middleware,
            unit: "ms".into(),
            direction,
            critical: true,
            judged: true,
        }
    }

    #[test]
    fn a_release_list_comes_before_the_app_declarations() {
        use vigil_core::Direction;
        let app = AppConfig {
            metrics: vec![
                described("latency", Direction::Increase),
                described("errors", Direction::Increase),
            ],
            ..AppConfig::default()
        };
        let listed = vec![described("latency", Direction::Either)];
        let merged = release_metrics(listed.clone(), Some(&app));
        assert_eq!(
            merged,
            vec![
                described("latency", Direction::Either),
                described("errors", Direction::Increase)
            ]
        );
        assert_eq!(release_metrics(listed.clone(), None), listed);
    }

    #[test]
    fn declared_metrics_are_checked_like_a_release_list() {
        use vigil_core::Direction;
        let repeated = AppConfig {
            metrics: vec![
                described("latency", Direction::Increase),
                described("latency", Direction::Decrease),
            ],
            ..AppConfig::default()
        };
        assert_eq!(
            repeated.validate().expect_err("repeated").to_string(),
            "metrics[1].name: describes metric \"latency\" a second time"
        );
        let unnamed = AppConfig {
            metrics: vec![described("", Direction::Increase)],
            ..AppConfig::default()
        };
        assert_eq!(
            unnamed.validate().expect_err("empty").to_string(),
            "metrics[0].name: must not be empty"
        );
    }
}
