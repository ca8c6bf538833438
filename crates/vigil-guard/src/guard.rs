//! The live guard: at every step, judge each observing release on its window and act.
//!
//! A `fault` pauses the release (no further batch may start) and tells people; an `anomaly` is
//! stored as a recommendation; `insufficient_data` holds the next batch and says why; a release
//! whose last batch has been watched for its observation time without a fault succeeds, and
//! only while every deployed host sends every judged metric (silence never passes).
//!
//! Step `t_i` is judged as soon as every series that reported in the step before has reported
//! in it, or, failing that, once `grace_seconds` have passed since `t_i`. Ingestion wakes the
//! guard, so a pause follows the last sample of a step within a pass.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};

use vigil_analysis::{Evaluator, Settings};
use vigil_core::release::{
    Action, NewNotification, NotificationEvent, Release, ReleaseState, VerdictRecord,
};
use vigil_core::{Clock, Judgement, LogTemplate, Verdict};
use vigil_store::{Change, ReleaseFilter, Store, StoreError};

use crate::assemble::{assemble_steps, reference_hosts_among, window_start, AssembleError, Window};
use crate::index::DataIndex;

/// Why a guard pass failed for a release.
#[derive(Debug, thiserror::Error)]
pub enum GuardError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Assemble(#[from] AssembleError),
    #[error("release {id} has invalid analysis settings: {reason}")]
    Settings { id: String, reason: String },
    #[error(transparent)]
    Transition(#[from] vigil_deploy::TransitionError),
}

/// Which channel gets which events.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    pub channel: String,
    pub events: Vec<NotificationEvent>,
}

/// How the guard behaves.
#[derive(Debug, Clone)]
pub struct GuardConfig {
    /// Base of the links in notifications (`{public_url}/releases/{id}`).
    pub public_url: String,
    pub routes: Vec<Route>,
    /// A step is judged at the latest this long after its time, complete or not.
    pub grace_seconds: i64,
}

impl Default for GuardConfig {
    fn default() -> Self {
        GuardConfig {
            public_url: "http://127.0.0.1:7070".to_string(),
            routes: Vec::new(),
            grace_seconds: 10,
        }
    }
}

/// What the guard did with one release in a pass.
#[derive(Debug, Clone, PartialEq)]
pub struct Judged {
    pub release_id: String,
    pub at: i64,
    pub verdict: Verdict,
    /// The state change it made, if any.
    pub moved_to: Option<ReleaseState>,
}

/// The parsed settings of a release, with the defaults for what it leaves out.
pub fn release_settings(release: &Release) -> Result<Settings, GuardError> {
    serde_json::from_value(serde_json::Value::Object(release.spec.settings.clone())).map_err(
        |error| GuardError::Settings {
            id: release.id.clone(),
            reason: error.to_string(),
        },
    )
}

/// Seconds of data before the first batch a release needs: its baseline, or the days of
/// history it is compared with when it has no reference group.
pub fn lookback_seconds(release: &Release, settings: &Settings) -> i64 {
    match release.spec.reference {
        vigil_core::release::ReferenceHosts::None => settings
            .baseline_seconds
            .max(settings.history_days as i64 * 86_400),
        _ => settings.baseline_seconds,
    }
}

/// The notifications an event of a release gives, one per channel that wants it.
pub fn notifications_for(
    routes: &[Route],
    public_url: &str,
    release: &Release,
    event: NotificationEvent,
    title: &str,
    text: &str,
) -> Vec<NewNotification> {
    let link = format!(
        "{}/releases/{}",
        public_url.trim_end_matches('/'),
        release.id
    );
    routes
        .iter()
        .filter(|route| route.events.contains(&event))
        .map(|route| NewNotification {
            release_id: release.id.clone(),
            event,
            channel: route.channel.clone(),
            title: title.to_string(),
            text: text.to_string(),
            link: link.clone(),
        })
        .collect()
}

/// The latest step time at or before `now` of a release's window.
fn latest_step(release: &Release, lookback: i64, now: i64) -> i64 {
    let step = release.spec.step_seconds.max(1);
    let start = window_start(release, lookback);
    start + (now - start).div_euclid(step) * step
}

/// What was last recorded of a release: its verdict, the signals behind it, and the step.
type Recorded = (Verdict, Vec<String>, i64);

/// Unix time from which the last deployed batch of a release is judged (its deploy plus the
/// warm-up): a verdict recorded before it does not speak for that batch.
pub fn last_batch_judged_from(release: &Release, settings: &Settings) -> Option<i64> {
    release
        .deployed
        .last()
        .map(|batch| batch.at.saturating_add(settings.warmup_seconds.max(0)))
}

/// The live guard of one server.
#[derive(Debug)]
pub struct Guard {
    store: Arc<dyn Store>,
    index: Arc<RwLock<DataIndex>>,
    clock: Arc<dyn Clock>,
    config: GuardConfig,
    /// Step last judged, per release.
    judged: Mutex<HashMap<String, i64>>,
    /// Last verdict recorded, per release (read from the store on first sight).
    recorded: Mutex<HashMap<String, Recorded>>,
    /// One pass at a time, so that a step is judged and acted on once.
    passing: Mutex<()>,
    /// Each observing release's evaluator, kept between passes and extended with the steps
    /// that changed or arrived since (`Evaluator::extend`).
    evaluators: Mutex<HashMap<String, Kept>>,
    /// Releases held because their window is too large to judge, warned about once.
    oversized: Mutex<std::collections::HashSet<String>>,
    /// Judgements made by extending a kept evaluator, and by building one on the whole window.
    extended: std::sync::atomic::AtomicU64,
    built: std::sync::atomic::AtomicU64,
}

