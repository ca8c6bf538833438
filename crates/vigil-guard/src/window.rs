//! A release's window, computed in one place: where it starts, how far before the first batch
//! it reaches (the baseline, or the days of history a release without a reference group is
//! compared with), its step, and where it ends. The guard, retention, admission, the server's
//! start and the pages all ask it.

use vigil_analysis::Settings;
use vigil_core::release::{ReferenceHosts, Release};

use crate::assemble::window_start;
use crate::error::GuardError;
use crate::index::DataIndex;

/// The parsed settings of a release, with the defaults for what it leaves out. A release
/// whose release group is a selector compares its new pods with the reference hosts' level
/// (`compare_new_hosts_with_reference`) unless it says otherwise: its pods have no baseline.
pub fn release_settings(release: &Release) -> Result<Settings, GuardError> {
    let mut given = release.spec.settings.clone();
    if release.spec.hosts.selector().is_some() {
        given
            .entry("compare_new_hosts_with_reference")
            .or_insert(serde_json::Value::Bool(true));
    }
    serde_json::from_value(serde_json::Value::Object(given)).map_err(|error| GuardError::Settings {
        id: release.id.clone(),
        reason: error.to_string(),
    })
}

/// The window of one release, as its settings ask.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReleaseWindow {
    /// First step (Unix seconds, aligned to the step).
    pub start: i64,
    /// Seconds of baseline before the first batch.
    pub baseline_seconds: i64,
    /// Seconds of data before the first batch the window reaches: the baseline, or the days
    /// of history when the release has no reference group.
    pub lookback_seconds: i64,
    /// Seconds between steps (at least one).
    pub step_seconds: i64,
}

impl ReleaseWindow {
    /// The window of `release` with its parsed `settings`.
    pub fn of(release: &Release, settings: &Settings) -> ReleaseWindow {
        let lookback_seconds = match release.spec.reference {
            ReferenceHosts::None => settings
                .baseline_seconds
                .max(settings.history_days as i64 * 86_400),
            _ => settings.baseline_seconds,
        };
        ReleaseWindow::with_lookback(release, settings.baseline_seconds, lookback_seconds)
    }

    /// The window of `release` with its settings read from its spec.
    pub fn read(release: &Release) -> Result<(ReleaseWindow, Settings), GuardError> {
        let settings = release_settings(release)?;
        Ok((ReleaseWindow::of(release, &settings), settings))
    }

    /// A window reaching `lookback_seconds` before the release's first batch.
    pub fn with_lookback(
        release: &Release,
        baseline_seconds: i64,
        lookback_seconds: i64,
    ) -> ReleaseWindow {
        ReleaseWindow {
            start: window_start(release, lookback_seconds),
            baseline_seconds,
            lookback_seconds,
            step_seconds: release.spec.step_seconds.max(1),
        }
    }

    /// The latest step time at or before `now`.
    pub fn latest_step(&self, now: i64) -> i64 {
        self.start + (now - self.start).div_euclid(self.step_seconds) * self.step_seconds
    }

    /// How many steps the window holds from its start to `end` (saturating, at least one).
    pub fn step_count_until(&self, end: i64) -> i64 {
        (end.saturating_sub(self.start) / self.step_seconds).saturating_add(1)
    }

    /// The last time the window of `release` shows, as of `now`: now, or when it finished,
    /// and never past the observation after its last batch once every batch is deployed.
    pub fn shown_until(release: &Release, now: i64) -> i64 {
        let until = if release.state.is_terminal() {
            release.updated_at
        } else {
            now
        };
        match ReleaseWindow::observation_end(release) {
            Some(end) => until.min(end),
            None => until,
        }
    }

    /// When the observation after the last batch ends, once every batch is deployed: the
    /// guard lets a release succeed from then, and its window is shown up to then.
    pub fn observation_end(release: &Release) -> Option<i64> {
        if !vigil_deploy::all_batches_deployed(release) {
            return None;
        }
        let last = release.deployed.last()?;
        Some(last.at + release.spec.observe_seconds)
    }

