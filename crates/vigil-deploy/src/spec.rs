//! What a new release must satisfy before it is stored: names, ids, its hosts, their batches and
//! reference hosts, and the step and observation lengths, with their defaults filled in. The
//! analysis settings are checked by the guard's admission, which knows them.

use std::collections::BTreeSet;

use serde::Deserialize;
use vigil_core::release::{PlannedBatch, ReferenceHosts, ReleaseHosts, ReleaseSpec};
use vigil_core::validate::{self, Invalid};
use vigil_core::{MetricMeta, Rule};

use crate::DeployError;

/// Most hosts in one release.
pub const MAX_HOSTS: usize = 10_000;
/// Longest label selector of a release or reference group, in bytes.
pub const MAX_SELECTOR_BYTES: usize = 1024;
/// The step when a request gives none, in seconds.
pub const DEFAULT_STEP_SECONDS: i64 = 30;
/// How long a release is observed when a request does not say, in seconds.
pub const DEFAULT_OBSERVE_SECONDS: i64 = 1800;
/// Longest observation a release may ask for: 30 days.
const MAX_OBSERVE_SECONDS: i64 = 30 * 86_400;

fn default_reference() -> ReferenceHosts {
    ReferenceHosts::EveryOtherHost
}

fn default_step() -> i64 {
    DEFAULT_STEP_SECONDS
}

fn default_observe() -> i64 {
    DEFAULT_OBSERVE_SECONDS
}

/// A request to create a release, as sent: `POST /api/v1/releases`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateRelease {
    #[serde(default)]
    pub id: Option<String>,
    pub app: String,
    pub version: String,
    /// Host names, or `{"selector": "..."}`.
    pub hosts: ReleaseHosts,
    #[serde(default = "default_reference")]
    pub reference: ReferenceHosts,
    /// Default: one batch of every host.
    #[serde(default)]
    pub batches: Vec<PlannedBatch>,
    #[serde(default = "default_step")]
    pub step_seconds: i64,
    #[serde(default = "default_observe")]
    pub observe_seconds: i64,
    #[serde(default)]
    pub metrics: Vec<MetricMeta>,
    #[serde(default)]
    pub settings: serde_json::Map<String, serde_json::Value>,
    /// The release's own rules; they replace its app's rules of the same names.
    #[serde(default)]
    pub rules: Vec<Rule>,
}

/// A host, app, metric or version name at `field`, by the rules every way in shares.
pub fn check_name(field: impl std::fmt::Display, name: &str) -> Result<(), Invalid> {
    validate::name(name).map_err(|problem| problem.at(field))
}

/// A release id at `field`.
pub fn check_id(field: &str, id: &str) -> Result<(), Invalid> {
    validate::release_id(id).map_err(|problem| problem.at(field))
}

/// Checks a request and fills its defaults: the id it asks for, if any, and the release's spec.
pub fn validate(request: CreateRelease) -> Result<(Option<String>, ReleaseSpec), DeployError> {
    check_name("app", &request.app)?;
    check_name("version", &request.version)?;
    if let Some(id) = &request.id {
        check_id("id", id)?;
    }
    validate::described_metrics(&request.metrics, "metrics")?;
    vigil_core::rules::check_rules(&request.rules, "rules")?;
    let batches = match &request.hosts {
        ReleaseHosts::Names(names) => {
            let release_hosts = check_hosts(names)?;
            let batches = if request.batches.is_empty() {
                vec![PlannedBatch {
                    hosts: names.clone(),
                }]
            } else {
                request.batches.clone()
            };
            check_batches(&batches, &release_hosts)?;
            check_reference(&request.reference, &release_hosts)?;
            batches
        }
        ReleaseHosts::Selector { selector } => {
            check_selector("hosts.selector", selector)?;
            if !request.batches.is_empty() {
                return Err(DeployError::SelectorWithBatches);
            }
            check_reference(&request.reference, &BTreeSet::new())?;
            vec![PlannedBatch { hosts: Vec::new() }]
        }
    };
    check_lengths(request.step_seconds, request.observe_seconds)?;
    let spec = ReleaseSpec {
        app: request.app,
        version: request.version,
        hosts: request.hosts,
        reference: request.reference,
        batches,
        step_seconds: request.step_seconds,
        observe_seconds: request.observe_seconds,
        metrics: request.metrics,
        settings: request.settings,
        rules: request.rules,
    };
    Ok((request.id, spec))
}

