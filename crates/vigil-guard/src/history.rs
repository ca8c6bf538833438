//! A team's own stored releases as labelled history, replayed through the analysis (with the
//! learned stage it is given) and scored as a corpus is: overall, per cause and over time.
//!
//! Labels come from what people said and did: feedback confirming a fault or reporting a missed
//! one (its onset), a rollback after a pause (a confirmation), a false alarm, and a release that
//! succeeded with no feedback at all (healthy, unreviewed). Releases still running, and finished
//! ones nothing labels (cancelled, failed, paused without feedback), are left out and counted.
//! Labelling ([`label_release`]) and scoring ([`score_history`]) are pure; [`replay_history`]
//! reads the store and rebuilds each release's window as the pages do ([`Guard::window`]), one
//! release at a time, so memory holds one window whatever the history's length.

use std::collections::{BTreeMap, HashMap};

use serde::Serialize;
use vigil_analysis::score::{self, Decision, Figures, Label};
use vigil_analysis::{replay_staged, Stage};
use vigil_core::release::{
    Action, Feedback, FeedbackKind, Release, ReleaseState, Transition, VerdictRecord,
};
use vigil_core::{Signal, Verdict};
use vigil_store::{ReleaseFilter, Store};

use crate::error::GuardError;
use crate::guard::Guard;
use crate::intake::Intake;
use crate::window::release_settings;

/// The cause of a healthy release.
pub const HEALTHY_CAUSE: &str = "healthy";

/// Span of release creation times up to which the figures over time are per day; beyond it,
/// per week.
pub const DAILY_SPAN_SECONDS: i64 = 45 * 86_400;

const DAY_SECONDS: i64 = 86_400;
const WEEK_SECONDS: i64 = 7 * DAY_SECONDS;
/// 1970-01-01 was a Thursday: weeks start on the Monday 4 days later than the epoch's week.
const MONDAY_OFFSET_SECONDS: i64 = 4 * DAY_SECONDS;

/// What a stored release is, as history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum HistoryKind {
    Fault,
    Healthy,
}

impl HistoryKind {
    pub fn as_str(&self) -> &'static str {
        match self {
            HistoryKind::Fault => "fault",
            HistoryKind::Healthy => "healthy",
        }
    }
}

/// The label of one finished release.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HistoryLabel {
    pub kind: HistoryKind,
    /// Someone said so (feedback, or a rollback after a pause); false for a success nobody
    /// reviewed.
    pub reviewed: bool,
    /// A metric's name, `log`, `silence`, `rule`, `alert`, `unknown` (a fault with no finding
    /// to blame), or [`HEALTHY_CAUSE`].
    pub cause: String,
    /// When the fault began (Unix seconds): the missed-fault feedback's onset, else the first
    /// batch's deploy, from which time to pause is measured. None for a healthy release.
    pub onset: Option<i64>,
}

/// What history makes of a stored release.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Labelled {
    /// Pending, deploying or observing: left out.
    Running,
    /// Finished, but nothing says whether it was faulty: left out.
    Unlabelled,
    Labelled(HistoryLabel),
}

