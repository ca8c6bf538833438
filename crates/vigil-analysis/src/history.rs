//! Detect against the host's own history, for releases without a reference group: forecast each
//! sample after the first deploy from the data before it (the level of the last hour, moved by
//! the same time of day on earlier days when the history has them), and calibrate the forecast
//! errors on the history itself: the same forecast made at every earlier moment gives the errors
//! a quiet change would have, and their quantiles set the bar.

use crate::prepare::{room_for, MetricData, Prepared};
use crate::settings::Settings;
use crate::stats;

/// One host's forecast errors after the first deploy and the calibrated bars.
#[derive(Debug)]
pub struct HistoryTrack {
    /// Standardised forecast error per step (`NaN` before the first deploy or when missing).
    pub z: Vec<f64>,
    /// Forecast error on the transformed scale.
    pub delta: Vec<f64>,
    /// The bar a shift (the weakest of `persistence_steps` errors) must clear.
    pub shift_z: f64,
    /// The bar one spike must clear.
    pub spike_z: f64,
    /// Whether the forecast moves with the same time on earlier days (else there was too
    /// little history, and it is the level just before the deploy alone).
    pub seasonal: bool,
    /// Samples before the deploy whose median is the forecast's level.
    pub level_steps: usize,
    /// The upper tails of the shift statistic and of single errors over the history, to
    /// raise the bars past what the history shows when many metrics are judged at once.
    pub shift_tail: Option<stats::Tail>,
    pub spike_tail: Option<stats::Tail>,
    /// What scoring one more step needs: the forecast made at the first deploy, and the
    /// calibrated center and scale of its errors.
    forecaster: Forecaster,
    first_deploy: usize,
    center: f64,
    sigma: f64,
}

/// Most anchors (earlier moments) the calibration replays; the most recent ones are kept.
const MAX_ANCHORS: usize = 4000;
/// Horizons calibrated: forecasts further out reuse the last horizon's errors.
const MAX_HORIZON: usize = 48;

#[derive(Debug)]
struct Forecaster {
    /// Median of the `level_steps` samples before each step, up to the first deploy.
    level_before: Vec<f64>,
    day_steps: Option<usize>,
    days: usize,
}

impl Forecaster {
    fn new(
        values: &[f64],
        level_steps: usize,
        day_steps: Option<usize>,
        days: usize,
        end: usize,
    ) -> Self {
        let mut level_before = vec![f64::NAN; end + 1];
        let mut keys = Vec::with_capacity(level_steps);
        for (step, slot) in level_before.iter_mut().enumerate().skip(1) {
            let from = step.saturating_sub(level_steps);
            *slot = stats::median_with(&values[from..step], &mut keys);
        }
        Forecaster {
            level_before,
            day_steps,
            days,
        }
    }

    /// Forecast of sample `target` of `values` made with data before `anchor` only.
    fn forecast(
        &self,
        values: &[f64],
        anchor: usize,
        target: usize,
        scratch: &mut Vec<f64>,
    ) -> f64 {
        let level = self.level_before[anchor];
        let Some(day) = self.day_steps else {
            return level;
        };
        scratch.clear();
        for back in 1..=self.days {
            let Some(earlier_target) = target.checked_sub(back * day) else {
                break;
            };
            let Some(earlier_anchor) = anchor.checked_sub(back * day) else {
                break;
            };
            if earlier_anchor == 0 {
                break;
            }
            let seasonal = values[earlier_target] - self.level_before[earlier_anchor];
            if seasonal.is_finite() {
                scratch.push(seasonal);
            }
        }
        if scratch.is_empty() {
            return level;
        }
        level + stats::median_in_place(scratch)
    }
}