    /// The lookback as far as the index holds data for `hosts`: steps before the oldest sample
    /// or log count of `hosts` would hold nothing, so the window starts at the first step that
    /// can hold it, but never after the baseline's start nor before the full lookback's. The
    /// analysis counts a host's history from its first sample, so the verdicts are those of
    /// the full window.
    pub fn lookback_with_data<'a>(
        &self,
        release: &Release,
        index: &DataIndex,
        hosts: impl IntoIterator<Item = &'a String>,
    ) -> i64 {
        let step = self.step_seconds;
        let baseline_start =
            window_start(release, self.baseline_seconds.min(self.lookback_seconds));
        let earliest_ms = hosts
            .into_iter()
            .filter_map(|host| index.host(host).and_then(|data| data.earliest_ms()))
            .min();
        let first_step_with_data = earliest_ms.map_or(baseline_start, |ms| {
            let step_ms = step.saturating_mul(1000);
            ms.saturating_add(step_ms - 1)
                .div_euclid(step_ms)
                .saturating_mul(step)
        });
        let start = first_step_with_data.min(baseline_start).max(self.start);
        release.window_start(0) - start
    }
}

#[cfg(test)]
mod tests {
    use vigil_core::release::ReleaseState;

    use super::*;

    /// The assembly tests' release, with 30 s steps, deployed at 100,015.
    fn release(reference: ReferenceHosts, settings: serde_json::Value) -> Release {
        let mut release = crate::assemble::tests::release();
        release.spec.reference = reference;
        release.spec.step_seconds = 30;
        release.spec.settings = settings.as_object().cloned().unwrap_or_default();
        release.deployed[0].at = 100_015;
        release
    }

    #[test]
    fn a_reference_group_window_reaches_back_its_baseline_aligned_to_the_step() {
        let with_group = release(
            ReferenceHosts::EveryOtherHost,
            serde_json::json!({"baseline_seconds": 600}),
        );
        let (window, _) = ReleaseWindow::read(&with_group).unwrap();
        assert_eq!(window.lookback_seconds, 600);
        assert_eq!(window.baseline_seconds, 600);
        assert_eq!(window.start, 99_390);
        assert_eq!(window.latest_step(100_029), 100_020);
        assert_eq!(window.step_count_until(100_020), 22);
    }

    #[test]
    fn a_window_without_reference_reaches_back_its_days_of_history() {
        let alone = release(
            ReferenceHosts::None,
            serde_json::json!({"baseline_seconds": 600, "history_days": 2}),
        );
        let (window, _) = ReleaseWindow::read(&alone).unwrap();
        assert_eq!(window.lookback_seconds, 2 * 86_400);
        assert_eq!(window.baseline_seconds, 600);
    }

    #[test]
    fn unreadable_settings_name_the_release() {
        let broken = release(
            ReferenceHosts::None,
            serde_json::json!({"baseline_seconds": "long"}),
        );
        let error = ReleaseWindow::read(&broken).unwrap_err().to_string();
        assert!(
            error.starts_with("release r1 has invalid analysis settings"),
            "{error}"
        );
    }

    #[test]
    fn the_observation_ends_only_once_every_batch_is_deployed() {
        let mut two_batches = release(ReferenceHosts::EveryOtherHost, serde_json::json!({}));
        assert_eq!(ReleaseWindow::observation_end(&two_batches), Some(100_615));
        two_batches
            .spec
            .batches
            .push(two_batches.spec.batches[0].clone());
        assert_eq!(ReleaseWindow::observation_end(&two_batches), None);
    }

    #[test]
    fn a_window_is_shown_until_the_end_of_the_observation_after_the_last_batch() {
        let observing = release(ReferenceHosts::EveryOtherHost, serde_json::json!({}));
        assert_eq!(ReleaseWindow::shown_until(&observing, 100_100), 100_100);
        assert_eq!(ReleaseWindow::shown_until(&observing, 200_000), 100_615);
        let mut finished = observing.clone();
        finished.state = ReleaseState::Succeeded;
        finished.updated_at = 100_300;
        assert_eq!(ReleaseWindow::shown_until(&finished, 200_000), 100_300);
    }
}
