//! `POST /api/v1/deployments`: a release order for Vigil's executor, resolved against the
//! registered agents into a release (hosts and batches named) and its execution.

use serde::Deserialize;
use vigil_core::agent::{AgentRecord, ExecutorSpec, PlanStep};
use vigil_core::release::{ReferenceHosts, ReleaseHosts, ReleaseSpec};
use vigil_core::{MetricMeta, Rule};
use vigil_deploy::spec::CreateRelease;
use vigil_store::Execution;

use crate::plan::{cut_batches, default_plan, resolve_hosts, PlanError};

fn default_reference() -> ReferenceHosts {
    ReferenceHosts::NotYetDeployed
}

fn default_step() -> i64 {
    vigil_deploy::spec::DEFAULT_STEP_SECONDS
}

/// A deployment as sent.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateDeployment {
    #[serde(default)]
    pub id: Option<String>,
    pub app: String,
    pub version: String,
    /// The artifact's id: its SHA-256, lowercase hex.
    pub artifact: String,
    /// Host names, or `{"selector": "..."}` over the app's registered agents' labels.
    pub hosts: ReleaseHosts,
    #[serde(default = "default_plan")]
    pub plan: Vec<PlanStep>,
    #[serde(default = "default_reference")]
    pub reference: ReferenceHosts,
    #[serde(default = "default_step")]
    pub step_seconds: i64,
    #[serde(default)]
    pub metrics: Vec<MetricMeta>,
    #[serde(default)]
    pub settings: serde_json::Map<String, serde_json::Value>,
    #[serde(default)]
    pub rules: Vec<Rule>,
}

/// Why a deployment is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OrderError {
    #[error(transparent)]
    Plan(#[from] PlanError),
    #[error(transparent)]
    Deploy(#[from] vigil_deploy::DeployError),
}

/// Whether `text` is a SHA-256 in lowercase hex.
fn is_sha256(text: &str) -> bool {
    text.len() == 64
        && text
            .bytes()
            .all(|byte| matches!(byte, b'0'..=b'9' | b'a'..=b'f'))
}

/// The release's id (if the order gives one), its spec and its execution: the hosts resolved
/// over `agents`, the plan cut into batches, the release's checks applied
/// ([`vigil_deploy::spec::validate`]), and each host's version before it kept for its
/// rollback. The analysis settings are for the guard's admission to check.
pub fn resolve(
    order: CreateDeployment,
    agents: &[AgentRecord],
) -> Result<(Option<String>, ReleaseSpec, Execution), OrderError> {
    if !is_sha256(&order.artifact) {
        return Err(PlanError {
            field: "artifact".to_owned(),
            message: "must be the artifact's sha-256, 64 lowercase hex digits".to_owned(),
        }
        .into());
    }
    vigil_deploy::spec::check_name("app", &order.app).map_err(vigil_deploy::DeployError::from)?;
    vigil_core::agent::check_shipped_version(&order.version).map_err(|message| PlanError {
        field: "version".to_owned(),
        message,
    })?;
    let hosts = resolve_hosts(&order.hosts, &order.app, agents)?;
    let (batches, observe_seconds) = cut_batches(&order.plan, &hosts)?;
    let last_observe = observe_seconds.last().copied().unwrap_or(0);
    let request = CreateRelease {
        id: order.id,
        app: order.app,
        version: order.version,
        hosts: ReleaseHosts::Names(hosts.clone()),
        reference: order.reference,
        batches,
        step_seconds: order.step_seconds,
        observe_seconds: last_observe,
        metrics: order.metrics,
        settings: order.settings,
        rules: order.rules,
    };
    let (id, spec) = vigil_deploy::spec::validate(request)?;
    let previous_versions = hosts
        .iter()
        .map(|host| {
            let version = agents
                .iter()
                .find(|agent| &agent.host == host)
                .and_then(|agent| agent.version.clone());
            (host.clone(), version)
        })
        .collect();
    let execution = Execution {
        spec: ExecutorSpec {
            artifact: order.artifact,
            observe_seconds,
        },
        plan: order.plan,
        previous_versions,
    };
    Ok((id, spec, execution))
}