/// A release's evaluator between passes, and the index generation its data was read at.
#[derive(Debug)]
struct Kept {
    evaluator: Evaluator,
    generation: u64,
    /// The lookback of the window it was built on (see `assemble::lookback_with_data`).
    lookback: i64,
}

impl Guard {
    pub fn new(
        store: Arc<dyn Store>,
        index: Arc<RwLock<DataIndex>>,
        clock: Arc<dyn Clock>,
        config: GuardConfig,
    ) -> Guard {
        Guard {
            store,
            index,
            clock,
            config,
            judged: Mutex::new(HashMap::new()),
            recorded: Mutex::new(HashMap::new()),
            passing: Mutex::new(()),
            evaluators: Mutex::new(HashMap::new()),
            oversized: Mutex::new(std::collections::HashSet::new()),
            extended: Default::default(),
            built: Default::default(),
        }
    }

    /// Judgements so far that extended a kept evaluator, and that built one on the whole
    /// window (a release's first, or after a change before its last deploy).
    pub fn evaluator_counts(&self) -> (u64, u64) {
        use std::sync::atomic::Ordering::Relaxed;
        (self.extended.load(Relaxed), self.built.load(Relaxed))
    }

    /// The steps of the window a release was last judged on (its kept evaluator's), if any.
    pub fn window_points(&self, release_id: &str) -> Option<usize> {
        lock(&self.evaluators)
            .get(release_id)
            .map(|kept| kept.evaluator.points())
    }

    /// The data index, read; a lock poisoned by a panic elsewhere is used as it is, as
    /// everywhere in the guard.
    fn read_index(&self) -> std::sync::RwLockReadGuard<'_, DataIndex> {
        self.index
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub fn config(&self) -> &GuardConfig {
        &self.config
    }

    pub fn index(&self) -> &Arc<RwLock<DataIndex>> {
        &self.index
    }

