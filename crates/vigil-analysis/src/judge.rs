//! Attribute and decide: turn per-host evidence into findings and a verdict at one step.

mod scorecard;

use std::collections::HashMap;

use vigil_core::text::clock_time_utc;
use vigil_core::{Bundle, Finding, Judgement, MetricMeta, Signal, Verdict};

use crate::coverage::{coverage_at, Coverage, SilentHost};
use crate::history::HistoryTrack;
use crate::hosts::{harmful, host_evidence, HostEvidence, HostScores, Thresholds};
use crate::logs::{log_evidence, LogEvidence};
use crate::peers::PeerTrack;
use crate::prepare::{host_views_in, room_for, DenseRows, LogData, MetricData, Prepared};
use crate::settings::Settings;
use crate::stats;

/// Seconds after a deploy during which a shrinking deviation is taken for a restart transient.
const TRANSIENT_SECONDS: i64 = 600;

/// How the evidence of a finding of the group test begins (the learned stage tells such
/// findings apart by it).
pub const GROUP_SHIFT: &str = "group shift:";

/// The rank z of the group test (one-sided, about 0.6 %) for up to `family_size` scored
/// metrics; more metrics raise it as they raise the per-host bars.
const GROUP_RANK_Z: f64 = 2.5;

/// Scores of one metric: per host z and delta, per-host bars, and what they compare with.
#[derive(Debug)]
struct MetricTrack {
    scorer: Scorer,
    thresholds: Vec<Thresholds>,
    baseline: &'static str,
    /// What the release hosts are compared with, in words for the finding.
    compared_with: String,
}

/// Where a metric's scores come from, with what scoring later steps needs.
#[derive(Debug)]
enum Scorer {
    Peers(PeerTrack),
    /// One forecast per release host (`None` for the others).
    History {
        z: Vec<Vec<f64>>,
        delta: Vec<Vec<f64>>,
        hosts: Vec<Option<HistoryTrack>>,
    },
}

impl MetricTrack {
    fn z(&self) -> &[Vec<f64>] {
        match &self.scorer {
            Scorer::Peers(peers) => &peers.z,
            Scorer::History { z, .. } => z,
        }
    }

    fn delta(&self) -> &[Vec<f64>] {
        match &self.scorer {
            Scorer::Peers(peers) => &peers.delta,
            Scorer::History { delta, .. } => delta,
        }
    }

    /// Scores steps `from..` of `metric` again (the model stays), growing to its length.
    fn rescore(&mut self, metric: &MetricData, from: usize) {
        match &mut self.scorer {
            Scorer::Peers(peers) => peers.rescore(metric, from),
            Scorer::History { z, delta, hosts } => {
                for (host, forecast) in hosts.iter().enumerate() {
                    let points = metric.values[host].len();
                    match forecast {
                        Some(forecast) => forecast.score(
                            &metric.values[host],
                            &mut z[host],
                            &mut delta[host],
                            from,
                        ),
                        None => {
                            for row in [&mut z[host], &mut delta[host]] {
                                room_for(row, points);
                                row.resize(points, f64::NAN);
                            }
                        }
                    }
                }
            }
        }
    }
}

