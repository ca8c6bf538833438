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

mod act;
mod config;
mod evaluators;
mod leases;
mod locks;
mod readiness;
mod stage;
#[cfg(test)]
mod tests;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, RwLock};

use vigil_analysis::Settings;
use vigil_core::release::{Release, ReleaseState};
use vigil_core::{Bundle, Clock, Judgement, LogTemplate, Verdict};
use vigil_store::{ReleaseFilter, Store, StoreError};

use self::act::Actor;
pub use self::act::{
    explain, finite_findings, last_batch_judged_from, notifications_for, transition_change,
};
pub use self::config::{GuardConfig, Judged, Route};
use self::evaluators::{Evaluators, Kept};
use self::leases::Leases;
pub use self::leases::{replica_statuses, ReplicaIdentity, ReplicaStatus};
use self::locks::{lock, read};
use self::readiness::step_complete;
use crate::assemble::{reference_hosts_among, AssembleError, Window};
pub use crate::error::GuardError;
use crate::groups;
use crate::index::DataIndex;
use crate::intake::Intake;
use crate::pull::PullFailures;
use crate::rules;
pub use crate::window::release_settings;
use crate::window::ReleaseWindow;

/// The live guard of one server.
#[derive(Debug)]
pub struct Guard {
    store: Arc<dyn Store>,
    index: Arc<RwLock<DataIndex>>,
    clock: Arc<dyn Clock>,
    actor: Actor,
    /// Step last judged, per release.
    judged: Mutex<HashMap<String, i64>>,
    /// One pass at a time, so that a step is judged and acted on once.
    passing: Mutex<()>,
    /// Each observing release's evaluator, kept between passes and extended with the steps
    /// that changed or arrived since (`Evaluator::extend`).
    evaluators: Evaluators,
    /// Releases held because their window is too large to judge, warned about once.
    oversized: Mutex<HashSet<String>>,
    /// The puller's failing queries: a query rule whose pull fails is judged failing.
    pull_failures: Arc<PullFailures>,
    /// Apps that received alerts since each release was last judged.
    alert_news: crate::alerts::AlertNews,
    /// The leases of the releases this guard judges, among the replicas of its store.
    leases: Leases,
    /// The version of the promoted model last refused (warned about once).
    refused_model: Mutex<Option<i64>>,
}

impl Guard {
    pub fn new(
        store: Arc<dyn Store>,
        index: Arc<RwLock<DataIndex>>,
        clock: Arc<dyn Clock>,
        config: GuardConfig,
    ) -> Guard {
        let started_at = clock.now();
        Guard {
            actor: Actor::new(Arc::clone(&store), Arc::clone(&clock), config),
            leases: Leases::new(ReplicaIdentity::default(), started_at),
            store,
            index,
            clock,
            judged: Mutex::new(HashMap::new()),
            passing: Mutex::new(()),
            evaluators: Evaluators::default(),
            oversized: Mutex::new(HashSet::new()),
            pull_failures: Arc::new(PullFailures::default()),
            alert_news: crate::alerts::AlertNews::default(),
            refused_model: Mutex::new(None),
        }
    }

    /// The guard, reading the failures of `failures`' puller for the releases' query rules.
    pub fn with_pull_failures(mut self, failures: Arc<PullFailures>) -> Guard {
        self.pull_failures = failures;
        self
    }

    /// The guard as the replica `replica` of its store (see [`ReplicaIdentity`]).
    pub fn with_replica(mut self, replica: ReplicaIdentity) -> Guard {
        self.leases = Leases::new(replica, self.clock.now());
        self
    }

    /// Who this guard is among the replicas of its store.
    pub fn replica(&self) -> &ReplicaIdentity {
        &self.leases.replica
    }

    /// The leases this guard holds, as of its last lease round.
    pub fn leases_held(&self) -> usize {
        self.leases.held_count()
    }

    /// The observing releases its last pass judged (those whose lease it holds).
    pub fn releases_guarded(&self) -> usize {
        self.leases.guarded_count()
    }

    /// Gives back every lease and leaves the replicas of the store (a server that stops), so
    /// that other replicas take its releases over at once; this guard judges nothing after.
    /// Waits for a pass under way to end. Returns how many leases it gave back.
    pub fn give_back_leases(&self) -> Result<usize, GuardError> {
        let _no_pass_meanwhile = lock(&self.passing);
        Ok(self.leases.give_back_all(self.store.as_ref())?)
    }

