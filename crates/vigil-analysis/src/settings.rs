//! The knobs of the analysis, with defaults that work on a first run.

use serde::{Deserialize, Serialize};

/// Analysis settings of one release. Every field has a default; a release may override any.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    /// Length of the baseline before the first batch, in seconds.
    pub baseline_seconds: i64,
    /// After its deploy a host restarts: samples younger than this are not judged.
    pub warmup_seconds: i64,
    /// Consecutive judged samples a shift must hold before it counts.
    pub persistence_steps: usize,
    /// Robust z a shift must reach on a host (in units of that host's own variability).
    pub shift_z: f64,
    /// Robust z of one sample that counts as a spike, for intermittent faults.
    pub spike_z: f64,
    /// Spikes needed within `spike_window_steps` to call a host intermittently faulty.
    pub spikes_needed: usize,
    pub spike_window_steps: usize,
    /// Relative change that makes a deviation material enough to pause, for critical metrics.
    pub fault_effect_critical: f64,
    /// The same for non-critical metrics.
    pub fault_effect: f64,
    /// Smallest relative change worth recommending.
    pub anomaly_effect: f64,
    /// Share of the deployed release hosts that must show a change to blame the release
    /// (a single host is enough when it is at least this share).
    pub min_host_share: f64,
    /// Log templates: rate, in lines per minute per affected host, above which a surging
    /// exception pauses the release (below it, the surge is a recommendation).
    pub log_fault_lines_per_minute: f64,
    /// Log templates: the release hosts' rate must be this many times the expected rate.
    pub log_min_ratio: f64,
    /// Log templates: natural log of the Poisson tail probability a surge must be below.
    pub log_max_tail_ln: f64,
    /// Without a reference group: the share of historical windows a change must exceed.
    pub history_quantile: f64,
    /// Without a reference group: how many days of the same time of day to look back at most.
    pub history_days: usize,
    /// A deployed release host that sends nothing for this long, while its peers (the
    /// reference hosts, or the other release hosts) keep reporting, pauses the release as a
    /// fault: a crashed host looks like this. Shorter silences hold the release.
    pub silent_host_fault_seconds: i64,
    /// Judged metrics the per-metric bars are set for. With more, every bar rises so that a
    /// release judged on many metrics is no likelier to pause by chance than one judged on
    /// this many (a family-wise correction by the number of judged metrics).
    pub family_size: usize,
    /// Judge the metrics the release does not list as if it listed them: their changes may
    /// pause the release. Off: they may only recommend.
    pub judge_unlisted_metrics: bool,
    /// Score a release host without data in the baseline (a new pod) against the reference
    /// hosts' level: its expected level is theirs, and its band their spread of levels with
    /// the typical host's variability. Off: such a host has no scores. Releases whose groups
    /// are label selectors turn it on.
    pub compare_new_hosts_with_reference: bool,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            baseline_seconds: 3600,
            warmup_seconds: 120,
            persistence_steps: 3,
            shift_z: 4.0,
            spike_z: 8.0,
            spikes_needed: 2,
            spike_window_steps: 10,
            fault_effect_critical: 0.2,
            fault_effect: 0.35,
            anomaly_effect: 0.05,
            min_host_share: 0.25,
            log_fault_lines_per_minute: 2.0,
            log_min_ratio: 4.0,
            log_max_tail_ln: -13.8,
            history_quantile: 0.99,
            history_days: 7,
            silent_host_fault_seconds: 600,
            family_size: 20,
            judge_unlisted_metrics: false,
            compare_new_hosts_with_reference: false,
        }
    }
}

/// Bounds of [`Settings::silent_host_fault_seconds`], checked when a release is created: a
/// minute (one late scrape is no crash) to a day (longer is no guard at all).
pub const SILENT_HOST_FAULT_SECONDS: std::ops::RangeInclusive<i64> = 60..=86_400;

impl Settings {
    /// Steps of warm-up for a given step length: the samples whose whole step falls inside the
    /// warm-up (a sample covers its step from the deploy on) are not judged.
    pub fn warmup_steps(&self, step_seconds: i64) -> usize {
        usize::try_from(self.warmup_seconds.max(0) / step_seconds.max(1)).unwrap_or(0)
    }
}