/// Why [`Evaluator::extend`] refused a tail: the evaluator has to be built on the whole window.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the evaluator must be built anew: {0}")]
pub struct RebuildNeeded(pub &'static str);

/// Judges one release at any step, from data up to that step only.
///
/// Built once per release; everything it precomputes at step `i` depends on samples at or
/// before `i` (and on the baseline, before the first deploy), so [`Evaluator::judge_at`] never
/// looks ahead.
#[derive(Debug)]
pub struct Evaluator {
    prepared: Prepared,
    settings: Settings,
    tracks: Vec<Option<MetricTrack>>,
    transient_steps: usize,
    /// The rank z the group test must clear, raised with the number of scored metrics.
    group_bar: f64,
}

impl Evaluator {
    pub fn new(bundle: &Bundle, settings: &Settings) -> Evaluator {
        let prepared = Prepared::new(bundle, settings);
        let mut tracks: Vec<Option<MetricTrack>> = prepared
            .metrics
            .iter()
            .map(|metric| metric_track(&prepared, metric, settings))
            .collect();
        raise_bars_for_the_family(&prepared, &mut tracks, settings);
        let transient_steps = usize::try_from(TRANSIENT_SECONDS / bundle.step_seconds).unwrap_or(0);
        let scored = tracks.iter().filter(|track| track.is_some()).count().max(1);
        let group_bar = stats::raised_bar(
            GROUP_RANK_Z,
            settings.family_size.max(1) as f64 / scored as f64,
        );
        Evaluator {
            prepared,
            settings: settings.clone(),
            tracks,
            transient_steps,
            group_bar,
        }
    }

    /// The first step whose samples may change (or arrive) without the evaluator having to be
    /// built anew: its models rest on every sample before the last deploy (each host's level
    /// just before its own deploy, the history forecasts before the first one).
    pub fn horizon(&self) -> usize {
        self.prepared
            .hosts
            .iter()
            .filter_map(|host| host.deploy)
            .chain(std::iter::once(self.prepared.baseline.end))
            .max()
            .unwrap_or(0)
    }

    /// Brings the evaluator to a later (or corrected) view of its window, as the live guard
    /// sees a release step after step: `tail` holds the window's steps from `from` on (its
    /// `start` is step `from`'s time), and the samples before `from` are those the evaluator
    /// has already seen. Only steps `from..` are scored again; the models stay. Afterwards it
    /// judges exactly as [`Evaluator::new`] on the whole window would.
    ///
    /// Refused, with nothing changed, when the evaluator has to be built anew on the whole
    /// window: other settings, hosts, batches or metrics, or `from` before [`Self::horizon`].
    /// Log templates are kept in id order, the order of an assembled live window.
    pub fn extend(
        &mut self,
        tail: &Bundle,
        from: usize,
        settings: &Settings,
    ) -> Result<(), RebuildNeeded> {
        let prepared = &self.prepared;
        if *settings != self.settings {
            return Err(RebuildNeeded("the settings changed"));
        }
        if tail.step_seconds != prepared.step_seconds
            || from > prepared.points
            || tail.start != prepared.time_of(from)
        {
            return Err(RebuildNeeded("the tail does not continue the window"));
        }
        if prepared.first_deploy.is_none() || from < self.horizon() {
            return Err(RebuildNeeded("samples before the last deploy changed"));
        }
        // A transform taken from the whole window (no samples before the first deploy) moves
        // with every sample.
        if !prepared
            .metrics
            .iter()
            .all(|metric| metric.transform_from_history)
        {
            return Err(RebuildNeeded(
                "a metric has no samples before the first deploy",
            ));
        }
        let points = from + tail.points;
        if host_views_in(tail, prepared.start, points) != prepared.hosts {
            return Err(RebuildNeeded("the hosts or their batches changed"));
        }
        let known: HashMap<&str, &MetricMeta> = prepared
            .metrics
            .iter()
            .map(|metric| (metric.meta.name.as_str(), &metric.meta))
            .collect();
        if !tail
            .metrics
            .iter()
            .all(|meta| known.get(meta.name.as_str()) == Some(&meta))
        {
            return Err(RebuildNeeded("a metric appeared or changed"));
        }

        let prepared = &mut self.prepared;
        let rows = DenseRows::new(&prepared.hosts, tail.points);
        for metric in &mut prepared.metrics {
            let transform = metric.transform;
            let tail_rows = rows.dense(tail.series.get(&metric.meta.name), f64::NAN);
            for (row, tail_row) in metric.values.iter_mut().zip(tail_rows) {
                row.truncate(from);
                room_for(row, points);
                row.extend(tail_row.into_iter().map(|value| {
                    if value.is_nan() {
                        value
                    } else {
                        transform.apply(value)
                    }
                }));
            }
        }
        let hosts = prepared.hosts.len();
        for template in &tail.logs.templates {
            let position = prepared
                .logs
                .partition_point(|log| log.template.id < template.id);
            match prepared.logs.get_mut(position) {
                Some(log) if log.template.id == template.id => log.template = template.clone(),
                // New since `from`: no line before it, none in the baseline.
                _ => prepared.logs.insert(
                    position,
                    LogData {
                        template: template.clone(),
                        counts: vec![vec![0.0; from]; hosts],
                        release_baseline_lines: 0.0,
                        reference_baseline_lines: 0.0,
                    },
                ),
            }
        }
        for log in &mut prepared.logs {
            let tail_rows = rows.dense(tail.logs.counts.get(&log.template.id), 0.0);
            for (row, tail_row) in log.counts.iter_mut().zip(tail_rows) {
                row.truncate(from);
                room_for(row, points);
                row.extend(
                    tail_row
                        .into_iter()
                        .map(|count| if count.is_nan() { 0.0 } else { count }),
                );
            }
        }
        prepared.points = points;
        for (track, metric) in self.tracks.iter_mut().zip(&prepared.metrics) {
            if let Some(track) = track {
                track.rescore(metric, from);
            }
        }
        Ok(())
    }

    /// Index of the first step worth judging (the first deploy), if any.
    pub fn first_step(&self) -> Option<usize> {
        self.prepared.first_deploy
    }

    /// The per-host standardised scores of metric `metric` (for tracing and charts).
    pub fn metric_scores(&self, metric: usize) -> Option<&[Vec<f64>]> {
        self.tracks.get(metric)?.as_ref().map(|track| track.z())
    }

    /// The cleaned view the evaluator works on.
    pub fn prepared(&self) -> &Prepared {
        &self.prepared
    }

    pub fn points(&self) -> usize {
        self.prepared.points
    }

    /// The verdict and findings at step `now` (index into the bundle's samples).
    pub fn judge_at(&self, now: usize) -> Judgement {
        let at = self.prepared.time_of(now);
        let Some(first_deploy) = self.prepared.first_deploy.filter(|&deploy| deploy <= now) else {
            return insufficient(at, "no batch has been deployed yet");
        };
        let warmup_end = first_deploy + self.prepared.warmup_steps;
        if now < warmup_end {
            return insufficient(at, "the first batch is still warming up");
        }
        let mut findings = Vec::new();
        let mut judged_any = false;
        for (metric, track) in self.prepared.metrics.iter().zip(&self.tracks) {
            let Some(track) = track else { continue };
            let (finding, judged) = self.judge_metric(metric, track, now);
            judged_any |= judged;
            findings.extend(finding);
        }
        for log in &self.prepared.logs {
            if let Some(evidence) = log_evidence(&self.prepared, log, now, &self.settings) {
                findings.push(self.log_finding(&log.template, &evidence));
            }
        }
        let coverage = self.coverage_at(now);
        if !coverage.silent_hosts.is_empty() {
            findings.push(self.silence_finding(&coverage.silent_hosts, now));
        }
        // Missing data holds the release unless a fault already stops it.
        if let Some(reason) = coverage.reason(&self.prepared) {
            if !findings
                .iter()
                .any(|finding| finding.severity == Verdict::Fault)
            {
                return Judgement {
                    reason: Some(reason),
                    ..with_findings(at, Verdict::InsufficientData, findings)
                };
            }
        }
        if !judged_any && findings.is_empty() {
            return insufficient(
                at,
                "no samples from the deployed release hosts since their warm-up",
            );
        }
        let verdict = findings
            .iter()
            .map(|finding| finding.severity)
            .min()
            .unwrap_or(Verdict::Healthy);
        with_findings(at, verdict, findings)
    }

    /// Which deployed release hosts and judged metrics stopped reporting at step `now`
    /// (see [`crate::coverage`]): a release passes only when this is complete. A metric that
    /// may only recommend (the release does not list it) is not expected: a vanished unlisted
    /// series does not hold the release.
    pub fn coverage_at(&self, now: usize) -> Coverage {
        let judged: Vec<bool> = self
            .tracks
            .iter()
            .zip(&self.prepared.metrics)
            .map(|(track, metric)| track.is_some() && may_pause(metric, &self.settings))
            .collect();
        coverage_at(&self.prepared, &self.settings, &judged, now)
    }

    /// The fault finding of release hosts that fell silent while their peers kept reporting.
    fn silence_finding(&self, silent: &[SilentHost], now: usize) -> Finding {
        let prepared = &self.prepared;
        let names: Vec<String> = silent
            .iter()
            .map(|host| prepared.hosts[host.host].name.clone())
            .collect();
        let since = silent.iter().map(|host| host.since).min().unwrap_or(now);
        let silent_minutes = (now + 1 - since) as f64 * prepared.step_seconds as f64 / 60.0;
        let deployed = prepared
            .release
            .iter()
            .filter(|&&host| {
                prepared.hosts[host]
                    .deploy
                    .is_some_and(|deploy| deploy <= now)
            })
            .count();
        let (peers_reporting, peers) = silent
            .first()
            .map_or((0, 0), |host| (host.peers_reporting, host.peers));
        let peer_kind = if prepared.reference.is_empty() {
            "other release hosts"
        } else {
            "reference hosts"
        };
        let explanation = format!(
            "{} sent nothing since {} while the {peer_kind} kept reporting: it may have crashed",
            names.join(", "),
            clock_time_utc(prepared.time_of(since)),
        );
        let evidence = format!(
            "no sample for {silent_minutes:.0} min (a fault from {:.0} min) while {peers_reporting} of {peers} {peer_kind} reported",
            self.settings.silent_host_fault_seconds as f64 / 60.0
        );
        Finding {
            severity: Verdict::Fault,
            signal: Signal::Silence,
            hosts: names,
            hosts_judged: deployed,
            direction: "down".to_owned(),
            observed: 0.0,
            expected: 1.0,
            effect: -1.0,
            score: silent_minutes,
            baseline: if prepared.reference.is_empty() {
                "history"
            } else {
                "reference"
            }
            .to_owned(),
            evidence,
            since: prepared.time_of(since),
            explanation,
        }
    }

    /// The finding on one metric at `now`, and whether any host could be judged on it.
    fn judge_metric(
        &self,
        metric: &MetricData,
        track: &MetricTrack,
        now: usize,
    ) -> (Option<Finding>, bool) {
        let settings = &self.settings;
        let sign = metric.harmful_sign;
        let fault_effect = if metric.meta.critical {
            settings.fault_effect_critical
        } else {
            settings.fault_effect
        };
        let mut judged = 0usize;
        let mut faulty: Vec<(usize, HostEvidence, f64)> = Vec::new();
        let mut anomalous: Vec<(usize, HostEvidence, f64)> = Vec::new();
        for &host in &self.prepared.release {
            let Some(deploy) = self.prepared.hosts[host].deploy else {
                continue;
            };
            let Some(scores) =
                self.judged_scores(track, host, deploy, deploy + self.transient_steps, now)
            else {
                continue;
            };
            judged += 1;
            let thresholds = track.thresholds[host];
            if let Some(evidence) = host_evidence(scores, sign, now, thresholds) {
                let effect = self.host_effect(metric, track, host, now, &evidence);
                if harmful(sign, effect) >= fault_effect {
                    faulty.push((host, evidence, effect));
                    continue;
                }
            }
            let gentle = Thresholds {
                shift_z: thresholds.shift_z * 0.5,
                ..thresholds
            };
            if let Some(evidence) = host_evidence(scores, sign, now, gentle) {
                let effect = self.host_effect(metric, track, host, now, &evidence);
                if harmful(sign, effect) >= settings.anomaly_effect {
                    anomalous.push((host, evidence, effect));
                }
            }
        }
        if judged == 0 {
            return (None, false);
        }
        // While the batch may still be settling from its restart, only a majority of the judged
        // hosts is evidence: a restart tail is one host's, a fault is the version's.
        let settling = faulty.iter().any(|(host, _, _)| {
            self.prepared.hosts[*host]
                .deploy
                .is_some_and(|deploy| now < deploy + self.transient_steps)
        });
        let share_needed = if settling {
            0.5_f64.max(settings.min_host_share)
        } else {
            settings.min_host_share
        };
        let mut needed = ((share_needed * judged as f64).ceil() as usize).max(1);
        if settling && judged >= 2 && needed * 2 <= judged {
            needed += 1;
        }
        let reference_share = self.reference_share(metric, track, now, fault_effect);
        let share = faulty.len() as f64 / judged as f64;
        // One host alone is weak evidence (one of many hosts, metrics and steps will stray):
        // its shift must hold twice as long.
        // (Bars calibrated on the host's own history already price that in.)
        if faulty.len() == 1 && track.baseline == "reference" {
            let (host, _, _) = faulty[0];
            let deploy = self.prepared.hosts[host].deploy.unwrap_or(now);
            let scores =
                self.judged_scores(track, host, deploy, deploy + self.transient_steps, now);
            let thresholds = track.thresholds[host];
            let stricter = Thresholds {
                persistence: 2 * thresholds.persistence,
                spikes: thresholds.spikes + 1,
                spike_window: 2 * thresholds.spike_window,
                ..thresholds
            };
            let towering = faulty[0].1.intermittent && faulty[0].1.z >= 2.0 * thresholds.spike_z;
            let holds =
                scores.is_some_and(|scores| host_evidence(scores, sign, now, stricter).is_some());
            if !towering && !holds {
                faulty.clear();
            }
        }
        if faulty.len() >= needed && share > reference_share + 0.15 {
            // A metric the release does not judge may only recommend, however large its change.
            let severity = if may_pause(metric, settings) {
                Verdict::Fault
            } else {
                Verdict::Anomaly
            };
            return (
                Some(self.metric_finding(metric, track, severity, &faulty, judged, now)),
                true,
            );
        }
        // A recommendation: a milder change, on at least half of the judged hosts.
        anomalous.extend(faulty);
        let needed_for_anomaly = ((0.5 * judged as f64).ceil() as usize).max(1);
        if anomalous.len() >= needed_for_anomaly {
            return (
                Some(self.metric_finding(metric, track, Verdict::Anomaly, &anomalous, judged, now)),
                true,
            );
        }
        // A metric harmful either way is tested both ways.
        let signs: &[f64] = if metric.harmful_sign == 0.0 {
            &[1.0, -1.0]
        } else {
            &[metric.harmful_sign]
        };
        let group = signs.iter().find_map(|sign| {
            // Like a host's shift, the group's must hold: at each of the last steps.
            let held = (1..self.settings.persistence_steps.max(1)).all(|back| {
                now.checked_sub(back).is_some_and(|earlier| {
                    self.group_shift(metric, track, earlier, judged, *sign)
                        .is_some()
                })
            });
            if !held {
                return None;
            }
            self.group_shift(metric, track, now, judged, *sign)
        });
        (group, true)
    }

    /// A recommendation no single host shows clearly: the release hosts, taken together, sit
    /// above the reference hosts (a rank test of each host's typical z over the recent steps),
    /// by a material change.
    /// `sign` is the direction tested: 1 up, -1 down.
    fn group_shift(
        &self,
        metric: &MetricData,
        track: &MetricTrack,
        now: usize,
        judged: usize,
        sign: f64,
    ) -> Option<Finding> {
        if track.baseline != "reference" {
            return None;
        }
        let first_deploy = self.prepared.first_deploy?;
        let window = 2 * self.settings.persistence_steps.max(1);
        let typical = |host: usize, from: usize| -> Option<(f64, f64, usize)> {
            let start = from.max(now.saturating_sub(window - 1));
            if start > now {
                return None;
            }
            let z: Vec<f64> = track.z()[host][start..=now]
                .iter()
                .copied()
                .filter(|value| value.is_finite())
                .collect();
            let delta: Vec<f64> = track.delta()[host][start..=now]
                .iter()
                .copied()
                .filter(|value| value.is_finite())
                .collect();
            if z.len() < window / 2 + 1 || delta.is_empty() {
                return None;
            }
            Some((sign * stats::median(&z), stats::median(&delta), start))
        };
        let mut release = Vec::new();
        for &host in &self.prepared.release {
            let Some(deploy) = self.prepared.hosts[host].deploy else {
                continue;
            };
            let judged_from = deploy + self.prepared.warmup_steps + self.transient_steps;
            if let Some(found) = typical(host, judged_from) {
                release.push((host, found));
            }
        }
        let reference: Vec<f64> = self
            .prepared
            .reference
            .iter()
            .filter_map(|&host| typical(host, first_deploy).map(|found| found.0))
            .collect();
        if release.len() < 2 || reference.len() < 3 {
            return None;
        }
        let pairs = (release.len() * reference.len()) as f64;
        let mut above = 0.0;
        for (_, (z, _, _)) in &release {
            for other in &reference {
                above += if z > other {
                    1.0
                } else if z == other {
                    0.5
                } else {
                    0.0
                };
            }
        }
        let count = (release.len() + reference.len()) as f64;
        let rank_z = (above - pairs / 2.0) / (pairs * (count + 1.0) / 12.0).sqrt();
        // Tested both ways, each way must clear the bar of half the chance.
        let bar = if metric.harmful_sign == 0.0 {
            stats::raised_bar(self.group_bar, 0.5)
        } else {
            self.group_bar
        };
        if rank_z < bar {
            return None;
        }
        let moved: Vec<(usize, HostEvidence, f64)> = release
            .iter()
            .filter(|(_, (z, _, _))| *z >= 1.0)
            .map(|(host, (z, delta, start))| {
                let evidence = HostEvidence {
                    z: *z,
                    delta: *delta,
                    since: *start,
                    until: now,
                    intermittent: false,
                };
                let effect = self.host_effect(metric, track, *host, now, &evidence);
                (*host, evidence, effect)
            })
            .collect();
        if moved.len() * 2 < release.len() {
            return None;
        }
        let mut finding = self.metric_finding(metric, track, Verdict::Anomaly, &moved, judged, now);
        if harmful(sign, finding.effect) < self.settings.anomaly_effect {
            return None;
        }
        finding.evidence = format!(
            "{} the release hosts rank above the reference hosts (rank z {rank_z:.1}), median robust z {:.1}, effect {}",
            GROUP_SHIFT,
            finding.score,
            vigil_core::text::change_words(finding.effect)
        );
        Some(finding)
    }

    /// Share of reference hosts that show the same kind of change at the same time (global
    /// events, noisy fleets): the release must show it clearly more often to be blamed.
    fn reference_share(
        &self,
        metric: &MetricData,
        track: &MetricTrack,
        now: usize,
        fault_effect: f64,
    ) -> f64 {
        let Some(first_deploy) = self.prepared.first_deploy else {
            return 0.0;
        };
        let mut judged = 0usize;
        let mut showing = 0usize;
        for &host in &self.prepared.reference {
            // Reference hosts did not restart: no transient to allow for.
            let Some(scores) = self.judged_scores(track, host, first_deploy, 0, now) else {
                continue;
            };
            judged += 1;
            if let Some(evidence) =
                host_evidence(scores, metric.harmful_sign, now, track.thresholds[host])
            {
                let effect = self.host_effect(metric, track, host, now, &evidence);
                if harmful(metric.harmful_sign, effect) >= fault_effect {
                    showing += 1;
                }
            }
        }
        if judged == 0 {
            0.0
        } else {
            showing as f64 / judged as f64
        }
    }

    /// A host's scores as judged from `deploy` plus the warm-up, or `None` when nothing of it
    /// can be judged yet at `now`.
    fn judged_scores<'t>(
        &self,
        track: &'t MetricTrack,
        host: usize,
        deploy: usize,
        transient_until: usize,
        now: usize,
    ) -> Option<HostScores<'t>> {
        let judged_from = deploy + self.prepared.warmup_steps;
        if now < judged_from
            || !track.z()[host][judged_from..=now]
                .iter()
                .any(|z| z.is_finite())
        {
            return None;
        }
        Some(HostScores {
            z: &track.z()[host],
            delta: &track.delta()[host],
            judged_from,
            transient_until,
            warmup_skipped: self.prepared.warmup_steps > 0,
        })
    }

    /// Relative change on a host, in the metric's own terms (for a success rate near its bound:
    /// of its failures). A shift's is that of its samples; recurring spikes' is the change
    /// over the whole stretch they recur in, so that they pause only when they are as material
    /// as a shift would have to be (rare spikes over an unchanged level are not).
    fn host_effect(
        &self,
        metric: &MetricData,
        track: &MetricTrack,
        host: usize,
        now: usize,
        evidence: &HostEvidence,
    ) -> f64 {
        if evidence.intermittent {
            let (observed, expected) = self.host_change(metric, track, host, evidence, now);
            return metric.transform.effect_between(observed, expected);
        }
        let expected = metric.values[host][now] - track.delta()[host][now];
        metric.transform.relative_effect(expected, evidence.delta)
    }

    /// What a host showed and what was expected of it over its evidence's samples, in the
    /// metric's unit: medians over a shift's last samples, means over the stretch of
    /// recurring spikes (a median would hide the spikes).
    fn host_change(
        &self,
        metric: &MetricData,
        track: &MetricTrack,
        host: usize,
        evidence: &HostEvidence,
        now: usize,
    ) -> (f64, f64) {
        let steps = if evidence.intermittent {
            // From the first spike counted to the last, the quiet samples between included.
            evidence.since..=evidence.until
        } else {
            self.recent_steps(now)
        };
        self.change_over(metric, track, host, steps, evidence.intermittent)
    }

    /// The steps a shift is measured over at `now`: the last `persistence_steps`.
    fn recent_steps(&self, now: usize) -> std::ops::RangeInclusive<usize> {
        now.saturating_sub(self.settings.persistence_steps.max(1) - 1)..=now
    }

    /// What a host showed and what was expected of it over `steps`, in the metric's unit:
    /// their means (`mean`) or medians.
    fn change_over(
        &self,
        metric: &MetricData,
        track: &MetricTrack,
        host: usize,
        steps: std::ops::RangeInclusive<usize>,
        mean: bool,
    ) -> (f64, f64) {
        let mut observed = Vec::new();
        let mut expected = Vec::new();
        for step in steps {
            let value = metric.values[host][step];
            let delta = track.delta()[host][step];
            if value.is_finite() && delta.is_finite() {
                observed.push(metric.transform.invert(value));
                expected.push(metric.transform.invert(value - delta));
            }
        }
        if mean {
            (stats::mean(&observed), stats::mean(&expected))
        } else {
            (stats::median(&observed), stats::median(&expected))
        }
    }

    fn metric_finding(
        &self,
        metric: &MetricData,
        track: &MetricTrack,
        severity: Verdict,
        hosts: &[(usize, HostEvidence, f64)],
        judged: usize,
        now: usize,
    ) -> Finding {
        let prepared = &self.prepared;
        // One observed and one expected value for the whole finding (medians over its hosts),
        // and the effect taken between exactly these two: the sentence, the evidence line, the
        // page and the chart all state these three numbers.
        let changes: Vec<(f64, f64)> = hosts
            .iter()
            .map(|(host, evidence, _)| self.host_change(metric, track, *host, evidence, now))
            .collect();
        let observed = stats::median(&changes.iter().map(|change| change.0).collect::<Vec<_>>());
        let expected = stats::median(&changes.iter().map(|change| change.1).collect::<Vec<_>>());
        let effect = metric.transform.effect_between(observed, expected);
        let score = stats::median(
            &hosts
                .iter()
                .map(|(_, evidence, _)| evidence.z)
                .collect::<Vec<_>>(),
        );
        let since = hosts
            .iter()
            .map(|(_, evidence, _)| evidence.since)
            .min()
            .unwrap_or(now);
        let intermittent = hosts
            .iter()
            .filter(|(_, evidence, _)| evidence.intermittent)
            .count()
            * 2
            > hosts.len();
        let names: Vec<String> = hosts
            .iter()
            .map(|(host, _, _)| prepared.hosts[*host].name.clone())
            .collect();
        let up = observed >= expected;
        let direction = if up { "up" } else { "down" };
        let size = match metric.transform.headroom_of {
            Some(bound) => format!(
                "{} in its shortfall from {}",
                vigil_core::text::change_words(effect),
                vigil_core::text::figure(bound)
            ),
            None => vigil_core::text::change_words(effect),
        };
        let pattern = if intermittent {
            "in recurring spikes"
        } else {
            "and holds"
        };
        let baseline = track.baseline;
        let compared = track.compared_with.as_str();
        let explanation = format!(
            "{} on {} of {} release hosts is {}: {} against {} expected from {}, since {}, {}",
            metric.meta.name,
            names.len(),
            judged,
            size,
            vigil_core::text::figure(observed),
            vigil_core::text::figure(expected),
            compared,
            clock_time_utc(prepared.time_of(since)),
            pattern,
        );
        let not_judged = if may_pause(metric, &self.settings) {
            ""
        } else {
            "; not judged (the release does not list it): it may only recommend"
        };
        let evidence = format!(
            "difference in differences against {compared}: median robust z {score:.1} over {} steps, effect {}{not_judged}",
            self.settings.persistence_steps,
            vigil_core::text::change_words(effect)
        );
        Finding {
            severity,
            signal: Signal::Metric {
                name: metric.meta.name.clone(),
            },
            hosts: names,
            hosts_judged: judged,
            direction: direction.to_owned(),
            observed,
            expected,
            effect,
            score,
            baseline: baseline.to_owned(),
            evidence,
            since: prepared.time_of(since),
            explanation,
        }
    }

    fn log_finding(&self, template: &vigil_core::LogTemplate, evidence: &LogEvidence) -> Finding {
        let prepared = &self.prepared;
        let exception = template.is_exception();
        let share = evidence.hosts.len() as f64 / evidence.hosts_judged.max(1) as f64;
        let severe = exception
            && evidence.rate_per_minute >= self.settings.log_fault_lines_per_minute
            && share >= self.settings.min_host_share;
        let severity = if severe {
            Verdict::Fault
        } else {
            Verdict::Anomaly
        };
        let names: Vec<String> = evidence
            .hosts
            .iter()
            .map(|&host| prepared.hosts[host].name.clone())
            .collect();
        let ratio = evidence.observed / evidence.expected.max(f64::MIN_POSITIVE);
        let what = if evidence.new {
            "new".to_owned()
        } else {
            format!("{} as frequent as expected", describe_ratio(ratio))
        };
        let explanation = format!(
            "log template \"{}\" ({}) is {} on {} of {} release hosts since {}: {:.0} lines, {:.1} per minute per host",
            template.text,
            if template.level.is_empty() { "no level" } else { template.level.as_str() },
            what,
            names.len(),
            evidence.hosts_judged,
            clock_time_utc(prepared.time_of(evidence.since)),
            evidence.observed,
            evidence.rate_per_minute,
        );
        Finding {
            severity,
            signal: Signal::Log {
                template: template.id.clone(),
                text: template.text.clone(),
                level: template.level.clone(),
            },
            hosts: names,
            hosts_judged: evidence.hosts_judged,
            direction: "up".to_owned(),
            observed: evidence.observed,
            expected: evidence.expected,
            effect: ratio - 1.0,
            score: -evidence.tail_ln,
            baseline: if prepared.reference.is_empty() {
                "history"
            } else {
                "reference"
            }
            .to_owned(),
            evidence: format!(
                "poisson surge test: {:.0} lines seen, {:.2} expected, ln p = {:.1}",
                evidence.observed, evidence.expected, evidence.tail_ln
            ),
            since: prepared.time_of(evidence.since),
            explanation,
        }
    }
}

