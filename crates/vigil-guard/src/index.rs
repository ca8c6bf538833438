//! The data the guard judges from, in memory: every series' recent samples and every host's log
//! template counts, filled by ingestion (after the store has acknowledged the chunk) and at start
//! from the stored chunks.
//!
//! Samples are keyed by their time, so a duplicate sample replaces the one with the same time
//! (idempotent) and a late or out-of-order sample lands in its place. Log counts add up: a log
//! batch sent twice counts twice unless it carries an idempotency key (the store refuses the
//! second copy before it reaches here).

use std::collections::{BTreeMap, HashMap};

use vigil_core::fast_hash::FastHashBuilder;
use vigil_core::samples::{LogChunk, MetricChunk, Point, SeriesKey};

/// Samples of one series, sorted by time.
#[derive(Debug, Clone, Default)]
pub struct Series {
    pub counter: bool,
    /// (Unix milliseconds, value), sorted by time, one value per time.
    pub points: Vec<(i64, f64)>,
}

impl Series {
    fn insert(&mut self, ms: i64, value: f64) {
        match self.points.last() {
            Some(&(last_ms, _)) if last_ms < ms => self.points.push((ms, value)),
            None => self.points.push((ms, value)),
            _ => match self.points.binary_search_by_key(&ms, |&(time, _)| time) {
                Ok(position) => self.points[position].1 = value,
                Err(position) => self.points.insert(position, (ms, value)),
            },
        }
    }

    /// The last sample in `(from_ms, to_ms]`.
    pub fn last_in(&self, from_ms: i64, to_ms: i64) -> Option<(i64, f64)> {
        let end = first_after(&self.points, to_ms);
        let candidate = *self.points.get(end.checked_sub(1)?)?;
        (candidate.0 > from_ms).then_some(candidate)
    }

    /// Samples in `(from_ms, to_ms]`.
    pub fn between(&self, from_ms: i64, to_ms: i64) -> &[(i64, f64)] {
        let start = self.points.partition_point(|&(time, _)| time <= from_ms);
        let end = self.points.partition_point(|&(time, _)| time <= to_ms);
        &self.points[start..end.max(start)]
    }
}

/// Index of the first sample after `time`. Searched from the newest sample back, in growing
/// strides, then by halves: the steps the live guard assembles are the last few, and the
/// samples it then touches are the few at the end of the series (a search from the middle
/// would wait on memory for every halving).
pub fn first_after(points: &[(i64, f64)], time: i64) -> usize {
    let mut newer_than = points.len();
    let mut stride = 1;
    while newer_than > 0 {
        let probe = newer_than.saturating_sub(stride);
        if points[probe].0 <= time {
            return probe
                + 1
                + points[probe + 1..newer_than].partition_point(|&(at, _)| at <= time);
        }
        newer_than = probe;
        stride *= 2;
    }
    0
}

/// Everything known about one host.
#[derive(Debug, Clone, Default)]
pub struct HostData {
    /// The app the host's samples said it belongs to (the last one seen).
    pub app: String,
    pub series: HashMap<String, Series, FastHashBuilder>,
    /// Template id to line counts by the Unix millisecond their second ends at.
    pub logs: HashMap<String, BTreeMap<i64, u64>>,
    /// Time of the newest sample or log count from this host.
    pub last_ms: i64,
    /// What recent insertions changed: (the index's generation at the insertion, the
    /// earliest time it wrote), oldest first; trimmed by [`DataIndex::forget_changes_through`].
    changes: Vec<(u64, i64)>,
}

impl HostData {
    /// Notes that insertion `generation` wrote data of time `ms`.
    fn note_change(&mut self, generation: u64, ms: i64) {
        match self.changes.last_mut() {
            Some((last_generation, earliest)) if *last_generation == generation => {
                *earliest = (*earliest).min(ms);
            }
            _ => self.changes.push((generation, ms)),
        }
    }

    fn insert_run(&mut self, key: &SeriesKey, run: &[Point], generation: u64) {
        if !key.app.is_empty() && self.app != key.app {
            self.app.clone_from(&key.app);
        }
        let series = match self.series.get_mut(key.metric.as_str()) {
            Some(found) => found,
            None => self.series.entry(key.metric.clone()).or_default(),
        };
        series.counter |= key.counter;
        let mut earliest = i64::MAX;
        for point in run {
            self.last_ms = self.last_ms.max(point.ms);
            earliest = earliest.min(point.ms);
            series.insert(point.ms, point.value);
        }
        if earliest != i64::MAX {
            self.note_change(generation, earliest);
        }
    }
}

