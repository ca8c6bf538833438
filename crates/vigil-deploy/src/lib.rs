//! Vigil's release layer: which state a release moves to on each action, which actions a
//! state allows, what a batch report must satisfy, and ([`spec`]) what a new release must.
//!
//! This crate holds the rules only; the store applies a transition atomically and the API and
//! the guard ask here first. Batches are reported by an external pipeline, or deployed by Vigil's
//! own executor, which alone enters `deploying` (`DeployBatch`) while a batch's hosts deploy.
#![forbid(unsafe_code)]

pub mod requests;
pub mod spec;

use std::collections::BTreeSet;

use vigil_core::release::{Action, Release, ReleaseState};
use vigil_core::validate::{self, Invalid};
use vigil_core::Batch;

/// Why a release request, a batch report or an action is refused. The transition variants
/// are conflicts with the release's state; the others are wrong in the request, and
/// [`DeployError::field`] names where.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DeployError {
    #[error("cannot {action} a release that is {state}")]
    NotAllowed {
        action: &'static str,
        state: ReleaseState,
    },
    #[error("batch {index} is not in the release's plan of {planned} batches")]
    UnknownBatch { index: u32, planned: usize },
    #[error("batch {index} was already reported deployed")]
    BatchAlreadyDeployed { index: u32 },
    #[error("batch {index} reported before batch {expected}")]
    BatchOutOfOrder { index: u32, expected: u32 },
    #[error(transparent)]
    Invalid(#[from] Invalid),
    #[error("hosts must name at least one host")]
    NoHost,
    #[error("hosts holds {count} hosts, more than {limit}")]
    TooManyHosts { count: usize, limit: usize },
    #[error("{field}: host {host:?} is listed twice")]
    HostListedTwice { field: String, host: String },
    #[error("batches[{index}] has no host")]
    EmptyBatch { index: usize },
    #[error("batches[{index}] names {host:?}, which is not in hosts")]
    BatchHostNotInRelease { index: usize, host: String },
    #[error("host {host:?} is in two batches")]
    HostInTwoBatches { host: String },
    #[error("every host must be in exactly one batch")]
    HostsNotAllPlanned,
    #[error("reference hosts is empty: use {{\"type\": \"none\"}} to compare with history")]
    EmptyReference,
    #[error("{field}: host {host:?} is both a release and a reference host")]
    ReferenceIsReleaseHost { field: String, host: String },
    #[error("step_seconds must be between 1 and 3600")]
    StepOutOfRange,
    #[error("observe_seconds must be between 0 and 30 days")]
    ObserveOutOfRange,
    #[error("host {host:?} is not a host of release {release}")]
    DeployedHostNotInRelease { host: String, release: String },
    #[error("host {host:?} was already deployed in an earlier batch")]
    HostAlreadyDeployed { host: String },
    #[error("batch {index} deployed at {at}, before batch {previous} at {previous_at}")]
    DeployedBeforePrevious {
        index: u32,
        at: i64,
        previous: u32,
        previous_at: i64,
    },
    #[error("{field} is empty: give label matchers such as rollouts_pod_template_hash=\"abc123\"")]
    EmptySelector { field: &'static str },
    #[error("{field} is {length} bytes, more than {limit}")]
    SelectorTooLong {
        field: &'static str,
        length: usize,
        limit: usize,
    },
    #[error(
        "batches: a release whose hosts are a selector has one batch, reported when the new \
         pods start; leave batches out"
    )]
    SelectorWithBatches,
    #[error("batch {index} of release {release} names hosts: its hosts are found by a selector")]
    SelectorBatchNamesHosts { index: u32, release: String },
    #[error("unknown state {name:?}")]
    UnknownState { name: String },
    #[error("signal: {signal:?} is not a finding of any verdict of release {release}")]
    UnknownFindingSignal { signal: String, release: String },
    #[error("onset: only a missed fault has an onset")]
    OnsetWithoutMissedFault,
    #[error(
        "onset: {onset} is outside the release's rollout: give a unix time from its first batch \
         ({from}) up to now ({now})"
    )]
    OnsetOutOfRange { onset: i64, from: i64, now: i64 },
    #[error("onset: release {release} has no deployed batch yet, so no fault began")]
    OnsetBeforeAnyBatch { release: String },
    #[error(
        "release {release} is shipped by vigil's executor, which reports its batches and its \
         rollback itself: {action} is not reported for it"
    )]
    ShippedByExecutor {
        release: String,
        action: &'static str,
    },
    #[error(
        "batch {index} was already reported deployed to hosts {hosts:?} at {at}: a repeated \
         report must give the same hosts and at"
    )]
    ReportDiffers {
        index: u32,
        hosts: Vec<String>,
        at: i64,
    },
}

