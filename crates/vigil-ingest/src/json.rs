//! JSON ingestion: metric samples and log lines, as agents and scripts send them.
//!
//! Samples:
//! `{"samples": [{"host": "h1", "app": "shop", "metric": "cpu", "time": 1700000000.5,
//! "value": 0.25, "counter": false, "labels": {"rollouts_pod_template_hash": "abc123"}}],
//! "key": "batch-17"}`: `app`, `counter`, `labels` and `key` may be left out; `time` is Unix
//! seconds, whole or fractional; `key` is an idempotency key the server may use to drop a batch
//! it already took. `labels` are the host's (what a release's selector matches): at most
//! [`MAX_HOST_LABELS`] Prometheus label names, values of at most [`MAX_HOST_LABEL_BYTES`]
//! bytes; the labels of one host's samples in a body are merged.
//!
//! Log lines: `{"lines": [{"host": "h1", "app": "shop", "time": 1700000000, "line": "..."}],
//! "key": "..."}`, parsed into plain values; mining templates out of them is another module's.
//!
//! Parsing is strict: unknown fields, a missing field, a wrong type, an empty host or metric, a
//! name with a control character, a time outside years 1970 to 9999 (the rules of
//! `vigil_core::validate`, which remote write follows too) are refused with the path of the bad value
//! (`samples[3].value: invalid type: string "x", expected a number`). Limits, see
//! [`JsonOptions`]: the body size (checked first, so the counts below are bounded before
//! parsing), the number of samples or lines, the length of names and of the key. A log line
//! longer than its limit is cut at a character boundary and counted, not refused: one long stack
//! trace should not make an agent resend its whole batch forever.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::Arc;

use serde::de::{self, DeserializeOwned, Deserializer, Visitor};
use serde::Deserialize;
use vigil_core::samples::{
    HostLabels, MetricChunk, Point, SeriesKey, MAX_HOST_LABELS, MAX_HOST_LABEL_BYTES,
};
use vigil_core::validate;

/// Limits of JSON ingestion.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JsonOptions {
    /// Largest body. Default 16 MiB.
    pub max_body_bytes: usize,
    /// Most samples in one body. Default 200 000.
    pub max_samples: usize,
    /// Most log lines in one body. Default 100 000.
    pub max_lines: usize,
    /// Longest log line kept; longer lines are cut. Default 64 KiB.
    pub max_line_bytes: usize,
    /// Longest host, app or metric name. Default 1 024 bytes.
    pub max_name_bytes: usize,
    /// Longest idempotency key. Default 256 bytes.
    pub max_key_bytes: usize,
}

impl Default for JsonOptions {
    fn default() -> Self {
        JsonOptions {
            max_body_bytes: 16 << 20,
            max_samples: 200_000,
            max_lines: 100_000,
            max_line_bytes: 64 << 10,
            max_name_bytes: 1024,
            max_key_bytes: 256,
        }
    }
}

/// Why a JSON body was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JsonError {
    #[error("body is {size} bytes, more than the limit of {limit}")]
    BodyTooLarge { size: usize, limit: usize },
    /// A value that is missing, of the wrong type or out of bounds, by its path in the body.
    #[error("{path}: {message}")]
    Invalid { path: String, message: String },
    #[error("{field}: more than {limit} entries")]
    TooMany { field: &'static str, limit: usize },
}

/// Samples from one JSON body.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct JsonSamples {
    /// Each distinct series once; points in the order sent.
    pub chunk: MetricChunk,
    pub key: Option<String>,
}

/// One log line of a host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogLine {
    /// Empty when the sender did not say.
    pub app: String,
    pub host: String,
    /// Unix milliseconds.
    pub ms: i64,
    pub line: String,
}