/// Every host's recent data.
#[derive(Debug, Default)]
pub struct DataIndex {
    hosts: HashMap<String, HostData, FastHashBuilder>,
    /// Count of insertions so far: what a reader has seen is named by this number, and
    /// [`DataIndex::earliest_change`] tells what changed since.
    generation: u64,
}

impl DataIndex {
    pub fn new() -> DataIndex {
        DataIndex::default()
    }

    /// Adds a chunk's samples. A run of points of the same series (the usual layout: a
    /// sender's samples of one series come together) finds its series once, and consecutive
    /// series of one host (an agent sends its host's series together) find their host once;
    /// names are copied only for a host or series seen for the first time.
    pub fn insert_metrics(&mut self, chunk: &MetricChunk) {
        self.generation += 1;
        let generation = self.generation;
        let mut current_host: Option<(&str, &mut HostData)> = None;
        let mut rest: &[Point] = &chunk.points;
        while let Some(first) = rest.first() {
            let run_length = rest
                .iter()
                .take_while(|point| point.series == first.series)
                .count();
            let (run, after) = rest.split_at(run_length);
            rest = after;
            let Some(key) = chunk.series.get(first.series as usize) else {
                continue;
            };
            let host = match current_host.take() {
                Some((name, host)) if name == key.host => host,
                _ => match self.hosts.get_mut(key.host.as_str()) {
                    Some(found) => found,
                    None => self.hosts.entry(key.host.clone()).or_default(),
                },
            };
            host.insert_run(key, run, generation);
            current_host = Some((key.host.as_str(), host));
        }
    }

    pub fn insert_logs(&mut self, chunk: &LogChunk) {
        self.generation += 1;
        let generation = self.generation;
        for count in &chunk.counts {
            let host = self.hosts.entry(count.host.clone()).or_default();
            if !count.app.is_empty() && host.app != count.app {
                host.app.clone_from(&count.app);
            }
            host.last_ms = host.last_ms.max(count.ms);
            host.note_change(generation, count.ms);
            *host
                .logs
                .entry(count.template.clone())
                .or_default()
                .entry(count.ms)
                .or_default() += u64::from(count.count);
        }
    }

    /// The number of insertions so far.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// The earliest time of the data `host` got from insertions after `generation`, if any
    /// (as long as [`DataIndex::forget_changes_through`] kept them).
    pub fn earliest_change(&self, host: &str, generation: u64) -> Option<i64> {
        let changes = &self.hosts.get(host)?.changes;
        let first_newer = changes.partition_point(|&(change, _)| change <= generation);
        changes[first_newer..].iter().map(|&(_, ms)| ms).min()
    }

    /// Forgets what insertions up to `generation` changed: no reader asks about them any more.
    pub fn forget_changes_through(&mut self, generation: u64) {
        for host in self.hosts.values_mut() {
            let first_kept = host
                .changes
                .partition_point(|&(change, _)| change <= generation);
            host.changes.drain(..first_kept);
        }
    }

    pub fn host(&self, name: &str) -> Option<&HostData> {
        self.hosts.get(name)
    }

    /// Hosts of `app` with data after `since_ms`, sorted by name.
    pub fn hosts_of_app(&self, app: &str, since_ms: i64) -> Vec<String> {
        let mut names: Vec<String> = self
            .hosts
            .iter()
            .filter(|(_, data)| data.app == app && data.last_ms > since_ms)
            .map(|(name, _)| name.clone())
            .collect();
        names.sort();
        names
    }

    /// Every app's hosts with the time of their newest data, in one scan (a guard pass asks
    /// for the reference hosts of many releases).
    pub fn hosts_by_app(&self) -> HashMap<String, Vec<(String, i64)>> {
        let mut apps: HashMap<String, Vec<(String, i64)>> = HashMap::new();
        for (name, data) in &self.hosts {
            apps.entry(data.app.clone())
                .or_default()
                .push((name.clone(), data.last_ms));
        }
        for hosts in apps.values_mut() {
            hosts.sort();
        }
        apps
    }

    /// Number of samples held, for metrics and tests.
    pub fn sample_count(&self) -> usize {
        self.hosts
            .values()
            .flat_map(|host| host.series.values())
            .map(|series| series.points.len())
            .sum()
    }