/// The label of `release` from its transitions, feedback (in the order added) and verdicts.
///
/// The latest feedback on the release as a whole decides; else feedback on its findings (any
/// confirmed or missed fault makes it a fault, false alarms alone make it healthy); else a
/// rollback after a pause confirms a fault; else a release that succeeded is healthy,
/// unreviewed.
pub fn label_release(
    release: &Release,
    transitions: &[Transition],
    feedback: &[Feedback],
    verdicts: &[VerdictRecord],
) -> Labelled {
    if matches!(
        release.state,
        ReleaseState::Pending | ReleaseState::Deploying | ReleaseState::Observing
    ) {
        return Labelled::Running;
    }
    let first_deploy = release.deployed.first().map(|batch| batch.at);
    let fault = |onset: Option<i64>, signal: Option<&str>| {
        Labelled::Labelled(HistoryLabel {
            kind: HistoryKind::Fault,
            reviewed: true,
            cause: signal
                .map(cause_of_signal_label)
                .or_else(|| deciding_cause(verdicts))
                .unwrap_or_else(|| "unknown".to_owned()),
            onset: onset.or(first_deploy),
        })
    };
    let healthy = |reviewed: bool| {
        Labelled::Labelled(HistoryLabel {
            kind: HistoryKind::Healthy,
            reviewed,
            cause: HEALTHY_CAUSE.to_owned(),
            onset: None,
        })
    };
    let on_release = feedback
        .iter()
        .rev()
        .find(|given| given.signal.as_deref().unwrap_or_default().is_empty());
    if let Some(given) = on_release {
        return match given.kind {
            FeedbackKind::ConfirmFault | FeedbackKind::MissedFault => fault(given.onset, None),
            FeedbackKind::FalseAlarm => healthy(true),
        };
    }
    let on_fault_finding = feedback
        .iter()
        .find(|given| given.kind != FeedbackKind::FalseAlarm);
    if let Some(given) = on_fault_finding {
        return fault(given.onset, given.signal.as_deref());
    }
    if !feedback.is_empty() {
        return healthy(true);
    }
    if rolled_back_after_pause(transitions) {
        return fault(None, None);
    }
    if release.state == ReleaseState::Succeeded {
        return healthy(false);
    }
    Labelled::Unlabelled
}

/// True when a rollback followed a pause.
fn rolled_back_after_pause(transitions: &[Transition]) -> bool {
    let Some(paused) = transitions
        .iter()
        .position(|transition| transition.to == ReleaseState::Paused)
    else {
        return false;
    };
    transitions[paused..].iter().any(|transition| {
        transition.action == Action::Rollback
            || matches!(
                transition.to,
                ReleaseState::RollingBack | ReleaseState::RolledBack
            )
    })
}

/// The cause named by the deciding verdict's first finding.
fn deciding_cause(verdicts: &[VerdictRecord]) -> Option<String> {
    let deciding = vigil_deploy::requests::deciding_verdict(verdicts)?;
    let finding = deciding.findings.first()?;
    Some(match &finding.signal {
        Signal::Metric { name } => name.clone(),
        Signal::Log { .. } => "log".to_owned(),
        Signal::Silence => "silence".to_owned(),
        Signal::Rule { .. } => "rule".to_owned(),
        Signal::Alert { .. } => "alert".to_owned(),
    })
}

/// The cause of a finding given by its signal's label (`Signal::label`).
fn cause_of_signal_label(label: &str) -> String {
    for kind in ["log", "rule", "alert"] {
        if label
            .strip_prefix(kind)
            .is_some_and(|rest| rest.starts_with(':'))
        {
            return kind.to_owned();
        }
    }
    label.to_owned()
}

/// One release of the history, as replayed.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HistoryRow {
    pub id: String,
    pub app: String,
    pub created_at: i64,
    #[serde(flatten)]
    pub label: HistoryLabel,
    /// The replay's verdict: `fault` once paused, else `anomaly` once recommended, else the
    /// last step's; none when the release could not be replayed.
    pub verdict: Option<Verdict>,
    pub paused_at: Option<i64>,
    pub recommended_at: Option<i64>,
    /// Why it could not be replayed (its data pruned, its settings invalid...).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// The figures of one cause.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CauseFigures {
    pub cause: String,
    pub figures: Figures,
}

/// The figures of the releases created in one day or week.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PeriodFigures {
    /// Start of the period, Unix seconds (UTC midnight; a week starts on Monday).
    pub start: i64,
    pub figures: Figures,
}

/// How many releases the history holds, by what became of them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct HistoryCounts {
    /// Every stored release looked at.
    pub stored: usize,
    /// Left out: still running.
    pub running: usize,
    /// Left out: finished, but nothing labels them.
    pub unlabelled: usize,
    pub faults: usize,
    /// Healthy releases marked so (a false alarm).
    pub healthy_reviewed: usize,
    /// Healthy releases that succeeded with no feedback.
    pub healthy_unreviewed: usize,
    /// Labelled releases whose replay failed (scored as missing).
    pub failed: usize,
}

