//! Detect against the reference group: each host's difference from the reference hosts at the
//! same step, compared with the same difference before the first deploy (difference in
//! differences), in units of the host's own variability.
//!
//! Everything at step `i` uses only samples at `i` and the baseline, which lies before the first
//! deploy; so computing the whole track at once never looks ahead of the step being judged.

use std::ops::Range;

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

/// The reference group at each step, from its hosts' finite movements: their common movement
/// (median), their spread, and their median without any one of them.
struct ReferenceSteps {
    common: Vec<f64>,
    /// Robust standard deviation of the movements, from three movements on.
    spread: Vec<f64>,
    leave_one_out: Vec<stats::LeaveOneOutMedian>,
}

impl ReferenceSteps {
    fn new(hosts: &[usize], points: usize, moves: impl Fn(usize, usize) -> f64) -> ReferenceSteps {
        let mut common = vec![f64::NAN; points];
        let mut spread = vec![f64::NAN; points];
        let mut leave_one_out = Vec::with_capacity(points);
        let mut sorted = Vec::with_capacity(hosts.len());
        let mut keys = Vec::with_capacity(hosts.len());
        for step in 0..points {
            sorted.clear();
            sorted.extend(
                hosts
                    .iter()
                    .map(|&host| moves(host, step))
                    .filter(|value| value.is_finite()),
            );
            stats::sort_total(&mut sorted, &mut keys);
            leave_one_out.push(stats::LeaveOneOutMedian::of_sorted(&sorted));
            if sorted.is_empty() {
                continue;
            }
            let center = stats::median_of_sorted(&sorted);
            common[step] = center;
            if sorted.len() >= 3 {
                spread[step] = stats::mad_sigma_of_sorted(&sorted, center);
            }
        }
        ReferenceSteps {
            common,
            spread,
            leave_one_out,
        }
    }

    /// The median movement at `step` without `own` (one host's movement): all of them when
    /// `own` is missing, since it is not among them.
    fn median_without(&self, step: usize, own: f64) -> f64 {
        if !own.is_finite() {
            return self.common[step];
        }
        self.leave_one_out[step].without(own)
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
        let mut keys = Vec::with_capacity(points);
        let level: Vec<f64> = metric
            .values
            .iter()
            .map(|row| stats::median_with(&row[baseline.clone()], &mut keys))
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
        let reference = ReferenceSteps::new(&reference_moves, points, moves);
        let turbulence = turbulence_by_step(&reference.spread, baseline.clone());
        let mut z = vec![vec![f64::NAN; points]; hosts];
        let mut delta = vec![vec![f64::NAN; points]; hosts];
        let mut sigmas = vec![f64::NAN; hosts];
        let mut leave_one_out = vec![f64::NAN; points];
        for host in 0..hosts {
            let host_level = level[host];
            if !host_level.is_finite() {
                continue;
            }
            let values = &metric.values[host];
            let is_reference = prepared.reference.contains(&host);
            // A reference host is compared with the others only (leave one out).
            let peer_common: &[f64] = if is_reference {
                if reference_moves.len() < 2 {
                    continue;
                }
                for (step, (slot, value)) in leave_one_out.iter_mut().zip(values).enumerate() {
                    *slot = reference.median_without(step, value - host_level);
                }
                &leave_one_out
            } else {
                &reference.common
            };
            // The residual first, then less its level: the host's difference in differences.
            let residual = &mut delta[host];
            for ((slot, value), common) in residual.iter_mut().zip(values).zip(peer_common) {
                *slot = (value - host_level) - common;
            }
            let own_end = prepared.hosts[host]
                .deploy
                .unwrap_or(baseline.end)
                .max(baseline.end);
            let Some((bias, sigma)) =
                residual_level(residual, baseline.clone(), own_end, &mut keys)
            else {
                // No level to measure from: the host has no scores.
                residual.fill(f64::NAN);
                continue;
            };
            sigmas[host] = sigma;
            for value in residual.iter_mut() {
                *value -= bias;
            }
        }
        // Floors: no host is trusted to be quieter than half the typical host, nor than 0.5 %.
        let typical_sigma = stats::median(&sigmas);
        let floor = match metric.transform.log_offset {
            Some(_) => MIN_RELATIVE_SIGMA.max(0.5 * typical_sigma),
            None => (0.5 * typical_sigma).max(f64::MIN_POSITIVE),
        };
        for ((z_row, delta_row), host_sigma) in z.iter_mut().zip(&delta).zip(&sigmas) {
            if !host_sigma.is_finite() {
                continue;
            }
            let sigma = host_sigma.max(floor);
            for ((slot, difference), widening) in z_row.iter_mut().zip(delta_row).zip(&turbulence) {
                *slot = difference / (sigma * widening);
            }
        }
        Some(PeerTrack { z, delta, level })
    }
}

/// How much more the reference hosts disagree now than they did in the baseline, per step (1
/// at least): a global event that moves hosts unevenly widens every host's band by that factor.
/// Measured against the baseline's high (90th percentile) spread, so that the ordinary wobble
/// of a few reference hosts does not move every host's z.
fn turbulence_by_step(spread: &[f64], baseline: Range<usize>) -> Vec<f64> {
    let baseline_spread = stats::quantile(&spread[baseline], 0.9);
    if baseline_spread.is_nan() || baseline_spread <= 0.0 {
        return vec![1.0; spread.len()];
    }
    let mut keys = Vec::with_capacity(3);
    (0..spread.len())
        .map(|step| {
            let recent = stats::median_with(&spread[step.saturating_sub(2)..=step], &mut keys);
            if recent.is_finite() {
                (recent / baseline_spread).max(1.0)
            } else {
                1.0
            }
        })
        .collect()
}

/// A host's level in its `residual` (movement less the reference's) and the residual's
/// variability around it, from the baseline; `None` when the baseline has no residual.
///
/// A host that was already ill before its deploy (at `own_end`): when the last samples before
/// it sit clearly away from the rest of the baseline, they are the host's level now.
fn residual_level(
    residual: &[f64],
    baseline: Range<usize>,
    own_end: usize,
    keys: &mut Vec<i64>,
) -> Option<(f64, f64)> {
    let bias = stats::median_with(&residual[baseline.clone()], keys);
    if !bias.is_finite() {
        return None;
    }
    let sigma = stats::mad_sigma_with(&residual[baseline.clone()], bias, keys);
    let recent_steps = (baseline.len() / 6).max(RECENT_LEVEL_STEPS);
    let recent = own_end.saturating_sub(recent_steps).max(baseline.start)..own_end;
    let recent_bias = stats::median_with(&residual[recent.clone()], keys);
    let moved =
        recent_bias.is_finite() && (recent_bias - bias).abs() > 3.0 * sigma.max(f64::MIN_POSITIVE);
    if !moved {
        return Some((bias, sigma));
    }
    let earlier = baseline.start..recent.start.min(baseline.end);
    let mut deviations: Vec<f64> = residual[earlier].iter().map(|value| value - bias).collect();
    deviations.extend(residual[recent].iter().map(|value| value - recent_bias));
    let recent_sigma = stats::mad_sigma_with(&deviations, 0.0, keys);
    Some((recent_bias, recent_sigma))
}
