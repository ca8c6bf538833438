//! One set of rules for every name, id, time and free text Vigil takes in, whichever way it
//! arrives: JSON ingestion, remote write, release creation, imports, actions and pages.
//!
//! A rule says what is wrong in a short phrase ([`Problem`]); the caller says where, with
//! [`Problem::at`], so every refusal reads `samples[3].host: holds a control character`.
//! Names are shown on pages and in logs and used as keys: a control character (NUL, ESC, a
//! newline) in one can hide, forge or cut what a person reads, so none is taken.

use std::collections::HashSet;
use std::fmt;

use crate::model::MetricMeta;

/// Longest host, app, metric or version name, in bytes.
pub const MAX_NAME_BYTES: usize = 1024;
/// Longest release id, in bytes.
pub const MAX_RELEASE_ID_BYTES: usize = 100;
/// Longest free text a person gives (a pause reason, a feedback note), in bytes.
pub const MAX_TEXT_BYTES: usize = 10_000;
/// Most metrics one list may describe (a release's `metrics`, an app's declared metrics): ten
/// times the few hundred series of a whole node exporter.
pub const MAX_DESCRIBED_METRICS: usize = 5_000;
/// The last millisecond of the year 9999: later times are typing errors or overflowed counters.
pub const LATEST_MS: i64 = 253_402_300_799_999;

/// What is wrong with a value, without its place.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Problem {
    #[error("must not be empty")]
    Empty,
    #[error("is {size} bytes, more than the limit of {limit}")]
    TooLong { size: usize, limit: usize },
    #[error("holds a control character at byte {at}")]
    ControlCharacter { at: usize },
    #[error("must be letters, digits, '-', '_' or '.' (found {found:?} at byte {at})")]
    IdCharacter { found: char, at: usize },
    #[error("must not be only dots")]
    OnlyDots,
    #[error("is not a time between 1970 and the year 9999")]
    TimeOutOfRange,
    #[error("must be a finite number")]
    NotFinite,
    #[error("must be between {low} and {high}")]
    OutOfRange { low: String, high: String },
    #[error("holds {count} entries, more than the limit of {limit}")]
    TooMany { count: usize, limit: usize },
    #[error("describes metric {0:?} a second time")]
    Repeated(String),
    #[error("names rule {0:?} a second time")]
    RepeatedRule(String),
    /// Fields that do not go together, or none of a set of which one is needed.
    #[error("{0}")]
    Combination(&'static str),
    #[error("makes a window of {steps} steps, more than the limit of {limit}")]
    WindowTooLong { steps: i64, limit: usize },
    /// A value of the wrong type or an unknown key, in the parser's words.
    #[error("{0}")]
    Unreadable(String),
}

impl Problem {
    /// The problem at a named field (`samples[3].host`, `settings.baseline_seconds`).
    pub fn at(self, field: impl fmt::Display) -> Invalid {
        Invalid {
            field: field.to_string(),
            problem: self,
        }
    }
}

/// A problem with the field it was found in.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {problem}")]
pub struct Invalid {
    pub field: String,
    pub problem: Problem,
}

/// A host, app, metric or version name: 1 to [`MAX_NAME_BYTES`] bytes, no control character.
pub fn name(text: &str) -> Result<(), Problem> {
    if text.is_empty() {
        return Err(Problem::Empty);
    }
    bounded_text(text, MAX_NAME_BYTES)?;
    no_control_character(text, false)
}

/// A name that may be left empty (an app a sample does not name).
pub fn optional_name(text: &str) -> Result<(), Problem> {
    if text.is_empty() {
        return Ok(());
    }
    name(text)
}

/// A release id: it is a path segment of the API and the pages, so 1 to
/// [`MAX_RELEASE_ID_BYTES`] letters, digits, `-`, `_` or `.`, and not `.` or `..`.
pub fn release_id(text: &str) -> Result<(), Problem> {
    if text.is_empty() {
        return Err(Problem::Empty);
    }
    bounded_text(text, MAX_RELEASE_ID_BYTES)?;
    let refused = text
        .char_indices()
        .find(|(_, found)| !(found.is_ascii_alphanumeric() || matches!(found, '-' | '_' | '.')));
    if let Some((at, found)) = refused {
        return Err(Problem::IdCharacter { found, at });
    }
    if text.chars().all(|found| found == '.') {
        return Err(Problem::OnlyDots);
    }
    Ok(())
}