    /// Judges every observing release whose latest step is ready. Errors of one release are
    /// logged and do not stop the others.
    pub fn pass(&self) -> Result<Vec<Judged>, GuardError> {
        let _one_pass_at_a_time = lock(&self.passing);
        let now = self.clock.now();
        let observing = self.store.releases(&ReleaseFilter {
            states: vec![ReleaseState::Observing],
            ..ReleaseFilter::default()
        })?;
        // Every app's hosts, found once for all the releases' reference groups.
        let apps = self.read_index().hosts_by_app();
        // Releases are judged on as many threads as the machine has cores.
        let workers = std::thread::available_parallelism()
            .map_or(1, |cores| cores.get())
            .clamp(1, observing.len().max(1));
        let next = std::sync::atomic::AtomicUsize::new(0);
        let mut judged: Vec<Judged> = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..workers)
                .map(|_| {
                    scope.spawn(|| {
                        let mut done = Vec::new();
                        loop {
                            let position = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                            let Some(release) = observing.get(position) else {
                                return done;
                            };
                            match self.judge_if_ready(release, &apps, now) {
                                Ok(Some(outcome)) => done.push(outcome),
                                Ok(None) => {}
                                Err(error) => {
                                    tracing::warn!(release = %release.id, %error, "guard could not judge release");
                                }
                            }
                        }
                    })
                })
                .collect();
            handles
                .into_iter()
                .flat_map(|handle| handle.join().unwrap_or_default())
                .collect()
        });
        judged.sort_by(|left, right| left.release_id.cmp(&right.release_id));
        // Releases no longer observing leave their evaluators behind.
        let observing_ids: std::collections::HashSet<&str> = observing
            .iter()
            .map(|release| release.id.as_str())
            .collect();
        lock(&self.evaluators).retain(|id, _| observing_ids.contains(id.as_str()));
        lock(&self.oversized).retain(|id| observing_ids.contains(id.as_str()));
        Ok(judged)
    }

    /// Forgets what was judged of a release, so that the next pass judges it again (after a
    /// resume, for instance).
    pub fn forget(&self, release_id: &str) {
        lock(&self.judged).remove(release_id);
    }

    fn judge_if_ready(
        &self,
        release: &Release,
        apps: &HashMap<String, Vec<(String, i64)>>,
        now: i64,
    ) -> Result<Option<Judged>, GuardError> {
        let settings = release_settings(release)?;
        let lookback = lookback_seconds(release, &settings);
        let step_time = latest_step(release, lookback, now);
        if lock(&self.judged)
            .get(&release.id)
            .is_some_and(|&last| last >= step_time)
        {
            return Ok(None);
        }
        let start_ms = window_start(release, lookback) * 1000;
        let reference = reference_hosts_among(release, apps, start_ms);
        let ready = now >= step_time + self.config.grace_seconds || {
            let index = self.read_index();
            step_complete(release, &index, &reference, step_time)
        };
        if !ready {
            return Ok(None);
        }
        let templates = self.templates(&release.spec.app)?;
        // Taken out of the map while in use: each release is judged by one thread at a time.
        let kept = lock(&self.evaluators).remove(&release.id);
        let with_data = {
            let index = self.read_index();
            let hosts = release.spec.hosts.iter().chain(&reference);
            crate::assemble::lookback_with_data(
                release,
                &index,
                hosts,
                lookback,
                settings.baseline_seconds,
            )
        };
        // The window's start only moves back (data older than it arrived): a kept evaluator
        // keeps its steps when retention drops the oldest data, and is rebuilt when it moves.
        let judged_lookback = kept
            .as_ref()
            .map_or(with_data, |kept| kept.lookback.max(with_data));
        let kept = kept.filter(|kept| kept.lookback == judged_lookback);
        let window = Window {
            reference: &reference,
            templates: &templates,
            baseline_seconds: judged_lookback,
            until: step_time,
        };
        let (evaluator, generation) = match self.evaluator_for(release, &window, &settings, kept) {
            Ok(built) => built,
            Err(GuardError::Assemble(too_large @ AssembleError::WindowTooLarge { .. })) => {
                lock(&self.judged).insert(release.id.clone(), step_time);
                return self.hold_too_large(release, &settings, step_time, &too_large);
            }
            Err(error) => return Err(error),
        };
        lock(&self.judged).insert(release.id.clone(), step_time);
        lock(&self.oversized).remove(&release.id);
        let judgement = evaluator.judge_at(evaluator.points() - 1);
        let covered = evaluator.coverage_at(evaluator.points() - 1).complete();
        lock(&self.evaluators).insert(
            release.id.clone(),
            Kept {
                evaluator,
                generation,
                lookback: judged_lookback,
            },
        );
        let moved_to = self.act(release, &judgement, covered, &settings)?;
        Ok(Some(Judged {
            release_id: release.id.clone(),
            at: judgement.at,
            verdict: judgement.verdict,
            moved_to,
        }))
    }

    /// Holds a release whose window would pass [`crate::assemble::MAX_WINDOW_CELLS`] as
    /// insufficient data, saying why; warns once until it can be judged again.
    fn hold_too_large(
        &self,
        release: &Release,
        settings: &Settings,
        step_time: i64,
        too_large: &AssembleError,
    ) -> Result<Option<Judged>, GuardError> {
        let reason = format!("the release is held: {too_large}");
        if lock(&self.oversized).insert(release.id.clone()) {
            tracing::warn!(release = %release.id, %reason, "guard holds a release whose window is too large to judge");
        }
        let judgement = Judgement {
            at: step_time,
            verdict: Verdict::InsufficientData,
            findings: Vec::new(),
            reason: Some(reason),
        };
        let moved_to = self.act(release, &judgement, false, settings)?;
        Ok(Some(Judged {
            release_id: release.id.clone(),
            at: step_time,
            verdict: Verdict::InsufficientData,
            moved_to,
        }))
    }

    /// The release's evaluator brought to its window: the kept one extended with the steps
    /// that changed or arrived since it was last read, or, when that is refused, one built on
    /// the whole window. With the index generation its data was read at.
    fn evaluator_for(
        &self,
        release: &Release,
        window: &Window<'_>,
        settings: &Settings,
        kept: Option<Kept>,
    ) -> Result<(Evaluator, u64), GuardError> {
        if let Some(mut kept) = kept {
            // What changed and the steps from it, read under one lock: nothing lands between.
            let tail = {
                let index = self.read_index();
                let from = first_changed_step(release, window, &index, &kept);
                if from >= kept.evaluator.horizon() {
                    Some((
                        assemble_steps(release, &index, window, from)?,
                        from,
                        index.generation(),
                    ))
                } else {
                    None
                }
            };
            if let Some((tail, from, generation)) = tail {
                match kept.evaluator.extend(&tail, from, settings) {
                    Ok(()) => {
                        self.extended
                            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        return Ok((kept.evaluator, generation));
                    }
                    Err(reason) => {
                        tracing::debug!(release = %release.id, %reason, "guard rebuilds evaluator");
                    }
                }
            }
        }
        let (bundle, generation) = {
            let index = self.read_index();
            (
                assemble_steps(release, &index, window, 0)?,
                index.generation(),
            )
        };
        self.built
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Ok((Evaluator::new(&bundle, settings), generation))
    }

    fn templates(&self, app: &str) -> Result<HashMap<String, LogTemplate>, GuardError> {
        Ok(self
            .store
            .templates(app)?
            .into_iter()
            .map(|template| (template.id.clone(), template))
            .collect())
    }

    /// Stores the verdict when it changed, and pauses, recommends or ends the release; it
    /// ends it only when `covered`: every deployed host sent every judged metric.
    fn act(
        &self,
        release: &Release,
        judgement: &Judgement,
        covered: bool,
        settings: &Settings,
    ) -> Result<Option<ReleaseState>, GuardError> {
        let explanation = explain(judgement);
        let signals: Vec<String> = judgement
            .findings
            .iter()
            .map(|finding| finding.signal.label())
            .collect();
        let previous = self.last_recorded(&release.id)?;
        // A verdict is also recorded once the last batch is judged, unchanged or not, so that
        // the latest record says whether that batch was seen (the verdict route reads it).
        let last_batch_from = last_batch_judged_from(release, settings);
        let first_on_last_batch = |recorded_at: i64| {
            last_batch_from.is_some_and(|from| recorded_at < from && judgement.at >= from)
        };
        let changed = previous.as_ref().is_none_or(|(verdict, labels, at)| {
            *verdict != judgement.verdict || *labels != signals || first_on_last_batch(*at)
        });
        let mut moved_to = None;
        // A fault a person already saw and resumed past does not pause the release again,
        // unless it grew or another signal faults.
        let acknowledged = judgement.verdict == Verdict::Fault
            && self
                .acknowledged_faults(&release.id)?
                .is_some_and(|seen| all_acknowledged(judgement, &seen));
        if acknowledged {
            tracing::info!(release = %release.id, at = judgement.at, reason = %explanation, "guard holds back a fault acknowledged at resume");
        }

        if judgement.verdict == Verdict::Fault && !acknowledged {
            let title = format!(
                "{} {} paused by Vigil",
                release.spec.app, release.spec.version
            );
            let change = Change {
                release_id: release.id.clone(),
                expected: ReleaseState::Observing,
                to: ReleaseState::Paused,
                action: Action::Pause,
                actor: "guard".to_string(),
                at: judgement.at.max(self.clock.now()),
                reason: explanation.clone(),
                deployed: None,
                notifications: notifications_for(
                    &self.config.routes,
                    &self.config.public_url,
                    release,
                    NotificationEvent::Paused,
                    &title,
                    &evidence_text(judgement),
                ),
            };
            match self.store.apply(&change) {
                Ok(_) => {
                    tracing::info!(release = %release.id, at = judgement.at, reason = %explanation, "guard paused release");
                    moved_to = Some(ReleaseState::Paused);
                }
                Err(StoreError::StateConflict { .. }) => {
                    // A person acted first; their state stands.
                }
                Err(error) => return Err(error.into()),
            }
        }

        if changed || moved_to.is_some() {
            let recommend = judgement.verdict == Verdict::Anomaly
                && previous
                    .as_ref()
                    .is_none_or(|(verdict, _, _)| *verdict != Verdict::Anomaly);
            let notifications = if recommend {
                notifications_for(
                    &self.config.routes,
                    &self.config.public_url,
                    release,
                    NotificationEvent::Recommendation,
                    &format!(
                        "{} {}: Vigil recommends a look",
                        release.spec.app, release.spec.version
                    ),
                    &evidence_text(judgement),
                )
            } else {
                Vec::new()
            };
            self.store.record_verdict(
                &VerdictRecord {
                    release_id: release.id.clone(),
                    at: judgement.at,
                    verdict: judgement.verdict,
                    findings: finite_findings(&judgement.findings),
                    explanation: explanation.clone(),
                },
                &notifications,
            )?;
            lock(&self.recorded).insert(
                release.id.clone(),
                (judgement.verdict, signals, judgement.at),
            );
        }

        if moved_to.is_none()
            && covered
            && (matches!(judgement.verdict, Verdict::Healthy | Verdict::Anomaly) || acknowledged)
            && vigil_deploy::all_batches_deployed(release)
            && release
                .deployed
                .last()
                .is_some_and(|last| judgement.at >= last.at + release.spec.observe_seconds)
        {
            let change = Change {
                release_id: release.id.clone(),
                expected: ReleaseState::Observing,
                to: ReleaseState::Succeeded,
                action: Action::Succeed,
                actor: "guard".to_string(),
                at: judgement.at.max(self.clock.now()),
                reason: format!(
                    "watched for {} s after the last batch: {}",
                    release.spec.observe_seconds, explanation
                ),
                deployed: None,
                notifications: Vec::new(),
            };
            match self.store.apply(&change) {
                Ok(_) => moved_to = Some(ReleaseState::Succeeded),
                Err(StoreError::StateConflict { .. }) => {}
                Err(error) => return Err(error.into()),
            }
        }
        Ok(moved_to)
    }

    /// The fault findings a person resumed the release past: when its last transition is a
    /// resume, those of the last fault verdict at or before the pause it ended.
    fn acknowledged_faults(
        &self,
        release_id: &str,
    ) -> Result<Option<Vec<vigil_core::Finding>>, GuardError> {
        let transitions = self.store.transitions(release_id)?;
        let Some((last, earlier)) = transitions.split_last() else {
            return Ok(None);
        };
        if last.action != Action::Resume {
            return Ok(None);
        }
        let Some(pause) = earlier
            .iter()
            .rev()
            .find(|transition| transition.action == Action::Pause)
        else {
            return Ok(None);
        };
        let seen = self
            .store
            .verdicts(release_id)?
            .into_iter()
            .rev()
            .find(|record| record.verdict == Verdict::Fault && record.at <= pause.at)
            .map(|record| {
                record
                    .findings
                    .into_iter()
                    .filter(|finding| finding.severity == Verdict::Fault)
                    .collect()
            });
        Ok(seen)
    }

    fn last_recorded(&self, release_id: &str) -> Result<Option<Recorded>, GuardError> {
        if let Some(known) = lock(&self.recorded).get(release_id) {
            return Ok(Some(known.clone()));
        }
        let stored = self.store.verdicts(release_id)?.pop().map(|record| {
            let labels = record
                .findings
                .iter()
                .map(|finding| finding.signal.label())
                .collect();
            (record.verdict, labels, record.at)
        });
        if let Some(known) = &stored {
            lock(&self.recorded).insert(release_id.to_string(), known.clone());
        }
        Ok(stored)
    }
}