/// The release's hosts, each named once.
fn check_hosts(hosts: &[String]) -> Result<BTreeSet<&str>, DeployError> {
    if hosts.is_empty() {
        return Err(DeployError::NoHost);
    }
    if hosts.len() > MAX_HOSTS {
        return Err(DeployError::TooManyHosts {
            count: hosts.len(),
            limit: MAX_HOSTS,
        });
    }
    let mut release_hosts = BTreeSet::new();
    for (index, host) in hosts.iter().enumerate() {
        check_name(format_args!("hosts[{index}]"), host)?;
        if !release_hosts.insert(host.as_str()) {
            return Err(DeployError::HostListedTwice {
                field: format!("hosts[{index}]"),
                host: host.clone(),
            });
        }
    }
    Ok(release_hosts)
}

/// Every host of the release in exactly one batch, and no batch empty.
fn check_batches(
    batches: &[PlannedBatch],
    release_hosts: &BTreeSet<&str>,
) -> Result<(), DeployError> {
    let mut planned = BTreeSet::new();
    for (index, batch) in batches.iter().enumerate() {
        if batch.hosts.is_empty() {
            return Err(DeployError::EmptyBatch { index });
        }
        for host in &batch.hosts {
            if !release_hosts.contains(host.as_str()) {
                return Err(DeployError::BatchHostNotInRelease {
                    index,
                    host: host.clone(),
                });
            }
            if !planned.insert(host.as_str()) {
                return Err(DeployError::HostInTwoBatches { host: host.clone() });
            }
        }
    }
    if planned.len() != release_hosts.len() {
        return Err(DeployError::HostsNotAllPlanned);
    }
    Ok(())
}

/// A selector at `field`: not empty and within [`MAX_SELECTOR_BYTES`]. Its matchers are
/// read by the guard's admission.
fn check_selector(field: &'static str, selector: &str) -> Result<(), DeployError> {
    if selector.trim().is_empty() {
        return Err(DeployError::EmptySelector { field });
    }
    if selector.len() > MAX_SELECTOR_BYTES {
        return Err(DeployError::SelectorTooLong {
            field,
            length: selector.len(),
            limit: MAX_SELECTOR_BYTES,
        });
    }
    Ok(())
}

/// Named reference hosts: at least one, each once, none of them a release host; or a
/// selector.
fn check_reference(
    reference: &ReferenceHosts,
    release_hosts: &BTreeSet<&str>,
) -> Result<(), DeployError> {
    let hosts = match reference {
        ReferenceHosts::Hosts { hosts } => hosts,
        ReferenceHosts::Selector { selector } => {
            return check_selector("reference.selector", selector)
        }
        ReferenceHosts::EveryOtherHost | ReferenceHosts::None | ReferenceHosts::NotYetDeployed => {
            return Ok(())
        }
    };
    if hosts.is_empty() {
        return Err(DeployError::EmptyReference);
    }
    let mut reference_hosts = BTreeSet::new();
    for (index, host) in hosts.iter().enumerate() {
        let field = format!("reference.hosts[{index}]");
        check_name(&field, host)?;
        if release_hosts.contains(host.as_str()) {
            return Err(DeployError::ReferenceIsReleaseHost {
                field,
                host: host.clone(),
            });
        }
        if !reference_hosts.insert(host.as_str()) {
            return Err(DeployError::HostListedTwice {
                field,
                host: host.clone(),
            });
        }
    }
    Ok(())
}