/// A list of metric descriptions at `field` (`metrics`): at most [`MAX_DESCRIBED_METRICS`],
/// each name a [`name`] given once, each unit an [`optional_name`]. A release's list and an
/// app's declarations take the same rules, since the latter end up in the former.
pub fn described_metrics(metrics: &[MetricMeta], field: &str) -> Result<(), Invalid> {
    if metrics.len() > MAX_DESCRIBED_METRICS {
        return Err(Problem::TooMany {
            count: metrics.len(),
            limit: MAX_DESCRIBED_METRICS,
        }
        .at(field));
    }
    let mut seen = HashSet::with_capacity(metrics.len());
    for (index, meta) in metrics.iter().enumerate() {
        name(&meta.name).map_err(|problem| problem.at(format!("{field}[{index}].name")))?;
        optional_name(&meta.unit)
            .map_err(|problem| problem.at(format!("{field}[{index}].unit")))?;
        if !seen.insert(meta.name.as_str()) {
            return Err(Problem::Repeated(meta.name.clone()).at(format!("{field}[{index}].name")));
        }
    }
    Ok(())
}

/// Free text of a person (a reason, a note): at most `limit` bytes; line breaks and tabs are
/// fine, other control characters are not.
pub fn free_text(text: &str, limit: usize) -> Result<(), Problem> {
    bounded_text(text, limit)?;
    no_control_character(text, true)
}

/// A time in Unix milliseconds between 1970 and the end of the year 9999.
pub fn time_ms(ms: i64) -> Result<(), Problem> {
    if (0..=LATEST_MS).contains(&ms) {
        Ok(())
    } else {
        Err(Problem::TimeOutOfRange)
    }
}

/// A time in Unix seconds, whole or fractional, as milliseconds (see [`time_ms`]).
pub fn time_seconds(seconds: f64) -> Result<i64, Problem> {
    if !seconds.is_finite() {
        return Err(Problem::TimeOutOfRange);
    }
    let ms = (seconds * 1000.0).round();
    if !(0.0..=LATEST_MS as f64).contains(&ms) {
        return Err(Problem::TimeOutOfRange);
    }
    Ok(ms as i64)
}

/// A whole number in `low..=high`.
pub fn whole_in(value: i64, low: i64, high: i64) -> Result<(), Problem> {
    if (low..=high).contains(&value) {
        return Ok(());
    }
    Err(Problem::OutOfRange {
        low: low.to_string(),
        high: high.to_string(),
    })
}

/// A finite number in `low..=high`.
pub fn number_in(value: f64, low: f64, high: f64) -> Result<(), Problem> {
    if !value.is_finite() {
        return Err(Problem::NotFinite);
    }
    if (low..=high).contains(&value) {
        return Ok(());
    }
    Err(Problem::OutOfRange {
        low: low.to_string(),
        high: high.to_string(),
    })
}

fn bounded_text(text: &str, limit: usize) -> Result<(), Problem> {
    if text.len() > limit {
        return Err(Problem::TooLong {
            size: text.len(),
            limit,
        });
    }
    Ok(())
}

