//! Alerts from alerting systems: Alertmanager's webhook payload and a generic JSON form.
//!
//! Alertmanager (`webhook_config`, payload version `4`):
//! `{"version": "4", "status": "firing", "receiver": "vigil", "groupLabels": {...},
//! "alerts": [{"status": "firing", "labels": {"alertname": "HighErrorRate", "instance":
//! "r1:9100", "severity": "critical"}, "annotations": {"summary": "..."}, "startsAt":
//! "2024-03-01T10:15:00.123Z", "endsAt": "0001-01-01T00:00:00Z", "fingerprint": "..."}]}`.
//! Times are RFC 3339; Alertmanager's zero time `0001-01-01T00:00:00Z` means "not ended".
//! Fields Vigil does not read (`receiver`, `groupLabels`, `externalURL`, `generatorURL`...)
//! are let through, so that a newer Alertmanager adding one is not refused; the fields read are
//! checked strictly.
//!
//! Generic: `{"alerts": [{"name": "HighErrorRate", "labels": {"host": "r1"}, "severity":
//! "critical", "status": "firing", "starts_at": 1700000000, "ends_at": 1700000300,
//! "summary": "..."}]}`, times in Unix seconds; `ends_at` and `summary` may be left out;
//! unknown fields are refused.
//!
//! Either way: a `firing` alert is stored as not ended whatever end it announces (Alertmanager
//! sends the time it would time out), a `resolved` one ends at its `endsAt` / `ends_at`, or at
//! its receipt when it gives none. Errors name the bad value's path
//! (`alerts[2].startsAt: ...`); the body, the number of alerts and of labels, and each name
//! are bounded ([`AlertOptions`]); a summary longer than its limit is cut, not refused.

use std::collections::BTreeMap;

use serde::Deserialize;
use vigil_core::alert::{app_of, label_fingerprint};
use vigil_core::validate;
use vigil_core::Alert;

use crate::json::{number, parse_body, JsonError, JsonOptions};

/// Limits of alert bodies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AlertOptions {
    /// Largest body. Default 4 MiB.
    pub max_body_bytes: usize,
    /// Most alerts in one body. Default 10 000.
    pub max_alerts: usize,
    /// Most labels of one alert. Default 64.
    pub max_labels: usize,
    /// Longest summary kept; longer ones are cut. Default 1 024 bytes.
    pub max_summary_bytes: usize,
}

impl Default for AlertOptions {
    fn default() -> Self {
        AlertOptions {
            max_body_bytes: 4 << 20,
            max_alerts: 10_000,
            max_labels: 64,
            max_summary_bytes: 1024,
        }
    }
}

/// Alertmanager's "not ended" time.
const ZERO_TIME: &str = "0001-01-01T00:00:00Z";

/// The webhook payload versions read.
const WEBHOOK_VERSION: &str = "4";

/// Longest fingerprint taken from a sender; a longer or odd one is replaced by Vigil's own.
const MAX_FINGERPRINT_BYTES: usize = 128;

#[derive(Deserialize)]
struct WebhookBody {
    version: String,
    alerts: Vec<WebhookAlert>,
}

