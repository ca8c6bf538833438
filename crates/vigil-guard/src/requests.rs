//! A person's requests on releases as the guard layer turns them into store calls: which
//! releases a list selects, and the state change of an action with its notifications.

use vigil_core::release::{Action, Release};
use vigil_core::Batch;
use vigil_deploy::requests::{action_event, action_reason};
use vigil_deploy::DeployError;
use vigil_store::{Change, ReleaseFilter};

use crate::guard::{notifications_for, transition_change, GuardConfig};

/// Releases listed when a request names no limit.
pub const DEFAULT_LIST_LIMIT: usize = 100;
/// Most releases one list gives.
pub const MAX_LIST_LIMIT: usize = 1000;

/// The filter of a release list: an app (none or empty: every app), comma-separated states
/// (none: every state) and a limit (default 100, at most 1000).
pub fn release_filter(
    app: Option<String>,
    states_text: Option<&str>,
    limit: Option<usize>,
) -> Result<ReleaseFilter, DeployError> {
    Ok(ReleaseFilter {
        app: app.filter(|name| !name.trim().is_empty()),
        states: vigil_deploy::requests::parse_states(states_text)?,
        limit: limit.unwrap_or(DEFAULT_LIST_LIMIT).min(MAX_LIST_LIMIT),
    })
}

/// The change a person's action (pause, resume, roll back, cancel...) makes to `release`:
/// the transition the release layer allows, the reason (without one, the action and its
/// actor) and the notifications its event gives on the configured routes.
pub fn action_change(
    config: &GuardConfig,
    release: &Release,
    action: Action,
    actor: &str,
    reason: Option<String>,
    at: i64,
) -> Result<Change, DeployError> {
    let reason = action_reason(action, actor, reason);
    let notifications = match action_event(action) {
        Some(event) => notifications_for(
            &config.routes,
            &config.public_url,
            release,
            event,
            &format!(
                "{} {}: {} by {actor}",
                release.spec.app,
                release.spec.version,
                action.as_str(),
            ),
            &reason,
        ),
        None => Vec::new(),
    };
    Ok(Change {
        notifications,
        ..transition_change(release, action, actor.to_string(), at, reason)?
    })
}

/// The change a pipeline's report of `batch` deployed makes to `release`, once the release
/// layer accepts the batch's hosts and time and the transition.
pub fn batch_change(
    release: &Release,
    batch: Batch,
    actor: String,
    at: i64,
) -> Result<Change, DeployError> {
    vigil_deploy::check_deployed_batch(release, &batch)?;
    let reason = match release.spec.hosts.selector() {
        Some(selector) => format!(
            "batch {} deployed to the hosts labelled {selector}",
            batch.index
        ),
        None => format!(
            "batch {} deployed to {} hosts",
            batch.index,
            batch.hosts.len()
        ),
    };
    Ok(Change {
        deployed: Some(batch),
        ..transition_change(release, Action::BatchDeployed, actor, at, reason)?
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::assemble::tests::release;
    use vigil_core::release::{NotificationEvent, ReleaseState};

    #[test]
    fn a_list_filter_defaults_and_caps_its_limit_and_ignores_a_blank_app() {
        let filter = release_filter(Some(" ".to_string()), Some("paused"), None).unwrap();
        assert_eq!(filter.app, None);
        assert_eq!(filter.states, vec![ReleaseState::Paused]);
        assert_eq!(filter.limit, 100);
        let capped = release_filter(Some("shop".to_string()), None, Some(5000)).unwrap();
        assert_eq!(capped.app.as_deref(), Some("shop"));
        assert_eq!(capped.limit, 1000);
        assert!(release_filter(None, Some("gone"), None).is_err());
    }

    fn config_with_every_event() -> GuardConfig {
        GuardConfig {
            public_url: "https://vigil.example/".to_string(),
            routes: vec![crate::Route {
                channel: "ops".to_string(),
                events: vec![
                    NotificationEvent::Paused,
                    NotificationEvent::Resumed,
                    NotificationEvent::RolledBack,
                ],
            }],
            ..GuardConfig::default()
        }
    }

    #[test]
    fn a_pause_notifies_with_the_actor_and_a_default_reason() {
        let change = action_change(
            &config_with_every_event(),
            &release(),
            Action::Pause,
            "ana",
            None,
            500,
        )
        .unwrap();
        assert_eq!(change.to, ReleaseState::Paused);
        assert_eq!(change.expected, ReleaseState::Observing);
        assert_eq!(change.reason, "pause by ana");
        assert_eq!(change.at, 500);
        assert_eq!(change.notifications.len(), 1);
        assert_eq!(change.notifications[0].title, "shop 2: pause by ana");
        assert_eq!(
            change.notifications[0].link,
            "https://vigil.example/releases/r1"
        );
    }

    #[test]
    fn a_refused_action_or_a_rollback_done_notifies_nothing() {
        let config = config_with_every_event();
        assert!(action_change(&config, &release(), Action::Resume, "ana", None, 1).is_err());
        let mut rolling_back = release();
        rolling_back.state = ReleaseState::RollingBack;
        let done =
            action_change(&config, &rolling_back, Action::RollbackDone, "ci", None, 1).unwrap();
        assert!(done.notifications.is_empty());
    }

    #[test]
    fn a_batch_report_becomes_a_change_only_when_the_release_layer_accepts_it() {
        let mut pending = release();
        pending.state = ReleaseState::Pending;
        pending.deployed.clear();
        let batch = Batch {
            index: 0,
            at: 100,
            hosts: vec!["a".to_string()],
        };
        let change = batch_change(&pending, batch.clone(), "ci".to_string(), 120).unwrap();
        assert_eq!(change.to, ReleaseState::Observing);
        assert_eq!(change.reason, "batch 0 deployed to 1 hosts");
        assert_eq!(change.deployed, Some(batch));
        let stranger = Batch {
            index: 0,
            at: 100,
            hosts: vec!["z".to_string()],
        };
        assert!(batch_change(&pending, stranger, "ci".to_string(), 120).is_err());
    }
}
