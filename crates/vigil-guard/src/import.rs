//! Importing a `release-bundle/1`: the bundle is replayed through the analysis, then the
//! release, its data and templates, the replay's verdict and the state it ended in are stored
//! in one store transaction ([`Store::import_release`](vigil_store::Store::import_release)), so
//! that a failure partway never leaves a half-imported release for the guard to judge.
//!
//! An imported release ends paused (when the replay paused it, or ended with data missing) or
//! succeeded. Checking the bundle against the server's limits is the caller's job.

use std::sync::Arc;

use vigil_core::release::{
    Action, PlannedBatch, ReferenceHosts, Release, ReleaseSpec, ReleaseState, VerdictRecord,
};
use vigil_core::samples::{LogChunk, LogCount, MetricChunk, Point, SeriesKey};
use vigil_core::{Bundle, HostGroup, Verdict};
use vigil_store::{Change, ImportedRelease};

use crate::guard::{finite_findings, GuardError};
use crate::intake::Intake;

/// Replays `bundle` and stores it as release `bundle.id`, created by `actor` at `now`; returns
/// the release as stored, in the state its replay ended in.
///
/// The bundle is dropped once replayed and turned into chunks, before the store is written.
pub fn import_bundle(
    intake: &Intake,
    bundle: Bundle,
    actor: String,
    now: i64,
) -> Result<Release, GuardError> {
    let replayed = replay(&bundle, actor, now);
    let (metrics, logs) = bundle_data(&bundle);
    let templates = bundle.logs.templates.clone();
    drop(bundle);
    let outcome = outcome_change(&replayed, now)?;
    let imported = ImportedRelease {
        release: replayed.release,
        templates,
        // Filled by the intake, which encodes the stored bodies.
        chunks: Vec::new(),
        verdict: replayed.record,
        outcome,
    };
    Ok(intake.import(imported, &metrics, &logs, now)?)
}

/// A bundle replayed: the release to create and the verdict of its replay.
struct Replayed {
    release: Release,
    record: VerdictRecord,
    paused: bool,
}

fn replay(bundle: &Bundle, actor: String, now: i64) -> Replayed {
    let release_hosts: Vec<String> = bundle
        .hosts
        .iter()
        .filter(|host| host.group == HostGroup::Release)
        .map(|host| host.name.clone())
        .collect();
    let reference: Vec<String> = bundle
        .hosts
        .iter()
        .filter(|host| host.group == HostGroup::Reference)
        .map(|host| host.name.clone())
        .collect();
    let end = bundle.start + (bundle.points as i64 - 1) * bundle.step_seconds;
    let last_batch = bundle.batches.last().map_or(end, |batch| batch.at);
    let spec = ReleaseSpec {
        app: bundle.app.clone(),
        version: format!("imported {}", bundle.id),
        hosts: release_hosts.into(),
        reference: if reference.is_empty() {
            ReferenceHosts::None
        } else {
            ReferenceHosts::Hosts { hosts: reference }
        },
        batches: bundle
            .batches
            .iter()
            .map(|batch| PlannedBatch {
                hosts: batch.hosts.clone(),
            })
            .collect(),
        step_seconds: bundle.step_seconds,
        observe_seconds: (end - last_batch).max(0),
        metrics: bundle.metrics.clone(),
        settings: serde_json::Map::new(),
        rules: Vec::new(),
    };
    // The last step's reason says which hosts and metrics were missing when data was.
    let mut last_reason = None;
    let outcome =
        vigil_analysis::replay_with(bundle, &vigil_analysis::Settings::default(), |judgement| {
            last_reason.clone_from(&judgement.reason);
        });
    let release = Release {
        id: bundle.id.clone(),
        spec,
        // Stored as pending until its outcome is applied: the guard judges observing releases
        // up to now, and this one's window would run from its recorded past to today.
        state: ReleaseState::Pending,
        created_by: actor,
        created_at: now,
        updated_at: now,
        deployed: bundle.batches.clone(),
        verdict: None,
        reason: "imported".to_string(),
    };
    let record = VerdictRecord {
        release_id: bundle.id.clone(),
        at: outcome.paused_at.or(outcome.recommended_at).unwrap_or(end),
        verdict: outcome.verdict,
        explanation: outcome
            .findings
            .first()
            .map(|finding| finding.explanation.clone())
            .or(last_reason)
            .unwrap_or_else(|| format!("replay: {}", outcome.verdict)),
        findings: finite_findings(&outcome.findings),
        suppressed: Vec::new(),
    };
    Replayed {
        release,
        record,
        paused: outcome.paused_at.is_some(),
    }
}

/// The change from pending to where the replay ended.
///
/// The replay observed the release over its recorded window, so its end is the state an
/// observing release moves to by the same action; the stored transition starts from pending,
/// the state the release is created in.
fn outcome_change(replayed: &Replayed, now: i64) -> Result<Change, GuardError> {
    let (action, reason) = imported_outcome(replayed.paused, &replayed.record);
    let to = vigil_deploy::next_state(ReleaseState::Observing, action)?;
    Ok(Change {
        release_id: replayed.release.id.clone(),
        expected: ReleaseState::Pending,
        to,
        action,
        actor: replayed.release.created_by.clone(),
        at: now,
        reason,
        deployed: None,
        notifications: Vec::new(),
        lease: None,
    })
}

/// How a replayed import ends, and why. A replay that ended with data missing never saw
/// what a pass needs: it stays held (paused, as a release the guard holds), never succeeded.
fn imported_outcome(paused: bool, record: &VerdictRecord) -> (Action, String) {
    if paused {
        return (
            Action::Pause,
            format!("imported and replayed: {}", record.explanation),
        );
    }
    if record.verdict == Verdict::InsufficientData {
        return (
            Action::Pause,
            format!(
                "imported and replayed: held, it never had the data to pass: {}",
                record.explanation
            ),
        );
    }
    (
        Action::Succeed,
        format!("imported and replayed: {}", record.explanation),
    )
}

/// A bundle's series and log counts as ingested chunks.
fn bundle_data(bundle: &Bundle) -> (MetricChunk, LogChunk) {
    let mut metrics = MetricChunk::default();
    for (metric, by_host) in &bundle.series {
        for (host, values) in by_host {
            let series = metrics.series.len() as u32;
            metrics.series.push(Arc::new(SeriesKey {
                app: bundle.app.clone(),
                host: host.clone(),
                metric: metric.clone(),
                counter: false,
            }));
            for (step, value) in values.iter().enumerate() {
                if let Some(value) = value {
                    metrics.points.push(Point {
                        series,
                        ms: bundle.time_of(step) * 1000,
                        value: *value,
                    });
                }
            }
        }
    }
    let mut logs = LogChunk::default();
    for (template, by_host) in &bundle.logs.counts {
        for (host, values) in by_host {
            for (step, value) in values.iter().enumerate() {
                let count = value.unwrap_or(0.0).round();
                if count >= 1.0 {
                    logs.counts.push(LogCount {
                        app: bundle.app.clone(),
                        host: host.clone(),
                        template: template.clone(),
                        ms: bundle.time_of(step) * 1000,
                        count: count.min(u32::MAX as f64) as u32,
                    });
                }
            }
        }
    }
    (metrics, logs)
}
