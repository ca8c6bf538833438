//! Turn a release and the data index into the `release-bundle/1` the analysis judges: the
//! window from the baseline before the first batch to the step being judged, one value per
//! step and series.
//!
//! Step `i` stands for time `t_i = start + i * step` and takes the last sample in
//! `(t_i - step, t_i]`; a counter becomes its rate per second since its previous sample (a drop
//! is a reset: the new value is the increase); log lines are summed over the same interval.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use vigil_core::release::{ReferenceHosts, Release};
use vigil_core::{Bundle, Direction, Host, HostGroup, LogTemplate, MetricKind, MetricMeta};

use crate::index::{first_after, DataIndex, Series};

/// Why a window cannot be assembled.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AssembleError {
    #[error("release {id} has a step of {step} s; it must be positive")]
    BadStep { id: String, step: i64 },
    #[error("release {id}: the window from {start} to {end} holds no step")]
    EmptyWindow { id: String, start: i64, end: i64 },
    #[error("release {id}: the window would hold {points} steps, more than {max}")]
    WindowTooLong {
        id: String,
        points: usize,
        max: usize,
    },
    #[error(
        "the window from {start} to {end} would hold {points} steps of {series} series, \
         {cells} values, more than the {max} a release is judged on; \
         lower history_days or raise the step"
    )]
    WindowTooLarge {
        start: i64,
        end: i64,
        points: usize,
        series: usize,
        cells: usize,
        max: usize,
    },
}

/// Most values (steps x series) a release's window may hold: the guard's memory per release
/// grows with them (about 50 bytes each once judged), so a window past this is held as
/// insufficient data instead of being built.
pub const MAX_WINDOW_CELLS: usize = 10_000_000;

/// The metadata a metric gets when the release does not describe it.
pub fn default_meta(name: &str) -> MetricMeta {
    MetricMeta {
        name: name.to_string(),
        kind: MetricKind::Middleware,
        unit: String::new(),
        direction: Direction::Either,
        critical: false,
        judged: false,
    }
}

/// First step of a release's window: its baseline before the first batch (or before its
/// creation while no batch is deployed), aligned to the step.
pub fn window_start(release: &Release, baseline_seconds: i64) -> i64 {
    let step = release.spec.step_seconds.max(1);
    release.window_start(baseline_seconds).div_euclid(step) * step
}

/// The reference hosts of a release, as of the data in the index. A selector finds none here:
/// the guard judges a selector release as [`crate::groups::judged_release`] resolves it.
pub fn reference_hosts(release: &Release, index: &DataIndex, since_ms: i64) -> Vec<String> {
    match &release.spec.reference {
        ReferenceHosts::Hosts { hosts } => hosts.clone(),
        ReferenceHosts::None | ReferenceHosts::Selector { .. } | ReferenceHosts::NotYetDeployed => {
            Vec::new()
        }
        ReferenceHosts::EveryOtherHost => {
            let release_hosts: BTreeSet<&str> = release
                .spec
                .hosts
                .names()
                .iter()
                .map(String::as_str)
                .collect();
            index
                .hosts_of_app(&release.spec.app, since_ms)
                .into_iter()
                .filter(|host| !release_hosts.contains(host.as_str()))
                .collect()
        }
    }
}

/// [`reference_hosts`] from the hosts of every app found in one scan
/// ([`DataIndex::hosts_by_app`]).
pub fn reference_hosts_among(
    release: &Release,
    apps: &HashMap<String, Vec<(String, i64)>>,
    since_ms: i64,
) -> Vec<String> {
    match &release.spec.reference {
        ReferenceHosts::Hosts { hosts } => hosts.clone(),
        ReferenceHosts::None | ReferenceHosts::Selector { .. } | ReferenceHosts::NotYetDeployed => {
            Vec::new()
        }
        ReferenceHosts::EveryOtherHost => {
            let release_hosts: BTreeSet<&str> = release
                .spec
                .hosts
                .names()
                .iter()
                .map(String::as_str)
                .collect();
            apps.get(&release.spec.app)
                .into_iter()
                .flatten()
                .filter(|(host, last_ms)| {
                    *last_ms > since_ms && !release_hosts.contains(host.as_str())
                })
                .map(|(host, _)| host.clone())
                .collect()
        }
    }
}

