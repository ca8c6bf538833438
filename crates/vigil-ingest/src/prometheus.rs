//! Pulls a metric from Prometheus' HTTP API: one `/api/v1/query_range` call, its matrix turned
//! into a [`MetricChunk`] with one series per host under a metric name the caller chooses.
//!
//! The client is blocking (the server runs it on a blocking thread) with a connect timeout and
//! a timeout for the whole call, which is also passed to Prometheus as the query's own
//! `timeout`. It never goes through a proxy and never follows redirects.
//!
//! What it refuses: an address that is not `http://` or `https://`; a range whose point count
//! would pass Prometheus' own 11 000 points per series; an answer larger than
//! [`PrometheusOptions::max_response_bytes`], with more series or points than the limits, or
//! with two series for the same host (the query must aggregate by the host label). Prometheus'
//! error answers (`{"status": "error", "errorType": ..., "error": ...}`) become
//! [`PrometheusError::Query`]. Result series without the host label are left out and listed in
//! [`RangeResult::without_host`]. Values `"NaN"`, `"+Inf"` and `"-Inf"` are kept as such.
//!
//! For onboarding an app, the client also asks what a server holds: the values of a label
//! (`/api/v1/label/<name>/values`, metric names with `__name__`), the label names of matching
//! series (`/api/v1/labels`), both with `match[]` selectors over a time range, and a metric
//! family's type and help (`/api/v1/metadata`). Their answers are bounded by the same limits.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::Deserialize;
use vigil_core::samples::{HostLabels, MetricChunk, Point, SeriesKey};

use crate::remote_write::prometheus_notation;

/// Timeouts and limits of the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PrometheusOptions {
    /// Default 5 s.
    pub connect_timeout: Duration,
    /// The whole call, answer included. Default 60 s.
    pub request_timeout: Duration,
    /// Default 64 MiB.
    pub max_response_bytes: u64,
    /// Most series in one answer. Default 10 000.
    pub max_series: usize,
    /// Most points in one answer, all series together. Default 2 000 000.
    pub max_points: usize,
}

impl Default for PrometheusOptions {
    fn default() -> Self {
        PrometheusOptions {
            connect_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(60),
            max_response_bytes: 64 << 20,
            max_series: 10_000,
            max_points: 2_000_000,
        }
    }
}

/// Prometheus refuses ranges with more points per series than this.
pub const MAX_POINTS_PER_SERIES: i64 = 11_000;

/// One range query and how to name what it returns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RangeQuery {
    /// PromQL; each result series must carry the host label.
    pub query: String,
    /// The label that names the host in the result.
    pub host_label: String,
    /// The metric name the series get in the chunk.
    pub metric: String,
    /// The app the series get in the chunk (may be empty).
    pub app: String,
    /// Whether the values are a cumulative counter.
    pub counter: bool,
    /// Unix seconds, both ends included.
    pub start: i64,
    pub end: i64,
    pub step_seconds: u32,
}

/// A query's answer.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RangeResult {
    /// One series per host.
    pub chunk: MetricChunk,
    /// The labels, in Prometheus' notation, of result series without the host label.
    pub without_host: Vec<String>,
    /// Warnings Prometheus sent with the answer.
    pub warnings: Vec<String>,
}

/// Why a query gave no result.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PrometheusError {
    #[error("prometheus address {url:?} must start with http:// or https://")]
    InvalidUrl { url: String },
    #[error("invalid range query: {0}")]
    InvalidQuery(String),
    #[error("request to prometheus at {url} failed: {message}")]
    Transport { url: String, message: String },
    #[error("prometheus refused the query (http {status}, {error_type}): {message}")]
    Query {
        status: u16,
        error_type: String,
        message: String,
    },
    #[error("prometheus answered http {status}: {body}")]
    Http { status: u16, body: String },
    #[error("prometheus answer is not valid: {0}")]
    Response(String),
    #[error("prometheus answer has more than {limit} {what}")]
    TooLarge { what: &'static str, limit: usize },
    #[error(
        "query returned several series for host {host:?}; aggregate by the host label, \
         e.g. sum by ({label}) (...)"
    )]
    DuplicateHost { host: String, label: String },
}

/// One declaration of a metric family by a scraped target (`/api/v1/metadata`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct FamilyMetadata {
    /// `counter`, `gauge`, `histogram`, `summary`, `unknown`, ...
    #[serde(rename = "type", default)]
    pub metric_type: String,
    #[serde(default)]
    pub help: String,
    #[serde(default)]
    pub unit: String,
}

