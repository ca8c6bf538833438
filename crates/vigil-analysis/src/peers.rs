//! Detect against the reference group: each host's difference from the reference hosts at the
//! same step, compared with the same difference before the first deploy (difference in
//! differences), in units of the host's own variability.
//!
//! Everything at step `i` uses only samples at `i` and the baseline, which lies before the first
//! deploy; so computing the whole track at once never looks ahead of the step being judged.

use std::ops::Range;

use crate::prepare::{room_for, MetricData, Prepared};
use crate::stats;

/// Scores of one metric on every host: `z[host][step]` is the signed, standardised difference in
/// differences; `delta[host][step]` the same difference on the transformed scale.
#[derive(Debug)]
pub struct PeerTrack {
    pub z: Vec<Vec<f64>>,
    pub delta: Vec<Vec<f64>>,
    /// Each host's level over the baseline, on the transformed scale.
    pub level: Vec<f64>,
    model: PeerModel,
}

/// What scoring one step needs besides that step's samples: fitted once, on the data before
/// the last deploy (the baseline, and each host's samples just before its own deploy).
#[derive(Debug)]
struct PeerModel {
    /// Reference hosts with a baseline level: the group each step's movement is taken from.
    reference_moves: Vec<usize>,
    /// Per host: whether it is a reference host (compared with the others only).
    is_reference: Vec<bool>,
    /// Per host: the residual level subtracted, and the standard deviation the difference is
    /// divided by (`NaN`: no z); `None` for a host that cannot be scored.
    scale: Vec<Option<(f64, f64)>>,
    /// The reference hosts' high (90th percentile) spread over the baseline.
    baseline_spread: f64,
    /// The reference hosts' spread at every step scored so far.
    spread: Vec<f64>,
}

/// Smallest standard deviation a host may be given, on a relative (log) scale: 0.5 %.
const MIN_RELATIVE_SIGMA: f64 = 0.005;
/// Fewest samples just before a deploy that can set a host's level on their own.
const RECENT_LEVEL_STEPS: usize = 8;

/// The reference group at each of some steps, from its hosts' finite movements: their common
/// movement (median), their spread, and their median without any one of them. Indexed from the
/// first step of the range they were computed for.
struct ReferenceSteps {
    first: usize,
    common: Vec<f64>,
    /// Robust standard deviation of the movements, from three movements on.
    spread: Vec<f64>,
    leave_one_out: Vec<stats::LeaveOneOutMedian>,
}

impl ReferenceSteps {
    fn new(
        hosts: &[usize],
        steps: Range<usize>,
        moves: impl Fn(usize, usize) -> f64,
    ) -> ReferenceSteps {
        let count = steps.len();
        let mut common = vec![f64::NAN; count];
        let mut spread = vec![f64::NAN; count];
        let mut leave_one_out = Vec::with_capacity(count);
        let mut sorted = Vec::with_capacity(hosts.len());
        let mut keys = Vec::with_capacity(hosts.len());
        for (offset, step) in steps.clone().enumerate() {
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
            common[offset] = center;
            if sorted.len() >= 3 {
                spread[offset] = stats::mad_sigma_of_sorted(&sorted, center);
            }
        }
        ReferenceSteps {
            first: steps.start,
            common,
            spread,
            leave_one_out,
        }
    }

    /// The median movement at `step` without `own` (one host's movement): all of them when
    /// `own` is missing, since it is not among them.
    fn median_without(&self, step: usize, own: f64) -> f64 {
        let offset = step - self.first;
        if !own.is_finite() {
            return self.common[offset];
        }
        self.leave_one_out[offset].without(own)
    }

    fn common_at(&self, step: usize) -> f64 {
        self.common[step - self.first]
    }
}

impl PeerTrack {
    /// Needs at least one reference host; returns `None` without one. With `new_hosts`, a
    /// release host without data in the baseline is scored against the reference hosts'
    /// level ([`new_host_scale`]).
    pub fn compute(prepared: &Prepared, metric: &MetricData, new_hosts: bool) -> Option<PeerTrack> {
        if prepared.reference.is_empty() || prepared.baseline.is_empty() {
            return None;
        }
        let points = prepared.points;
        let hosts = prepared.hosts.len();
        let baseline = prepared.baseline.clone();
        let mut keys = Vec::with_capacity(points);
        let mut level: Vec<f64> = metric
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
        let reference = ReferenceSteps::new(&reference_moves, 0..points, moves);
        let is_reference: Vec<bool> = (0..hosts)
            .map(|host| prepared.reference.contains(&host))
            .collect();
        // Each host's residual level and variability, from its residuals before its deploy.
        let mut fitted: Vec<Option<(f64, f64)>> = vec![None; hosts];
        let mut residual = vec![f64::NAN; points];
        for host in 0..hosts {
            let host_level = level[host];
            if !host_level.is_finite() {
                continue;
            }
            // A reference host is compared with the others only (leave one out).
            if is_reference[host] && reference_moves.len() < 2 {
                continue;
            }
            for (step, slot) in residual.iter_mut().enumerate() {
                *slot = raw_residual(
                    &reference,
                    &metric.values[host],
                    host_level,
                    is_reference[host],
                    step,
                );
            }
            let own_end = prepared.hosts[host]
                .deploy
                .unwrap_or(baseline.end)
                .max(baseline.end);
            // Without a level to measure from, the host has no scores.
            fitted[host] = residual_level(&residual, baseline.clone(), own_end, &mut keys);
        }
        // Floors: no host is trusted to be quieter than half the typical host, nor than 0.5 %.
        let sigmas: Vec<f64> = fitted
            .iter()
            .map(|fit| fit.map_or(f64::NAN, |(_, sigma)| sigma))
            .collect();
        let typical_sigma = stats::median(&sigmas);
        if new_hosts {
            let reference_levels: Vec<f64> =
                reference_moves.iter().map(|&host| level[host]).collect();
            if let Some((new_level, new_fit)) = new_host_scale(&reference_levels, typical_sigma) {
                for host in prepared.release.iter().copied() {
                    let sends = metric.values[host].iter().any(|value| value.is_finite());
                    if level[host].is_nan() && sends {
                        level[host] = new_level;
                        fitted[host] = Some(new_fit);
                    }
                }
            }
        }
        let floor = match metric.transform.log_offset {
            Some(_) => MIN_RELATIVE_SIGMA.max(0.5 * typical_sigma),
            None => (0.5 * typical_sigma).max(f64::MIN_POSITIVE),
        };
        let scale = fitted
            .iter()
            .map(|fit| {
                fit.map(|(bias, sigma)| {
                    let floored = if sigma.is_finite() {
                        sigma.max(floor)
                    } else {
                        f64::NAN
                    };
                    (bias, floored)
                })
            })
            .collect();
        let mut track = PeerTrack {
            z: vec![vec![f64::NAN; points]; hosts],
            delta: vec![vec![f64::NAN; points]; hosts],
            level,
            model: PeerModel {
                reference_moves,
                is_reference,
                scale,
                baseline_spread: stats::quantile(&reference.spread[baseline], 0.9),
                spread: reference.spread.clone(),
            },
        };
        track.score(metric, &reference, 0..points);
        Some(track)
    }