/// The bundle of `release` with steps up to `until` (Unix seconds; the last step is the latest
/// `t_i <= until`).
pub fn assemble(
    release: &Release,
    index: &DataIndex,
    templates: &HashMap<String, LogTemplate>,
    baseline_seconds: i64,
    until: i64,
) -> Result<Bundle, AssembleError> {
    let start = window_start(release, baseline_seconds);
    let reference = reference_hosts(release, index, start * 1000);
    assemble_with(
        release,
        index,
        &reference,
        templates,
        baseline_seconds,
        until,
    )
}

/// [`assemble`] with the reference hosts already found.
pub fn assemble_with(
    release: &Release,
    index: &DataIndex,
    reference: &[String],
    templates: &HashMap<String, LogTemplate>,
    baseline_seconds: i64,
    until: i64,
) -> Result<Bundle, AssembleError> {
    let window = Window {
        reference,
        templates,
        baseline_seconds,
        until,
    };
    assemble_steps(release, index, &window, 0)
}

/// What a release's window is assembled from, besides the release and the index.
#[derive(Debug, Clone, Copy)]
pub struct Window<'a> {
    pub reference: &'a [String],
    pub templates: &'a HashMap<String, LogTemplate>,
    pub baseline_seconds: i64,
    /// The last step is the latest `t_i <= until` (Unix seconds).
    pub until: i64,
}

/// The steps of a release's window from `first_step` on (all of it from 0): a bundle that
/// starts at step `first_step`'s time, with the window's hosts and batches, and the metrics
/// and log templates that have data in those steps. The live guard extends a kept evaluator
/// with it (`Evaluator::extend`).
pub fn assemble_steps(
    release: &Release,
    index: &DataIndex,
    window: &Window<'_>,
    first_step: usize,
) -> Result<Bundle, AssembleError> {
    let Window {
        reference,
        templates,
        baseline_seconds,
        until,
    } = *window;
    let step = release.spec.step_seconds;
    if step <= 0 {
        return Err(AssembleError::BadStep {
            id: release.id.clone(),
            step,
        });
    }
    let start = window_start(release, baseline_seconds);
    if until < start {
        return Err(AssembleError::EmptyWindow {
            id: release.id.clone(),
            start,
            end: until,
        });
    }
    let points = usize::try_from((until - start) / step + 1).unwrap_or(usize::MAX);
    if points > vigil_core::bundle::MAX_POINTS {
        return Err(AssembleError::WindowTooLong {
            id: release.id.clone(),
            points,
            max: vigil_core::bundle::MAX_POINTS,
        });
    }

    let mut hosts: Vec<Host> = Vec::new();
    let mut seen: BTreeSet<String> = BTreeSet::new();
    for name in release.spec.hosts.names() {
        if seen.insert(name.clone()) {
            hosts.push(Host {
                name: name.clone(),
                group: HostGroup::Release,
            });
        }
    }
    for name in reference {
        if seen.insert(name.clone()) {
            hosts.push(Host {
                name: name.clone(),
                group: HostGroup::Reference,
            });
        }
    }

    refuse_too_many_cells(index, &hosts, points, start, until)?;

    if first_step >= points {
        return Err(AssembleError::EmptyWindow {
            id: release.id.clone(),
            start: start + first_step as i64 * step,
            end: until,
        });
    }
    let step_ends: Vec<i64> = (first_step..points)
        .map(|i| (start + i as i64 * step) * 1000)
        .collect();
    let step_ms = step * 1000;

    let mut series: BTreeMap<String, BTreeMap<String, Vec<Option<f64>>>> = BTreeMap::new();
    let mut log_counts: BTreeMap<String, BTreeMap<String, Vec<Option<f64>>>> = BTreeMap::new();
    for host in &hosts {
        let Some(data) = index.host(&host.name) else {
            continue;
        };
        for (metric, samples) in &data.series {
            let values = step_values(samples, &step_ends, step_ms);
            if values.iter().any(Option::is_some) {
                series
                    .entry(metric.clone())
                    .or_default()
                    .insert(host.name.clone(), values);
            }
        }
        for (template, counts) in &data.logs {
            let values: Vec<Option<f64>> = step_ends
                .iter()
                .map(|&end| {
                    let total: u64 = counts.range(end - step_ms + 1..=end).map(|(_, n)| n).sum();
                    Some(total as f64)
                })
                .collect();
            if values
                .iter()
                .any(|value| value.is_some_and(|count| count > 0.0))
            {
                log_counts
                    .entry(template.clone())
                    .or_default()
                    .insert(host.name.clone(), values);
            }
        }
    }

    let described: HashMap<&str, &MetricMeta> = release
        .spec
        .metrics
        .iter()
        .map(|meta| (meta.name.as_str(), meta))
        .collect();
    let metrics: Vec<MetricMeta> = series
        .keys()
        .map(|name| {
            described
                .get(name.as_str())
                .map_or_else(|| default_meta(name), |meta| (*meta).clone())
        })
        .collect();
    let log_templates: Vec<LogTemplate> = log_counts
        .keys()
        .map(|id| {
            templates.get(id).cloned().unwrap_or_else(|| LogTemplate {
                id: id.clone(),
                text: id.clone(),
                level: String::new(),
            })
        })
        .collect();

    let deployed_hosts: BTreeSet<&str> = hosts
        .iter()
        .filter(|host| host.group == HostGroup::Release)
        .map(|host| host.name.as_str())
        .collect();
    let batches = release
        .deployed
        .iter()
        .map(|batch| vigil_core::Batch {
            index: batch.index,
            at: batch.at,
            hosts: batch
                .hosts
                .iter()
                .filter(|host| deployed_hosts.contains(host.as_str()))
                .cloned()
                .collect(),
        })
        .collect();

    Ok(Bundle {
        format: vigil_core::BUNDLE_FORMAT.to_string(),
        id: release.id.clone(),
        app: release.spec.app.clone(),
        step_seconds: step,
        start: start + first_step as i64 * step,
        points: points - first_step,
        hosts,
        batches,
        metrics,
        series,
        logs: vigil_core::Logs {
            templates: log_templates,
            counts: log_counts,
        },
    })
}