fn check_lengths(step_seconds: i64, observe_seconds: i64) -> Result<(), DeployError> {
    if !(1..=3600).contains(&step_seconds) {
        return Err(DeployError::StepOutOfRange);
    }
    if !(0..=MAX_OBSERVE_SECONDS).contains(&observe_seconds) {
        return Err(DeployError::ObserveOutOfRange);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(body: serde_json::Value) -> CreateRelease {
        serde_json::from_value(body).expect("a well-formed request")
    }

    fn refusal(body: serde_json::Value) -> (String, String) {
        let error = validate(request(body)).expect_err("refused");
        (error.field(), error.to_string())
    }

    #[test]
    fn defaults_are_filled_in() {
        let (id, spec) = validate(request(serde_json::json!({
            "app": "shop", "version": "2", "hosts": ["a", "b"]
        })))
        .expect("valid");
        assert_eq!(id, None);
        assert_eq!(spec.batches.len(), 1);
        assert_eq!(spec.batches[0].hosts, vec!["a", "b"]);
        assert_eq!(spec.reference, ReferenceHosts::EveryOtherHost);
        assert_eq!(spec.step_seconds, DEFAULT_STEP_SECONDS);
        assert_eq!(spec.observe_seconds, DEFAULT_OBSERVE_SECONDS);
    }

    #[test]
    fn refusals_name_the_field() {
        let cases = [
            (
                serde_json::json!({"app": "", "version": "2", "hosts": ["a"]}),
                "app",
                "app: must not be empty",
            ),
            (
                serde_json::json!({"app": "shop", "version": "2", "hosts": []}),
                "hosts",
                "hosts must name at least one host",
            ),
            (
                serde_json::json!({"app": "shop", "version": "2", "hosts": ["a", "a"]}),
                "hosts[1]",
                "hosts[1]: host \"a\" is listed twice",
            ),
            (
                serde_json::json!({"app": "shop", "version": "2", "hosts": ["a", "b"],
                    "batches": [{"hosts": ["a"]}, {"hosts": []}]}),
                "batches[1]",
                "batches[1] has no host",
            ),
            (
                serde_json::json!({"app": "shop", "version": "2", "hosts": ["a", "b"],
                    "batches": [{"hosts": ["a"]}]}),
                "batches",
                "every host must be in exactly one batch",
            ),
            (
                serde_json::json!({"app": "shop", "version": "2", "hosts": ["a"],
                    "reference": {"type": "hosts", "hosts": ["a"]}}),
                "reference.hosts[0]",
                "reference.hosts[0]: host \"a\" is both a release and a reference host",
            ),
            (
                serde_json::json!({"app": "shop", "version": "2", "hosts": ["a"],
                    "step_seconds": 0}),
                "step_seconds",
                "step_seconds must be between 1 and 3600",
            ),
            (
                serde_json::json!({"app": "shop", "version": "2", "hosts": ["a"],
                    "rules": [{"name": "r", "metric": "m", "below_by": 0.1,
                               "relative_to": "reference", "duration_seconds": 90000,
                               "severity": "fault"}]}),
                "rules[0].duration_seconds",
                "rules[0].duration_seconds: must be between 0 and 86400",
            ),
        ];
        for (body, field, message) in cases {
            assert_eq!(refusal(body), (field.to_string(), message.to_string()));
        }
    }

    #[test]
    fn a_selector_release_has_one_batch_of_no_named_host() {
        let (_, spec) = validate(request(serde_json::json!({
            "app": "shop", "version": "2",
            "hosts": {"selector": "rollouts_pod_template_hash=\"abc123\""},
            "reference": {"type": "selector", "selector": "rollouts_pod_template_hash=\"def456\""}
        })))
        .expect("valid");
        assert_eq!(
            spec.hosts.selector(),
            Some("rollouts_pod_template_hash=\"abc123\"")
        );
        assert!(spec.hosts.names().is_empty());
        assert_eq!(spec.batches, vec![PlannedBatch { hosts: Vec::new() }]);
        assert!(spec.uses_selectors());
        let stored = serde_json::to_value(&spec).expect("serializes");
        assert_eq!(
            stored["hosts"],
            serde_json::json!({"selector": "rollouts_pod_template_hash=\"abc123\""})
        );
        let read: ReleaseSpec = serde_json::from_value(stored).expect("reads back");
        assert_eq!(read, spec);
    }

    #[test]
    fn selector_refusals_name_the_field() {
        let long = "a".repeat(MAX_SELECTOR_BYTES + 1);
        let cases = [
            (
                serde_json::json!({"app": "shop", "version": "2", "hosts": {"selector": " "}}),
                "hosts.selector",
            ),
            (
                serde_json::json!({"app": "shop", "version": "2", "hosts": {"selector": long}}),
                "hosts.selector",
            ),
            (
                serde_json::json!({"app": "shop", "version": "2", "hosts": {"selector": "a=\"b\""},
                    "batches": [{"hosts": ["p1"]}]}),
                "batches",
            ),
            (
                serde_json::json!({"app": "shop", "version": "2", "hosts": {"selector": "a=\"b\""},
                    "reference": {"type": "selector", "selector": ""}}),
                "reference.selector",
            ),
        ];
        for (body, field) in cases {
            assert_eq!(refusal(body).0, field);
        }
        let wrong_shape: Result<CreateRelease, _> = serde_json::from_value(serde_json::json!({
            "app": "shop", "version": "2", "hosts": {"labels": "a"}
        }));
        let message = wrong_shape.expect_err("refused").to_string();
        assert!(message.contains("list of host names"), "{message}");
    }
}
