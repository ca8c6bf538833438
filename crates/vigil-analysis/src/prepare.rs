//! Clean: align the bundle onto dense per-host arrays, find each host's deploy step, the baseline
//! window, and the transform that puts each metric on a scale where changes compare across hosts.

use std::collections::HashMap;
use std::ops::Range;

use vigil_core::{Bundle, HostGroup, LogTemplate, MetricMeta};

use crate::settings::Settings;
use crate::stats;

/// A host as the analysis sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct HostView {
    pub name: String,
    pub group: HostGroup,
    /// Index of the step at which the host got the new version (release hosts in a batch).
    pub deploy: Option<usize>,
}

/// How a metric's values are turned into the scale the detectors work on.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Transform {
    /// Values are a share near its upper bound whose fall hurts (a success rate): the detectors
    /// look at the headroom `bound - value` (the failure share), whose rise hurts.
    pub headroom_of: Option<f64>,
    /// Work on `ln(value + offset)` (relative changes) rather than on the raw value.
    pub log_offset: Option<f64>,
    /// The smallest level (in the metric's unit, after the headroom) a relative change is
    /// taken of, from the metric's own scale, so that a level near zero gives no boundless
    /// relative change.
    pub level_floor: f64,
}

impl Transform {
    pub fn apply(&self, value: f64) -> f64 {
        let shifted = match self.headroom_of {
            Some(bound) => (bound - value).max(0.0),
            None => value,
        };
        match self.log_offset {
            Some(offset) => (shifted.max(0.0) + offset).ln(),
            None => shifted,
        }
    }

    /// Back from a transformed level to the metric's own unit.
    pub fn invert(&self, transformed: f64) -> f64 {
        let shifted = match self.log_offset {
            Some(offset) => transformed.exp() - offset,
            None => transformed,
        };
        match self.headroom_of {
            Some(bound) => bound - shifted,
            None => shifted,
        }
    }

    /// Relative size of a difference `delta` of transformed values around `level`.
    pub fn relative_effect(&self, level: f64, delta: f64) -> f64 {
        match self.log_offset {
            // Back on the metric's own scale (plus the offset), where the floor applies.
            Some(_) => {
                let from = level.exp();
                bounded_ratio(from * delta.exp() - from, from.max(self.level_floor))
            }
            None => bounded_ratio(delta, level.abs().max(self.level_floor)),
        }
    }

    /// Relative change from `expected` to `observed` (both in the metric's own unit): of the
    /// headroom for a share near its bound, and of no level below the floor, so that a level
    /// near zero gives no boundless change. Above the floor it is exactly `observed /
    /// expected - 1`, the ratio of the two values a finding states.
    pub fn effect_between(&self, observed: f64, expected: f64) -> f64 {
        let (observed, expected) = match self.headroom_of {
            Some(bound) => ((bound - observed).max(0.0), (bound - expected).max(0.0)),
            None => (observed, expected),
        };
        // The log scale's offset is the series' resolution at least: no level is finer.
        let floor = self.level_floor.max(self.log_offset.unwrap_or(0.0));
        bounded_ratio(observed - expected, expected.abs().max(floor))
    }
}

/// Largest relative change stated: a level that was flat at zero (no scale to measure from)
/// moved by this many times itself at most.
const MAX_RELATIVE_CHANGE: f64 = 100.0;

/// `change / level`, bounded by [`MAX_RELATIVE_CHANGE`] in either direction.
fn bounded_ratio(change: f64, level: f64) -> f64 {
    change
        / level
            .max(change.abs() / MAX_RELATIVE_CHANGE)
            .max(f64::MIN_POSITIVE)
}

/// One metric on dense arrays: `values[host][step]`, `NaN` where missing.
#[derive(Debug)]
pub struct MetricData {
    pub meta: MetricMeta,
    pub transform: Transform,
    /// Whether the transform was chosen from the samples before the first deploy only (else
    /// from the whole window, for want of earlier samples).
    pub transform_from_history: bool,
    /// Transformed values, per host index then step.
    pub values: Vec<Vec<f64>>,
    /// Harmful direction on the transformed scale: +1 up, -1 down, 0 either.
    pub harmful_sign: f64,
}

/// One log template: lines per host and step (0 where a host logged none).
#[derive(Debug)]
pub struct LogData {
    pub template: LogTemplate,
    pub counts: Vec<Vec<f64>>,
    /// Lines over the baseline, on all release hosts and on all reference hosts.
    pub release_baseline_lines: f64,
    pub reference_baseline_lines: f64,
}

/// The bundle, cleaned and aligned.
#[derive(Debug)]
pub struct Prepared {
    /// Unix time of the first step, the step, and the steps in the window.
    pub start: i64,
    pub step_seconds: i64,
    pub points: usize,
    pub hosts: Vec<HostView>,
    pub release: Vec<usize>,
    pub reference: Vec<usize>,
    /// Index of the first deploy step, if any batch is in the window.
    pub first_deploy: Option<usize>,
    /// The baseline: up to `baseline_seconds` before the first deploy.
    pub baseline: Range<usize>,
    pub metrics: Vec<MetricData>,
    pub logs: Vec<LogData>,
    pub warmup_steps: usize,
}