impl DeployError {
    /// True when the release's state, not the request, refuses: the same request may be
    /// right at another time.
    pub fn is_conflict(&self) -> bool {
        matches!(
            self,
            DeployError::NotAllowed { .. }
                | DeployError::UnknownBatch { .. }
                | DeployError::BatchAlreadyDeployed { .. }
                | DeployError::BatchOutOfOrder { .. }
                | DeployError::ReportDiffers { .. }
                | DeployError::ShippedByExecutor { .. }
        )
    }

    /// The request field at fault (`hosts[3]`, `batches`, `settings.baseline_seconds`), or
    /// `state` for a conflict with the release's state.
    pub fn field(&self) -> String {
        match self {
            DeployError::NotAllowed { .. } | DeployError::ShippedByExecutor { .. } => {
                "state".to_string()
            }
            DeployError::UnknownBatch { .. }
            | DeployError::BatchAlreadyDeployed { .. }
            | DeployError::BatchOutOfOrder { .. }
            | DeployError::ReportDiffers { .. } => "index".to_string(),
            DeployError::Invalid(invalid) => invalid.field.clone(),
            DeployError::NoHost | DeployError::TooManyHosts { .. } => "hosts".to_string(),
            DeployError::HostListedTwice { field, .. }
            | DeployError::ReferenceIsReleaseHost { field, .. } => field.clone(),
            DeployError::EmptyBatch { index }
            | DeployError::BatchHostNotInRelease { index, .. } => {
                format!("batches[{index}]")
            }
            DeployError::HostInTwoBatches { .. } | DeployError::HostsNotAllPlanned => {
                "batches".to_string()
            }
            DeployError::EmptyReference => "reference.hosts".to_string(),
            DeployError::StepOutOfRange => "step_seconds".to_string(),
            DeployError::ObserveOutOfRange => "observe_seconds".to_string(),
            DeployError::DeployedHostNotInRelease { .. }
            | DeployError::HostAlreadyDeployed { .. } => "hosts".to_string(),
            DeployError::DeployedBeforePrevious { .. } => "at".to_string(),
            DeployError::UnknownState { .. } => "state".to_string(),
            DeployError::UnknownFindingSignal { .. } => "signal".to_string(),
            DeployError::OnsetWithoutMissedFault
            | DeployError::OnsetOutOfRange { .. }
            | DeployError::OnsetBeforeAnyBatch { .. } => "onset".to_string(),
            DeployError::EmptySelector { field } | DeployError::SelectorTooLong { field, .. } => {
                (*field).to_string()
            }
            DeployError::SelectorWithBatches => "batches".to_string(),
            DeployError::SelectorBatchNamesHosts { .. } => "hosts".to_string(),
        }
    }
}

/// The state an action leads to from `state`, or why it is refused.
pub fn next_state(state: ReleaseState, action: Action) -> Result<ReleaseState, DeployError> {
    use ReleaseState as S;
    let next = match (action, state) {
        (Action::Create, _) => None,
        (Action::DeployBatch, S::Pending | S::Observing) => Some(S::Deploying),
        (Action::BatchDeployed, S::Pending | S::Observing | S::Deploying) => Some(S::Observing),
        (Action::Pause, S::Pending | S::Deploying | S::Observing) => Some(S::Paused),
        (Action::Resume, S::Paused) => Some(S::Observing),
        (Action::Rollback, S::Pending | S::Deploying | S::Observing | S::Paused) => {
            Some(S::RollingBack)
        }
        (Action::RollbackDone, S::RollingBack) => Some(S::RolledBack),
        (Action::Cancel, S::Pending | S::Deploying | S::Observing | S::Paused) => {
            Some(S::Cancelled)
        }
        (Action::Succeed, S::Observing) => Some(S::Succeeded),
        (Action::Fail, S::Deploying | S::Observing | S::Paused | S::RollingBack) => Some(S::Failed),
        _ => None,
    };
    next.ok_or(DeployError::NotAllowed {
        action: action.as_str(),
        state,
    })
}

/// Checks that batch `index` may be reported deployed now: it is planned, not yet reported,
/// and comes right after the last one reported.
pub fn check_batch_report(release: &Release, index: u32) -> Result<(), DeployError> {
    let planned = release.spec.batches.len();
    if index as usize >= planned {
        return Err(DeployError::UnknownBatch { index, planned });
    }
    if release.deployed.iter().any(|batch| batch.index == index) {
        return Err(DeployError::BatchAlreadyDeployed { index });
    }
    let expected = release.deployed.len() as u32;
    if index != expected {
        return Err(DeployError::BatchOutOfOrder { index, expected });
    }
    next_state(release.state, Action::BatchDeployed)?;
    Ok(())
}

