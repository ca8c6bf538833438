//! A deployment order turned into a release: its target hosts (named, or found by a label
//! selector among the app's registered agents) and its batch plan cut into batches of hosts.
//! Pure; errors name the request's field.

use vigil_core::agent::{AgentRecord, PlanStep};
use vigil_core::release::{PlannedBatch, ReleaseHosts};
use vigil_guard::groups::Selector;

/// Most steps in a plan.
pub const MAX_PLAN_STEPS: usize = 100;
/// Longest observation of one batch: 30 days.
pub const MAX_OBSERVE_SECONDS: i64 = 30 * 86_400;

/// Why a deployment's hosts or plan are refused: the field at fault and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct PlanError {
    pub field: String,
    pub message: String,
}

fn refuse(field: impl Into<String>, message: impl Into<String>) -> PlanError {
    PlanError {
        field: field.into(),
        message: message.into(),
    }
}

/// The plan when an order gives none: one host, then 10 %, 50 % and every host, each watched
/// for five minutes.
pub fn default_plan() -> Vec<PlanStep> {
    ["1", "10%", "50%", "100%"]
        .into_iter()
        .map(|size| PlanStep {
            size: size.to_owned(),
            observe_seconds: 300,
        })
        .collect()
}

/// The hosts a deployment targets: the named hosts, each a registered agent of `app`, or the
/// app's agents whose labels the selector matches, by name.
pub fn resolve_hosts(
    hosts: &ReleaseHosts,
    app: &str,
    agents: &[AgentRecord],
) -> Result<Vec<String>, PlanError> {
    let of_app = || agents.iter().filter(|agent| agent.app == app);
    match hosts {
        ReleaseHosts::Names(names) => {
            if names.is_empty() {
                return Err(refuse("hosts", "name at least one host"));
            }
            for (index, name) in names.iter().enumerate() {
                if !of_app().any(|agent| &agent.host == name) {
                    return Err(refuse(
                        format!("hosts[{index}]"),
                        format!("host {name:?} has no registered agent of app {app:?}"),
                    ));
                }
            }
            Ok(names.clone())
        }
        ReleaseHosts::Selector { selector } => {
            let parsed = Selector::parse(selector)
                .map_err(|error| refuse("hosts.selector", error.to_string()))?;
            let mut found: Vec<String> = of_app()
                .filter(|agent| parsed.matches(&agent.labels))
                .map(|agent| agent.host.clone())
                .collect();
            found.sort();
            if found.is_empty() {
                return Err(refuse(
                    "hosts.selector",
                    format!("no registered agent of app {app:?} matches it"),
                ));
            }
            Ok(found)
        }
    }
}

/// How many of `total` hosts a step's size reaches: `"3"` hosts, or `"10%"` of them rounded up,
/// at most `total`.
fn reached(size: &str, total: usize, field: &str) -> Result<usize, PlanError> {
    let invalid = || {
        refuse(
            field,
            format!("{size:?} is not a host count (\"1\") or a share of the hosts (\"10%\")"),
        )
    };
    if let Some(percent_text) = size.strip_suffix('%') {
        let percent: u32 = percent_text.trim().parse().map_err(|_| invalid())?;
        if percent == 0 || percent > 100 {
            return Err(refuse(
                field,
                format!("{size:?} must be between 1% and 100%"),
            ));
        }
        let share = (total * percent as usize).div_ceil(100);
        return Ok(share.min(total));
    }
    let count: usize = size.trim().parse().map_err(|_| invalid())?;
    if count == 0 {
        return Err(refuse(field, "a step deploys at least one host"));
    }
    Ok(count.min(total))
}