/// A judgement with its findings, most severe first, then the strongest first.
fn with_findings(at: i64, verdict: Verdict, mut findings: Vec<Finding>) -> Judgement {
    findings.sort_by(|left, right| {
        left.severity.cmp(&right.severity).then(
            right
                .score
                .partial_cmp(&left.score)
                .unwrap_or(std::cmp::Ordering::Equal),
        )
    });
    Judgement {
        at,
        verdict,
        findings,
        reason: None,
        suppressed: Vec::new(),
    }
}

fn insufficient(at: i64, reason: &str) -> Judgement {
    Judgement {
        at,
        verdict: Verdict::InsufficientData,
        findings: Vec::new(),
        reason: Some(reason.to_owned()),
        suppressed: Vec::new(),
    }
}

fn metric_track(
    prepared: &Prepared,
    metric: &MetricData,
    settings: &Settings,
) -> Option<MetricTrack> {
    let base = Thresholds {
        shift_z: settings.shift_z,
        spike_z: settings.spike_z,
        persistence: settings.persistence_steps,
        spikes: settings.spikes_needed,
        spike_window: settings.spike_window_steps,
    };
    if let Some(peers) =
        PeerTrack::compute(prepared, metric, settings.compare_new_hosts_with_reference)
    {
        let hosts = prepared.hosts.len();
        return Some(MetricTrack {
            scorer: Scorer::Peers(peers),
            thresholds: vec![base; hosts],
            baseline: "reference",
            compared_with: "the reference hosts".to_owned(),
        });
    }
    if !prepared.reference.is_empty() {
        return None;
    }
    // No reference group: every release host against its own history.
    let points = prepared.points;
    let hosts = prepared.hosts.len();
    let mut z = vec![vec![f64::NAN; points]; hosts];
    let mut delta = vec![vec![f64::NAN; points]; hosts];
    let mut forecasts: Vec<Option<HistoryTrack>> = (0..hosts).map(|_| None).collect();
    let mut thresholds = vec![base; hosts];
    let mut earlier_days = true;
    let mut level_seconds = 0;
    for &host in &prepared.release {
        let Some(mut history) = HistoryTrack::compute(prepared, metric, host, settings) else {
            continue;
        };
        earlier_days &= history.seasonal;
        level_seconds = level_seconds.max(history.level_steps as i64 * prepared.step_seconds);
        z[host] = std::mem::take(&mut history.z);
        delta[host] = std::mem::take(&mut history.delta);
        // Bars calibrated on the history: one spike above what the history ever shows at
        // quiet moments is evidence by itself.
        thresholds[host] = Thresholds {
            shift_z: history.shift_z,
            spike_z: history.spike_z,
            spikes: 1,
            ..base
        };
        forecasts[host] = Some(history);
    }
    if forecasts.iter().all(Option::is_none) {
        return None;
    }
    // With too little history for the same time on earlier days, the forecast is the level
    // just before the deploy: the finding says so, since a daily rhythm goes unseen then.
    let compared_with = if earlier_days {
        "its own history (the same time on earlier days)".to_owned()
    } else {
        format!(
            "its level in the {} before the deploy only (too little history for earlier days)",
            describe_duration(level_seconds)
        )
    };
    Some(MetricTrack {
        scorer: Scorer::History {
            z,
            delta,
            hosts: forecasts,
        },
        thresholds,
        baseline: "history",
        compared_with,
    })
}