/// A client for one Prometheus server.
#[derive(Debug)]
pub struct PrometheusClient {
    agent: ureq::Agent,
    base_url: String,
    options: PrometheusOptions,
}

/// Prometheus' answer envelope; `Data` is what `data` holds for the endpoint asked.
#[derive(Deserialize)]
struct ApiAnswer<Data> {
    status: String,
    #[serde(default = "Option::default")]
    data: Option<Data>,
    #[serde(default, rename = "errorType")]
    error_type: Option<String>,
    #[serde(default)]
    error: Option<String>,
    #[serde(default)]
    warnings: Vec<String>,
}

#[derive(Deserialize)]
struct ApiData {
    #[serde(rename = "resultType")]
    result_type: String,
    result: serde_json::Value,
}

#[derive(Deserialize)]
struct MatrixSeries {
    metric: BTreeMap<String, String>,
    values: Vec<(f64, String)>,
}

/// Longest piece of a non-JSON answer quoted in an error.
const QUOTED_BODY_CHARS: usize = 200;

impl PrometheusClient {
    /// A client for the Prometheus at `base_url` (`http://127.0.0.1:9090`, a path prefix
    /// allowed).
    pub fn new(base_url: &str, options: PrometheusOptions) -> Result<Self, PrometheusError> {
        let trimmed = base_url.trim_end_matches('/');
        if !(trimmed.starts_with("http://") || trimmed.starts_with("https://")) {
            return Err(PrometheusError::InvalidUrl {
                url: base_url.to_owned(),
            });
        }
        let config = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .proxy(None)
            .user_agent(concat!("vigil/", env!("CARGO_PKG_VERSION")))
            .max_redirects(0)
            .timeout_connect(Some(options.connect_timeout))
            .timeout_global(Some(options.request_timeout))
            .build();
        Ok(PrometheusClient {
            agent: ureq::Agent::new_with_config(config),
            base_url: trimmed.to_owned(),
            options,
        })
    }

    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    /// Runs one range query and returns its series by host.
    pub fn query_range(&self, query: &RangeQuery) -> Result<RangeResult, PrometheusError> {
        check_range(query)?;
        let url = format!("{}/api/v1/query_range", self.base_url);
        let timeout = format!("{}s", self.options.request_timeout.as_secs().max(1));
        let form = [
            ("query", query.query.clone()),
            ("start", query.start.to_string()),
            ("end", query.end.to_string()),
            ("step", query.step_seconds.to_string()),
            ("timeout", timeout),
        ];
        let sent = self.agent.post(&url).send_form(form);
        let answer = self.read_response(&url, sent)?;
        self.matrix_to_chunk(query, answer)
    }

    /// The values of `label` (`__name__` for metric names) on the series matching any of
    /// `selectors` with samples in `[start, end]` (Unix seconds), sorted.
    pub fn label_values(
        &self,
        label: &str,
        selectors: &[String],
        start: i64,
        end: i64,
    ) -> Result<Vec<String>, PrometheusError> {
        if !is_label_name(label) {
            return Err(PrometheusError::InvalidQuery(format!(
                "{label:?} is not a label name"
            )));
        }
        let path = format!("/api/v1/label/{label}/values");
        let mut values: Vec<String> =
            self.get_data(&path, &selector_params(selectors, start, end))?;
        values.sort();
        Ok(values)
    }

    /// The label names of the series matching any of `selectors` with samples in
    /// `[start, end]`, sorted (`__name__` included).
    pub fn label_names(
        &self,
        selectors: &[String],
        start: i64,
        end: i64,
    ) -> Result<Vec<String>, PrometheusError> {
        let mut names: Vec<String> =
            self.get_data("/api/v1/labels", &selector_params(selectors, start, end))?;
        names.sort();
        Ok(names)
    }

    /// What the scraped targets declare of metric families (type, help, unit), by family, one
    /// entry per distinct declaration: of `family` only, or of every family.
    pub fn metadata(
        &self,
        family: Option<&str>,
    ) -> Result<BTreeMap<String, Vec<FamilyMetadata>>, PrometheusError> {
        let params: Vec<(&str, String)> = family
            .map(|name| ("metric", name.to_owned()))
            .into_iter()
            .collect();
        self.get_data("/api/v1/metadata", &params)
    }

