//! What a release must satisfy before it is stored: analysis settings in their ranges and a
//! window the guard can build. A release that passes here is never refused later by the guard
//! for its settings; one that would be (a baseline of `i64::MAX` seconds holds a release
//! forever and fails every pass) is refused at creation with the field that is wrong.

use vigil_analysis::settings::SILENT_HOST_FAULT_SECONDS;
use vigil_analysis::Settings;
use vigil_core::bundle::MAX_POINTS;
use vigil_core::release::{Release, ReleaseSpec, ReleaseState};
use vigil_core::validate::{number_in, whole_in, Invalid, Problem};

use crate::window::{release_settings, ReleaseWindow};

/// Longest baseline or history a release may ask for: 30 days.
const MAX_LOOKBACK_SECONDS: i64 = 30 * 86_400;
/// Most days of history compared with.
const MAX_HISTORY_DAYS: i64 = 30;
/// Most steps of persistence, spikes or warm-up a setting may count.
const MAX_STEPS: i64 = 10_000;
/// Largest z, relative effect or rate a setting may ask for; far beyond any useful value.
const MAX_FACTOR: f64 = 1e6;
/// Most judged metrics the per-metric bars may be set for.
const MAX_FAMILY_SIZE: i64 = 1_000_000;

/// The release's settings, checked, when its window can be built from its first batch to the
/// end of its observation.
pub fn admit(release: &Release) -> Result<Settings, Invalid> {
    crate::groups::check_selectors(release)
        .map_err(|(field, error)| Problem::Unreadable(error.to_string()).at(field))?;
    let settings = release_settings(release).map_err(|error| unreadable(release, &error))?;
    check_settings(&settings)?;
    check_window(release, &settings)?;
    Ok(settings)
}

/// A new release's spec, by [`admit`] of the release it makes before its first batch.
pub fn admit_spec(spec: &ReleaseSpec) -> Result<Settings, Invalid> {
    let probe = Release {
        id: "probe".into(),
        spec: spec.clone(),
        state: ReleaseState::Pending,
        created_by: String::new(),
        created_at: 0,
        updated_at: 0,
        deployed: Vec::new(),
        verdict: None,
        reason: String::new(),
    };
    admit(&probe)
}

/// Settings that cannot be read, by the first setting that fails alone (serde's message on
/// the whole object does not say which one it is).
fn unreadable(release: &Release, error: &crate::error::GuardError) -> Invalid {
    for (key, value) in &release.spec.settings {
        let alone = serde_json::Map::from_iter([(key.clone(), value.clone())]);
        if let Err(problem) = serde_json::from_value::<Settings>(serde_json::Value::Object(alone)) {
            return Problem::Unreadable(problem.to_string()).at(format!("settings.{key}"));
        }
    }
    Problem::Unreadable(error.to_string()).at("settings")
}

fn check_settings(settings: &Settings) -> Result<(), Invalid> {
    let whole = [
        (
            "baseline_seconds",
            settings.baseline_seconds,
            1,
            MAX_LOOKBACK_SECONDS,
        ),
        ("warmup_seconds", settings.warmup_seconds, 0, 86_400),
        (
            "persistence_steps",
            to_i64(settings.persistence_steps),
            1,
            MAX_STEPS,
        ),
        (
            "spikes_needed",
            to_i64(settings.spikes_needed),
            1,
            MAX_STEPS,
        ),
        (
            "spike_window_steps",
            to_i64(settings.spike_window_steps),
            1,
            MAX_STEPS,
        ),
        (
            "history_days",
            to_i64(settings.history_days),
            0,
            MAX_HISTORY_DAYS,
        ),
        (
            "silent_host_fault_seconds",
            settings.silent_host_fault_seconds,
            *SILENT_HOST_FAULT_SECONDS.start(),
            *SILENT_HOST_FAULT_SECONDS.end(),
        ),
        (
            "family_size",
            to_i64(settings.family_size),
            1,
            MAX_FAMILY_SIZE,
        ),
    ];
    for (field, value, low, high) in whole {
        whole_in(value, low, high).map_err(|problem| problem.at(format!("settings.{field}")))?;
    }
    let numbers = [
        ("shift_z", settings.shift_z, 0.0, MAX_FACTOR),
        ("spike_z", settings.spike_z, 0.0, MAX_FACTOR),
        (
            "fault_effect_critical",
            settings.fault_effect_critical,
            0.0,
            MAX_FACTOR,
        ),
        ("fault_effect", settings.fault_effect, 0.0, MAX_FACTOR),
        ("anomaly_effect", settings.anomaly_effect, 0.0, MAX_FACTOR),
        ("min_host_share", settings.min_host_share, 0.0, 1.0),
        (
            "log_fault_lines_per_minute",
            settings.log_fault_lines_per_minute,
            0.0,
            MAX_FACTOR,
        ),
        ("log_min_ratio", settings.log_min_ratio, 0.0, MAX_FACTOR),
        (
            "log_max_tail_ln",
            settings.log_max_tail_ln,
            -MAX_FACTOR,
            0.0,
        ),
        ("history_quantile", settings.history_quantile, 0.0, 1.0),
    ];
    for (field, value, low, high) in numbers {
        number_in(value, low, high).map_err(|problem| problem.at(format!("settings.{field}")))?;
    }
    Ok(())
}

