//! Detect against the reference group: each host's difference from the reference hosts at the
//! same step, compared with the same difference before the first deploy (difference in
//! differences), in units of the host's own variability.
//!
//! Everything at step `i` uses only samples at `i` and the baseline, which lies before the first
//! deploy; so computing the whole track at once never looks ahead of the step being judged.

use crate::prepare::{MetricData, Prepared};
use crate::stats;

/// Scores of one metric on every host: `z[host][step]` is the signed, standardised difference in
/// differences; `delta[host][step]` the same difference on the transformed scale.
#[derive(Debug)]
pub struct PeerTrack {
    pub z: Vec<Vec<f64>>,
    pub delta: Vec<Vec<f64>>,
    /// Each host's level over the baseline, on the transformed scale.
    pub level: Vec<f64>,
}

/// Smallest standard deviation a host may be given, on a relative (log) scale: 0.5 %.
const MIN_RELATIVE_SIGMA: f64 = 0.005;
/// Fewest samples just before a deploy that can set a host's level on their own.
const RECENT_LEVEL_STEPS: usize = 8;

/// The reference hosts' finite movements at every step, each step's sorted ascending: the
/// group's common movement, and the same without any one host, are read off them.
struct SortedMoves {
    values: Vec<f64>,
    /// The movements at step `step` are `values[starts[step]..starts[step + 1]]`.
    starts: Vec<usize>,
}

impl SortedMoves {
    fn new(hosts: &[usize], points: usize, moves: impl Fn(usize, usize) -> f64) -> SortedMoves {
        let mut values = Vec::with_capacity(hosts.len() * points);
        let mut starts = Vec::with_capacity(points + 1);
        starts.push(0);
        for step in 0..points {
            let step_start = values.len();
            values.extend(
                hosts
                    .iter()
                    .map(|&host| moves(host, step))
                    .filter(|value| value.is_finite()),
            );
            values[step_start..].sort_unstable_by(f64::total_cmp);
            starts.push(values.len());
        }
        SortedMoves { values, starts }
    }

    /// The movements at `step`, ascending.
    fn at(&self, step: usize) -> &[f64] {
        &self.values[self.starts[step]..self.starts[step + 1]]
    }

    /// The median movement at `step` without `own` (one host's movement): all of them when
    /// `own` is missing, since it is not among them.
    fn median_without(&self, step: usize, own: f64) -> f64 {
        let sorted = self.at(step);
        if !own.is_finite() {
            return stats::median_of_sorted(sorted);
        }
        let position = sorted.partition_point(|value| value.total_cmp(&own).is_lt());
        stats::median_of_sorted_without(sorted, position)
    }
}