/// The plan's batches over `hosts`, in order, with each batch's observation time: each step's
/// size is how many hosts are deployed once it ends (cumulative, rounded up); a step that
/// reaches no new host is left out. The last step must reach every host.
pub fn cut_batches(
    plan: &[PlanStep],
    hosts: &[String],
) -> Result<(Vec<PlannedBatch>, Vec<i64>), PlanError> {
    if plan.is_empty() {
        return Err(refuse("plan", "give at least one step"));
    }
    if plan.len() > MAX_PLAN_STEPS {
        return Err(refuse(
            "plan",
            format!("{} steps, more than {MAX_PLAN_STEPS}", plan.len()),
        ));
    }
    let mut batches = Vec::new();
    let mut observe = Vec::new();
    let mut deployed = 0;
    for (index, step) in plan.iter().enumerate() {
        let field = format!("plan[{index}].size");
        let target = reached(&step.size, hosts.len(), &field)?;
        if !(0..=MAX_OBSERVE_SECONDS).contains(&step.observe_seconds) {
            return Err(refuse(
                format!("plan[{index}].observe_seconds"),
                "must be between 0 and 30 days",
            ));
        }
        if target < deployed {
            return Err(refuse(
                field,
                format!(
                    "{:?} reaches fewer hosts than the step before it",
                    step.size
                ),
            ));
        }
        if target == deployed {
            continue;
        }
        batches.push(PlannedBatch {
            hosts: hosts[deployed..target].to_vec(),
        });
        observe.push(step.observe_seconds);
        deployed = target;
    }
    if deployed < hosts.len() {
        return Err(refuse(
            format!("plan[{}].size", plan.len() - 1),
            format!(
                "the plan reaches {deployed} of {} hosts: end with \"100%\"",
                hosts.len()
            ),
        ));
    }
    Ok((batches, observe))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn hosts(count: usize) -> Vec<String> {
        (1..=count).map(|index| format!("h{index}")).collect()
    }

    fn step(size: &str) -> PlanStep {
        PlanStep {
            size: size.to_owned(),
            observe_seconds: 60,
        }
    }

    fn sizes(batches: &[PlannedBatch]) -> Vec<usize> {
        batches.iter().map(|batch| batch.hosts.len()).collect()
    }

    #[test]
    fn the_default_plan_is_cumulative_and_rounds_up() {
        let (batches, observe) = cut_batches(&default_plan(), &hosts(20)).unwrap();
        assert_eq!(sizes(&batches), [1, 1, 8, 10]);
        assert_eq!(observe, [300, 300, 300, 300]);
        assert_eq!(batches[0].hosts, ["h1"]);
        assert_eq!(batches[3].hosts.last().unwrap(), "h20");
        // Three hosts: 10% reaches no new host, so that step is left out.
        let (small, observe) = cut_batches(&default_plan(), &hosts(3)).unwrap();
        assert_eq!(sizes(&small), [1, 1, 1]);
        assert_eq!(observe.len(), 3);
    }

    #[test]
    fn bad_sizes_name_their_step() {
        let error = cut_batches(&[step("1"), step("ten")], &hosts(4)).unwrap_err();
        assert_eq!(error.field, "plan[1].size");
        let error = cut_batches(&[step("0")], &hosts(4)).unwrap_err();
        assert_eq!(error.field, "plan[0].size");
        let error = cut_batches(&[step("150%")], &hosts(4)).unwrap_err();
        assert_eq!(error.field, "plan[0].size");
        let error = cut_batches(&[step("50%"), step("1")], &hosts(4)).unwrap_err();
        assert!(error.message.contains("fewer hosts"), "{error}");
        let error = cut_batches(&[step("1"), step("2")], &hosts(4)).unwrap_err();
        assert!(error.to_string().contains("end with \"100%\""), "{error}");
        let mut long = step("100%");
        long.observe_seconds = -1;
        assert_eq!(
            cut_batches(&[long], &hosts(4)).unwrap_err().field,
            "plan[0].observe_seconds"
        );
        assert_eq!(cut_batches(&[], &hosts(4)).unwrap_err().field, "plan");
    }

    fn agent(host: &str, app: &str, role: &str) -> AgentRecord {
        AgentRecord {
            host: host.to_owned(),
            app: app.to_owned(),
            labels: BTreeMap::from([("role".to_owned(), role.to_owned())]),
            version: None,
            peer_addr: None,
            agent_version: String::new(),
            registered_at: 0,
            last_seen_at: 0,
        }
    }

    #[test]
    fn hosts_are_registered_agents_of_the_app_named_or_selected() {
        let agents = [
            agent("web-2", "shop", "web"),
            agent("web-1", "shop", "web"),
            agent("db-1", "shop", "db"),
            agent("web-9", "blog", "web"),
        ];
        let selected = resolve_hosts(
            &ReleaseHosts::Selector {
                selector: "role=\"web\"".to_owned(),
            },
            "shop",
            &agents,
        )
        .unwrap();
        assert_eq!(selected, ["web-1", "web-2"]);
        let named = ReleaseHosts::Names(vec!["db-1".to_owned(), "web-9".to_owned()]);
        let error = resolve_hosts(&named, "shop", &agents).unwrap_err();
        assert_eq!(error.field, "hosts[1]");
        let nothing = ReleaseHosts::Selector {
            selector: "role=\"cache\"".to_owned(),
        };
        assert_eq!(
            resolve_hosts(&nothing, "shop", &agents).unwrap_err().field,
            "hosts.selector"
        );
    }
}
