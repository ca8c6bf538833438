//! The data the guard judges from, in memory: every series' recent samples and every host's log
//! template counts, filled by ingestion (after the store has acknowledged the chunk) and at start
//! from the stored chunks.
//!
//! A series holds one sample per second, `(s - 1, s]` (steps end on whole seconds, and a step
//! takes the last sample it holds): the newest sample sent for that second, and of two samples
//! of the same time the one that came last. So a resent sample replaces the one held
//! (idempotent), a late or out-of-order sample lands in its place, and a sender that resends
//! overlapping data at other milliseconds neither grows the series nor slows its intake: what a
//! series holds is bounded by the seconds it covers, whatever is sent. Log counts add up: a log
//! batch sent twice counts twice unless it carries an idempotency key (the store refuses the
//! second copy before it reaches here).

use std::collections::{BTreeMap, HashMap};

use foldhash::fast::RandomState as SeededHash;
use vigil_core::samples::{HostLabels, LogChunk, MetricChunk, Point, SeriesKey, MAX_HOST_LABELS};

/// Samples of one series, sorted by time.
#[derive(Debug, Clone, Default)]
pub struct Series {
    pub counter: bool,
    /// (Unix milliseconds, value), sorted by time, at most one per second.
    pub points: Vec<(i64, f64)>,
    /// Where the next sample of a sender that resends in time order is likely to land: just
    /// after the last one placed.
    cursor: usize,
}

/// The exclusive start of the second a sample at `ms` belongs to: the second is
/// `(start, start + 1000]`.
fn second_start(ms: i64) -> i64 {
    ms.saturating_sub(1).div_euclid(1000).saturating_mul(1000)
}

/// What placing a sample at the end, or in the second of a sample held, did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Placed {
    Changed,
    Unchanged,
    /// Its second is new and lies before the newest held: it is to be inserted.
    Inserted,
}

/// Keeps the newer of a held sample and an arriving one of the same second; of two of the same
/// time, the arriving one (a resend). Says whether the held sample changed.
fn keep_newest(held: &mut (i64, f64), ms: i64, value: f64) -> Placed {
    if ms < held.0 || (ms == held.0 && value.to_bits() == held.1.to_bits()) {
        return Placed::Unchanged;
    }
    *held = (ms, value);
    Placed::Changed
}

impl Series {
    /// Places a sample at the end, or in the second it shares with a sample held; a sample of
    /// a new second before the newest is left to [`Series::insert_new_seconds`].
    fn place(&mut self, ms: i64, value: f64) -> Placed {
        let start = second_start(ms);
        let Some(&(last_ms, _)) = self.points.last() else {
            self.points.push((ms, value));
            return Placed::Changed;
        };
        if last_ms <= start {
            self.points.push((ms, value));
            return Placed::Changed;
        }
        let position = first_after_near(&self.points, start, self.cursor);
        self.cursor = position + 1;
        match self.points.get_mut(position) {
            Some(held) if held.0 <= start.saturating_add(1000) => keep_newest(held, ms, value),
            _ => Placed::Inserted,
        }
    }