/// The first step of the window a kept evaluator has to see again: the earliest step whose
/// data changed since it was read (a step `i` holds the data of `(t_i - step, t_i]`), or the
/// first step it has not seen.
fn first_changed_step(
    release: &Release,
    window: &Window<'_>,
    index: &DataIndex,
    kept: &Kept,
) -> usize {
    let seen = kept.evaluator.points();
    let earliest_change = release
        .spec
        .hosts
        .iter()
        .chain(window.reference)
        .filter_map(|host| index.earliest_change(host, kept.generation))
        .min();
    let Some(earliest_ms) = earliest_change else {
        return seen;
    };
    let start_ms = window_start(release, window.baseline_seconds) * 1000;
    let step_ms = release.spec.step_seconds.max(1) * 1000;
    let since_start = (earliest_ms - start_ms).max(0);
    let step = usize::try_from((since_start + step_ms - 1) / step_ms).unwrap_or(usize::MAX);
    step.min(seen)
}

/// How much larger than when it was acknowledged a fault must grow to pause the release again.
const ACKNOWLEDGED_GROWTH: f64 = 1.5;

/// Whether every fault finding of `judgement` was among those `seen` at a resume, and has not
/// grown by more than [`ACKNOWLEDGED_GROWTH`] since.
fn all_acknowledged(judgement: &Judgement, seen: &[vigil_core::Finding]) -> bool {
    judgement
        .findings
        .iter()
        .filter(|finding| finding.severity == Verdict::Fault)
        .all(|finding| {
            let label = finding.signal.label();
            seen.iter().any(|earlier| {
                earlier.signal.label() == label
                    && finding.effect.abs() <= ACKNOWLEDGED_GROWTH * earlier.effect.abs()
            })
        })
}