impl PeerTrack {
    /// Needs at least one reference host; returns `None` without one.
    pub fn compute(prepared: &Prepared<'_>, metric: &MetricData<'_>) -> Option<PeerTrack> {
        if prepared.reference.is_empty() || prepared.baseline.is_empty() {
            return None;
        }
        let points = prepared.bundle.points;
        let hosts = prepared.hosts.len();
        let baseline = prepared.baseline.clone();
        let mut scratch = Vec::with_capacity(points);
        let level: Vec<f64> = metric
            .values
            .iter()
            .map(|row| stats::median_with(&row[baseline.clone()], &mut scratch))
            .collect();
        // Each reference host's movement away from its own baseline level.
        let reference_moves: Vec<usize> = prepared
            .reference
            .iter()
            .copied()
            .filter(|&host| level[host].is_finite())
            .collect();
        if reference_moves.is_empty() {
            return None;
        }
        let moves = |host: usize, step: usize| metric.values[host][step] - level[host];
        let sorted_moves = SortedMoves::new(&reference_moves, points, moves);
        // The reference group's common movement at each step (median), and its spread.
        let mut common = vec![f64::NAN; points];
        let mut spread = vec![f64::NAN; points];
        for step in 0..points {
            let at_step = sorted_moves.at(step);
            if at_step.is_empty() {
                continue;
            }
            let center = stats::median_of_sorted(at_step);
            common[step] = center;
            if at_step.len() >= 3 {
                spread[step] = stats::mad_sigma_with(at_step, center, &mut scratch);
            }
        }
        // How much more the reference hosts disagree now than they did in the baseline: a global
        // event that moves hosts unevenly widens every host's band by that factor.
        // Measured against the baseline's high (90th percentile) spread, so that the ordinary
        // wobble of a few reference hosts does not move every host's z.
        let baseline_spread = stats::quantile(&spread[baseline.clone()], 0.9);
        let turbulence: Vec<f64> = (0..points)
            .map(|step| {
                if baseline_spread.is_nan() || baseline_spread <= 0.0 {
                    return 1.0;
                }
                let recent =
                    stats::median_with(&spread[step.saturating_sub(2)..=step], &mut scratch);
                if recent.is_finite() {
                    (recent / baseline_spread).max(1.0)
                } else {
                    1.0
                }
            })
            .collect();
        let mut z = vec![vec![f64::NAN; points]; hosts];
        let mut delta = vec![vec![f64::NAN; points]; hosts];
        let mut sigmas = vec![f64::NAN; hosts];
        let mut leave_one_out = vec![f64::NAN; points];
        let mut residual = vec![f64::NAN; points];
        for host in 0..hosts {
            if !level[host].is_finite() {
                continue;
            }
            let is_reference = prepared.reference.contains(&host);
            // A reference host is compared with the others only (leave one out).
            let peer_common: &[f64] = if is_reference {
                if reference_moves.len() < 2 {
                    continue;
                }
                for (step, slot) in leave_one_out.iter_mut().enumerate() {
                    *slot = sorted_moves.median_without(step, moves(host, step));
                }
                &leave_one_out
            } else {
                &common
            };
            for (step, slot) in residual.iter_mut().enumerate() {
                *slot = moves(host, step) - peer_common[step];
            }
            let bias = stats::median_with(&residual[baseline.clone()], &mut scratch);
            if !bias.is_finite() {
                continue;
            }
            let mut sigma = stats::mad_sigma_with(&residual[baseline.clone()], bias, &mut scratch);
            // A host that was already ill before its deploy: when the last samples before it
            // sit clearly away from the rest of the baseline, they are the host's level now.
            let own_end = prepared.hosts[host]
                .deploy
                .unwrap_or(baseline.end)
                .max(baseline.end);
            let recent_steps = (baseline.len() / 6).max(RECENT_LEVEL_STEPS);
            let recent = own_end.saturating_sub(recent_steps).max(baseline.start)..own_end;
            let recent_bias = stats::median_with(&residual[recent.clone()], &mut scratch);
            let mut level_bias = bias;
            if recent_bias.is_finite()
                && (recent_bias - bias).abs() > 3.0 * sigma.max(f64::MIN_POSITIVE)
            {
                level_bias = recent_bias;
                let earlier = baseline.start..recent.start.min(baseline.end);
                let mut deviations: Vec<f64> =
                    residual[earlier].iter().map(|value| value - bias).collect();
                deviations.extend(residual[recent].iter().map(|value| value - recent_bias));
                sigma = stats::mad_sigma(&deviations, 0.0);
            }
            let bias = level_bias;
            sigmas[host] = sigma;
            for (slot, value) in delta[host].iter_mut().zip(&residual) {
                *slot = value - bias;
            }
        }
        // Floors: no host is trusted to be quieter than half the typical host, nor than 0.5 %.
        let typical_sigma = stats::median(&sigmas);
        let floor = match metric.transform.log_offset {
            Some(_) => MIN_RELATIVE_SIGMA.max(0.5 * typical_sigma),
            None => (0.5 * typical_sigma).max(f64::MIN_POSITIVE),
        };
        for host in 0..hosts {
            if !sigmas[host].is_finite() {
                continue;
            }
            let sigma = sigmas[host].max(floor);
            for step in 0..points {
                z[host][step] = delta[host][step] / (sigma * turbulence[step]);
            }
        }
        Some(PeerTrack { z, delta, level })
    }
}