/// A replay of the stored history, scored.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HistoryReport {
    /// The version of the model the stage applied, none for the funnel alone.
    pub model_version: Option<i64>,
    pub counts: HistoryCounts,
    pub overall: Figures,
    /// Per cause, the causes in name order (`healthy` among them).
    pub per_cause: Vec<CauseFigures>,
    /// `day` or `week`, chosen by the span of the releases' creation times.
    pub period: &'static str,
    /// Per period with releases, oldest first.
    pub over_time: Vec<PeriodFigures>,
    /// Every labelled release, oldest first.
    pub releases: Vec<HistoryRow>,
}

/// Scores replayed rows: overall, per cause, and per day or week of creation (per day when the
/// rows' creation times span at most [`DAILY_SPAN_SECONDS`]). Rows without a verdict count as
/// missing.
pub fn score_history(
    rows: Vec<HistoryRow>,
    counts: HistoryCounts,
    model_version: Option<i64>,
) -> HistoryReport {
    let labels: Vec<Label> = rows.iter().map(score_label).collect();
    let decisions: HashMap<String, Decision> = rows
        .iter()
        .filter_map(|row| {
            let verdict = row.verdict?;
            Some((
                row.id.clone(),
                Decision {
                    verdict,
                    paused_at: row.paused_at,
                },
            ))
        })
        .collect();
    let figures_of = |selected: &dyn Fn(&HistoryRow) -> bool| {
        let subset: Vec<Label> = rows
            .iter()
            .zip(&labels)
            .filter(|(row, _)| selected(row))
            .map(|(_, label)| label.clone())
            .collect();
        score::score(&subset, &decisions).overall
    };
    let mut causes: Vec<&str> = rows.iter().map(|row| row.label.cause.as_str()).collect();
    causes.sort_unstable();
    causes.dedup();
    let per_cause = causes
        .into_iter()
        .map(|cause| CauseFigures {
            cause: cause.to_owned(),
            figures: figures_of(&|row: &HistoryRow| row.label.cause == cause),
        })
        .collect();
    let first = rows.iter().map(|row| row.created_at).min().unwrap_or(0);
    let last = rows.iter().map(|row| row.created_at).max().unwrap_or(0);
    let daily = last - first <= DAILY_SPAN_SECONDS;
    let period_of = |at: i64| {
        if daily {
            at.div_euclid(DAY_SECONDS) * DAY_SECONDS
        } else {
            (at - MONDAY_OFFSET_SECONDS).div_euclid(WEEK_SECONDS) * WEEK_SECONDS
                + MONDAY_OFFSET_SECONDS
        }
    };
    let mut periods: BTreeMap<i64, ()> = BTreeMap::new();
    for row in &rows {
        periods.insert(period_of(row.created_at), ());
    }
    let over_time = periods
        .into_keys()
        .map(|start| PeriodFigures {
            start,
            figures: figures_of(&|row: &HistoryRow| period_of(row.created_at) == start),
        })
        .collect();
    HistoryReport {
        model_version,
        counts,
        overall: score::score(&labels, &decisions).overall,
        per_cause,
        period: if daily { "day" } else { "week" },
        over_time,
        releases: rows,
    }
}

/// A row's label in the corpus' terms: a fault with its cause and onset; a healthy release by
/// whether it was reviewed.
fn score_label(row: &HistoryRow) -> Label {
    let reviewed = if row.label.reviewed {
        "reviewed"
    } else {
        "unreviewed"
    };
    Label {
        id: row.id.clone(),
        label: row.label.kind.as_str().to_owned(),
        cause: (row.label.kind == HistoryKind::Fault).then(|| row.label.cause.clone()),
        onset: row.label.onset,
        confounders: Some(vec![reviewed.to_owned()]),
    }
}

/// What to replay: the releases of one app or of all, through `stage`.
#[derive(Debug, Clone, Default)]
pub struct HistoryRequest {
    pub app: Option<String>,
    pub stage: Stage,
}

