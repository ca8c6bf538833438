//! Release orders and everything the release layer records about them: state, batches,
//! transitions, verdicts, feedback, notifications and API tokens.
//!
//! These are plain values shared by the store, the guard and the API; the rules of which
//! transition is allowed live in `vigil-deploy`.

use serde::{Deserialize, Serialize};

use crate::model::{Batch, MetricMeta};
use crate::verdict::{Finding, Verdict};

/// Where a release stands. `Observing` covers the time between batches and after the last one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReleaseState {
    /// Created; no batch deployed yet.
    Pending,
    /// A batch is being deployed (Vigil's own executor only).
    Deploying,
    /// Deployed batches are being watched; the guard judges the release at every step.
    Observing,
    /// Stopped by the guard or by a person: no further batch may start.
    Paused,
    RollingBack,
    RolledBack,
    /// Every batch deployed and the observation ended without a fault.
    Succeeded,
    Failed,
    Cancelled,
}

impl ReleaseState {
    pub fn as_str(self) -> &'static str {
        match self {
            ReleaseState::Pending => "pending",
            ReleaseState::Deploying => "deploying",
            ReleaseState::Observing => "observing",
            ReleaseState::Paused => "paused",
            ReleaseState::RollingBack => "rolling_back",
            ReleaseState::RolledBack => "rolled_back",
            ReleaseState::Succeeded => "succeeded",
            ReleaseState::Failed => "failed",
            ReleaseState::Cancelled => "cancelled",
        }
    }

    /// Every state, for parsing and for documentation.
    pub const ALL: [ReleaseState; 9] = [
        ReleaseState::Pending,
        ReleaseState::Deploying,
        ReleaseState::Observing,
        ReleaseState::Paused,
        ReleaseState::RollingBack,
        ReleaseState::RolledBack,
        ReleaseState::Succeeded,
        ReleaseState::Failed,
        ReleaseState::Cancelled,
    ];

    pub fn parse(text: &str) -> Option<ReleaseState> {
        ReleaseState::ALL
            .into_iter()
            .find(|state| state.as_str() == text)
    }

    /// No transition leaves a terminal state.
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            ReleaseState::RolledBack
                | ReleaseState::Succeeded
                | ReleaseState::Failed
                | ReleaseState::Cancelled
        )
    }
}

impl std::fmt::Display for ReleaseState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Which hosts the release hosts are compared with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ReferenceHosts {
    /// These hosts keep the old version for the whole window.
    Hosts { hosts: Vec<String> },
    /// The app's hosts whose labels match these label matchers
    /// (`rollouts_pod_template_hash="def456"`), found again at every step.
    Selector { selector: String },
    /// Every host of the app that sends data and is not a release host.
    EveryOtherHost,
    /// No reference group: each host is compared with its own history.
    None,
    /// The release's own hosts not deployed yet (Vigil's executor's default): the group
    /// shrinks as batches deploy; once every host is deployed, each host is compared with its
    /// own history as with [`ReferenceHosts::None`].
    NotYetDeployed,
}

/// The hosts that get the new version: named, or the app's hosts whose labels match a selector
/// (`{"selector": "rollouts_pod_template_hash=\"abc123\""}`), found again at every step as
/// pods come and go. In JSON, a list of names or an object with `selector`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum ReleaseHosts {
    Names(Vec<String>),
    Selector { selector: String },
}

impl ReleaseHosts {
    /// The named hosts; none for a selector.
    pub fn names(&self) -> &[String] {
        match self {
            ReleaseHosts::Names(names) => names,
            ReleaseHosts::Selector { .. } => &[],
        }
    }

    /// The label matchers, for a selector.
    pub fn selector(&self) -> Option<&str> {
        match self {
            ReleaseHosts::Names(_) => None,
            ReleaseHosts::Selector { selector } => Some(selector),
        }
    }
}

impl From<Vec<String>> for ReleaseHosts {
    fn from(names: Vec<String>) -> ReleaseHosts {
        ReleaseHosts::Names(names)
    }
}