    /// Alerts of `apps` were stored: the releases of those apps are judged again at their
    /// latest step in the next pass, even when it was judged already.
    pub fn alerts_arrived<'a>(&self, apps: impl IntoIterator<Item = &'a str>) {
        self.alert_news.arrived(apps);
    }

    /// Judgements so far that extended a kept evaluator, and that built one on the whole
    /// window (a release's first, or after a change before its last deploy).
    pub fn evaluator_counts(&self) -> (u64, u64) {
        self.evaluators.counts()
    }

    /// The steps of the window a release was last judged on (its kept evaluator's), if any.
    pub fn window_points(&self, release_id: &str) -> Option<usize> {
        self.evaluators.points(release_id)
    }

    /// The data index, read.
    fn read_index(&self) -> std::sync::RwLockReadGuard<'_, DataIndex> {
        read(&self.index)
    }

    /// Unix time of the step of a release last judged by this guard, if any (since start).
    pub fn last_judged(&self, release_id: &str) -> Option<i64> {
        lock(&self.judged).get(release_id).copied()
    }

    pub fn config(&self) -> &GuardConfig {
        &self.actor.config
    }

    pub fn index(&self) -> &Arc<RwLock<DataIndex>> {
        &self.index
    }

    /// The window of a release as a bundle for a page or an export, up to now or to the end of
    /// the release (see [`ReleaseWindow::shown_until`]), from the first step its hosts' data
    /// covers, as the guard judges it. A finished release's data may have been pruned from
    /// memory: it is read from the store through `intake`. Reads every step of every series:
    /// call it on a blocking thread.
    pub fn window(&self, release: &Release, intake: &Intake) -> Result<Bundle, GuardError> {
        let (release_window, _) = ReleaseWindow::read(release)?;
        let until = ReleaseWindow::shown_until(release, self.clock.now());
        let templates = self.templates(&release.spec.app)?;
        if release.state.is_terminal() {
            let stored = intake.stored_window(release_window.start * 1000, until * 1000)?;
            return Ok(assemble_shown(
                release,
                &release_window,
                &stored,
                &templates,
                until,
            )?);
        }
        let index = self.read_index();
        Ok(assemble_shown(
            release,
            &release_window,
            &index,
            &templates,
            until,
        )?)
    }

    /// The release as the guard judges it at `at` (Unix seconds): for a release whose groups
    /// are label selectors, the hosts they find in the index then, with each pod's deploy time
    /// ([`groups::judged_release`]); the release as it is otherwise.
    pub fn judged_release(&self, release: &Release, at: i64) -> Result<Release, GuardError> {
        let (release_window, _) = ReleaseWindow::read(release)?;
        let resolved =
            groups::judged_release(release, &self.read_index(), release_window.start * 1000, at);
        Ok(resolved.unwrap_or_else(|| release.clone()))
    }

    /// Judges every observing release whose latest step is ready. Errors of one release are
    /// logged and do not stop the others.
    pub fn pass(&self) -> Result<Vec<Judged>, GuardError> {
        let _one_pass_at_a_time = lock(&self.passing);
        let now = self.clock.now();
        // A release Vigil's executor ships is judged while its next batch deploys too, once
        // a batch is deployed.
        let every_observing: Vec<Release> = self
            .store
            .releases(&ReleaseFilter {
                states: vec![ReleaseState::Observing, ReleaseState::Deploying],
                ..ReleaseFilter::default()
            })?
            .into_iter()
            .filter(|release| {
                release.state == ReleaseState::Observing || !release.deployed.is_empty()
            })
            .collect();
        // Only the releases whose lease this replica holds are its to judge.
        for release_id in self
            .leases
            .round(self.store.as_ref(), now, &every_observing)?
        {
            self.forget_guarded(&release_id);
        }
        let observing: Vec<Release> = every_observing
            .into_iter()
            .filter(|release| self.leases.holds(&release.id))
            .collect();
        self.leases.set_guarded(observing.len());
        // Every app's hosts, found once for all the releases' reference groups.
        let apps = self.read_index().hosts_by_app();
        // Each app's learned stage, read once for all its releases.
        let stages = stage::stages_for(self.store.as_ref(), &observing, &self.refused_model);
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
                            let learned = stages.get(&release.spec.app);
                            match self.judge_if_ready(release, &apps, learned, now) {
                                Ok(Some(outcome)) => done.push(outcome),
                                Ok(None) => {}
                                Err(GuardError::Store(StoreError::LeaseLost { .. })) => {
                                    tracing::info!(release = %release.id, replica = %self.leases.replica.id, "guard lost a release's lease while acting on it");
                                    self.leases.lost(&release.id);
                                    self.forget_guarded(&release.id);
                                }
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
        self.evaluators.retain(|id| observing_ids.contains(id));
        lock(&self.oversized).retain(|id| observing_ids.contains(id.as_str()));
        self.alert_news.retain(|id| observing_ids.contains(id));
        Ok(judged)
    }

    /// Forgets what was judged of a release, so that the next pass judges it again (after a
    /// resume, for instance).
    pub fn forget(&self, release_id: &str) {
        lock(&self.judged).remove(release_id);
    }

    /// Forgets everything this guard kept of a release whose lease it lost or took: another
    /// replica may have judged and acted on it meanwhile.
    fn forget_guarded(&self, release_id: &str) {
        self.forget(release_id);
        self.evaluators.take(release_id);
        lock(&self.oversized).remove(release_id);
        self.actor.forget(release_id);
    }

    fn judge_if_ready(
        &self,
        stored: &Release,
        apps: &HashMap<String, Vec<(String, i64)>>,
        learned: Option<&vigil_analysis::Stage>,
        now: i64,
    ) -> Result<Option<Judged>, GuardError> {
        let (release_window, settings) = ReleaseWindow::read(stored)?;
        let step_time = release_window.latest_step(now);
        let alerts_arrived = self.alert_news.take(&stored.id, &stored.spec.app);
        if !alerts_arrived
            && lock(&self.judged)
                .get(&stored.id)
                .is_some_and(|&last| last >= step_time)
        {
            return Ok(None);
        }
        // A selector release is judged on the hosts its selectors find at this step; the
        // stored release is the one acted on.
        let resolved = groups::judged_release(
            stored,
            &self.read_index(),
            release_window.start * 1000,
            step_time,
        );
        let release = resolved.as_ref().unwrap_or(stored);
        let reference = reference_hosts_among(release, apps, release_window.start * 1000);
        let ready = now >= step_time + self.actor.config.grace_seconds || {
            let index = self.read_index();
            step_complete(release, &index, &reference, step_time)
        };
        if !ready {
            return Ok(None);
        }
        let templates = self.templates(&release.spec.app)?;
        let kept = self.evaluators.take(&release.id);
        let with_data = {
            let index = self.read_index();
            let hosts = release.spec.hosts.names().iter().chain(&reference);
            release_window.lookback_with_data(release, &index, hosts)
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
        let (evaluator, generation, mut tally) =
            match self
                .evaluators
                .evaluator_for(release, &self.index, &window, &settings, kept)
            {
                Ok(built) => built,
                Err(GuardError::Assemble(too_large @ AssembleError::WindowTooLarge { .. })) => {
                    lock(&self.judged).insert(release.id.clone(), step_time);
                    return self.hold_too_large(stored, &settings, step_time, &too_large);
                }
                Err(error) => return Err(error),
            };
        lock(&self.judged).insert(release.id.clone(), step_time);
        lock(&self.oversized).remove(&release.id);
        let newest = evaluator.points() - 1;
        // A model weighs how often a signal was recommended so far: the tally judges the steps
        // it has not counted yet (none between passes, every step after a rebuild).
        let judgement = if learned.is_some_and(|stage| stage.model().is_some()) {
            tally.catch_up(&evaluator, newest)
        } else {
            evaluator.judge_at(newest)
        };
        let judgement =
            rules::with_rule_findings(judgement, &evaluator, release, &self.pull_failures);
        let judgement = crate::alerts::judged_with_alerts(
            self.store.as_ref(),
            release,
            &reference,
            judgement,
            now,
        )?;
        let judgement = stage::staged(learned, judgement, release, evaluator.prepared(), &tally);
        let covered = evaluator.coverage_at(evaluator.points() - 1).complete();
        // A selector release group that finds no host holds: silence never passes.
        let (judgement, covered) = groups::hold_an_empty_group(stored, release, judgement, covered);
        self.evaluators.keep(
            &release.id,
            Kept {
                evaluator,
                tally,
                generation,
                lookback: judged_lookback,
            },
        );
        let moved_to = self.actor.act(
            stored,
            &judgement,
            covered,
            &settings,
            self.fence(&stored.id)?,
        )?;
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
            suppressed: Vec::new(),
        };
        let moved_to = self.actor.act(
            release,
            &judgement,
            false,
            settings,
            self.fence(&release.id)?,
        )?;
        Ok(Some(Judged {
            release_id: release.id.clone(),
            at: step_time,
            verdict: Verdict::InsufficientData,
            moved_to,
        }))
    }

    /// What the guard's writes about a release prove: its lease, held now.
    fn fence(&self, release_id: &str) -> Result<vigil_store::LeaseFence, GuardError> {
        self.leases
            .fence(release_id, self.clock.now())
            .ok_or_else(|| {
                GuardError::Store(StoreError::LeaseLost {
                    release_id: release_id.to_owned(),
                })
            })
    }

    fn templates(&self, app: &str) -> Result<HashMap<String, LogTemplate>, GuardError> {
        Ok(self
            .store
            .templates(app)?
            .into_iter()
            .map(|template| (template.id.clone(), template))
            .collect())
    }
}

/// A release's window for a page or an export, from the first step its hosts' data covers:
/// steps before hold nothing, and the verdicts are those of the full window. Only a release
/// without a reference group reaches back past its baseline, so its own hosts are the ones
/// whose data counts.
fn assemble_shown(
    stored: &Release,
    release_window: &ReleaseWindow,
    index: &DataIndex,
    templates: &HashMap<String, LogTemplate>,
    until: i64,
) -> Result<Bundle, AssembleError> {
    let resolved = groups::judged_release(stored, index, release_window.start * 1000, until);
    let release = resolved.as_ref().unwrap_or(stored);
    let covered = release_window.lookback_with_data(release, index, release.spec.hosts.names());
    crate::assemble::assemble(release, index, templates, covered, until)
}