/// Whether a change of `metric` may pause the release (else it may only recommend).
fn may_pause(metric: &MetricData, settings: &Settings) -> bool {
    metric.meta.judged || settings.judge_unlisted_metrics
}

/// Raises every judged metric's bars when the release is judged on more metrics than the bars
/// are set for: each metric's chance of a false alarm shrinks in proportion, so that the
/// release's chance of a false pause stays that of `family_size` metrics (Bonferroni's
/// correction, on the normal tail of the bars).
fn raise_bars_for_the_family(
    prepared: &Prepared,
    tracks: &mut [Option<MetricTrack>],
    settings: &Settings,
) {
    let family = prepared
        .metrics
        .iter()
        .zip(tracks.iter())
        .filter(|(metric, track)| track.is_some() && may_pause(metric, settings))
        .count();
    if family <= settings.family_size.max(1) {
        return;
    }
    let share = settings.family_size.max(1) as f64 / family as f64;
    let history_share = (1.0 - settings.history_quantile).max(0.0) * share;
    for (metric, track) in prepared.metrics.iter().zip(tracks.iter_mut()) {
        let Some(track) = track else { continue };
        if !may_pause(metric, settings) {
            continue;
        }
        match &track.scorer {
            // Peer scores are near normal: raise the bars on the normal tail.
            Scorer::Peers(_) => {
                for thresholds in &mut track.thresholds {
                    thresholds.shift_z = stats::raised_bar(thresholds.shift_z, share);
                    thresholds.spike_z = stats::raised_bar(thresholds.spike_z, share);
                }
            }
            // Bars calibrated on the history: read them further out on its own tail.
            Scorer::History { hosts, .. } => {
                for (thresholds, forecast) in track.thresholds.iter_mut().zip(hosts) {
                    let Some(forecast) = forecast else { continue };
                    if let Some(tail) = forecast.shift_tail {
                        thresholds.shift_z = thresholds.shift_z.max(tail.bar_for(history_share));
                    }
                    if let Some(tail) = forecast.spike_tail {
                        thresholds.spike_z = thresholds.spike_z.max(tail.bar_for(history_share));
                    }
                }
            }
        }
    }
}

/// A duration in minutes or hours, for a sentence.
fn describe_duration(seconds: i64) -> String {
    if seconds >= 7200 && seconds % 3600 == 0 {
        format!("{} hours", seconds / 3600)
    } else if seconds >= 120 {
        format!("{} minutes", seconds / 60)
    } else {
        format!("{seconds} seconds")
    }
}

fn describe_ratio(ratio: f64) -> String {
    if ratio >= 10.0 {
        format!("{ratio:.0}x")
    } else {
        format!("{ratio:.1}x")
    }
}