/// True when every series of the release's hosts that reported in the step before `step_time`
/// has reported in it too.
fn step_complete(
    release: &Release,
    index: &DataIndex,
    reference: &[String],
    step_time: i64,
) -> bool {
    let step_ms = release.spec.step_seconds * 1000;
    let end = step_time * 1000;
    let mut expected = 0usize;
    for host in release.spec.hosts.iter().chain(reference) {
        let Some(data) = index.host(host) else {
            continue;
        };
        for series in data.series.values() {
            if series.last_in(end - 2 * step_ms, end - step_ms).is_none() {
                continue;
            }
            expected += 1;
            if series.last_in(end - step_ms, end).is_none() {
                return false;
            }
        }
    }
    expected > 0
}

/// Findings with every number finite, so that they can be stored as JSON and read back
/// (a value the analysis could not compute is stored as 0).
pub fn finite_findings(findings: &[vigil_core::Finding]) -> Vec<vigil_core::Finding> {
    let finite = |value: f64| if value.is_finite() { value } else { 0.0 };
    findings
        .iter()
        .map(|finding| vigil_core::Finding {
            observed: finite(finding.observed),
            expected: finite(finding.expected),
            effect: finite(finding.effect),
            score: finite(finding.score),
            ..finding.clone()
        })
        .collect()
}

/// One line: the most severe finding's explanation, or the judgement's reason.
pub fn explain(judgement: &Judgement) -> String {
    // Held for missing data: the findings (recommendations) are not why.
    if judgement.verdict == Verdict::InsufficientData {
        if let Some(reason) = &judgement.reason {
            return reason.clone();
        }
    }
    if let Some(finding) = judgement.findings.first() {
        return finding.explanation.clone();
    }
    judgement
        .reason
        .clone()
        .unwrap_or_else(|| format!("{}: nothing found", judgement.verdict))
}