/// Refuses a window whose steps x series (each metric and log template of each host) pass
/// [`MAX_WINDOW_CELLS`], before any of it is built.
fn refuse_too_many_cells(
    index: &DataIndex,
    hosts: &[Host],
    points: usize,
    start: i64,
    until: i64,
) -> Result<(), AssembleError> {
    let series: usize = hosts
        .iter()
        .filter_map(|host| index.host(&host.name))
        .map(|data| data.series.len() + data.logs.len())
        .sum();
    let cells = points.saturating_mul(series);
    if cells > MAX_WINDOW_CELLS {
        return Err(AssembleError::WindowTooLarge {
            start,
            end: until,
            points,
            series,
            cells,
            max: MAX_WINDOW_CELLS,
        });
    }
    Ok(())
}

/// One value per step: the last sample of each step, or a counter's rate per second.
///
/// One walk over the samples and the steps together (both sorted by time).
fn step_values(samples: &Series, step_ends: &[i64], step_ms: i64) -> Vec<Option<f64>> {
    let points = &samples.points;
    let mut values = Vec::with_capacity(step_ends.len());
    // Index of the first sample after the current step's end.
    let mut after = match step_ends.first() {
        Some(&first_end) => first_after(points, first_end),
        None => return values,
    };
    for &end in step_ends {
        while after < points.len() && points[after].0 <= end {
            after += 1;
        }
        values.push(step_value(points, after, end, step_ms, samples.counter));
    }
    values
}

