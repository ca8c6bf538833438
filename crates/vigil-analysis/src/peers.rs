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

impl PeerTrack {
    /// Needs at least one reference host; returns `None` without one.
    pub fn compute(prepared: &Prepared<'_>, metric: &MetricData<'_>) -> Option<PeerTrack> {
        if prepared.reference.is_empty() || prepared.baseline.is_empty() {
            return None;
        }
        let points = prepared.bundle.points;
        let hosts = prepared.hosts.len();
        let baseline = prepared.baseline.clone();
        let level: Vec<f64> = metric
            .values
            .iter()
            .map(|row| stats::median(&row[baseline.clone()]))
            .collect();
        // Each reference host's movement away from its own baseline level.
        let reference_moves: Vec<&usize> = prepared
            .reference
            .iter()
            .filter(|&&host| level[host].is_finite())
            .collect();
        if reference_moves.is_empty() {
            return None;
        }
        let moves = |host: usize, step: usize| metric.values[host][step] - level[host];
        // The reference group's common movement at each step (median), and without each host.
        let mut common = vec![f64::NAN; points];
        let mut spread = vec![f64::NAN; points];
        let mut scratch = Vec::with_capacity(reference_moves.len());
        for step in 0..points {
            scratch.clear();
            scratch.extend(
                reference_moves
                    .iter()
                    .map(|&&host| moves(host, step))
                    .filter(|value| value.is_finite()),
            );
            if scratch.is_empty() {
                continue;
            }
            let center = stats::median_in_place(&mut scratch);
            common[step] = center;
            if scratch.len() >= 3 {
                spread[step] = stats::mad_sigma(&scratch, center);
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
                let recent = stats::median(&spread[step.saturating_sub(2)..=step]);
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
        for host in 0..hosts {
            if !level[host].is_finite() {
                continue;
            }
            let is_reference = prepared.reference.contains(&host);
            // A reference host is compared with the others only (leave one out).
            let leave_one_out: Vec<f64>;
            let peer_common: &[f64] = if is_reference {
                if reference_moves.len() < 2 {
                    continue;
                }
                leave_one_out = (0..points)
                    .map(|step| {
                        let others: Vec<f64> = reference_moves
                            .iter()
                            .filter(|&&&other| other != host)
                            .map(|&&other| moves(other, step))
                            .collect();
                        stats::median(&others)
                    })
                    .collect();
                &leave_one_out
            } else {
                &common
            };
            let residual: Vec<f64> = (0..points)
                .map(|step| moves(host, step) - peer_common[step])
                .collect();
            let bias = stats::median(&residual[baseline.clone()]);
            if !bias.is_finite() {
                continue;
            }
            let mut sigma = stats::mad_sigma(&residual[baseline.clone()], bias);
            // A host that was already ill before its deploy: when the last samples before it
            // sit clearly away from the rest of the baseline, they are the host's level now.
            let own_end = prepared.hosts[host]
                .deploy
                .unwrap_or(baseline.end)
                .max(baseline.end);
            let recent_steps = (baseline.len() / 6).max(RECENT_LEVEL_STEPS);
            let recent = own_end.saturating_sub(recent_steps).max(baseline.start)..own_end;
            let recent_bias = stats::median(&residual[recent.clone()]);
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
            for step in 0..points {
                delta[host][step] = residual[step] - bias;
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