    /// Drops samples and counts older than `before_ms` unless a host is in `keep_hosts`
    /// (hosts of releases still judged), and hosts left with nothing.
    pub fn prune(&mut self, before_ms: i64, keep_from_ms: &HashMap<String, i64>) {
        self.hosts.retain(|name, host| {
            let cut = keep_from_ms
                .get(name)
                .map_or(before_ms, |&keep| keep.min(before_ms));
            for series in host.series.values_mut() {
                let start = series.points.partition_point(|&(time, _)| time < cut);
                series.points.drain(..start);
            }
            host.series.retain(|_, series| !series.points.is_empty());
            for counts in host.logs.values_mut() {
                counts.retain(|&time, _| time >= cut);
            }
            host.logs.retain(|_, counts| !counts.is_empty());
            !host.series.is_empty() || !host.logs.is_empty()
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_sample_after_a_time_is_found_from_either_end() {
        let points: Vec<(i64, f64)> = (0..100).map(|i| (i * 10, 0.0)).collect();
        for time in -5..1_005 {
            let expected = points.partition_point(|&(at, _)| at <= time);
            assert_eq!(first_after(&points, time), expected, "at {time}");
        }
        assert_eq!(first_after(&[], 3), 0);
    }

    fn chunk(points: &[(i64, f64)]) -> MetricChunk {
        MetricChunk {
            series: vec![key("h1", "cpu", false)],
            points: points
                .iter()
                .map(|&(ms, value)| Point {
                    series: 0,
                    ms,
                    value,
                })
                .collect(),
        }
    }

    #[test]
    fn duplicates_replace_and_late_samples_land_in_place() {
        let mut index = DataIndex::new();
        index.insert_metrics(&chunk(&[(1000, 1.0), (3000, 3.0)]));
        index.insert_metrics(&chunk(&[(2000, 2.0), (3000, 3.5)]));
        let series = &index.host("h1").unwrap().series["cpu"];
        assert_eq!(series.points, vec![(1000, 1.0), (2000, 2.0), (3000, 3.5)]);
        assert_eq!(series.last_in(1000, 2500), Some((2000, 2.0)));
        assert_eq!(series.last_in(2000, 2500), None);
        assert_eq!(index.hosts_of_app("shop", 0), vec!["h1".to_string()]);
        assert!(index.hosts_of_app("shop", 3000).is_empty());
    }

    fn key(host: &str, metric: &str, counter: bool) -> std::sync::Arc<SeriesKey> {
        std::sync::Arc::new(SeriesKey {
            app: "shop".into(),
            host: host.into(),
            metric: metric.into(),
            counter,
        })
    }

    fn point(series: u32, ms: i64, value: f64) -> Point {
        Point { series, ms, value }
    }

    #[test]
    fn interleaved_runs_of_several_series_land_in_their_series() {
        let mut index = DataIndex::new();
        index.insert_metrics(&MetricChunk {
            series: vec![
                key("h1", "cpu", false),
                key("h1", "req_total", true),
                key("h2", "cpu", false),
            ],
            points: vec![
                point(0, 2000, 2.0),
                point(0, 1000, 1.0),
                point(1, 1000, 10.0),
                point(2, 1000, 5.0),
                point(0, 3000, 3.0),
                point(1, 1000, 11.0),
                point(7, 1000, 99.0),
            ],
        });
        let first = index.host("h1").unwrap();
        assert_eq!(
            first.series["cpu"].points,
            vec![(1000, 1.0), (2000, 2.0), (3000, 3.0)]
        );
        assert_eq!(first.series["req_total"].points, vec![(1000, 11.0)]);
        assert!(first.series["req_total"].counter);
        assert_eq!(first.last_ms, 3000);
        assert_eq!(
            index.host("h2").unwrap().series["cpu"].points,
            vec![(1000, 5.0)]
        );
        assert_eq!(index.sample_count(), 5);
    }

    #[test]
    fn a_series_once_a_counter_stays_one_and_the_app_follows_the_last_chunk() {
        let mut index = DataIndex::new();
        index.insert_metrics(&MetricChunk {
            series: vec![key("h1", "req_total", true)],
            points: vec![point(0, 1000, 1.0)],
        });
        let mut moved = SeriesKey::clone(&key("h1", "req_total", false));
        moved.app = "cart".into();
        index.insert_metrics(&MetricChunk {
            series: vec![moved.into()],
            points: vec![point(0, 2000, 2.0)],
        });
        let host = index.host("h1").unwrap();
        assert!(host.series["req_total"].counter);
        assert_eq!(host.app, "cart");
        assert_eq!(index.hosts_of_app("cart", 0), vec!["h1".to_string()]);
    }

    #[test]
    fn pruning_keeps_hosts_of_judged_releases() {
        let mut index = DataIndex::new();
        index.insert_metrics(&chunk(&[(1000, 1.0), (5000, 5.0)]));
        index.prune(4000, &HashMap::from([("h1".to_string(), 500)]));
        assert_eq!(index.sample_count(), 2);
        index.prune(4000, &HashMap::new());
        assert_eq!(index.sample_count(), 1);
        index.prune(9000, &HashMap::new());
        assert!(index.host("h1").is_none());
    }
}