/// Log lines from one JSON body.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LogBatch {
    pub lines: Vec<LogLine>,
    pub key: Option<String>,
    /// Lines cut to [`JsonOptions::max_line_bytes`].
    pub truncated_lines: usize,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SamplesBody {
    samples: Vec<SampleEntry>,
    #[serde(default)]
    key: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SampleEntry {
    host: String,
    #[serde(default)]
    app: Option<String>,
    metric: String,
    #[serde(deserialize_with = "number")]
    time: f64,
    #[serde(deserialize_with = "number")]
    value: f64,
    #[serde(default)]
    counter: bool,
    #[serde(default)]
    labels: BTreeMap<String, String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LinesBody {
    lines: Vec<LineEntry>,
    #[serde(default)]
    key: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LineEntry {
    host: String,
    #[serde(default)]
    app: Option<String>,
    #[serde(deserialize_with = "number")]
    time: f64,
    line: String,
}

/// Parses a samples body into a chunk.
pub fn parse_samples(body: &[u8], options: &JsonOptions) -> Result<JsonSamples, JsonError> {
    let parsed: SamplesBody = parse_body(body, options)?;
    if parsed.samples.len() > options.max_samples {
        return Err(JsonError::TooMany {
            field: "samples",
            limit: options.max_samples,
        });
    }
    let key = check_key(parsed.key, options)?;
    let mut chunk = MetricChunk {
        series: Vec::new(),
        points: Vec::with_capacity(parsed.samples.len()),
        host_labels: Vec::new(),
    };
    let mut series_index: HashMap<SeriesKey, u32> = HashMap::new();
    let mut labels_of_host: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
    for (index, entry) in parsed.samples.into_iter().enumerate() {
        let place = Place {
            list: "samples",
            index,
        };
        check_name(&place, "host", &entry.host, options)?;
        check_name(&place, "metric", &entry.metric, options)?;
        if !entry.labels.is_empty() {
            check_labels(&place, &entry.labels)?;
            labels_of_host
                .entry(entry.host.clone())
                .or_default()
                .extend(entry.labels);
        }
        let app = entry.app.unwrap_or_default();
        check_length(&place, "app", &app, options)?;
        let ms = unix_ms(&place, entry.time)?;
        let series_key = SeriesKey {
            app,
            host: entry.host,
            metric: entry.metric,
            counter: entry.counter,
        };
        let next = chunk.series.len() as u32;
        let series = *series_index
            .entry(series_key)
            .or_insert_with_key(|new_key| {
                chunk.series.push(Arc::new(new_key.clone()));
                next
            });
        chunk.points.push(Point {
            series,
            ms,
            value: entry.value,
        });
    }
    chunk.host_labels = labels_of_host
        .iter()
        .map(|(host, labels)| {
            HostLabels::bounded(
                host,
                labels
                    .iter()
                    .map(|(name, value)| (name.as_str(), value.as_str())),
            )
        })
        .collect();
    Ok(JsonSamples { chunk, key })
}

/// A sample's host labels: Prometheus label names, values within [`MAX_HOST_LABEL_BYTES`]
/// and without control characters, at most [`MAX_HOST_LABELS`] of them.
fn check_labels(place: &Place, labels: &BTreeMap<String, String>) -> Result<(), JsonError> {
    if labels.len() > MAX_HOST_LABELS {
        return Err(place.invalid("labels", format!("more than {MAX_HOST_LABELS} labels")));
    }
    for (name, value) in labels {
        let field = format!("labels.{name}");
        if !crate::prometheus::is_label_name(name) || name.len() > MAX_HOST_LABEL_BYTES {
            return Err(place.invalid(&field, "is not a label name ([a-zA-Z_][a-zA-Z0-9_]*)"));
        }
        if value.is_empty() || value.len() > MAX_HOST_LABEL_BYTES {
            return Err(place.invalid(&field, format!("must be 1 to {MAX_HOST_LABEL_BYTES} bytes")));
        }
        validate::optional_name(value)
            .map_err(|problem| place.invalid(&field, problem.to_string()))?;
    }
    Ok(())
}

/// Parses a log lines body.
pub fn parse_log_lines(body: &[u8], options: &JsonOptions) -> Result<LogBatch, JsonError> {
    let parsed: LinesBody = parse_body(body, options)?;
    if parsed.lines.len() > options.max_lines {
        return Err(JsonError::TooMany {
            field: "lines",
            limit: options.max_lines,
        });
    }
    let key = check_key(parsed.key, options)?;
    let mut truncated_lines = 0;
    let mut lines = Vec::with_capacity(parsed.lines.len());
    for (index, entry) in parsed.lines.into_iter().enumerate() {
        let place = Place {
            list: "lines",
            index,
        };
        check_name(&place, "host", &entry.host, options)?;
        let app = entry.app.unwrap_or_default();
        check_length(&place, "app", &app, options)?;
        let ms = unix_ms(&place, entry.time)?;
        let mut line = entry.line;
        if line.len() > options.max_line_bytes {
            let mut cut = options.max_line_bytes;
            while !line.is_char_boundary(cut) {
                cut -= 1;
            }
            line.truncate(cut);
            truncated_lines += 1;
        }
        lines.push(LogLine {
            app,
            host: entry.host,
            ms,
            line,
        });
    }
    Ok(LogBatch {
        lines,
        key,
        truncated_lines,
    })
}

pub(crate) fn parse_body<T: DeserializeOwned>(
    body: &[u8],
    options: &JsonOptions,
) -> Result<T, JsonError> {
    if body.len() > options.max_body_bytes {
        return Err(JsonError::BodyTooLarge {
            size: body.len(),
            limit: options.max_body_bytes,
        });
    }
    let first = body.iter().find(|byte| !byte.is_ascii_whitespace());
    if first.is_some_and(|byte| *byte != b'{') {
        return Err(JsonError::Invalid {
            path: "body".to_owned(),
            message: "expected a JSON object".to_owned(),
        });
    }
    let mut deserializer = serde_json::Deserializer::from_slice(body);
    let parsed = serde_path_to_error::deserialize(&mut deserializer).map_err(|error| {
        let path = error.path().to_string();
        JsonError::Invalid {
            path: if path == "." { "body".to_owned() } else { path },
            message: error.into_inner().to_string(),
        }
    })?;
    deserializer.end().map_err(|error| JsonError::Invalid {
        path: "body".to_owned(),
        message: error.to_string(),
    })?;
    Ok(parsed)
}

/// An entry's place in its list, for error paths.
struct Place {
    list: &'static str,
    index: usize,
}

impl Place {
    fn invalid(&self, field: &str, message: impl Into<String>) -> JsonError {
        JsonError::Invalid {
            path: format!("{}[{}].{field}", self.list, self.index),
            message: message.into(),
        }
    }
}

/// A host or metric name, by the rules every way in shares ([`validate::name`]); the
/// length limit is this body's, which may be stricter.
fn check_name(
    place: &Place,
    field: &str,
    text: &str,
    options: &JsonOptions,
) -> Result<(), JsonError> {
    if text.is_empty() {
        return Err(place.invalid(field, "must not be empty"));
    }
    check_length(place, field, text, options)
}

/// A name that may be empty (the app), else as [`check_name`].
fn check_length(
    place: &Place,
    field: &str,
    text: &str,
    options: &JsonOptions,
) -> Result<(), JsonError> {
    if text.len() > options.max_name_bytes {
        return Err(place.invalid(
            field,
            format!("longer than {} bytes", options.max_name_bytes),
        ));
    }
    validate::optional_name(text).map_err(|problem| place.invalid(field, problem.to_string()))
}

fn check_key(key: Option<String>, options: &JsonOptions) -> Result<Option<String>, JsonError> {
    let Some(text) = key else {
        return Ok(None);
    };
    let problem = if text.is_empty() {
        "must not be empty".to_owned()
    } else if text.len() > options.max_key_bytes {
        format!("longer than {} bytes", options.max_key_bytes)
    } else {
        return Ok(Some(text));
    };
    Err(JsonError::Invalid {
        path: "key".to_owned(),
        message: problem,
    })
}

fn unix_ms(place: &Place, seconds: f64) -> Result<i64, JsonError> {
    validate::time_seconds(seconds).map_err(|_| {
        place.invalid(
            "time",
            "expected Unix seconds between 1970 and the year 9999",
        )
    })
}

/// A JSON number, whole or not, as an `f64`; anything else is "expected a number".
pub(crate) fn number<'de, D: Deserializer<'de>>(deserializer: D) -> Result<f64, D::Error> {
    struct NumberVisitor;

    impl Visitor<'_> for NumberVisitor {
        type Value = f64;

        fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
            formatter.write_str("a number")
        }

        fn visit_f64<E: de::Error>(self, value: f64) -> Result<f64, E> {
            Ok(value)
        }

        fn visit_i64<E: de::Error>(self, value: i64) -> Result<f64, E> {
            Ok(value as f64)
        }

        fn visit_u64<E: de::Error>(self, value: u64) -> Result<f64, E> {
            Ok(value as f64)
        }
    }

    deserializer.deserialize_any(NumberVisitor)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn samples(body: &str) -> Result<JsonSamples, JsonError> {
        parse_samples(body.as_bytes(), &JsonOptions::default())
    }

    fn error(body: &str) -> String {
        samples(body).expect_err("refused").to_string()
    }

    #[test]
    fn samples_become_a_chunk_with_each_series_once() {
        let parsed = samples(
            r#"{"samples": [
                {"host": "h1", "app": "shop", "metric": "cpu", "time": 1700000000.25, "value": 0.5},
                {"host": "h2", "metric": "errors", "time": 1700000001, "value": 3, "counter": true},
                {"host": "h1", "app": "shop", "metric": "cpu", "time": 1700000010, "value": -1e3}
            ], "key": "batch-1"}"#,
        )
        .expect("parses");
        assert_eq!(parsed.key.as_deref(), Some("batch-1"));
        assert_eq!(
            parsed.chunk.series,
            vec![
                Arc::new(SeriesKey {
                    app: "shop".into(),
                    host: "h1".into(),
                    metric: "cpu".into(),
                    counter: false
                }),
                Arc::new(SeriesKey {
                    app: String::new(),
                    host: "h2".into(),
                    metric: "errors".into(),
                    counter: true
                }),
            ]
        );
        let point = |series, ms, value| Point { series, ms, value };
        assert_eq!(
            parsed.chunk.points,
            vec![
                point(0, 1_700_000_000_250, 0.5),
                point(1, 1_700_000_001_000, 3.0),
                point(0, 1_700_000_010_000, -1000.0)
            ]
        );
    }

    #[test]
    fn labels_are_the_hosts_merged_over_its_samples() {
        let parsed = samples(
            r#"{"samples": [
                {"host": "pod-a", "metric": "cpu", "time": 1, "value": 1,
                 "labels": {"rollouts_pod_template_hash": "abc123"}},
                {"host": "pod-a", "metric": "rt", "time": 1, "value": 1,
                 "labels": {"namespace": "shop"}},
                {"host": "pod-b", "metric": "cpu", "time": 1, "value": 1}
            ]}"#,
        )
        .expect("parses");
        assert_eq!(
            parsed.chunk.host_labels,
            vec![HostLabels {
                host: "pod-a".into(),
                labels: vec![
                    ("namespace".into(), "shop".into()),
                    ("rollouts_pod_template_hash".into(), "abc123".into())
                ]
            }]
        );
        let bad = |labels: &str| {
            error(&format!(
                r#"{{"samples": [{{"host": "h", "metric": "m", "time": 1, "value": 1, "labels": {labels}}}]}}"#
            ))
        };
        assert_eq!(
            bad(r#"{"rollouts-pod-template-hash": "x"}"#),
            "samples[0].labels.rollouts-pod-template-hash: is not a label name ([a-zA-Z_][a-zA-Z0-9_]*)"
        );
        assert_eq!(
            bad(&format!(
                r#"{{"hash": "{}"}}"#,
                "x".repeat(MAX_HOST_LABEL_BYTES + 1)
            )),
            format!("samples[0].labels.hash: must be 1 to {MAX_HOST_LABEL_BYTES} bytes")
        );
        let many: Vec<String> = (0..=MAX_HOST_LABELS)
            .map(|index| format!(r#""l{index}": "v""#))
            .collect();
        assert_eq!(
            bad(&format!("{{{}}}", many.join(","))),
            format!("samples[0].labels: more than {MAX_HOST_LABELS} labels")
        );
        assert!(bad(r#"{"hash": 3}"#).starts_with("samples[0].labels"));
    }

    #[test]
    fn bad_samples_are_named_by_their_index() {
        let sample = |fields: &str| {
            format!(
                r#"{{"samples": [{{"host": "h", "metric": "m", "time": 1, "value": 1}}, {{{fields}}}]}}"#
            )
        };
        let bad_value = error(&sample(
            r#""host": "h", "metric": "m", "time": 1, "value": "x""#,
        ));
        assert!(
            bad_value
                .starts_with(r#"samples[1].value: invalid type: string "x", expected a number"#),
            "{bad_value}"
        );
        let missing = error(&sample(r#""host": "h", "metric": "m", "time": 1"#));
        assert!(
            missing.starts_with("samples[1]: missing field `value`"),
            "{missing}"
        );
        let unknown = error(&sample(
            r#""host": "h", "metric": "m", "time": 1, "value": 1, "x": 1"#,
        ));
        assert!(
            unknown.starts_with("samples[1].x: unknown field `x`"),
            "{unknown}"
        );
        assert_eq!(
            error(&sample(
                r#""host": "", "metric": "m", "time": 1, "value": 1"#
            )),
            "samples[1].host: must not be empty"
        );
        assert_eq!(
            error(&sample(
                r#""host": "h", "metric": "m", "time": -1, "value": 1"#
            )),
            "samples[1].time: expected Unix seconds between 1970 and the year 9999"
        );
        assert_eq!(
            error(r#"{"samples": [], "key": ""}"#),
            "key: must not be empty"
        );
        assert_eq!(error(" [1, 2]"), "body: expected a JSON object");
        assert!(error(r#"{"samples": []} x"#).starts_with("body: trailing characters"));
        assert!(error("").starts_with("body: EOF while parsing"));
    }

    #[test]
    fn control_characters_in_names_are_refused() {
        let with_host = |host: &str| {
            serde_json::json!({"samples": [
                {"host": host, "app": "shop", "metric": "m", "time": 1, "value": 1}
            ]})
            .to_string()
        };
        assert_eq!(
            error(&with_host("r\u{0}1")),
            "samples[0].host: holds a control character at byte 1"
        );
        assert_eq!(
            error(&with_host("\u{1b}[2J")),
            "samples[0].host: holds a control character at byte 0"
        );
        let app =
            r#"{"samples": [{"host": "h", "app": "a\nb", "metric": "m", "time": 1, "value": 1}]}"#;
        assert_eq!(
            error(app),
            "samples[0].app: holds a control character at byte 1"
        );
        let line = r#"{"lines": [{"host": "h\u0000", "time": 1, "line": "x"}]}"#;
        assert_eq!(
            parse_log_lines(line.as_bytes(), &JsonOptions::default())
                .expect_err("nul")
                .to_string(),
            "lines[0].host: holds a control character at byte 1"
        );
    }

    #[test]
    fn limits_are_enforced() {
        let options = JsonOptions {
            max_body_bytes: 200,
            max_samples: 1,
            max_name_bytes: 3,
            ..JsonOptions::default()
        };
        let two = r#"{"samples": [{"host": "h", "metric": "m", "time": 1, "value": 1},
            {"host": "h", "metric": "m", "time": 2, "value": 1}]}"#;
        assert_eq!(
            parse_samples(two.as_bytes(), &options)
                .expect_err("too many")
                .to_string(),
            "samples: more than 1 entries"
        );
        let long = r#"{"samples": [{"host": "host", "metric": "m", "time": 1, "value": 1}]}"#;
        assert_eq!(
            parse_samples(long.as_bytes(), &options)
                .expect_err("long")
                .to_string(),
            "samples[0].host: longer than 3 bytes"
        );
        let big = format!(r#"{{"samples": [], "key": "{}"}}"#, "k".repeat(300));
        assert_eq!(
            parse_samples(big.as_bytes(), &options)
                .expect_err("big")
                .to_string(),
            "body is 326 bytes, more than the limit of 200"
        );
    }

    #[test]
    fn log_lines_parse_and_long_lines_are_cut_at_a_character() {
        let options = JsonOptions {
            max_line_bytes: 4,
            ..JsonOptions::default()
        };
        let body = r#"{"lines": [
            {"host": "h1", "app": "shop", "time": 1700000000.5, "line": "ok"},
            {"host": "h2", "time": 1700000001, "line": "abcé"}
        ], "key": "k"}"#;
        let batch = parse_log_lines(body.as_bytes(), &options).expect("parses");
        assert_eq!(
            batch,
            LogBatch {
                lines: vec![
                    LogLine {
                        app: "shop".into(),
                        host: "h1".into(),
                        ms: 1_700_000_000_500,
                        line: "ok".into()
                    },
                    LogLine {
                        app: String::new(),
                        host: "h2".into(),
                        ms: 1_700_000_001_000,
                        line: "abc".into()
                    },
                ],
                key: Some("k".into()),
                truncated_lines: 1,
            }
        );
        let bad = parse_log_lines(
            br#"{"lines": [{"host": "h", "time": 1, "line": 5}]}"#,
            &options,
        )
        .expect_err("bad line");
        assert!(
            bad.to_string()
                .starts_with("lines[0].line: invalid type: integer"),
            "{bad}"
        );
    }
}