impl Prepared {
    pub fn new(bundle: &Bundle, settings: &Settings) -> Prepared {
        let points = bundle.points;
        let hosts = host_views(bundle);
        let release: Vec<usize> = (0..hosts.len())
            .filter(|&index| hosts[index].group == HostGroup::Release)
            .collect();
        let reference: Vec<usize> = (0..hosts.len())
            .filter(|&index| hosts[index].group == HostGroup::Reference)
            .collect();
        let first_deploy = hosts.iter().filter_map(|host| host.deploy).min();
        let baseline_steps = usize::try_from(settings.baseline_seconds / bundle.step_seconds)
            .unwrap_or(0)
            .max(1);
        let baseline_end = first_deploy.unwrap_or(points);
        let baseline = baseline_end.saturating_sub(baseline_steps)..baseline_end;
        let rows = DenseRows::new(&hosts, points);

        let metrics = bundle
            .metrics
            .iter()
            .map(|meta| {
                let mut values = rows.dense(bundle.series.get(&meta.name), f64::NAN);
                let history_end = baseline_end.max(1).min(points);
                let (transform, transform_from_history) =
                    choose_transform(meta, &values, history_end);
                for value in values.iter_mut().flatten() {
                    if !value.is_nan() {
                        *value = transform.apply(*value);
                    }
                }
                let harmful_sign = match transform.headroom_of {
                    Some(_) => 1.0,
                    None => meta.direction.sign(),
                };
                MetricData {
                    meta: meta.clone(),
                    transform,
                    transform_from_history,
                    values,
                    harmful_sign,
                }
            })
            .collect();
        let logs = prepare_logs(bundle, &rows, &release, &reference, &baseline);
        Prepared {
            start: bundle.start,
            step_seconds: bundle.step_seconds,
            points,
            hosts,
            release,
            reference,
            first_deploy,
            baseline,
            metrics,
            logs,
            warmup_steps: settings.warmup_steps(bundle.step_seconds),
        }
    }

    /// Unix time of step `index`.
    pub fn time_of(&self, index: usize) -> i64 {
        self.start + self.step_seconds * index as i64
    }
}

/// Steps of room a growing row gets at a time: a live window grows by a step per pass, and
/// room for many steps spares copying the row at every step without doubling its size.
const ROW_GROWTH_STEPS: usize = 64;

/// Makes room in `row` for `points` values.
pub fn room_for(row: &mut Vec<f64>, points: usize) {
    if row.capacity() < points {
        row.reserve_exact(points.saturating_sub(row.len()) + ROW_GROWTH_STEPS);
    }
}

/// The bundle's hosts as the analysis sees them, with each one's deploy step.
pub fn host_views(bundle: &Bundle) -> Vec<HostView> {
    host_views_in(bundle, bundle.start, bundle.points)
}

/// [`host_views`] with deploy steps counted in a window that starts at `start` (Unix seconds)
/// and holds `points` steps of the bundle's step.
pub fn host_views_in(bundle: &Bundle, start: i64, points: usize) -> Vec<HostView> {
    let step = bundle.step_seconds;
    let deploy_of: HashMap<&str, usize> = bundle
        .batches
        .iter()
        .flat_map(|batch| {
            let offset = (batch.at - start).max(0);
            let index = usize::try_from((offset + step - 1) / step).unwrap_or(usize::MAX);
            batch.hosts.iter().map(move |host| (host.as_str(), index))
        })
        .filter(|(_, index)| *index < points)
        .collect();
    bundle
        .hosts
        .iter()
        .map(|host| HostView {
            name: host.name.clone(),
            group: host.group,
            deploy: deploy_of.get(host.name.as_str()).copied(),
        })
        .collect()
}

/// Turns a bundle's per-host series into rows indexed by host then step.
#[derive(Debug)]
pub struct DenseRows {
    host_index: HashMap<String, usize>,
    hosts: usize,
    points: usize,
}

impl DenseRows {
    pub fn new(hosts: &[HostView], points: usize) -> DenseRows {
        DenseRows {
            host_index: hosts
                .iter()
                .enumerate()
                .map(|(index, host)| (host.name.clone(), index))
                .collect(),
            hosts: hosts.len(),
            points,
        }
    }

    /// One row per host: the finite values of `by_host`, `fill` elsewhere (`NaN` for missing
    /// or non-finite samples).
    pub fn dense(
        &self,
        by_host: Option<&vigil_core::bundle::SeriesByHost<f64>>,
        fill: f64,
    ) -> Vec<Vec<f64>> {
        let mut rows = vec![vec![fill; self.points]; self.hosts];
        let Some(by_host) = by_host else {
            return rows;
        };
        for (host, values) in by_host {
            let Some(&index) = self.host_index.get(host.as_str()) else {
                continue;
            };
            for (slot, value) in rows[index].iter_mut().zip(values) {
                *slot = value.filter(|value| value.is_finite()).unwrap_or(f64::NAN);
            }
        }
        rows
    }
}