    /// Scores steps `from..` again, and every step the metric's rows gained: after samples at or
    /// after `from` changed or arrived. The model (fitted before the last deploy) stays.
    pub fn rescore(&mut self, metric: &MetricData, from: usize) {
        let points = metric.values.first().map_or(0, Vec::len);
        let moves = |host: usize, step: usize| metric.values[host][step] - self.level[host];
        let reference = ReferenceSteps::new(&self.model.reference_moves, from..points, moves);
        self.model.spread.truncate(from);
        room_for(&mut self.model.spread, points);
        self.model.spread.extend_from_slice(&reference.spread);
        for row in self.z.iter_mut().chain(self.delta.iter_mut()) {
            room_for(row, points);
            row.resize(points, f64::NAN);
        }
        self.score(metric, &reference, from..points);
    }

    /// Writes `delta` and `z` of every scored host at `steps`, which `reference` covers.
    fn score(&mut self, metric: &MetricData, reference: &ReferenceSteps, steps: Range<usize>) {
        let turbulence = turbulence(
            &self.model.spread,
            self.model.baseline_spread,
            steps.clone(),
        );
        for (host, scale) in self.model.scale.iter().enumerate() {
            let Some((bias, sigma)) = *scale else {
                continue;
            };
            let values = &metric.values[host];
            let host_level = self.level[host];
            let is_reference = self.model.is_reference[host];
            for (step, widening) in steps.clone().zip(&turbulence) {
                let difference =
                    raw_residual(reference, values, host_level, is_reference, step) - bias;
                self.delta[host][step] = difference;
                self.z[host][step] = if sigma.is_finite() {
                    difference / (sigma * widening)
                } else {
                    f64::NAN
                };
            }
        }
    }
}

/// A host's movement from its level at `step`, less the reference group's (the others' for a
/// reference host).
fn raw_residual(
    reference: &ReferenceSteps,
    values: &[f64],
    host_level: f64,
    is_reference: bool,
    step: usize,
) -> f64 {
    let movement = values[step] - host_level;
    let common = if is_reference {
        reference.median_without(step, movement)
    } else {
        reference.common_at(step)
    };
    movement - common
}

/// How much more the reference hosts disagree at each of `steps` than they did in the
/// baseline (1 at least): a global event that moves hosts unevenly widens every host's band by
/// that factor. Measured against the baseline's high spread, so that the ordinary wobble of a
/// few reference hosts does not move every host's z.
fn turbulence(spread: &[f64], baseline_spread: f64, steps: Range<usize>) -> Vec<f64> {
    if baseline_spread.is_nan() || baseline_spread <= 0.0 {
        return vec![1.0; steps.len()];
    }
    let mut keys = Vec::with_capacity(3);
    steps
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

/// The level and the (bias, sigma) of a release host without a baseline (a new pod), from the
/// reference hosts' baseline levels: the level is theirs (median), the bias none, and the
/// sigma their spread of levels combined with the typical host's own variability, since a new
/// host is one more host of the same population. `None` without a finite level.
fn new_host_scale(reference_levels: &[f64], typical_sigma: f64) -> Option<(f64, (f64, f64))> {
    let center = stats::median(reference_levels);
    if !center.is_finite() {
        return None;
    }
    // Robust spread of the reference hosts' levels: from three of them on.
    let spread = if reference_levels.len() >= 3 {
        stats::mad_sigma(reference_levels, center)
    } else {
        f64::NAN
    };
    let between = if spread.is_finite() { spread } else { 0.0 };
    let own = if typical_sigma.is_finite() {
        typical_sigma
    } else {
        0.0
    };
    let sigma = (between * between + own * own).sqrt();
    if sigma <= 0.0 {
        return None;
    }
    Some((center, (0.0, sigma)))
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