#[derive(Deserialize)]
struct WebhookAlert {
    status: String,
    labels: BTreeMap<String, String>,
    #[serde(default)]
    annotations: BTreeMap<String, String>,
    #[serde(rename = "startsAt")]
    starts_at: String,
    #[serde(rename = "endsAt", default)]
    ends_at: Option<String>,
    #[serde(default)]
    fingerprint: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct GenericBody {
    alerts: Vec<GenericAlert>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct GenericAlert {
    name: String,
    labels: BTreeMap<String, String>,
    severity: String,
    status: String,
    #[serde(deserialize_with = "number")]
    starts_at: f64,
    #[serde(default)]
    ends_at: Option<f64>,
    #[serde(default)]
    summary: Option<String>,
}

/// Whether an alert fires or resolved, as sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Status {
    Firing,
    Resolved,
}

/// An alert's fields once read, before its checks.
struct Arrived {
    name: String,
    labels: BTreeMap<String, String>,
    severity: String,
    status: Status,
    starts_at: i64,
    ends_at: Option<i64>,
    summary: String,
    fingerprint: Option<String>,
}

/// Reads Alertmanager's webhook payload; `received_at` (Unix seconds) ends a resolved alert
/// that gives no end.
pub fn parse_alertmanager(
    body: &[u8],
    options: &AlertOptions,
    received_at: i64,
) -> Result<Vec<Alert>, JsonError> {
    let parsed: WebhookBody = parse_body(body, &json_options(options))?;
    if parsed.version != WEBHOOK_VERSION {
        return Err(invalid(
            "version",
            format!(
                "webhook payload version {:?} is not read (expected \"4\")",
                parsed.version
            ),
        ));
    }
    check_count(parsed.alerts.len(), options)?;
    let mut alerts = Vec::with_capacity(parsed.alerts.len());
    for (index, entry) in parsed.alerts.into_iter().enumerate() {
        let at = |field: &str| format!("alerts[{index}].{field}");
        let name = entry
            .labels
            .get("alertname")
            .cloned()
            .ok_or_else(|| invalid(&at("labels.alertname"), "missing"))?;
        let severity = entry.labels.get("severity").cloned().unwrap_or_default();
        let summary = ["summary", "description", "message"]
            .iter()
            .find_map(|key| entry.annotations.get(*key))
            .cloned()
            .unwrap_or_default();
        let starts_at = rfc3339(&entry.starts_at)
            .ok_or_else(|| invalid(&at("startsAt"), time_expected(&entry.starts_at)))?
            .ok_or_else(|| invalid(&at("startsAt"), "must not be the zero time"))?;
        let ends_at = match &entry.ends_at {
            None => None,
            Some(text) => {
                rfc3339(text).ok_or_else(|| invalid(&at("endsAt"), time_expected(text)))?
            }
        };
        let arrived = Arrived {
            name,
            labels: entry.labels,
            severity,
            status: status(&entry.status, &at("status"))?,
            starts_at,
            ends_at,
            summary,
            fingerprint: entry.fingerprint,
        };
        alerts.push(checked(
            arrived,
            "alertmanager",
            &PathNames {
                index,
                name: "labels.alertname",
                starts_at: "startsAt",
                ends_at: "endsAt",
            },
            options,
            received_at,
        )?);
    }
    Ok(alerts)
}

/// Reads the generic JSON form; `received_at` (Unix seconds) ends a resolved alert that gives
/// no end.
pub fn parse_alerts(
    body: &[u8],
    options: &AlertOptions,
    received_at: i64,
) -> Result<Vec<Alert>, JsonError> {
    let parsed: GenericBody = parse_body(body, &json_options(options))?;
    check_count(parsed.alerts.len(), options)?;
    let mut alerts = Vec::with_capacity(parsed.alerts.len());
    for (index, entry) in parsed.alerts.into_iter().enumerate() {
        let at = |field: &str| format!("alerts[{index}].{field}");
        let starts_at = unix_seconds(entry.starts_at).ok_or_else(|| {
            invalid(
                &at("starts_at"),
                "expected Unix seconds between 1970 and the year 9999",
            )
        })?;
        let ends_at = match entry.ends_at {
            None => None,
            Some(seconds) => Some(unix_seconds(seconds).ok_or_else(|| {
                invalid(
                    &at("ends_at"),
                    "expected Unix seconds between 1970 and the year 9999",
                )
            })?),
        };
        let arrived = Arrived {
            name: entry.name,
            labels: entry.labels,
            severity: entry.severity,
            status: status(&entry.status, &at("status"))?,
            starts_at,
            ends_at,
            summary: entry.summary.unwrap_or_default(),
            fingerprint: None,
        };
        alerts.push(checked(
            arrived,
            "api",
            &PathNames {
                index,
                name: "name",
                starts_at: "starts_at",
                ends_at: "ends_at",
            },
            options,
            received_at,
        )?);
    }
    Ok(alerts)
}

/// Where an alert's fields sit in its body, for errors.
struct PathNames {
    index: usize,
    name: &'static str,
    starts_at: &'static str,
    ends_at: &'static str,
}

impl PathNames {
    fn of(&self, field: &str) -> String {
        format!("alerts[{}].{field}", self.index)
    }
}

/// The alert as stored, once its names, labels and times pass their checks.
fn checked(
    arrived: Arrived,
    source: &str,
    paths: &PathNames,
    options: &AlertOptions,
    received_at: i64,
) -> Result<Alert, JsonError> {
    validate::name(&arrived.name)
        .map_err(|problem| invalid(&paths.of(paths.name), problem.to_string()))?;
    validate::optional_name(&arrived.severity)
        .map_err(|problem| invalid(&paths.of("severity"), problem.to_string()))?;
    if arrived.labels.len() > options.max_labels {
        return Err(invalid(
            &paths.of("labels"),
            format!("more than {} labels", options.max_labels),
        ));
    }
    for (label, value) in &arrived.labels {
        validate::name(label)
            .map_err(|problem| invalid(&paths.of("labels"), format!("{label:?}: {problem}")))?;
        validate::optional_name(value).map_err(|problem| {
            invalid(&paths.of(&format!("labels.{label}")), problem.to_string())
        })?;
    }
    let ends_at = match arrived.status {
        Status::Firing => None,
        Status::Resolved => Some(arrived.ends_at.unwrap_or(received_at)),
    };
    if let Some(end) = ends_at {
        if end < arrived.starts_at {
            return Err(invalid(
                &paths.of(paths.ends_at),
                format!("ends before {}", paths.starts_at),
            ));
        }
    }
    let fingerprint = arrived
        .fingerprint
        .filter(|given| {
            !given.is_empty()
                && given.len() <= MAX_FINGERPRINT_BYTES
                && given.bytes().all(|byte| byte.is_ascii_alphanumeric())
        })
        .unwrap_or_else(|| label_fingerprint(&arrived.name, &arrived.labels));
    Ok(Alert {
        fingerprint,
        starts_at: arrived.starts_at,
        ends_at,
        app: app_of(&arrived.labels),
        name: arrived.name,
        severity: arrived.severity,
        summary: summary_kept(&arrived.summary, options.max_summary_bytes),
        labels: arrived.labels,
        source: source.to_owned(),
        received_at,
    })
}

fn json_options(options: &AlertOptions) -> JsonOptions {
    JsonOptions {
        max_body_bytes: options.max_body_bytes,
        ..JsonOptions::default()
    }
}

fn check_count(count: usize, options: &AlertOptions) -> Result<(), JsonError> {
    if count > options.max_alerts {
        return Err(JsonError::TooMany {
            field: "alerts",
            limit: options.max_alerts,
        });
    }
    Ok(())
}

fn invalid(path: &str, message: impl Into<String>) -> JsonError {
    JsonError::Invalid {
        path: path.to_owned(),
        message: message.into(),
    }
}

fn status(text: &str, path: &str) -> Result<Status, JsonError> {
    match text {
        "firing" => Ok(Status::Firing),
        "resolved" => Ok(Status::Resolved),
        _ => Err(invalid(
            path,
            format!("expected \"firing\" or \"resolved\", not {text:?}"),
        )),
    }
}

fn time_expected(text: &str) -> String {
    format!("expected an RFC 3339 time such as 2024-03-01T10:15:00Z, not {text:?}")
}

/// Unix seconds from a number of them, whole or not (the fraction dropped), between 1970 and
/// the year 9999.
fn unix_seconds(seconds: f64) -> Option<i64> {
    let ms = validate::time_seconds(seconds).ok()?;
    Some(ms.div_euclid(1000))
}

/// Unix seconds of an RFC 3339 time (`2024-03-01T10:15:00Z`, `2024-03-01T10:15:00.5+02:00`;
/// a fraction is dropped): `Some(None)` for Alertmanager's zero time, `None` when it is not
/// such a time or falls outside 1970 to the year 9999.
fn rfc3339(text: &str) -> Option<Option<i64>> {
    if text == ZERO_TIME {
        return Some(None);
    }
    let bytes = text.as_bytes();
    let digits = |from: usize, count: usize| -> Option<i64> {
        let part = bytes.get(from..from + count)?;
        if !part.iter().all(u8::is_ascii_digit) {
            return None;
        }
        std::str::from_utf8(part).ok()?.parse().ok()
    };
    let separator =
        |at: usize, allowed: &[u8]| bytes.get(at).is_some_and(|byte| allowed.contains(byte));
    if !(separator(4, b"-")
        && separator(7, b"-")
        && separator(10, b"Tt ")
        && separator(13, b":")
        && separator(16, b":"))
    {
        return None;
    }
    let year = digits(0, 4)?;
    let month = digits(5, 2)?;
    let day = digits(8, 2)?;
    let hour = digits(11, 2)?;
    let minute = digits(14, 2)?;
    let second = digits(17, 2)?;
    if !(1..=12).contains(&month)
        || !(1..=days_in_month(year, month)).contains(&day)
        || hour > 23
        || minute > 59
        || second > 60
    {
        return None;
    }
    let mut rest = &text[19..];
    if let Some(fraction) = rest.strip_prefix('.') {
        let length = fraction.bytes().take_while(u8::is_ascii_digit).count();
        if length == 0 {
            return None;
        }
        rest = &fraction[length..];
    }
    let offset_seconds = match rest {
        "Z" | "z" => 0,
        _ => {
            let offset = rest.as_bytes();
            let sign = match offset.first() {
                Some(b'+') => 1,
                Some(b'-') => -1,
                _ => return None,
            };
            if offset.len() != 6 || offset[3] != b':' {
                return None;
            }
            let hours: i64 = rest.get(1..3)?.parse().ok()?;
            let minutes: i64 = rest.get(4..6)?.parse().ok()?;
            if hours > 23 || minutes > 59 || !rest[1..3].bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            sign * (hours * 3600 + minutes * 60)
        }
    };
    let local = days_from_civil(year, month, day) * 86_400 + hour * 3600 + minute * 60 + second;
    let unix = local - offset_seconds;
    validate::time_ms(unix.checked_mul(1000)?).ok()?;
    Some(Some(unix))
}

fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        2 if (year % 4 == 0 && year % 100 != 0) || year % 400 == 0 => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days from 1970-01-01 to a date of the proleptic Gregorian calendar (the inverse of
/// `vigil_core::text`'s date of a day).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let shifted_year = if month <= 2 { year - 1 } else { year };
    let era = shifted_year.div_euclid(400);
    let year_of_era = shifted_year - era * 400;
    let month_from_march = (month + 9) % 12;
    let day_of_year = (153 * month_from_march + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

/// A summary without control characters (line breaks become spaces), cut at `limit` bytes on a
/// character boundary.
fn summary_kept(summary: &str, limit: usize) -> String {
    let mut kept: String = summary
        .chars()
        .map(|character| {
            if character.is_control() {
                ' '
            } else {
                character
            }
        })
        .collect();
    if kept.len() > limit {
        let mut cut = limit;
        while !kept.is_char_boundary(cut) {
            cut -= 1;
        }
        kept.truncate(cut);
    }
    kept
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What Alertmanager posts for a group of two alerts, one firing and one resolved.
    const WEBHOOK: &str = r#"{
      "receiver": "vigil",
      "status": "firing",
      "alerts": [
        {
          "status": "firing",
          "labels": {"alertname": "HighErrorRate", "app": "shop", "instance": "r1:9100",
                     "severity": "critical"},
          "annotations": {"summary": "5xx above 5 %", "description": "longer text"},
          "startsAt": "2024-03-01T10:15:00.123456789Z",
          "endsAt": "0001-01-01T00:00:00Z",
          "generatorURL": "http://prometheus:9090/graph?g0.expr=up",
          "fingerprint": "1a2b3c4d5e6f7a8b"
        },
        {
          "status": "resolved",
          "labels": {"alertname": "DiskFull", "job": "node", "instance": "k1:9100"},
          "annotations": {"description": "disk\nfull"},
          "startsAt": "2024-03-01T12:15:00+02:00",
          "endsAt": "2024-03-01T10:20:00Z",
          "generatorURL": "",
          "fingerprint": "ffff0000ffff0000"
        }
      ],
      "groupLabels": {"alertname": "HighErrorRate"},
      "commonLabels": {},
      "commonAnnotations": {},
      "externalURL": "http://alertmanager:9093",
      "version": "4",
      "groupKey": "{}:{alertname=\"HighErrorRate\"}",
      "truncatedAlerts": 0
    }"#;

    /// 2024-03-01T10:15:00Z.
    const MARCH_FIRST_1015: i64 = 1_709_288_100;

    fn alertmanager(body: &str) -> Result<Vec<Alert>, JsonError> {
        parse_alertmanager(body.as_bytes(), &AlertOptions::default(), 2_000_000_000)
    }

    fn generic(body: &str) -> Result<Vec<Alert>, JsonError> {
        parse_alerts(body.as_bytes(), &AlertOptions::default(), 2_000_000_000)
    }

    #[test]
    fn an_alertmanager_payload_becomes_alerts_with_their_times_and_fingerprints() {
        let alerts = alertmanager(WEBHOOK).expect("parses");
        assert_eq!(alerts.len(), 2);
        let firing = &alerts[0];
        assert_eq!(firing.name, "HighErrorRate");
        assert_eq!(firing.app, "shop");
        assert_eq!(firing.severity, "critical");
        assert_eq!(firing.starts_at, MARCH_FIRST_1015);
        assert_eq!(firing.ends_at, None, "the zero time is not an end");
        assert_eq!(firing.summary, "5xx above 5 %");
        assert_eq!(firing.fingerprint, "1a2b3c4d5e6f7a8b");
        assert_eq!(firing.source, "alertmanager");
        assert_eq!(firing.labels["instance"], "r1:9100");
        let resolved = &alerts[1];
        assert_eq!(resolved.app, "node", "the job label names the app");
        assert_eq!(resolved.severity, "");
        assert_eq!(resolved.starts_at, MARCH_FIRST_1015, "+02:00 is taken off");
        assert_eq!(resolved.ends_at, Some(MARCH_FIRST_1015 + 300));
        assert_eq!(resolved.summary, "disk full");
    }

    #[test]
    fn a_resolved_alert_with_the_zero_end_ends_at_its_receipt_and_a_firing_one_never() {
        let body = |status: &str, ends: &str| {
            format!(
                r#"{{"version": "4", "alerts": [{{"status": "{status}", "labels": {{"alertname": "A"}},
                "startsAt": "2024-03-01T10:15:00Z", "endsAt": "{ends}"}}]}}"#
            )
        };
        let resolved = alertmanager(&body("resolved", ZERO_TIME)).unwrap();
        assert_eq!(resolved[0].ends_at, Some(2_000_000_000));
        // A firing alert's endsAt is when Alertmanager would time it out, not an end.
        let firing = alertmanager(&body("firing", "2024-03-01T10:20:00Z")).unwrap();
        assert_eq!(firing[0].ends_at, None);
        assert_eq!(
            firing[0].fingerprint,
            label_fingerprint("A", &firing[0].labels),
            "without a fingerprint, the labels' own"
        );
    }

    #[test]
    fn bad_alertmanager_fields_are_named() {
        let error = |body: &str| alertmanager(body).expect_err("refused").to_string();
        let one = |alert: &str| format!(r#"{{"version": "4", "alerts": [{alert}]}}"#);
        assert_eq!(
            error(&one(
                r#"{"status": "firing", "labels": {}, "startsAt": "2024-03-01T10:15:00Z"}"#
            )),
            "alerts[0].labels.alertname: missing"
        );
        assert!(error(&one(
            r#"{"status": "firing", "labels": {"alertname": "A"}, "startsAt": "yesterday"}"#
        ))
        .starts_with("alerts[0].startsAt: expected an RFC 3339 time"));
        assert_eq!(
            error(&one(
                r#"{"status": "firing", "labels": {"alertname": "A"}, "startsAt": "0001-01-01T00:00:00Z"}"#
            )),
            "alerts[0].startsAt: must not be the zero time"
        );
        assert!(error(&one(
            r#"{"status": "pending", "labels": {"alertname": "A"}, "startsAt": "2024-03-01T10:15:00Z"}"#
        ))
        .starts_with("alerts[0].status: expected \"firing\" or \"resolved\""));
        assert!(error(&one(
            r#"{"status": "firing", "labels": {"alertname": 3}, "startsAt": "2024-03-01T10:15:00Z"}"#
        ))
        .starts_with("alerts[0].labels.alertname: invalid type"));
        assert!(error(&one(
            r#"{"status": "resolved", "labels": {"alertname": "A"}, "startsAt": "2024-03-01T10:15:00Z", "endsAt": "2024-03-01T10:14:00Z"}"#
        ))
        .starts_with("alerts[0].endsAt: ends before startsAt"));
        assert!(error(r#"{"version": "3", "alerts": []}"#).starts_with("version: "));
        assert!(error(r#"{"version": "4"}"#).contains("alerts"));
        assert!(error("[]").starts_with("body: expected a JSON object"));
    }

    #[test]
    fn bodies_and_counts_are_bounded() {
        let options = AlertOptions {
            max_body_bytes: 100,
            ..AlertOptions::default()
        };
        let large = parse_alertmanager(WEBHOOK.as_bytes(), &options, 0).unwrap_err();
        assert!(matches!(large, JsonError::BodyTooLarge { .. }));
        let options = AlertOptions {
            max_alerts: 1,
            ..AlertOptions::default()
        };
        let many = parse_alertmanager(WEBHOOK.as_bytes(), &options, 0).unwrap_err();
        assert_eq!(many.to_string(), "alerts: more than 1 entries");
    }

    #[test]
    fn generic_alerts_take_unix_seconds_and_refuse_unknown_fields() {
        let alerts = generic(
            r#"{"alerts": [
                {"name": "Slow", "labels": {"host": "r1", "app": "shop"}, "severity": "warning",
                 "status": "firing", "starts_at": 1700000000.7},
                {"name": "Slow", "labels": {"host": "r2", "app": "shop"}, "severity": "warning",
                 "status": "resolved", "starts_at": 1700000000, "ends_at": 1700000060,
                 "summary": "p99 above 1 s"}
            ]}"#,
        )
        .expect("parses");
        assert_eq!(alerts[0].starts_at, 1_700_000_000);
        assert_eq!(alerts[0].ends_at, None);
        assert_eq!(alerts[0].source, "api");
        assert_eq!(alerts[1].ends_at, Some(1_700_000_060));
        assert_eq!(alerts[1].summary, "p99 above 1 s");
        assert_ne!(alerts[0].fingerprint, alerts[1].fingerprint);
        let error = |body: &str| generic(body).expect_err("refused").to_string();
        let entry = r#""name": "A", "labels": {}, "severity": "", "status": "firing""#;
        assert!(error(&format!(
            r#"{{"alerts": [{{{entry}, "starts_at": "now"}}]}}"#
        ))
        .starts_with("alerts[0].starts_at: invalid type"));
        assert!(
            error(&format!(r#"{{"alerts": [{{{entry}, "starts_at": -5}}]}}"#))
                .starts_with("alerts[0].starts_at: expected Unix seconds")
        );
        assert!(error(&format!(
            r#"{{"alerts": [{{{entry}, "starts_at": 5, "colour": "red"}}]}}"#
        ))
        .starts_with("alerts[0].colour: unknown field `colour`"));
        assert!(error(r#"{"alerts": [{"name": "", "labels": {}, "severity": "", "status": "firing", "starts_at": 5}]}"#)
            .starts_with("alerts[0].name: "));
        assert!(error(
            r#"{"alerts": [{"labels": {}, "severity": "", "status": "firing", "starts_at": 5}]}"#
        )
        .contains("missing field `name`"));
        assert!(error(
            r#"{"alerts": [{"name": "A", "labels": {"host": "a\u0001b"}, "severity": "", "status": "firing", "starts_at": 5}]}"#
        )
        .starts_with("alerts[0].labels.host: "));
    }

    #[test]
    fn rfc3339_times_are_read_exactly() {
        assert_eq!(rfc3339("1970-01-01T00:00:00Z"), Some(Some(0)));
        assert_eq!(
            rfc3339("2024-03-01T10:15:00Z"),
            Some(Some(MARCH_FIRST_1015))
        );
        assert_eq!(
            rfc3339("2024-03-01T05:15:00.5-05:00"),
            Some(Some(MARCH_FIRST_1015))
        );
        assert_eq!(rfc3339("2024-02-29T00:00:00Z"), Some(Some(1_709_164_800)));
        assert_eq!(rfc3339("2023-02-29T00:00:00Z"), None);
        assert_eq!(rfc3339("2024-03-01T10:15:00"), None);
        assert_eq!(rfc3339("2024-03-01T10:15:00.Z"), None);
        assert_eq!(rfc3339("2024-03-01T10:15:00+0200"), None);
        assert_eq!(rfc3339("1969-12-31T23:59:59Z"), None);
        assert_eq!(rfc3339(ZERO_TIME), Some(None));
        assert_eq!(rfc3339("2024-03-01T10:15:00Zjunk"), None);
        assert_eq!(rfc3339("２０２４-03-01T10:15:00Z"), None);
    }

    proptest::proptest! {
        /// Any cut of a good payload, and any byte flipped in it, is read or refused, never a
        /// panic.
        #[test]
        fn cut_and_flipped_payloads_never_panic(
            cut in 0usize..=WEBHOOK.len(),
            flip_at in 0usize..WEBHOOK.len(),
            flip_to in proptest::prelude::any::<u8>(),
        ) {
            let options = AlertOptions::default();
            let _ = parse_alertmanager(&WEBHOOK.as_bytes()[..cut], &options, 0);
            let mut flipped = WEBHOOK.as_bytes().to_vec();
            flipped[flip_at] = flip_to;
            let _ = parse_alertmanager(&flipped, &options, 0);
            let _ = parse_alerts(&flipped, &options, 0);
        }

        /// Any text as a time is read or refused, never a panic, and what is read lies
        /// between 1970 and the year 9999.
        #[test]
        fn any_text_as_a_time_never_panics(text in "[0-9TZz:+. -]{0,40}|\\PC{0,40}") {
            if let Some(Some(unix)) = rfc3339(&text) {
                proptest::prop_assert!((0..=vigil_core::validate::LATEST_MS / 1000).contains(&unix));
            }
        }
    }

    #[test]
    fn long_summaries_are_cut_on_a_character_boundary() {
        assert_eq!(summary_kept("ééé", 3), "é");
        assert_eq!(summary_kept("a\tb", 10), "a b");
    }
}