/// Every log template's lines per host and step, with the lines over the baseline.
pub fn prepare_logs(
    bundle: &Bundle,
    rows: &DenseRows,
    release: &[usize],
    reference: &[usize],
    baseline: &Range<usize>,
) -> Vec<LogData> {
    bundle
        .logs
        .templates
        .iter()
        .map(|template| {
            let mut counts = rows.dense(bundle.logs.counts.get(&template.id), 0.0);
            for row in &mut counts {
                for count in row.iter_mut() {
                    if count.is_nan() {
                        *count = 0.0;
                    }
                }
            }
            let baseline_lines = |hosts: &[usize]| -> f64 {
                hosts
                    .iter()
                    .map(|&host| counts[host][baseline.clone()].iter().sum::<f64>())
                    .sum()
            };
            LogData {
                template: template.clone(),
                release_baseline_lines: baseline_lines(release),
                reference_baseline_lines: baseline_lines(reference),
                counts,
            }
        })
        .collect()
}

/// Picks the scale for a metric from its metadata and the data before the first deploy.
/// Also says whether the data before the first deploy were enough (else the whole window served).
fn choose_transform(meta: &MetricMeta, raw: &[Vec<f64>], history_end: usize) -> (Transform, bool) {
    let mut history = Vec::with_capacity(raw.len() * history_end);
    for row in raw {
        history.extend(row[..history_end].iter().copied().filter(|v| v.is_finite()));
    }
    if !history.is_empty() {
        return (transform_of_values(meta, history), true);
    }
    let all: Vec<f64> = raw
        .iter()
        .flat_map(|row| row.iter().copied())
        .filter(|v| v.is_finite())
        .collect();
    (transform_of_values(meta, all), false)
}

/// The scale for a metric with these finite values (reordered: medians select in place).
fn transform_of_values(meta: &MetricMeta, mut all: Vec<f64>) -> Transform {
    if all.is_empty() {
        return Transform {
            headroom_of: None,
            log_offset: None,
            level_floor: 0.0,
        };
    }
    let minimum = all.iter().copied().fold(f64::INFINITY, f64::min);
    let maximum = all.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let typical = stats::median_in_place(&mut all);
    // A share (by unit, or by every value lying in [0, 1]) whose harmful direction is down and
    // which sits near its upper bound: its failures are the headroom.
    let bound = if meta.unit_is_share() && maximum <= 100.0 + 1e-9 && minimum >= 0.0 {
        Some(
            if maximum <= 1.0 + 1e-9
                && !meta.unit.contains('%')
                && !meta.unit.eq_ignore_ascii_case("percent")
            {
                1.0
            } else {
                100.0
            },
        )
    } else if minimum >= 0.0 && maximum <= 1.0 {
        Some(1.0)
    } else {
        None
    };
    let headroom_of = bound.filter(|bound| {
        meta.direction == vigil_core::Direction::Decrease && typical >= 0.8 * bound
    });
    let mut shifted: Vec<f64> = match headroom_of {
        Some(bound) => all.iter().map(|value| (bound - value).max(0.0)).collect(),
        None => all,
    };
    let shifted_minimum = shifted.iter().copied().fold(f64::INFINITY, f64::min);
    if shifted_minimum < 0.0 {
        let magnitudes: Vec<f64> = shifted.iter().map(|value| value.abs()).collect();
        return Transform {
            headroom_of,
            log_offset: None,
            level_floor: 0.5 * stats::quantile(&magnitudes, 0.9).max(0.0),
        };
    }
    // Relative scale for non-negative metrics, with an offset that keeps zeros finite: the
    // series' resolution (one event per step for counts) or a small share of its typical level.
    let level = match headroom_of {
        Some(_) => stats::median_in_place(&mut shifted).abs(),
        // The same values as `all`: their median is `typical`.
        None => typical.abs(),
    };
    let share_of_level = 0.05 * level;
    let mut offset = if stats::neighbours_within(&shifted, share_of_level) {
        // The resolution is at most that share, which is then the offset: no need to sort.
        share_of_level
    } else {
        stats::resolution(&shifted)
            .unwrap_or(0.0)
            .max(share_of_level)
    };
    if offset.is_nan() || offset <= 0.0 {
        offset = stats::quantile(&shifted, 0.9).max(1e-9) * 0.05;
    }
    // A metric whose usual values spread wider than its level sits near zero: a change there
    // is material only against that spread, which floors the level a relative change is
    // taken of (else a move from 0.0001 to 0.004 reads as a 40-fold rise).
    let spread = stats::quantile(&shifted, 0.9) - stats::quantile(&shifted, 0.1);
    let level_floor = if spread.is_finite() && spread > level {
        spread - level
    } else {
        0.0
    };
    Transform {
        headroom_of,
        log_offset: Some(offset),
        level_floor,
    }
}