impl<'de> Deserialize<'de> for ReleaseHosts {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct SelectorObject {
            selector: String,
        }
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Sent {
            Names(Vec<String>),
            Selector(SelectorObject),
        }
        match Sent::deserialize(deserializer) {
            Ok(Sent::Names(names)) => Ok(ReleaseHosts::Names(names)),
            Ok(Sent::Selector(object)) => Ok(ReleaseHosts::Selector {
                selector: object.selector,
            }),
            Err(_) => Err(serde::de::Error::custom(
                "must be a list of host names or an object {\"selector\": \"label matchers\"}",
            )),
        }
    }
}

/// One planned batch: the hosts it deploys to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlannedBatch {
    pub hosts: Vec<String>,
}

/// What a person or a pipeline asks for when creating a release.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReleaseSpec {
    pub app: String,
    pub version: String,
    /// The hosts that get the new version, in the order of the batch plan, or the selector
    /// that finds them.
    pub hosts: ReleaseHosts,
    pub reference: ReferenceHosts,
    /// Batches in order; their hosts together are `hosts`. A selector release has one batch
    /// naming no host: the pipeline reports it when the new pods start.
    pub batches: Vec<PlannedBatch>,
    /// Analysis step, in seconds.
    pub step_seconds: i64,
    /// How long to keep watching after the last batch, in seconds.
    pub observe_seconds: i64,
    /// Metadata of the metrics this release is judged on; metrics not listed get
    /// [`MetricMeta`] defaults (either direction, not critical).
    #[serde(default)]
    pub metrics: Vec<MetricMeta>,
    /// Overrides of the analysis settings (a JSON object of `vigil-analysis` settings fields).
    #[serde(default)]
    pub settings: serde_json::Map<String, serde_json::Value>,
    /// The rules this release is judged by besides the analysis: its own, then its app's whose
    /// names it does not give, copied when it was created (`vigil_core::rules`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rules: Vec<crate::rules::Rule>,
}

/// A release order with its current state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Release {
    pub id: String,
    pub spec: ReleaseSpec,
    pub state: ReleaseState,
    /// Who created it (the token's name).
    pub created_by: String,
    /// Unix seconds.
    pub created_at: i64,
    pub updated_at: i64,
    /// Batches reported or executed so far, in order.
    pub deployed: Vec<Batch>,
    /// The latest verdict of the guard, if any.
    pub verdict: Option<Verdict>,
    /// One line: why the release is in its state (the pause reason, the missing data...).
    pub reason: String,
}

impl ReleaseSpec {
    /// True when the release or reference group is given by a label selector.
    pub fn uses_selectors(&self) -> bool {
        self.hosts.selector().is_some() || matches!(self.reference, ReferenceHosts::Selector { .. })
    }
}

impl Release {
    /// Start of the data window: an hour before the first batch (or before creation while no
    /// batch was deployed), given the baseline length.
    pub fn window_start(&self, baseline_seconds: i64) -> i64 {
        let first = self
            .deployed
            .first()
            .map(|batch| batch.at)
            .unwrap_or(self.created_at);
        first - baseline_seconds
    }
}

/// What made a release change state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    Create,
    /// Vigil's executor starts deploying a batch (it sent the batch's hosts their tasks).
    DeployBatch,
    BatchDeployed,
    Pause,
    Resume,
    Rollback,
    RollbackDone,
    Cancel,
    Succeed,
    Fail,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Create => "create",
            Action::DeployBatch => "deploy_batch",
            Action::BatchDeployed => "batch_deployed",
            Action::Pause => "pause",
            Action::Resume => "resume",
            Action::Rollback => "rollback",
            Action::RollbackDone => "rollback_done",
            Action::Cancel => "cancel",
            Action::Succeed => "succeed",
            Action::Fail => "fail",
        }
    }
}

/// One audited state change: who, when, why.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Transition {
    pub release_id: String,
    /// 1, 2, ... per release.
    pub seq: i64,
    pub from: ReleaseState,
    pub to: ReleaseState,
    pub action: Action,
    /// The token name of a person or pipeline, or `guard` for Vigil itself.
    pub actor: String,
    pub at: i64,
    pub reason: String,
}