impl HistoryTrack {
    pub fn compute(
        prepared: &Prepared,
        metric: &MetricData,
        host: usize,
        settings: &Settings,
    ) -> Option<HistoryTrack> {
        let first_deploy = prepared.first_deploy?;
        let values = &metric.values[host];
        let points = values.len();
        let step = prepared.step_seconds;
        // The history is counted from the host's first sample, not from the window's start:
        // a window that reaches further back over steps without data (the live guard trims
        // them, a replayed bundle may hold them) gives the same forecast, bars and verdicts.
        let first_sample = values[..first_deploy.min(points)]
            .iter()
            .position(|value| value.is_finite())?;
        let history_steps = first_deploy - first_sample;
        // The level is the last hour, or a third of a shorter history (the rest calibrates).
        let level_steps = usize::try_from(settings.baseline_seconds / step)
            .unwrap_or(1)
            .min(history_steps / 3)
            .clamp(3, 288);
        let day_steps = (86_400 % step == 0)
            .then(|| usize::try_from(86_400 / step).unwrap_or(usize::MAX))
            .filter(|&day| day + level_steps < history_steps);
        let forecaster = Forecaster::new(
            values,
            level_steps,
            day_steps,
            settings.history_days,
            first_deploy,
        );
        let sign = metric.harmful_sign;
        let persistence = settings.persistence_steps.max(1);

        // Replay the forecast from earlier anchors; errors by horizon.
        let earliest_anchor = first_sample + level_steps + day_steps.unwrap_or(0);
        // A fixed horizon: how far the bundle happens to reach must not change the bars.
        let horizon = MAX_HORIZON;
        if first_deploy <= earliest_anchor + persistence {
            return None;
        }
        let last_anchor = first_deploy - persistence;
        let first_anchor = earliest_anchor.max(last_anchor.saturating_sub(MAX_ANCHORS));
        let mut scratch = Vec::new();
        let mut errors: Vec<Vec<f64>> = Vec::with_capacity(last_anchor - first_anchor);
        for anchor in first_anchor..last_anchor {
            let reach = horizon.min(first_deploy - anchor);
            let row: Vec<f64> = (0..reach)
                .map(|ahead| {
                    values[anchor + ahead]
                        - forecaster.forecast(values, anchor, anchor + ahead, &mut scratch)
                })
                .collect();
            errors.push(row);
        }
        let pooled: Vec<f64> = errors
            .iter()
            .flatten()
            .copied()
            .filter(|error| error.is_finite())
            .collect();
        if pooled.len() < 8 {
            return None;
        }
        let center = stats::median(&pooled);
        let floor = match metric.transform.log_offset {
            Some(_) => 0.005,
            None => f64::MIN_POSITIVE,
        };
        let sigma = stats::mad_sigma(&pooled, center).max(floor);
        // What a shift statistic and a single error reach at quiet moments of the history.
        let mut shift_statistics = Vec::new();
        let mut single = Vec::new();
        for row in &errors {
            let harms: Vec<f64> = row
                .iter()
                .map(|error| crate::hosts::harmful(sign, (error - center) / sigma))
                .collect();
            single.extend(harms.iter().copied().filter(|value| value.is_finite()));
            for window in harms.windows(persistence) {
                let weakest = window.iter().copied().fold(f64::INFINITY, f64::min);
                if weakest.is_finite() {
                    shift_statistics.push(weakest);
                }
            }
        }
        let shift_bar = stats::quantile(&shift_statistics, settings.history_quantile);
        let spike_bar = stats::quantile(&single, settings.history_quantile);
        let mut track = HistoryTrack {
            z: vec![f64::NAN; points],
            delta: vec![f64::NAN; points],
            shift_z: (0.5 * settings.shift_z).max(if shift_bar.is_finite() {
                shift_bar
            } else {
                settings.shift_z
            }),
            spike_z: settings.shift_z.max(if spike_bar.is_finite() {
                spike_bar
            } else {
                settings.spike_z
            }),
            seasonal: day_steps.is_some(),
            level_steps,
            shift_tail: stats::Tail::of(&shift_statistics),
            spike_tail: stats::Tail::of(&single),
            forecaster,
            first_deploy,
            center,
            sigma,
        };
        let (mut z, mut delta) = (
            std::mem::take(&mut track.z),
            std::mem::take(&mut track.delta),
        );
        track.score(values, &mut z, &mut delta, first_deploy);
        track.z = z;
        track.delta = delta;
        Some(track)
    }

    /// Writes the forecast errors of samples `from..` of `values` (those after the first deploy)
    /// into `z` and `delta`, grown to the length of `values`.
    pub fn score(&self, values: &[f64], z: &mut Vec<f64>, delta: &mut Vec<f64>, from: usize) {
        for row in [&mut *z, &mut *delta] {
            room_for(row, values.len());
            row.resize(values.len(), f64::NAN);
        }
        let mut scratch = Vec::new();
        for target in from.max(self.first_deploy)..values.len() {
            let error = values[target]
                - self
                    .forecaster
                    .forecast(values, self.first_deploy, target, &mut scratch)
                - self.center;
            delta[target] = error;
            z[target] = error / self.sigma;
        }
    }
}