/// The findings as a few lines for a notification.
fn evidence_text(judgement: &Judgement) -> String {
    judgement
        .findings
        .iter()
        .take(5)
        .map(|finding| format!("- {}", finding.explanation))
        .collect::<Vec<_>>()
        .join("\n")
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;
    use vigil_core::release::{PlannedBatch, ReferenceHosts, ReleaseSpec};
    use vigil_core::samples::{LogChunk, LogCount, MetricChunk, Point, SeriesKey};
    use vigil_core::{Batch, ManualClock};

    const STEP: i64 = 30;
    const DEPLOY: i64 = 1_700_000_010;
    const HOSTS: [&str; 6] = ["h0", "h1", "h2", "h3", "h4", "h5"];

    fn release() -> Release {
        let release_hosts: Vec<String> = HOSTS[..3].iter().map(|host| host.to_string()).collect();
        Release {
            id: "r1".into(),
            spec: ReleaseSpec {
                app: "shop".into(),
                version: "2".into(),
                hosts: release_hosts.clone(),
                reference: ReferenceHosts::EveryOtherHost,
                batches: vec![PlannedBatch {
                    hosts: release_hosts.clone(),
                }],
                step_seconds: STEP,
                observe_seconds: 7200,
                // Listed, so that its changes may pause the release (the counter is not).
                metrics: vec![vigil_core::MetricMeta {
                    name: "latency".into(),
                    kind: vigil_core::MetricKind::Middleware,
                    unit: "ms".into(),
                    direction: vigil_core::Direction::Increase,
                    critical: true,
                    judged: true,
                }],
                settings: Default::default(),
            },
            state: ReleaseState::Observing,
            created_by: "test".into(),
            created_at: DEPLOY,
            updated_at: DEPLOY,
            deployed: vec![Batch {
                index: 0,
                at: DEPLOY,
                hosts: release_hosts,
            }],
            verdict: None,
            reason: String::new(),
        }
    }

    /// A sample of every host's latency and request counter at `at` (Unix seconds), or of
    /// the hosts in `only`.
    fn samples(at: i64, only: &[&str], latency_offset: f64) -> MetricChunk {
        let mut chunk = MetricChunk::default();
        for (number, host) in HOSTS.iter().enumerate() {
            if !only.is_empty() && !only.contains(host) {
                continue;
            }
            for (metric, counter) in [("latency", false), ("requests", true)] {
                let series = chunk.series.len() as u32;
                chunk.series.push(
                    SeriesKey {
                        app: "shop".into(),
                        host: (*host).into(),
                        metric: metric.into(),
                        counter,
                    }
                    .into(),
                );
                // Deterministic wobble, different per host, metric and time.
                let wobble = ((at / STEP) as f64 * 0.7 + number as f64 * 1.3).sin();
                let value = if counter {
                    (at - DEPLOY + 10_000) as f64 * (5.0 + number as f64) + wobble
                } else {
                    100.0 + 5.0 * wobble + latency_offset
                };
                chunk.points.push(Point {
                    series,
                    ms: (at - 5) * 1000,
                    value,
                });
            }
        }
        chunk
    }

    fn log_lines(at: i64, host: &str, count: u32) -> LogChunk {
        LogChunk {
            counts: vec![LogCount {
                app: "shop".into(),
                host: host.into(),
                template: "t-timeout".into(),
                ms: (at - 3) * 1000,
                count,
            }],
        }
    }

    struct Setup {
        _dir: vigil_store::testing::TempDir,
        store: Arc<dyn Store>,
        index: Arc<RwLock<DataIndex>>,
        clock: Arc<ManualClock>,
        guard: Guard,
    }

    /// A store with the release, and an index with an hour of quiet data before its deploy.
    fn setup(name: &str) -> Setup {
        setup_with(name, &release())
    }

    /// [`setup`] with another release.
    fn setup_with(name: &str, release: &Release) -> Setup {
        let dir = vigil_store::testing::TempDir::new(name).unwrap();
        let store: Arc<dyn Store> =
            vigil_store::open(&dir.path().join("vigil.db").display().to_string()).unwrap();
        store.create_release(release).unwrap();
        let index = Arc::new(RwLock::new(DataIndex::new()));
        let mut at = DEPLOY - 3600;
        while at <= DEPLOY {
            index
                .write()
                .unwrap()
                .insert_metrics(&samples(at, &[], 0.0));
            at += STEP;
        }
        let clock = Arc::new(ManualClock::new(DEPLOY));
        let guard = Guard::new(
            Arc::clone(&store),
            Arc::clone(&index),
            clock.clone(),
            GuardConfig::default(),
        );
        Setup {
            _dir: dir,
            store,
            index,
            clock,
            guard,
        }
    }

    #[test]
    fn a_fault_acknowledged_at_resume_pauses_again_only_once_it_grows() {
        let Setup {
            _dir,
            store,
            index,
            clock,
            guard,
        } = setup("guard-acknowledge");
        let mut step = 0;
        // One more step of data, the release hosts' latency up by `latency_up` (of 100).
        let mut step_with = |latency_up: f64| -> ReleaseState {
            step += 1;
            let at = DEPLOY + step * STEP;
            let mut held = index.write().unwrap();
            held.insert_metrics(&samples(at, &["h0", "h1", "h2"], latency_up));
            held.insert_metrics(&samples(at, &["h3", "h4", "h5"], 0.0));
            drop(held);
            clock.set(at + GuardConfig::default().grace_seconds);
            guard.pass().unwrap();
            store.release("r1").unwrap().unwrap().state
        };
        let paused_after = (0..20).position(|_| step_with(60.0) == ReleaseState::Paused);
        assert!(paused_after.is_some(), "the fault never paused the release");
        store
            .apply(&Change {
                release_id: "r1".into(),
                expected: ReleaseState::Paused,
                to: ReleaseState::Observing,
                action: Action::Resume,
                actor: "ops".into(),
                at: clock.now(),
                reason: "known: a cache warms up".into(),
                deployed: None,
                notifications: Vec::new(),
            })
            .unwrap();
        guard.forget("r1");
        for _ in 0..8 {
            assert_eq!(
                step_with(60.0),
                ReleaseState::Observing,
                "the acknowledged fault paused the release again"
            );
        }
        let paused_again = (0..10).position(|_| step_with(200.0) == ReleaseState::Paused);
        assert!(
            paused_again.is_some(),
            "a fault three times as large did not pause"
        );
    }

    /// The test release watched for ten minutes after its batch, with these settings and
    /// metric descriptions.
    fn short_release(settings: serde_json::Value, metrics: Vec<vigil_core::MetricMeta>) -> Release {
        let mut short = release();
        short.spec.observe_seconds = 600;
        short.spec.metrics = metrics;
        short.spec.settings = settings.as_object().cloned().unwrap_or_default();
        short
    }

    /// Runs `steps` steps after the deploy, each inserting what `chunk_at(at)` gives and
    /// passing the guard; returns the state after each step.
    fn run_steps(
        setup: &Setup,
        steps: i64,
        chunk_at: impl Fn(i64) -> MetricChunk,
    ) -> Vec<ReleaseState> {
        (1..=steps)
            .map(|step| {
                let at = DEPLOY + step * STEP;
                setup.index.write().unwrap().insert_metrics(&chunk_at(at));
                setup.clock.set(at + GuardConfig::default().grace_seconds);
                setup.guard.pass().unwrap();
                setup.store.release("r1").unwrap().unwrap().state
            })
            .collect()
    }

    /// Asserts that the release stayed observing at every step, held for missing data with
    /// an explanation that says `why`.
    fn assert_held(setup: &Setup, states: &[ReleaseState], why: &str) {
        assert!(
            states.iter().all(|state| *state == ReleaseState::Observing),
            "the release moved on: {states:?}"
        );
        let record = setup.store.verdicts("r1").unwrap().pop().unwrap();
        assert_eq!(
            record.verdict,
            Verdict::InsufficientData,
            "{}",
            record.explanation
        );
        assert!(record.explanation.contains(why), "{}", record.explanation);
    }

    #[test]
    fn a_silent_second_release_host_holds_the_release_past_its_observation() {
        let quiet = short_release(
            serde_json::json!({"silent_host_fault_seconds": 86_400}),
            Vec::new(),
        );
        let setup = setup_with("guard-silent-host", &quiet);
        // h1 sends nothing after the deploy; everyone else keeps reporting.
        let states = run_steps(&setup, 30, |at| {
            samples(at, &["h0", "h2", "h3", "h4", "h5"], 0.0)
        });
        assert_held(&setup, &states, "h1 sent nothing since");
    }

    #[test]
    fn a_release_host_silent_while_the_reference_reports_pauses_after_the_configured_time() {
        let setup = setup_with(
            "guard-silent-fault",
            &short_release(serde_json::json!({}), Vec::new()),
        );
        let states = run_steps(&setup, 30, |at| {
            samples(at, &["h0", "h2", "h3", "h4", "h5"], 0.0)
        });
        let paused_at = states
            .iter()
            .position(|state| *state == ReleaseState::Paused)
            .expect("the silent host never paused the release");
        // Silent from its deploy; 600 s by default before it is a fault.
        let silent_seconds = (paused_at as i64 + 1) * STEP;
        assert!(
            (600..=600 + 2 * STEP).contains(&silent_seconds),
            "paused after {silent_seconds} s of silence"
        );
        let transitions = setup.store.transitions("r1").unwrap();
        let pause = transitions.last().unwrap();
        assert_eq!(pause.action, Action::Pause);
        assert!(
            pause.reason.contains("h1 sent nothing since")
                && pause.reason.contains("reference hosts kept reporting"),
            "{}",
            pause.reason
        );
    }

    #[test]
    fn release_hosts_that_stop_sending_the_critical_metric_hold_the_release() {
        let latency = vigil_core::MetricMeta {
            name: "latency".into(),
            kind: vigil_core::MetricKind::Middleware,
            unit: "ms".into(),
            direction: vigil_core::Direction::Increase,
            critical: true,
            judged: true,
        };
        let setup = setup_with(
            "guard-silent-metric",
            &short_release(serde_json::json!({}), vec![latency]),
        );
        // From the tenth step on, the release hosts send their request counters only.
        let states = run_steps(&setup, 30, |at| {
            let mut chunk = samples(at, &[], 0.0);
            if at >= DEPLOY + 10 * STEP {
                let series = chunk.series.clone();
                chunk.points.retain(|point| {
                    let key = &series[point.series as usize];
                    key.metric != "latency" || !["h0", "h1", "h2"].contains(&key.host.as_str())
                });
            }
            chunk
        });
        assert_held(&setup, &states, "h0, h1, h2 sent no latency since");
    }

    #[test]
    fn a_release_whose_hosts_all_report_still_succeeds_after_its_observation() {
        let setup = setup_with(
            "guard-covered",
            &short_release(serde_json::json!({}), Vec::new()),
        );
        let states = run_steps(&setup, 30, |at| samples(at, &[], 0.0));
        assert_eq!(states.last(), Some(&ReleaseState::Succeeded), "{states:?}");
    }

    /// The test release without a reference group: judged against its hosts' own history,
    /// with a window that reaches `history_days` (7) before the deploy.
    fn history_release() -> Release {
        let mut history = release();
        history.spec.reference = ReferenceHosts::None;
        history
    }

    /// The evaluator a fresh build on the full window of a release (its whole lookback) gives,
    /// up to `until`.
    fn on_the_full_window(index: &RwLock<DataIndex>, release: &Release, until: i64) -> Evaluator {
        let settings = release_settings(release).unwrap();
        let lookback = lookback_seconds(release, &settings);
        let held = index.read().unwrap();
        let bundle =
            crate::assemble_with(release, &held, &[], &HashMap::new(), lookback, until).unwrap();
        Evaluator::new(&bundle, &settings)
    }

    /// The index holds an hour of the hosts' data before the deploy, of the seven days a
    /// history-mode window reaches back: the guard builds the steps from that hour on, and
    /// judges at every step as on the full window, through a fault that pauses the release.
    #[test]
    fn a_history_release_is_judged_on_the_steps_its_data_covers_as_on_the_full_window() {
        let setup = setup_with("guard-history-trimmed", &history_release());
        let full_points = {
            let release = history_release();
            let settings = release_settings(&release).unwrap();
            let lookback = lookback_seconds(&release, &settings);
            usize::try_from((DEPLOY - window_start(&release, lookback)) / STEP).unwrap()
        };
        let mut verdicts = Vec::new();
        for step in 1..=30 {
            let at = DEPLOY + step * STEP;
            let latency_up = if step > 12 { 80.0 } else { 0.0 };
            setup.index.write().unwrap().insert_metrics(&samples(
                at,
                &["h0", "h1", "h2"],
                latency_up,
            ));
            setup.clock.set(at + GuardConfig::default().grace_seconds);
            let judged = setup.guard.pass().unwrap();
            let release = setup.store.release("r1").unwrap().unwrap();
            let full = on_the_full_window(&setup.index, &release, at);
            let expected = full.judge_at(full.points() - 1);
            assert_eq!(judged.len(), 1, "at step {step}");
            assert_eq!(judged[0].verdict, expected.verdict, "at step {step}");
            if let Some(kept) = lock(&setup.guard.evaluators).get("r1") {
                let points = kept.evaluator.points();
                assert!(
                    points <= 3600 / STEP as usize + step as usize + 1,
                    "{points} steps built of the {full_points} before the deploy"
                );
                assert_eq!(
                    format!("{:?}", kept.evaluator.judge_at(points - 1)),
                    format!("{expected:?}"),
                    "at step {step}"
                );
            }
            verdicts.push(expected.verdict);
            if release.state != ReleaseState::Observing {
                break;
            }
        }
        assert!(full_points > 20_000, "{full_points}");
        assert!(verdicts.contains(&Verdict::Fault), "{verdicts:?}");
    }

    /// Data older than the window's start arrives (a late resend): the window reaches back to
    /// it, built anew, then extended as before; the judgement is the full window's throughout.
    #[test]
    fn a_history_window_moves_back_when_older_data_arrives() {
        let setup = setup_with("guard-history-moves", &history_release());
        let pass_at = |step: i64| {
            let at = DEPLOY + step * STEP;
            setup
                .index
                .write()
                .unwrap()
                .insert_metrics(&samples(at, &["h0", "h1", "h2"], 0.0));
            setup.clock.set(at + GuardConfig::default().grace_seconds);
            setup.guard.pass().unwrap();
            let release = setup.store.release("r1").unwrap().unwrap();
            let full = on_the_full_window(&setup.index, &release, at);
            let kept = lock(&setup.guard.evaluators);
            let evaluator = &kept["r1"].evaluator;
            assert_eq!(
                format!("{:?}", evaluator.judge_at(evaluator.points() - 1)),
                format!("{:?}", full.judge_at(full.points() - 1)),
                "at step {step}"
            );
            evaluator.points()
        };
        let first = pass_at(1);
        let two_days_ago = DEPLOY - 2 * 86_400;
        setup
            .index
            .write()
            .unwrap()
            .insert_metrics(&samples(two_days_ago, &["h0"], 0.0));
        let after_older_data = pass_at(2);
        assert_eq!(
            after_older_data,
            first + 1 + usize::try_from((DEPLOY - 3600 - two_days_ago) / STEP).unwrap()
        );
        assert_eq!(
            setup.guard.evaluator_counts(),
            (0, 2),
            "the older data builds anew"
        );
        assert_eq!(pass_at(3), after_older_data + 1);
        assert_eq!(
            setup.guard.evaluator_counts(),
            (1, 2),
            "then it is extended"
        );
    }

    /// A history-mode window that would hold more values (steps x series) than a release may
    /// be judged on is not built: the release is held for insufficient data, saying why.
    #[test]
    fn a_window_too_large_to_judge_holds_the_release_instead_of_being_built() {
        let mut fine_steps = history_release();
        fine_steps.spec.step_seconds = 15;
        let setup = setup_with("guard-too-large", &fine_steps);
        // Six days back, h0 sent 300 more metrics once: 34,560 steps of 306 series.
        let mut old = MetricChunk::default();
        for metric in 0..300 {
            old.series.push(Arc::new(SeriesKey {
                app: "shop".into(),
                host: "h0".into(),
                metric: format!("old{metric}"),
                counter: false,
            }));
            old.points.push(Point {
                series: metric,
                ms: (DEPLOY - 6 * 86_400) * 1000,
                value: 1.0,
            });
        }
        setup.index.write().unwrap().insert_metrics(&old);
        let states = run_steps(&setup, 2, |at| samples(at, &[], 0.0));
        assert!(
            states.iter().all(|state| *state == ReleaseState::Observing),
            "{states:?}"
        );
        let record = setup.store.verdicts("r1").unwrap().pop().unwrap();
        assert_eq!(record.verdict, Verdict::InsufficientData);
        assert!(
            record.explanation.contains("306 series")
                && record.explanation.contains("more than the 10000000"),
            "{}",
            record.explanation
        );
        assert_eq!(setup.guard.evaluator_counts(), (0, 0), "nothing was built");
    }

    /// The guard, after every pass, holds the evaluator a fresh build on the whole window
    /// gives, to the bit: with late samples, a resent sample, log lines starting after the
    /// deploy and a changed baseline sample along the way.
    #[test]
    fn a_kept_evaluator_equals_one_built_on_the_whole_window_after_every_pass() {
        let Setup {
            _dir,
            store,
            index,
            clock,
            guard,
        } = setup("guard-extend");
        let insert = |chunk: MetricChunk| index.write().unwrap().insert_metrics(&chunk);
        for step in 1..=24 {
            let at = DEPLOY + step * STEP;
            match step {
                // h1 is late by two steps.
                5 => insert(samples(at, &["h0", "h2", "h3", "h4", "h5"], 0.0)),
                7 => {
                    insert(samples(DEPLOY + 5 * STEP, &["h1"], 0.0));
                    insert(samples(at, &[], 0.0));
                }
                // h4 resends the previous step with another value.
                9 => {
                    insert(samples(DEPLOY + 8 * STEP, &["h4"], 40.0));
                    insert(samples(at, &[], 0.0));
                }
                // A sample before the deploy changes: the evaluator is built anew.
                15 => {
                    insert(samples(DEPLOY - 600, &["h3"], 25.0));
                    insert(samples(at, &[], 0.0));
                }
                _ => insert(samples(at, &[], if step >= 18 { 3.0 } else { 0.0 })),
            }
            if step >= 12 {
                index
                    .write()
                    .unwrap()
                    .insert_logs(&log_lines(at, "h0", step as u32));
            }
            clock.set(at + GuardConfig::default().grace_seconds);
            guard.pass().unwrap();
            let kept = format!("{:?}", lock(&guard.evaluators)["r1"].evaluator);
            let release = store.release("r1").unwrap().unwrap();
            let settings = release_settings(&release).unwrap();
            let lookback = lookback_seconds(&release, &settings);
            let fresh = {
                let held = index.read().unwrap();
                let start_ms = window_start(&release, lookback) * 1000;
                let reference = reference_hosts_among(&release, &held.hosts_by_app(), start_ms);
                let bundle = crate::assemble_with(
                    &release,
                    &held,
                    &reference,
                    &HashMap::new(),
                    lookback,
                    at,
                )
                .unwrap();
                format!("{:?}", Evaluator::new(&bundle, &settings))
            };
            assert_eq!(kept, fresh, "after the pass at step {step}");
        }
        let (extended, built) = guard.evaluator_counts();
        assert_eq!(built, 2, "the first pass and the changed baseline build");
        assert_eq!(extended, 22);
    }
}