/// The guard's verdict at one step, with its evidence.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VerdictRecord {
    pub release_id: String,
    /// Unix seconds of the step judged.
    pub at: i64,
    pub verdict: Verdict,
    pub findings: Vec<Finding>,
    pub explanation: String,
    /// The findings the learned stage set aside at that step, each with its reason.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub suppressed: Vec<crate::verdict::Suppressed>,
}

/// What people say about a release's outcome; it trains the next model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FeedbackKind {
    /// The pause was right: the release was faulty.
    ConfirmFault,
    /// The pause or recommendation was wrong.
    FalseAlarm,
    /// The release was faulty and Vigil let it pass.
    MissedFault,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Feedback {
    pub release_id: String,
    pub kind: FeedbackKind,
    #[serde(default)]
    pub note: String,
    pub actor: String,
    pub at: i64,
    /// The finding it is about, by its signal's label ([`crate::Signal::label`]); none for
    /// the release as a whole.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signal: Option<String>,
    /// For a missed fault: Unix time at which the fault began.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub onset: Option<i64>,
}

/// The events people are told about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NotificationEvent {
    Paused,
    Recommendation,
    Resumed,
    RolledBack,
}

impl NotificationEvent {
    pub fn as_str(self) -> &'static str {
        match self {
            NotificationEvent::Paused => "paused",
            NotificationEvent::Recommendation => "recommendation",
            NotificationEvent::Resumed => "resumed",
            NotificationEvent::RolledBack => "rolled_back",
        }
    }
}

/// A message to send, as written into the outbox in the same transaction as its cause.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NewNotification {
    pub release_id: String,
    pub event: NotificationEvent,
    /// Name of the configured channel to send it to.
    pub channel: String,
    /// One-line summary, the release link and the details, as the sender formats them.
    pub title: String,
    pub text: String,
    pub link: String,
}

/// Where an outbox item stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryState {
    Pending,
    Sent,
    /// Given up after the last retry.
    Dead,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OutboxItem {
    pub id: i64,
    pub notification: NewNotification,
    pub created_at: i64,
    pub state: DeliveryState,
    pub attempts: i64,
    /// Unix seconds before which it is not retried.
    pub next_attempt_at: i64,
    pub last_error: String,
}

/// What a token may do. Each role can do what the ones before it can, but `Ingest`, which can
/// only push data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Ingest,
    Viewer,
    Operator,
    Admin,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Ingest => "ingest",
            Role::Viewer => "viewer",
            Role::Operator => "operator",
            Role::Admin => "admin",
        }
    }

    pub fn parse(text: &str) -> Option<Role> {
        [Role::Ingest, Role::Viewer, Role::Operator, Role::Admin]
            .into_iter()
            .find(|role| role.as_str() == text)
    }

    /// True when a token of this role may do what `needed` allows.
    pub fn allows(self, needed: Role) -> bool {
        match (self, needed) {
            (Role::Ingest, Role::Ingest) => true,
            (Role::Ingest, _) => false,
            (_, Role::Ingest) => self == Role::Admin,
            _ => self >= needed,
        }
    }
}

/// A stored API token: only its hash is kept.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiToken {
    pub id: i64,
    pub name: String,
    pub role: Role,
    /// Hex SHA-256 of the secret.
    pub hash: String,
    pub created_at: i64,
    /// When the token was revoked; a revoked token is refused everywhere.
    #[serde(default)]
    pub revoked_at: Option<i64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_allow_what_they_should() {
        assert!(Role::Admin.allows(Role::Operator));
        assert!(Role::Operator.allows(Role::Viewer));
        assert!(!Role::Viewer.allows(Role::Operator));
        assert!(!Role::Ingest.allows(Role::Viewer));
        assert!(Role::Ingest.allows(Role::Ingest));
        assert!(!Role::Operator.allows(Role::Ingest));
        assert!(Role::Admin.allows(Role::Ingest));
    }

    #[test]
    fn states_parse_back() {
        for state in ReleaseState::ALL {
            assert_eq!(ReleaseState::parse(state.as_str()), Some(state));
        }
        assert_eq!(ReleaseState::parse("nope"), None);
    }
}