/// Checks a report that batch `batch.index` was deployed to `batch.hosts` at `batch.at` (Unix
/// seconds): the batch may be reported now ([`check_batch_report`]), its hosts are the
/// release's and not deployed before, and it comes no earlier than the batch before it.
pub fn check_deployed_batch(release: &Release, batch: &Batch) -> Result<(), DeployError> {
    check_batch_report(release, batch.index)?;
    if release.spec.hosts.selector().is_some() && !batch.hosts.is_empty() {
        return Err(DeployError::SelectorBatchNamesHosts {
            index: batch.index,
            release: release.id.clone(),
        });
    }
    for host in &batch.hosts {
        if !release.spec.hosts.names().contains(host) {
            return Err(DeployError::DeployedHostNotInRelease {
                host: host.clone(),
                release: release.id.clone(),
            });
        }
        if release
            .deployed
            .iter()
            .any(|earlier| earlier.hosts.contains(host))
        {
            return Err(DeployError::HostAlreadyDeployed { host: host.clone() });
        }
    }
    validate::time_ms(batch.at.saturating_mul(1000)).map_err(|problem| problem.at("at"))?;
    if let Some(last) = release.deployed.last() {
        if batch.at < last.at {
            return Err(DeployError::DeployedBeforePrevious {
                index: batch.index,
                at: batch.at,
                previous: last.index,
                previous_at: last.at,
            });
        }
    }
    Ok(())
}

/// Whether a report of an already reported batch repeats it: the same hosts (the planned ones
/// when it names none) and, when it gives one, the same time. A pipeline retries, and a
/// repeated report changes nothing.
pub fn repeats_report(
    release: &Release,
    reported: &Batch,
    hosts: Option<&[String]>,
    at: Option<i64>,
) -> bool {
    let planned = release
        .spec
        .batches
        .get(reported.index as usize)
        .map(|batch| batch.hosts.as_slice());
    let as_set = |hosts: &[String]| -> BTreeSet<String> { hosts.iter().cloned().collect() };
    hosts
        .or(planned)
        .is_some_and(|hosts| as_set(hosts) == as_set(&reported.hosts))
        && at.is_none_or(|at| at == reported.at)
}

/// Refuses what a pipeline or a person reports of a release Vigil's executor ships: its batches
/// deployed and its rollback done, which only the executor reports (a person still pauses,
/// resumes, rolls back and cancels it).
pub fn check_not_executor_report(
    release: &Release,
    shipped_by_executor: bool,
    action: Action,
) -> Result<(), DeployError> {
    if shipped_by_executor && matches!(action, Action::BatchDeployed | Action::RollbackDone) {
        return Err(DeployError::ShippedByExecutor {
            release: release.id.clone(),
            action: action.as_str(),
        });
    }
    Ok(())
}