/// Labels every stored release (of the request's app), replays each labelled one through the
/// request's stage on its window rebuilt from the store, and scores them. `progress` hears
/// `(done, total)` once the labelled releases are known and after each replay. Reads every
/// step of every release's window: run it on a thread of its own.
pub fn replay_history(
    store: &dyn Store,
    guard: &Guard,
    intake: &Intake,
    request: &HistoryRequest,
    mut progress: impl FnMut(usize, usize),
) -> Result<HistoryReport, GuardError> {
    let (labelled, mut counts) = labelled_history(store, request.app.clone())?;
    let total = labelled.len();
    progress(0, total);
    let mut rows = Vec::with_capacity(total);
    for (done, (release, label)) in labelled.into_iter().enumerate() {
        let mut row = HistoryRow {
            id: release.id.clone(),
            app: release.spec.app.clone(),
            created_at: release.created_at,
            label,
            verdict: None,
            paused_at: None,
            recommended_at: None,
            error: None,
        };
        match replay_release(guard, intake, &release, &request.stage) {
            Ok(outcome) => {
                row.verdict = Some(outcome.verdict);
                row.paused_at = outcome.paused_at;
                row.recommended_at = outcome.recommended_at;
            }
            Err(error) => {
                tracing::warn!(release = %release.id, %error, "history replay skipped a release");
                counts.failed += 1;
                row.error = Some(error.to_string());
            }
        }
        rows.push(row);
        progress(done + 1, total);
    }
    let model_version = request.stage.model().map(|staged| staged.version);
    Ok(score_history(rows, counts, model_version))
}

/// The finished releases of `app` (every app's: none) that history labels, oldest first, and
/// the counts of what it left out.
pub fn labelled_history(
    store: &dyn Store,
    app: Option<String>,
) -> Result<(Vec<(Release, HistoryLabel)>, HistoryCounts), GuardError> {
    let mut releases = store.releases(&ReleaseFilter {
        app,
        ..ReleaseFilter::default()
    })?;
    // Oldest first, as the figures over time read.
    releases.reverse();
    let mut counts = HistoryCounts {
        stored: releases.len(),
        ..HistoryCounts::default()
    };
    let mut labelled = Vec::new();
    for release in releases {
        let transitions = store.transitions(&release.id)?;
        let feedback = store.feedback(&release.id)?;
        let verdicts = store.verdicts(&release.id)?;
        match label_release(&release, &transitions, &feedback, &verdicts) {
            Labelled::Running => counts.running += 1,
            Labelled::Unlabelled => counts.unlabelled += 1,
            Labelled::Labelled(label) => {
                match (&label.kind, label.reviewed) {
                    (HistoryKind::Fault, _) => counts.faults += 1,
                    (HistoryKind::Healthy, true) => counts.healthy_reviewed += 1,
                    (HistoryKind::Healthy, false) => counts.healthy_unreviewed += 1,
                }
                labelled.push((release, label));
            }
        }
    }
    Ok((labelled, counts))
}

/// A stored release as a bundle of its stored window, with its own settings, and its label
/// as corpus labels are written: what `vigil train` learns from.
pub fn stored_example(
    guard: &Guard,
    intake: &Intake,
    release: &Release,
    label: &HistoryLabel,
) -> Result<(vigil_core::Bundle, vigil_analysis::Settings, Label), GuardError> {
    let (bundle, settings) = stored_window(guard, intake, release)?;
    let corpus_label = Label {
        id: release.id.clone(),
        label: label.kind.as_str().to_owned(),
        cause: (label.kind == HistoryKind::Fault).then(|| label.cause.clone()),
        onset: label.onset,
        confounders: None,
    };
    Ok((bundle, settings, corpus_label))
}

/// One release replayed on its stored window with its own settings; the window is dropped
/// before the next release's is read.
fn replay_release(
    guard: &Guard,
    intake: &Intake,
    release: &Release,
    stage: &Stage,
) -> Result<vigil_analysis::ReplayOutcome, GuardError> {
    let (bundle, settings) = stored_window(guard, intake, release)?;
    Ok(replay_staged(&bundle, &settings, stage, |_| {}))
}

/// A stored release's window as a bundle, with the release's own settings.
fn stored_window(
    guard: &Guard,
    intake: &Intake,
    release: &Release,
) -> Result<(vigil_core::Bundle, vigil_analysis::Settings), GuardError> {
    let settings = release_settings(release)?;
    let bundle = guard.window(release, intake)?;
    Ok((bundle, settings))
}

#[cfg(test)]
mod tests;