/// The value of the step ending at `end`, given that `points[..after]` are the samples at or
/// before it.
fn step_value(
    points: &[(i64, f64)],
    after: usize,
    end: i64,
    step_ms: i64,
    counter: bool,
) -> Option<f64> {
    let last = after.checked_sub(1)?;
    let (ms, value) = points[last];
    if ms <= end - step_ms || !value.is_finite() {
        return None;
    }
    if !counter {
        return Some(value);
    }
    // The sample before it, no further back than a few steps.
    let (previous_ms, previous_value) = points[last.checked_sub(1)?];
    if previous_ms <= end - 4 * step_ms || !previous_value.is_finite() {
        return None;
    }
    let seconds = (ms - previous_ms) as f64 / 1000.0;
    if seconds <= 0.0 {
        return None;
    }
    let increase = if value >= previous_value {
        value - previous_value
    } else {
        value
    };
    Some(increase / seconds)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    use vigil_core::release::{PlannedBatch, ReleaseSpec, ReleaseState};
    use vigil_core::samples::{LogChunk, LogCount, MetricChunk, Point, SeriesKey};
    use vigil_core::Batch;

    /// A release of host `a` deployed at 100 with 10 s steps; other tests start from it.
    pub(crate) fn release() -> Release {
        Release {
            id: "r1".into(),
            spec: ReleaseSpec {
                app: "shop".into(),
                version: "2".into(),
                hosts: vec!["a".into()].into(),
                reference: ReferenceHosts::EveryOtherHost,
                batches: vec![PlannedBatch {
                    hosts: vec!["a".into()],
                }],
                step_seconds: 10,
                observe_seconds: 600,
                metrics: vec![],
                settings: Default::default(),
                rules: Vec::new(),
            },
            state: ReleaseState::Observing,
            created_by: "ci".into(),
            created_at: 50,
            updated_at: 50,
            deployed: vec![Batch {
                index: 0,
                at: 100,
                hosts: vec!["a".into()],
            }],
            verdict: None,
            reason: String::new(),
        }
    }

    fn key(host: &str, metric: &str, counter: bool) -> std::sync::Arc<SeriesKey> {
        std::sync::Arc::new(SeriesKey {
            app: "shop".into(),
            host: host.into(),
            metric: metric.into(),
            counter,
        })
    }

    #[test]
    fn steps_take_the_last_sample_and_counters_become_rates() {
        let mut index = DataIndex::new();
        index.insert_metrics(&MetricChunk {
            series: vec![key("a", "cpu", false), key("b", "req_total", true)],
            points: vec![
                Point {
                    series: 0,
                    ms: 41_000,
                    value: 1.0,
                },
                Point {
                    series: 0,
                    ms: 49_000,
                    value: 2.0,
                },
                Point {
                    series: 0,
                    ms: 60_000,
                    value: 3.0,
                },
                Point {
                    series: 1,
                    ms: 40_000,
                    value: 100.0,
                },
                Point {
                    series: 1,
                    ms: 50_000,
                    value: 150.0,
                },
                Point {
                    series: 1,
                    ms: 60_000,
                    value: 20.0,
                },
            ],
            host_labels: Vec::new(),
        });
        index.insert_logs(&LogChunk {
            counts: vec![
                LogCount {
                    app: "shop".into(),
                    host: "a".into(),
                    template: "t1".into(),
                    ms: 52_000,
                    count: 3,
                },
                LogCount {
                    app: "shop".into(),
                    host: "a".into(),
                    template: "t1".into(),
                    ms: 60_000,
                    count: 2,
                },
            ],
        });
        let bundle = assemble(&release(), &index, &HashMap::new(), 60, 60).unwrap();
        bundle.validate("live").unwrap();
        assert_eq!(bundle.start, 40);
        assert_eq!(bundle.points, 3);
        assert_eq!(bundle.series["cpu"]["a"], vec![None, Some(2.0), Some(3.0)]);
        assert_eq!(
            bundle.series["req_total"]["b"],
            vec![None, Some(5.0), Some(2.0)]
        );
        assert_eq!(
            bundle.logs.counts["t1"]["a"],
            vec![Some(0.0), Some(0.0), Some(5.0)]
        );
        assert_eq!(
            bundle
                .hosts
                .iter()
                .map(|h| (h.name.as_str(), h.group))
                .collect::<Vec<_>>(),
            vec![("a", HostGroup::Release), ("b", HostGroup::Reference)]
        );
    }

    #[test]
    fn a_window_before_its_start_is_refused() {
        let index = DataIndex::new();
        assert!(matches!(
            assemble(&release(), &index, &HashMap::new(), 60, 10),
            Err(AssembleError::EmptyWindow { .. })
        ));
    }
}