    /// Whether a pull query reads a cumulative counter: a plain selector (`name` or
    /// `name{...}`) of a family the scraped targets declare `counter` (`/api/v1/metadata`), or
    /// the `_bucket`, `_count` or `_sum` series of one declared `histogram` or `summary`, or a
    /// name with the OpenMetrics `_total` suffix. A query that computes (`rate(...)`, a sum)
    /// gives values as they are and asks nothing.
    pub fn reads_counter(&self, query: &str) -> Result<bool, PrometheusError> {
        let Some(name) = selector_name(query) else {
            return Ok(false);
        };
        if name.ends_with("_total") {
            return Ok(true);
        }
        let family_of_parts = ["_bucket", "_count", "_sum"]
            .iter()
            .find_map(|suffix| name.strip_suffix(suffix));
        let declared = self.metadata(None)?;
        let declared_as = |family: &str, types: &[&str]| {
            declared.get(family).is_some_and(|entries| {
                entries
                    .iter()
                    .any(|entry| types.contains(&entry.metric_type.as_str()))
            })
        };
        Ok(declared_as(name, &["counter"])
            || family_of_parts.is_some_and(|family| declared_as(family, &["histogram", "summary"])))
    }

    /// A GET of `path` with `params`, and the `data` of its answer.
    fn get_data<Data: DeserializeOwned>(
        &self,
        path: &str,
        params: &[(&str, String)],
    ) -> Result<Data, PrometheusError> {
        let url = format!("{}{path}", self.base_url);
        let request = params
            .iter()
            .fold(self.agent.get(&url), |request, (key, value)| {
                request.query(key, value)
            });
        let answer: ApiAnswer<Data> = self.read_response(&url, request.call())?;
        answer
            .data
            .ok_or_else(|| PrometheusError::Response("no data".to_owned()))
    }

    /// Reads an answer within the size limit and parses its envelope.
    fn read_response<Data: DeserializeOwned>(
        &self,
        url: &str,
        sent: Result<ureq::http::Response<ureq::Body>, ureq::Error>,
    ) -> Result<ApiAnswer<Data>, PrometheusError> {
        let transport = |error: ureq::Error| PrometheusError::Transport {
            url: url.to_owned(),
            message: error.to_string(),
        };
        let mut response = sent.map_err(transport)?;
        let status = response.status().as_u16();
        let body = response
            .body_mut()
            .with_config()
            .limit(self.options.max_response_bytes)
            .read_to_vec()
            .map_err(transport)?;
        read_answer(status, &body)
    }

    fn matrix_to_chunk(
        &self,
        query: &RangeQuery,
        answer: ApiAnswer<ApiData>,
    ) -> Result<RangeResult, PrometheusError> {
        let Some(data) = answer.data else {
            return Err(PrometheusError::Response("no data".to_owned()));
        };
        if data.result_type != "matrix" {
            return Err(PrometheusError::Response(format!(
                "result type {:?} where a matrix was expected",
                data.result_type
            )));
        }
        let matrix: Vec<MatrixSeries> = serde_json::from_value(data.result)
            .map_err(|error| PrometheusError::Response(format!("matrix: {error}")))?;
        if matrix.len() > self.options.max_series {
            return Err(PrometheusError::TooLarge {
                what: "series",
                limit: self.options.max_series,
            });
        }
        let total_points: usize = matrix.iter().map(|series| series.values.len()).sum();
        if total_points > self.options.max_points {
            return Err(PrometheusError::TooLarge {
                what: "points",
                limit: self.options.max_points,
            });
        }
        let mut result = RangeResult {
            chunk: MetricChunk {
                series: Vec::with_capacity(matrix.len()),
                points: Vec::with_capacity(total_points),
                host_labels: Vec::new(),
            },
            without_host: Vec::new(),
            warnings: answer.warnings,
        };
        let mut hosts_seen: HashMap<String, u32> = HashMap::new();
        for series in matrix {
            let Some(host) = series.metric.get(&query.host_label) else {
                result.without_host.push(labels_notation(&series.metric));
                continue;
            };
            let index = result.chunk.series.len() as u32;
            if hosts_seen.insert(host.clone(), index).is_some() {
                return Err(PrometheusError::DuplicateHost {
                    host: host.clone(),
                    label: query.host_label.clone(),
                });
            }
            result.chunk.series.push(Arc::new(SeriesKey {
                app: query.app.clone(),
                host: host.clone(),
                metric: query.metric.clone(),
                counter: query.counter,
            }));
            // The result's labels are the host's (a pod's template hash, when the query keeps
            // it): what a release's label selector matches.
            let labels = HostLabels::bounded(
                host,
                series
                    .metric
                    .iter()
                    .filter(|(name, _)| name.as_str() != "__name__")
                    .map(|(name, value)| (name.as_str(), value.as_str())),
            );
            if !labels.labels.is_empty() {
                result.chunk.host_labels.push(labels);
            }
            for (seconds, text) in &series.values {
                let value = parse_value(text).ok_or_else(|| {
                    PrometheusError::Response(format!("sample value {text:?} is not a number"))
                })?;
                result.chunk.points.push(Point {
                    series: index,
                    ms: (seconds * 1000.0).round() as i64,
                    value,
                });
            }
        }
        Ok(result)
    }
}