    /// Inserts samples of seconds the series does not hold yet, each before its newest sample:
    /// sorted, one per second, in one pass that moves each held sample at most once (inserting
    /// them one by one would move the newer samples once for each).
    fn insert_new_seconds(&mut self, arrived: &mut [(i64, f64)]) {
        // Stable: of two samples of the same time, the one that came last stays last.
        arrived.sort_by_key(|&(ms, _)| ms);
        let mut newest_of_second: Vec<(i64, f64)> = Vec::with_capacity(arrived.len());
        for &sample in arrived.iter() {
            match newest_of_second.last_mut() {
                Some(last) if second_start(last.0) == second_start(sample.0) => *last = sample,
                _ => newest_of_second.push(sample),
            }
        }
        let mut held_end = self.points.len();
        self.points
            .resize(held_end + newest_of_second.len(), (0, 0.0));
        let mut still_to_place = newest_of_second.len();
        for &sample in newest_of_second.iter().rev() {
            let stay = first_after(&self.points[..held_end], sample.0);
            self.points
                .copy_within(stay..held_end, stay + still_to_place);
            still_to_place -= 1;
            self.points[stay + still_to_place] = sample;
            held_end = stay;
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

/// Index of the first sample after `time`, searched from `hint` outwards in growing strides,
/// then by halves: a sender that resends goes through a series in about time order, so the
/// sample it replaces is close to where the previous one landed (two senders' requests may
/// arrive in either order).
fn first_after_near(points: &[(i64, f64)], time: i64, hint: usize) -> usize {
    let hint = hint.min(points.len());
    if points.get(hint).is_none_or(|&(at, _)| at > time) {
        return first_after(&points[..hint], time);
    }
    // `points[hint]` is at or before `time`: the answer lies after it.
    let mut not_after = hint + 1;
    let mut stride = 1;
    loop {
        let probe = not_after + stride - 1;
        if probe >= points.len() || points[probe].0 > time {
            let end = probe.min(points.len());
            return not_after + points[not_after..end].partition_point(|&(at, _)| at <= time);
        }
        not_after = probe + 1;
        stride *= 2;
    }
}

/// Everything known about one host.
#[derive(Debug, Clone, Default)]
pub struct HostData {
    /// The app the host's samples said it belongs to (the last one seen).
    pub app: String,
    pub series: HashMap<String, Series, SeededHash>,
    /// Template id to line counts by the Unix millisecond their second ends at.
    pub logs: HashMap<String, BTreeMap<i64, u64>>,
    /// Time of the newest sample or log count from this host.
    pub last_ms: i64,
    /// Time of the oldest sample or log count ever inserted for this host (pruning does not
    /// move it): when a pod started sending.
    pub first_ms: Option<i64>,
    /// The labels its series carried, the latest value of each name, at most
    /// [`MAX_HOST_LABELS`] names (a new name past them is dropped).
    pub labels: BTreeMap<String, String>,
    /// What recent insertions changed: (the index's generation at the insertion, the
    /// earliest time it wrote), oldest first; trimmed by [`DataIndex::forget_changes_through`]
    /// and never longer than [`CHANGES_KEPT`].
    changes: Vec<(u64, i64)>,
}

/// Changes a host keeps noted; the older half is then folded into one (see
/// [`HostData::fold_older_changes`]), so that a host that gets data with every request holds
/// a bounded list whether or not a reader forgets what it has seen.
const CHANGES_KEPT: usize = 64;

impl HostData {
    /// Time of the oldest sample or log count held for this host, if any.
    pub fn earliest_ms(&self) -> Option<i64> {
        let oldest_sample = self
            .series
            .values()
            .filter_map(|series| series.points.first().map(|&(ms, _)| ms));
        let oldest_count = self
            .logs
            .values()
            .filter_map(|counts| counts.keys().next().copied());
        oldest_sample.chain(oldest_count).min()
    }

    /// Notes that insertion `generation` wrote data of time `ms`.
    fn note_change(&mut self, generation: u64, ms: i64) {
        match self.changes.last_mut() {
            Some((last_generation, earliest)) if *last_generation == generation => {
                *earliest = (*earliest).min(ms);
            }
            _ => {
                if self.changes.len() >= CHANGES_KEPT {
                    self.fold_older_changes();
                }
                self.changes.push((generation, ms));
            }
        }
    }

    /// Folds the older half of the noted changes into one: the newest of their generations
    /// with the earliest of their times. A reader that had seen some of them but not all is
    /// told of a change no later than the true one, so it looks again at more steps than
    /// needed, never at fewer.
    fn fold_older_changes(&mut self) {
        let folded = self.changes.len() / 2;
        let Some(&(newest_generation, _)) = self.changes.get(folded.saturating_sub(1)) else {
            return;
        };
        let earliest = self.changes[..folded]
            .iter()
            .map(|&(_, ms)| ms)
            .min()
            .unwrap_or(i64::MAX);
        self.changes.drain(..folded - 1);
        self.changes[0] = (newest_generation, earliest);
    }

    /// Keeps the labels a chunk carried for this host: each name's latest value.
    fn keep_labels(&mut self, labels: &HostLabels) {
        for (name, value) in &labels.labels {
            let room = self.labels.len() < MAX_HOST_LABELS;
            match self.labels.get_mut(name) {
                Some(held) if held != value => held.clone_from(value),
                Some(_) => {}
                None if room => {
                    self.labels.insert(name.clone(), value.clone());
                }
                None => {}
            }
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
        // The earliest time of a sample that changed what the series holds: a resent sample
        // equal to the one held changes nothing a reader could see.
        let mut earliest = i64::MAX;
        if key.counter && !series.counter {
            // Read as a counter from now on: every sample held reads differently.
            series.counter = true;
            earliest = series.points.first().map_or(i64::MAX, |&(ms, _)| ms);
        }
        let mut new_seconds: Vec<(i64, f64)> = Vec::new();
        if let Some(first) = run.iter().map(|point| point.ms).min() {
            self.first_ms = Some(self.first_ms.map_or(first, |known| known.min(first)));
        }
        for point in run {
            self.last_ms = self.last_ms.max(point.ms);
            match series.place(point.ms, point.value) {
                Placed::Changed => earliest = earliest.min(point.ms),
                Placed::Unchanged => {}
                Placed::Inserted => {
                    earliest = earliest.min(point.ms);
                    new_seconds.push((point.ms, point.value));
                }
            }
        }
        if !new_seconds.is_empty() {
            series.insert_new_seconds(&mut new_seconds);
        }
        if earliest != i64::MAX {
            self.note_change(generation, earliest);
        }
    }
}

/// A host as a selector sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LabelledHost<'a> {
    pub name: &'a str,
    pub labels: &'a BTreeMap<String, String>,
    pub first_ms: i64,
    pub last_ms: i64,
}

/// Every host's recent data.
#[derive(Debug, Default)]
pub struct DataIndex {
    hosts: HashMap<String, HostData, SeededHash>,
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
        for labels in &chunk.host_labels {
            if let Some(host) = self.hosts.get_mut(labels.host.as_str()) {
                host.keep_labels(labels);
            }
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
            host.first_ms = Some(host.first_ms.map_or(count.ms, |known| known.min(count.ms)));
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

    /// Hosts of `app` with data after `since_ms`, with what [`crate::groups`] resolves a
    /// selector over: their labels and the times of their first and newest data.
    pub fn labelled_hosts_of_app(&self, app: &str, since_ms: i64) -> Vec<LabelledHost<'_>> {
        let mut hosts: Vec<LabelledHost<'_>> = self
            .hosts
            .iter()
            .filter(|(_, data)| data.app == app && data.last_ms > since_ms)
            .map(|(name, data)| LabelledHost {
                name,
                labels: &data.labels,
                first_ms: data.first_ms.unwrap_or(data.last_ms),
                last_ms: data.last_ms,
            })
            .collect();
        hosts.sort_by(|left, right| left.name.cmp(right.name));
        hosts
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

    #[test]
    fn the_first_sample_after_a_time_is_found_from_any_hint() {
        let points: Vec<(i64, f64)> = (0..50).map(|i| (i * 10, 0.0)).collect();
        for time in -5..505 {
            let expected = points.partition_point(|&(at, _)| at <= time);
            for hint in 0..60 {
                assert_eq!(
                    first_after_near(&points, time, hint),
                    expected,
                    "at {time} from {hint}"
                );
            }
        }
        assert_eq!(first_after_near(&[], 3, 2), 0);
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
            host_labels: Vec::new(),
        }
    }

    #[test]
    fn a_series_holds_the_newest_sample_of_each_second() {
        let mut index = DataIndex::new();
        for sample in [
            (10_400, 1.0),
            (10_900, 2.0),
            // Older than the sample held for its second: left out.
            (10_200, 3.0),
            // The same time again: the later sent wins.
            (10_900, 4.0),
            // The end of the second (10 s, 11 s].
            (11_000, 5.0),
            (11_001, 6.0),
            (9_000, 7.0),
        ] {
            index.insert_metrics(&chunk(&[sample]));
        }
        let series = &index.host("h1").unwrap().series["cpu"];
        assert_eq!(
            series.points,
            vec![(9_000, 7.0), (11_000, 5.0), (11_001, 6.0)]
        );
    }

    /// What a series holds after `samples` arrive in this order: per second, the newest, and
    /// of two of the same time the later sent.
    fn one_per_second(samples: impl IntoIterator<Item = (i64, f64)>) -> Vec<(i64, f64)> {
        let mut by_second: BTreeMap<i64, (i64, f64)> = BTreeMap::new();
        for (ms, value) in samples {
            let held = by_second.entry(second_start(ms)).or_insert((ms, value));
            if ms >= held.0 {
                *held = (ms, value);
            }
        }
        by_second.into_values().collect()
    }

    /// A small deterministic generator, so that a failure replays.
    struct Numbers(u64);

    impl Numbers {
        fn below(&mut self, bound: u64) -> u64 {
            self.0 = self
                .0
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            (self.0 >> 33) % bound
        }
    }

    #[test]
    fn chunks_of_late_resent_and_new_samples_land_as_if_sent_one_by_one() {
        let mut numbers = Numbers(7);
        for round in 0..200 {
            let mut index = DataIndex::new();
            let mut sent: Vec<(i64, f64)> = Vec::new();
            for _ in 0..1 + numbers.below(12) {
                let length = 1 + numbers.below(40);
                let base = numbers.below(60_000) as i64;
                let samples: Vec<(i64, f64)> = (0..length)
                    .map(|_| {
                        let ms = match numbers.below(3) {
                            0 => base + numbers.below(5_000) as i64,
                            1 => numbers.below(60_000) as i64,
                            _ => numbers.below(60) as i64 * 1000,
                        };
                        (ms, numbers.below(4) as f64)
                    })
                    .collect();
                index.insert_metrics(&chunk(&samples));
                sent.extend(&samples);
                let series = &index.host("h1").unwrap().series["cpu"];
                assert_eq!(series.points, one_per_second(sent.clone()), "round {round}");
            }
        }
    }

    #[test]
    fn resending_overlapping_runs_keeps_a_series_to_the_seconds_it_covers() {
        let mut index = DataIndex::new();
        let mut sent = Vec::new();
        for run in 0..10 {
            // Ten minutes of one sample a second, 7.3 s later than the run before.
            let samples: Vec<(i64, f64)> = (0..600)
                .map(|second| (run * 7_300 + second * 1000, (run * second) as f64))
                .collect();
            index.insert_metrics(&chunk(&samples));
            sent.extend(samples);
        }
        let held = &index.host("h1").unwrap().series["cpu"].points;
        assert_eq!(held.len(), 600 + 66);
        assert_eq!(*held, one_per_second(sent));
    }

    #[test]
    fn a_resend_equal_to_what_is_held_notes_no_change() {
        let mut index = DataIndex::new();
        let samples = [(1000, 1.0), (2000, 2.0), (3000, 3.0)];
        index.insert_metrics(&chunk(&samples));
        let seen = index.generation();
        index.insert_metrics(&chunk(&samples));
        index.insert_metrics(&chunk(&[(2000, 2.0), (1500, 9.0)]));
        assert_eq!(index.earliest_change("h1", seen), None);
        index.insert_metrics(&chunk(&[(3000, 3.0), (2000, 2.5)]));
        assert_eq!(index.earliest_change("h1", seen), Some(2000));
    }

    #[test]
    fn a_series_that_turns_out_a_counter_is_changed_from_its_first_sample() {
        let mut index = DataIndex::new();
        index.insert_metrics(&chunk(&[(1000, 1.0), (2000, 2.0), (3000, 3.0)]));
        let seen = index.generation();
        let mut declared = chunk(&[(3000, 3.0)]);
        declared.series = vec![key("h1", "cpu", true)];
        index.insert_metrics(&declared);
        assert!(index.host("h1").unwrap().series["cpu"].counter);
        assert_eq!(index.earliest_change("h1", seen), Some(1000));
    }

    #[test]
    fn noted_changes_stay_bounded_and_never_later_than_the_true_one() {
        let mut index = DataIndex::new();
        let mut numbers = Numbers(11);
        // The earliest time each insertion wrote, by generation.
        let mut written: Vec<(u64, i64)> = Vec::new();
        for second in 0..2_000 {
            // Now and then a new value for a second held before.
            let ms = if numbers.below(10) == 0 {
                numbers.below(second + 1) as i64 * 1000 + 1000
            } else {
                second as i64 * 1000 + 1000
            };
            index.insert_metrics(&chunk(&[(ms, second as f64)]));
            written.push((index.generation(), ms));
        }
        let host = index.host("h1").unwrap();
        assert!(host.changes.len() <= CHANGES_KEPT, "{}", host.changes.len());
        for seen in 0..=index.generation() {
            let truth = written
                .iter()
                .filter(|&&(generation, _)| generation > seen)
                .map(|&(_, ms)| ms)
                .min();
            let told = index.earliest_change("h1", seen);
            assert!(told <= truth && told.is_some() == truth.is_some(), "{seen}");
            if seen + (CHANGES_KEPT as u64 / 2) >= index.generation() {
                assert_eq!(told, truth, "recent readers are told exactly, {seen}");
            }
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
            host_labels: Vec::new(),
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
            host_labels: Vec::new(),
        });
        let mut moved = SeriesKey::clone(&key("h1", "req_total", false));
        moved.app = "cart".into();
        index.insert_metrics(&MetricChunk {
            series: vec![moved.into()],
            points: vec![point(0, 2000, 2.0)],
            host_labels: Vec::new(),
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
