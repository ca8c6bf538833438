//! Vigil's release layer: which state a release moves to on each action, and which actions a
//! state allows.
//!
//! This crate holds the rules only; the store applies a transition atomically and the API and
//! the guard ask here first. Batches are reported by an external pipeline (Vigil's own
//! executor comes later), so `deploying` is not entered yet.
#![forbid(unsafe_code)]

use vigil_core::release::{Action, Release, ReleaseState};

/// Why an action cannot be taken on a release in its state.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TransitionError {
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
}

/// The state an action leads to from `state`, or why it is refused.
pub fn next_state(state: ReleaseState, action: Action) -> Result<ReleaseState, TransitionError> {
    use ReleaseState as S;
    let next = match (action, state) {
        (Action::Create, _) => None,
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
    next.ok_or(TransitionError::NotAllowed {
        action: action.as_str(),
        state,
    })
}

/// Checks that batch `index` may be reported deployed now: it is planned, not yet reported,
/// and comes right after the last one reported.
pub fn check_batch_report(release: &Release, index: u32) -> Result<(), TransitionError> {
    let planned = release.spec.batches.len();
    if index as usize >= planned {
        return Err(TransitionError::UnknownBatch { index, planned });
    }
    if release.deployed.iter().any(|batch| batch.index == index) {
        return Err(TransitionError::BatchAlreadyDeployed { index });
    }
    let expected = release.deployed.len() as u32;
    if index != expected {
        return Err(TransitionError::BatchOutOfOrder { index, expected });
    }
    next_state(release.state, Action::BatchDeployed)?;
    Ok(())
}

/// True when every planned batch has been reported deployed.
pub fn all_batches_deployed(release: &Release) -> bool {
    release.deployed.len() >= release.spec.batches.len()
}

#[cfg(test)]
mod tests {
    use super::*;
    use vigil_core::release::{PlannedBatch, ReferenceHosts, ReleaseSpec};
    use vigil_core::Batch;

    fn release(state: ReleaseState, deployed: usize) -> Release {
        Release {
            id: "r1".into(),
            spec: ReleaseSpec {
                app: "shop".into(),
                version: "2".into(),
                hosts: vec!["a".into(), "b".into()],
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
            Err(TransitionError::NotAllowed { .. })
        ));
        assert_eq!(
            next_state(ReleaseState::Paused, Action::Resume),
            Ok(ReleaseState::Observing)
        );
        assert!(check_batch_report(&release(ReleaseState::Observing, 1), 1).is_ok());
    }

    #[test]
    fn batches_come_in_order_once() {
        let observing = release(ReleaseState::Observing, 1);
        assert_eq!(
            check_batch_report(&observing, 0),
            Err(TransitionError::BatchAlreadyDeployed { index: 0 })
        );
        assert_eq!(
            check_batch_report(&release(ReleaseState::Pending, 0), 1),
            Err(TransitionError::BatchOutOfOrder {
                index: 1,
                expected: 0
            })
        );
        assert_eq!(
            check_batch_report(&observing, 5),
            Err(TransitionError::UnknownBatch {
                index: 5,
                planned: 2
            })
        );
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
}
