//! An app's settings, in one place: what `PUT /api/v1/apps/{app}` stores ([`AppConfig`]: the
//! pull source and its queries, the selector, the log pattern, the declared metrics), their
//! checks, their defaults (the host label, the pull step), the one reader of the stored settings
//! ([`all_stored_settings`], [`stored_settings`], [`stored_app_config`]) and the metrics a new
//! release takes from them ([`release_metrics`]). The intake, the puller and onboarding read
//! settings only through here.

pub mod selector;

use serde::{Deserialize, Serialize};
use vigil_core::release::ReleaseSpec;
use vigil_core::rules::{check_rules, merged_rules};
use vigil_core::validate::{described_metrics, Invalid};
use vigil_core::{MetricMeta, Rule};
use vigil_store::{Store, StoreError};

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
    /// The team's own rules (`vigil_core::rules`), judged in every release of the app beside
    /// the analysis. Copied into a release when it is created, as `metrics` are; a release's
    /// own rule of the same name replaces the app's.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rules: Vec<Rule>,
}

/// The label naming the host in a pull query's results when the settings name none.
pub const PULL_HOST_LABEL: &str = "host";

/// The label onboarding looks for hosts under when neither the request nor the app's pull
/// source names one: Prometheus's scrape target label, which every scraped series carries.
/// Stored pull sources without a `host_label` keep reading [`PULL_HOST_LABEL`].
pub const DISCOVERY_HOST_LABEL: &str = "instance";

/// Seconds between two pulls when the settings, or a discovery request, name no step.
pub const DEFAULT_PULL_STEP_SECONDS: i64 = 30;

fn default_host_label() -> String {
    PULL_HOST_LABEL.to_owned()
}

fn default_pull_step() -> i64 {
    DEFAULT_PULL_STEP_SECONDS
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
            if selector.is_some_and(|text| selector::normalize_selector(text).is_none()) {
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
        check_rules(&self.rules, "rules")?;
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

/// The rules a new release of `app` is judged by: the release's own, then the app's whose
/// names it does not give ([`vigil_core::rules::merged_rules`]).
pub fn release_rules(own: Vec<Rule>, app: Option<&AppConfig>) -> Vec<Rule> {
    let app_rules = app
        .map(|config| config.rules.as_slice())
        .unwrap_or_default();
    merged_rules(own, app_rules)
}

/// Completes a new release's `metrics` with its app's declared metrics
/// ([`release_metrics`]) and its `rules` with the app's rules ([`release_rules`]), before it
/// is stored, so that a later change of the app does not change a running release.
pub fn add_declared_metrics(store: &dyn Store, spec: &mut ReleaseSpec) -> Result<(), StoreError> {
    let app = stored_app_config(store, &spec.app)?;
    let listed = std::mem::take(&mut spec.metrics);
    spec.metrics = release_metrics(listed, app.as_ref());
    let own_rules = std::mem::take(&mut spec.rules);
    spec.rules = release_rules(own_rules, app.as_ref());
    Ok(())
}

/// Settings stored for an app that no longer read as [`AppConfig`] (they were checked when
/// stored, so a later change of the format made them so).
#[derive(Debug, thiserror::Error)]
#[error("stored settings of app {app} are not valid: {error}")]
pub struct UnreadableSettings {
    pub app: String,
    error: serde_json::Error,
}

/// An app's stored settings as read: decoded, or why not.
pub type StoredSettings = Result<AppConfig, UnreadableSettings>;

/// The one decoding of stored settings, which every reader below goes through.
fn decode(app: &str, value: serde_json::Value) -> StoredSettings {
    serde_json::from_value(value).map_err(|error| UnreadableSettings {
        app: app.to_owned(),
        error,
    })
}

/// Every app's stored settings, by app name, each decoded or why not.
pub fn all_stored_settings(store: &dyn Store) -> Result<Vec<(String, StoredSettings)>, StoreError> {
    let decoded = store.apps()?.into_iter().map(|(app, value)| {
        let settings = decode(&app, value);
        (app, settings)
    });
    Ok(decoded.collect())
}

/// The stored settings of `app`, decoded or why not; `None` when it has none.
pub fn stored_settings(store: &dyn Store, app: &str) -> Result<Option<StoredSettings>, StoreError> {
    let found = store.apps()?.into_iter().find(|(name, _)| name == app);
    Ok(found.map(|(_, value)| decode(app, value)))
}

/// The stored settings of `app`, if it has any; `None` as well, with a warning, for settings
/// that no longer read (for readers that do as if the app had none).
pub fn stored_app_config(store: &dyn Store, app: &str) -> Result<Option<AppConfig>, StoreError> {
    match stored_settings(store, app)? {
        Some(Ok(config)) => Ok(Some(config)),
        Some(Err(unreadable)) => {
            tracing::warn!(app = %app, error = %unreadable, "ignoring the app's unreadable settings");
            Ok(None)
        }
        None => Ok(None),
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

    #[test]
    fn app_rules_are_checked_naming_the_field_and_a_release_s_own_come_first() {
        let config: AppConfig = serde_json::from_str(
            r#"{"rules": [{"name": "success", "metric": "success_rate", "below": 0.99, "severity": "fault"},
                          {"name": "slow", "query": "", "above": 1, "severity": "anomaly"}]}"#,
        )
        .unwrap();
        assert_eq!(
            config.validate().expect_err("empty query").to_string(),
            "rules[1].query: must not be empty"
        );
        let own: Vec<Rule> = serde_json::from_str(
            r#"[{"name": "slow", "metric": "latency", "above": 300, "severity": "fault"}]"#,
        )
        .unwrap();
        let merged = release_rules(own.clone(), Some(&config));
        let names: Vec<&str> = merged.iter().map(|rule| rule.name.as_str()).collect();
        assert_eq!(names, ["slow", "success"]);
        assert_eq!(merged[0], own[0]);
        assert_eq!(release_rules(own.clone(), None), own);
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
