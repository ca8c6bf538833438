//! Where and how discovery looks: the Prometheus server, the app's selector, the host label
//! and the pull step, checked, and the PromQL fragments the proposals are written with.

use serde::{Deserialize, Serialize};
use vigil_guard::apps::selector::{default_selector, normalize_selector};
use vigil_guard::apps::{PullSource, DEFAULT_PULL_STEP_SECONDS, DISCOVERY_HOST_LABEL};
use vigil_ingest::prometheus::{is_label_name, PrometheusError};

/// Where and how to look.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DiscoveryParams {
    /// Base URL of the Prometheus server.
    pub prometheus: String,
    /// The app's label matchers, without braces: `job="checkout"`.
    pub selector: String,
    /// The label naming the host in the proposed queries' results.
    pub host_label: String,
    /// The pull step the queries are proposed for.
    pub step_seconds: i64,
    /// The range of `rate()` in the proposed queries.
    pub rate_window_seconds: i64,
}

/// Why discovery could not start or finish.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DiscoveryError {
    #[error("prometheus address {0:?} must start with http:// or https://")]
    Url(String),
    #[error("selector {0:?} is not a list of label matchers such as job=\"checkout\"")]
    Selector(String),
    #[error("host_label {0:?} is not a label name")]
    HostLabel(String),
    #[error("step_seconds must be between 1 and 3600")]
    Step,
    #[error("selector and host_label need prometheus=URL or a configured pull source")]
    NoServer,
    #[error(transparent)]
    Prometheus(#[from] PrometheusError),
}

/// The default `rate()` range for a pull step: four steps, at least two minutes, so that a
/// scrape interval up to a minute leaves enough samples.
pub fn default_rate_window(step_seconds: i64) -> i64 {
    step_seconds.saturating_mul(4).max(120)
}

/// Where a request asks discovery to look; each part left out is taken from the app's pull
/// source when it is on the same server, else from the defaults (`job="<app>"`,
/// [`DISCOVERY_HOST_LABEL`], [`DEFAULT_PULL_STEP_SECONDS`]).
#[derive(Debug, Clone, Copy, Default)]
pub struct AskedParams<'a> {
    pub prometheus: Option<&'a str>,
    pub selector: Option<&'a str>,
    pub host_label: Option<&'a str>,
    pub step_seconds: Option<i64>,
}

impl DiscoveryParams {
    /// The parameters from what was asked and the app's pull source; `None` when neither
    /// names a Prometheus server.
    pub fn resolve(
        app: &str,
        asked: AskedParams<'_>,
        configured: Option<&PullSource>,
    ) -> Result<Option<DiscoveryParams>, DiscoveryError> {
        let url = match (asked.prometheus, configured) {
            (Some(url), _) => url.to_owned(),
            (None, Some(source)) => source.url.clone(),
            (None, None) if asked.selector.is_some() || asked.host_label.is_some() => {
                return Err(DiscoveryError::NoServer);
            }
            (None, None) => return Ok(None),
        };
        let same_server = configured
            .filter(|source| source.url.trim_end_matches('/') == url.trim().trim_end_matches('/'));
        let selector = asked
            .selector
            .map(str::to_owned)
            .or_else(|| same_server.and_then(|source| source.selector.clone()))
            .unwrap_or_else(|| default_selector(app));
        let host_label = asked
            .host_label
            .map(str::to_owned)
            .or_else(|| same_server.map(|source| source.host_label.clone()))
            .unwrap_or_else(|| DISCOVERY_HOST_LABEL.to_owned());
        let step_seconds = asked
            .step_seconds
            .or_else(|| same_server.map(|source| source.step_seconds))
            .unwrap_or(DEFAULT_PULL_STEP_SECONDS);
        DiscoveryParams::new(&url, &selector, &host_label, step_seconds).map(Some)
    }

    /// Checks and normalizes the parameters (the selector loses its braces).
    pub fn new(
        prometheus: &str,
        selector: &str,
        host_label: &str,
        step_seconds: i64,
    ) -> Result<DiscoveryParams, DiscoveryError> {
        let url = prometheus.trim().trim_end_matches('/');
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            return Err(DiscoveryError::Url(prometheus.to_owned()));
        }
        let normalized = normalize_selector(selector)
            .ok_or_else(|| DiscoveryError::Selector(selector.to_owned()))?;
        if !is_label_name(host_label) {
            return Err(DiscoveryError::HostLabel(host_label.to_owned()));
        }
        if !(1..=3600).contains(&step_seconds) {
            return Err(DiscoveryError::Step);
        }
        Ok(DiscoveryParams {
            prometheus: url.to_owned(),
            selector: normalized,
            host_label: host_label.to_owned(),
            step_seconds,
            rate_window_seconds: default_rate_window(step_seconds),
        })
    }

    /// `name{selector, extra...}`.
    pub(super) fn select(&self, name: &str, extra: &[String]) -> String {
        let mut matchers = vec![self.selector.clone()];
        matchers.extend(extra.iter().cloned());
        format!("{name}{{{}}}", matchers.join(","))
    }

    /// `rate(name{selector, extra...}[window])`.
    pub(super) fn rate(&self, name: &str, extra: &[String]) -> String {
        format!(
            "rate({}[{}])",
            self.select(name, extra),
            duration_text(self.rate_window_seconds)
        )
    }
}

/// `120` as `2m`, `90` as `90s`.
pub(super) fn duration_text(seconds: i64) -> String {
    if seconds % 60 == 0 {
        return format!("{}m", seconds / 60);
    }
    format!("{seconds}s")
}