fn no_control_character(text: &str, line_breaks_allowed: bool) -> Result<(), Problem> {
    let allowed = |found: char| line_breaks_allowed && matches!(found, '\n' | '\r' | '\t');
    match text
        .char_indices()
        .find(|(_, found)| found.is_control() && !allowed(*found))
    {
        Some((at, _)) => Err(Problem::ControlCharacter { at }),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_refuse_empty_long_and_control_characters() {
        assert_eq!(name("r1"), Ok(()));
        assert_eq!(name("shop-é"), Ok(()));
        assert_eq!(name(""), Err(Problem::Empty));
        assert_eq!(name("a\0b"), Err(Problem::ControlCharacter { at: 1 }));
        assert_eq!(name("\u{1b}[31m"), Err(Problem::ControlCharacter { at: 0 }));
        assert_eq!(name("a\nb"), Err(Problem::ControlCharacter { at: 1 }));
        assert_eq!(
            name(&"h".repeat(100_000)),
            Err(Problem::TooLong {
                size: 100_000,
                limit: MAX_NAME_BYTES
            })
        );
        assert_eq!(optional_name(""), Ok(()));
        assert_eq!(
            optional_name("\0"),
            Err(Problem::ControlCharacter { at: 0 })
        );
    }

    #[test]
    fn release_ids_are_path_segments() {
        assert_eq!(release_id("shop-42.v1_b"), Ok(()));
        assert_eq!(release_id(".."), Err(Problem::OnlyDots));
        assert_eq!(release_id("."), Err(Problem::OnlyDots));
        assert_eq!(
            release_id("a/b"),
            Err(Problem::IdCharacter { found: '/', at: 1 })
        );
        assert_eq!(release_id(""), Err(Problem::Empty));
        assert!(matches!(
            release_id(&"a".repeat(101)),
            Err(Problem::TooLong { .. })
        ));
    }

    #[test]
    fn times_hold_between_1970_and_the_year_9999() {
        assert_eq!(time_ms(0), Ok(()));
        assert_eq!(time_ms(LATEST_MS), Ok(()));
        assert_eq!(time_ms(-1000), Err(Problem::TimeOutOfRange));
        assert_eq!(time_ms(i64::MAX), Err(Problem::TimeOutOfRange));
        assert_eq!(time_ms(LATEST_MS + 1), Err(Problem::TimeOutOfRange));
        assert_eq!(time_seconds(1_700_000_000.25), Ok(1_700_000_000_250));
        assert_eq!(time_seconds(-1.0), Err(Problem::TimeOutOfRange));
        assert_eq!(time_seconds(f64::NAN), Err(Problem::TimeOutOfRange));
        assert_eq!(time_seconds(1e300), Err(Problem::TimeOutOfRange));
    }

    #[test]
    fn free_text_keeps_line_breaks_and_refuses_the_rest() {
        assert_eq!(free_text("paused:\n\tlatency", 100), Ok(()));
        assert_eq!(
            free_text("a\0", 100),
            Err(Problem::ControlCharacter { at: 1 })
        );
        assert!(matches!(
            free_text(&"x".repeat(1_000_000), MAX_TEXT_BYTES),
            Err(Problem::TooLong { .. })
        ));
    }

    fn meta(name: &str) -> MetricMeta {
        MetricMeta {
            name: name.to_string(),
            kind: crate::model::MetricKind::Middleware,
            unit: String::new(),
            direction: crate::model::Direction::Increase,
            critical: false,
            judged: true,
        }
    }

    #[test]
    fn described_metrics_are_named_once_and_bounded() {
        assert_eq!(
            described_metrics(&[meta("a"), meta("b")], "metrics"),
            Ok(())
        );
        assert_eq!(
            described_metrics(&[meta("a"), meta("a")], "metrics")
                .expect_err("repeated")
                .to_string(),
            "metrics[1].name: describes metric \"a\" a second time"
        );
        assert_eq!(
            described_metrics(&[meta("a\0")], "metrics")
                .expect_err("control character")
                .to_string(),
            "metrics[0].name: holds a control character at byte 1"
        );
        let many: Vec<MetricMeta> = (0..=MAX_DESCRIBED_METRICS)
            .map(|number| meta(&format!("m{number}")))
            .collect();
        assert_eq!(
            described_metrics(&many, "metrics")
                .expect_err("too many")
                .field,
            "metrics"
        );
    }

    #[test]
    fn problems_name_their_field() {
        assert_eq!(
            Problem::Empty.at("samples[3].host").to_string(),
            "samples[3].host: must not be empty"
        );
        assert_eq!(
            whole_in(i64::MAX, 1, 10)
                .expect_err("out of range")
                .at("settings.baseline_seconds")
                .to_string(),
            "settings.baseline_seconds: must be between 1 and 10"
        );
        assert_eq!(number_in(f64::NAN, 0.0, 1.0), Err(Problem::NotFinite));
    }
}