/// The window from the lookback before the first batch to the end of the observation must fit
/// in a bundle (batches spread over time only make it longer, and are checked when judged).
fn check_window(release: &Release, settings: &Settings) -> Result<(), Invalid> {
    let window = ReleaseWindow::of(release, settings);
    let first = release
        .deployed
        .first()
        .map_or(release.created_at, |batch| batch.at);
    let end = first.saturating_add(release.spec.observe_seconds);
    let points = window.step_count_until(end);
    let most = i64::try_from(MAX_POINTS).unwrap_or(i64::MAX);
    if points > most {
        return Err(Problem::WindowTooLong {
            steps: points,
            limit: MAX_POINTS,
        }
        .at("settings.baseline_seconds"));
    }
    Ok(())
}

fn to_i64(value: usize) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use vigil_core::release::{PlannedBatch, ReferenceHosts};

    use super::*;

    fn release(settings: serde_json::Value, step_seconds: i64) -> Release {
        let serde_json::Value::Object(settings) = settings else {
            panic!("settings are an object");
        };
        Release {
            id: "r".into(),
            spec: ReleaseSpec {
                app: "shop".into(),
                version: "1".into(),
                hosts: vec!["r1".into()].into(),
                reference: ReferenceHosts::None,
                batches: vec![PlannedBatch {
                    hosts: vec!["r1".into()],
                }],
                step_seconds,
                observe_seconds: 600,
                metrics: Vec::new(),
                settings,
                rules: Vec::new(),
            },
            state: ReleaseState::Pending,
            created_by: String::new(),
            created_at: 1_700_000_000,
            updated_at: 1_700_000_000,
            deployed: Vec::new(),
            verdict: None,
            reason: String::new(),
        }
    }

    fn refusal(settings: serde_json::Value, step_seconds: i64) -> String {
        admit(&release(settings, step_seconds))
            .expect_err("refused")
            .to_string()
    }

    #[test]
    fn defaults_and_usual_overrides_are_admitted() {
        assert!(admit(&release(serde_json::json!({}), 30)).is_ok());
        let short = serde_json::json!({"baseline_seconds": 60, "warmup_seconds": 4});
        assert!(admit(&release(short, 2)).is_ok());
    }

    #[test]
    fn a_baseline_of_i64_max_is_refused_naming_the_setting() {
        assert_eq!(
            refusal(serde_json::json!({"baseline_seconds": i64::MAX}), 30),
            "settings.baseline_seconds: must be between 1 and 2592000"
        );
    }

    #[test]
    fn settings_out_of_range_are_refused() {
        assert_eq!(
            refusal(serde_json::json!({"min_host_share": 2.0}), 30),
            "settings.min_host_share: must be between 0 and 1"
        );
        assert_eq!(
            refusal(serde_json::json!({"history_days": 100_000}), 30),
            "settings.history_days: must be between 0 and 30"
        );
        assert!(refusal(serde_json::json!({"nope": 1}), 30).starts_with("settings.nope: "));
        assert!(refusal(serde_json::json!({"shift_z": "high"}), 30)
            .starts_with("settings.shift_z: invalid type: string"));
    }

    #[test]
    fn a_window_longer_than_a_bundle_is_refused() {
        // 30 days of history at 1 s steps: 2.6 M steps, within the limit of 4 M...
        assert!(admit(&release(serde_json::json!({"history_days": 30}), 1)).is_ok());
        // ...but not with a baseline of 30 days and more than 16 days of observation.
        let mut long = release(serde_json::json!({"baseline_seconds": 2_592_000}), 1);
        long.spec.observe_seconds = 30 * 86_400;
        assert!(admit(&long)
            .expect_err("too long")
            .to_string()
            .starts_with("settings.baseline_seconds: makes a window of "));
    }
}