fn check_range(query: &RangeQuery) -> Result<(), PrometheusError> {
    if query.step_seconds == 0 {
        return Err(PrometheusError::InvalidQuery(
            "step must be positive".to_owned(),
        ));
    }
    if query.end < query.start {
        return Err(PrometheusError::InvalidQuery(
            "end is before start".to_owned(),
        ));
    }
    if query.query.trim().is_empty() {
        return Err(PrometheusError::InvalidQuery("query is empty".to_owned()));
    }
    let points = (query.end - query.start) / i64::from(query.step_seconds) + 1;
    if points > MAX_POINTS_PER_SERIES {
        return Err(PrometheusError::InvalidQuery(format!(
            "{points} points per series, more than Prometheus' {MAX_POINTS_PER_SERIES}: \
             use a longer step or a shorter range"
        )));
    }
    Ok(())
}

/// The answer's JSON, or the error it carries.
fn read_answer<Data: DeserializeOwned>(
    status: u16,
    body: &[u8],
) -> Result<ApiAnswer<Data>, PrometheusError> {
    let parsed: Result<ApiAnswer<Data>, _> = serde_json::from_slice(body);
    let answer = match parsed {
        Ok(answer) => answer,
        Err(error) if (200..300).contains(&status) => {
            return Err(PrometheusError::Response(error.to_string()));
        }
        Err(_) => {
            let text = String::from_utf8_lossy(body);
            return Err(PrometheusError::Http {
                status,
                body: text.trim().chars().take(QUOTED_BODY_CHARS).collect(),
            });
        }
    };
    if answer.status != "success" {
        return Err(PrometheusError::Query {
            status,
            error_type: answer.error_type.unwrap_or_else(|| "unknown".to_owned()),
            message: answer.error.unwrap_or_default(),
        });
    }
    Ok(answer)
}

/// The `match[]`, `start` and `end` parameters of a label query.
fn selector_params(selectors: &[String], start: i64, end: i64) -> Vec<(&'static str, String)> {
    let mut params: Vec<(&'static str, String)> = selectors
        .iter()
        .map(|selector| ("match[]", selector.clone()))
        .collect();
    params.push(("start", start.to_string()));
    params.push(("end", end.to_string()));
    params
}

/// A Prometheus label name: a letter or `_`, then letters, digits or `_`.
/// The metric name a query selects when it is a plain selector (`name` or `name{...}`), else
/// `None`.
pub fn selector_name(query: &str) -> Option<&str> {
    let trimmed = query.trim();
    let name_end = trimmed
        .find(|character: char| {
            !(character.is_ascii_alphanumeric() || character == '_' || character == ':')
        })
        .unwrap_or(trimmed.len());
    let (name, rest) = trimmed.split_at(name_end);
    let plain = rest.is_empty()
        || (rest.starts_with('{') && rest.ends_with('}') && !rest[1..].contains('{'));
    let starts_well = name
        .chars()
        .next()
        .is_some_and(|first| first.is_ascii_alphabetic() || first == '_' || first == ':');
    (plain && starts_well).then_some(name)
}

pub fn is_label_name(text: &str) -> bool {
    let mut characters = text.chars();
    let Some(first) = characters.next() else {
        return false;
    };
    (first.is_ascii_alphabetic() || first == '_')
        && characters.all(|character| character.is_ascii_alphanumeric() || character == '_')
}

/// A sample value as Prometheus writes it: a decimal number, `NaN`, `+Inf` or `-Inf`.
fn parse_value(text: &str) -> Option<f64> {
    match text {
        "NaN" => Some(f64::NAN),
        "+Inf" | "Inf" => Some(f64::INFINITY),
        "-Inf" => Some(f64::NEG_INFINITY),
        _ => text.parse::<f64>().ok().filter(|value| value.is_finite()),
    }
}

fn labels_notation(labels: &BTreeMap<String, String>) -> String {
    let name = labels
        .get("__name__")
        .map(String::as_str)
        .unwrap_or_default();
    let pairs: Vec<(&str, &str)> = labels
        .iter()
        .filter(|(label, _)| label.as_str() != "__name__")
        .map(|(label, value)| (label.as_str(), value.as_str()))
        .collect();
    let notation = prometheus_notation(name, pairs.iter());
    if notation.is_empty() {
        return "{}".to_owned();
    }
    notation
}

#[cfg(test)]
mod tests;