/// True when every planned batch has been reported deployed.
pub fn all_batches_deployed(release: &Release) -> bool {
    release.deployed.len() >= release.spec.batches.len()
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use vigil_core::release::{PlannedBatch, ReferenceHosts, ReleaseSpec};
    use vigil_core::Batch;

    pub(crate) fn release(state: ReleaseState, deployed: usize) -> Release {
        Release {
            id: "r1".into(),
            spec: ReleaseSpec {
                app: "shop".into(),
                version: "2".into(),
                hosts: vec!["a".into(), "b".into()].into(),
                reference: ReferenceHosts::EveryOtherHost,
                batches: vec![
                    PlannedBatch {
                        hosts: vec!["a".into()],
                    },
                    PlannedBatch {
                        hosts: vec!["b".into()],
                    },
                ],
                step_seconds: 30,
                observe_seconds: 600,
                metrics: vec![],
                settings: Default::default(),
                rules: Vec::new(),
            },
            state,
            created_by: "ci".into(),
            created_at: 0,
            updated_at: 0,
            deployed: (0..deployed)
                .map(|index| Batch {
                    index: index as u32,
                    at: 100 * index as i64,
                    hosts: vec![],
                })
                .collect(),
            verdict: None,
            reason: String::new(),
        }
    }

    #[test]
    fn a_paused_release_takes_no_batch_until_resumed() {
        let paused = release(ReleaseState::Paused, 1);
        assert!(matches!(
            check_batch_report(&paused, 1),
            Err(DeployError::NotAllowed { .. })
        ));
        assert_eq!(
            next_state(ReleaseState::Paused, Action::Resume),
            Ok(ReleaseState::Observing)
        );
        assert!(check_batch_report(&release(ReleaseState::Observing, 1), 1).is_ok());
    }

    #[test]
    fn the_executor_deploys_a_batch_from_pending_or_observing_only() {
        for state in [ReleaseState::Pending, ReleaseState::Observing] {
            assert_eq!(
                next_state(state, Action::DeployBatch),
                Ok(ReleaseState::Deploying)
            );
        }
        for state in [
            ReleaseState::Deploying,
            ReleaseState::Paused,
            ReleaseState::RollingBack,
            ReleaseState::Succeeded,
        ] {
            assert!(matches!(
                next_state(state, Action::DeployBatch),
                Err(DeployError::NotAllowed { .. })
            ));
        }
        assert_eq!(
            next_state(ReleaseState::Deploying, Action::BatchDeployed),
            Ok(ReleaseState::Observing)
        );
        assert_eq!(
            next_state(ReleaseState::Deploying, Action::Pause),
            Ok(ReleaseState::Paused)
        );
    }

    #[test]
    fn batches_come_in_order_once() {
        let observing = release(ReleaseState::Observing, 1);
        assert_eq!(
            check_batch_report(&observing, 0),
            Err(DeployError::BatchAlreadyDeployed { index: 0 })
        );
        assert_eq!(
            check_batch_report(&release(ReleaseState::Pending, 0), 1),
            Err(DeployError::BatchOutOfOrder {
                index: 1,
                expected: 0
            })
        );
        assert_eq!(
            check_batch_report(&observing, 5),
            Err(DeployError::UnknownBatch {
                index: 5,
                planned: 2
            })
        );
    }

    fn report(index: u32, at: i64, hosts: &[&str]) -> Batch {
        Batch {
            index,
            at,
            hosts: hosts.iter().map(|host| host.to_string()).collect(),
        }
    }

    #[test]
    fn a_deployed_batch_names_new_hosts_of_the_release_in_time_order() {
        let observing = release(ReleaseState::Observing, 1);
        assert!(check_deployed_batch(&observing, &report(1, 100, &["b"])).is_ok());
        let stranger = check_deployed_batch(&observing, &report(1, 100, &["z"]))
            .expect_err("not a release host");
        assert_eq!(
            stranger.to_string(),
            "host \"z\" is not a host of release r1"
        );
        assert!(!stranger.is_conflict());
        let mut already = observing.clone();
        already.deployed[0].hosts = vec!["b".into()];
        assert_eq!(
            check_deployed_batch(&already, &report(1, 100, &["b"])),
            Err(DeployError::HostAlreadyDeployed { host: "b".into() })
        );
        let early = check_deployed_batch(&release(ReleaseState::Observing, 2), &report(2, 1, &[]));
        assert!(early.expect_err("unplanned").is_conflict());
        let mut later = release(ReleaseState::Observing, 1);
        later.deployed[0].at = 500;
        assert_eq!(
            check_deployed_batch(&later, &report(1, 100, &["b"]))
                .expect_err("before the previous batch")
                .to_string(),
            "batch 1 deployed at 100, before batch 0 at 500"
        );
        assert_eq!(
            check_deployed_batch(&observing, &report(1, -1, &["b"]))
                .expect_err("before 1970")
                .field(),
            "at"
        );
    }

    #[test]
    fn a_repeated_report_gives_the_same_hosts_and_time() {
        let mut observing = release(ReleaseState::Observing, 1);
        observing.deployed[0].hosts = vec!["a".into()];
        let reported = observing.deployed[0].clone();
        assert!(repeats_report(&observing, &reported, None, None));
        assert!(repeats_report(
            &observing,
            &reported,
            Some(&["a".into()]),
            Some(0)
        ));
        assert!(!repeats_report(
            &observing,
            &reported,
            Some(&["b".into()]),
            None
        ));
        assert!(!repeats_report(&observing, &reported, None, Some(7)));
    }

    #[test]
    fn terminal_states_allow_nothing() {
        let actions = [
            Action::BatchDeployed,
            Action::Pause,
            Action::Resume,
            Action::Rollback,
            Action::RollbackDone,
            Action::Cancel,
            Action::Succeed,
            Action::Fail,
        ];
        for state in ReleaseState::ALL
            .into_iter()
            .filter(|state| state.is_terminal())
        {
            for action in actions {
                assert!(next_state(state, action).is_err(), "{state} {action:?}");
            }
        }
    }

    #[test]
    fn only_the_executor_reports_the_batches_and_the_rollback_of_a_release_it_ships() {
        let shipped = release(ReleaseState::Observing, 1);
        for action in [Action::BatchDeployed, Action::RollbackDone] {
            let refused = check_not_executor_report(&shipped, true, action).unwrap_err();
            assert!(refused.is_conflict());
            assert_eq!(refused.field(), "state");
            assert!(refused.to_string().contains("executor"), "{refused}");
            assert!(check_not_executor_report(&shipped, false, action).is_ok());
        }
        for action in [
            Action::Pause,
            Action::Resume,
            Action::Rollback,
            Action::Cancel,
        ] {
            assert!(check_not_executor_report(&shipped, true, action).is_ok());
        }
    }
}
