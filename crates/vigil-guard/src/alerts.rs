//! Alerts as evidence: which received alerts speak against a release, as findings beside the
//! funnel's, and every alert of the release's app as a scorecard row.
//!
//! - **App**: an alert belongs to the app its `app` label names, else its `job` label
//!   (`vigil_core::alert::app_of`, decided when it is received and stored with it).
//! - **Host**: the first of the app's pull `host_label`, then `host`, `instance`, `pod`,
//!   `node` ([`HOST_LABELS`]) whose value names a host of the release or its reference group;
//!   an `instance` of the form `host:port` names `host` too. When none names a known host, the
//!   first of those labels present names a host outside the release; an alert with none of
//!   them has no host and is never blamed on the release.
//! - **Span**: from the release's first deploy to now (the guard's clock, at or after the step
//!   judged); alerts that fired at no time in it are left out.
//! - **Blame**: per alert name, the deployed release hosts on which an occurrence started at or
//!   after that host's own deploy. It is a finding only when the same alert fired in the span on
//!   no reference host and no host outside the release (a release host not yet deployed still
//!   runs the old version, so it counts as outside); otherwise the row passes, saying where else
//!   it fired. An occurrence that started on a release host before that host's deploy was there
//!   before the release: not blamed, unless the alert starts again on a release host after.
//! - **Severity**: `critical`, `page` or `fatal` ([`FAULT_SEVERITIES`], any case) is a `fault`
//!   (the release pauses); any other severity, or none, an `anomaly` (a recommendation).
//!
//! Everything here is pure but [`judged_with_alerts`], which reads the app's alerts and
//! settings from the store.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use vigil_core::release::Release;
use vigil_core::scorecard::{RowVerdict, ScorecardRow};
use vigil_core::text::clock_time_utc;
use vigil_core::{Alert, Finding, Judgement, Signal, Verdict};
use vigil_store::{Store, StoreError};

/// The labels that may name an alert's host, after the app's own pull `host_label`.
pub const HOST_LABELS: [&str; 4] = ["host", "instance", "pod", "node"];

/// The severities that pause a release (compared without case).
pub const FAULT_SEVERITIES: [&str; 3] = ["critical", "page", "fatal"];

/// What an alert is matched against: the release's hosts and when each was deployed, its
/// reference hosts, and the span judged.
#[derive(Debug, Clone)]
pub struct AlertScope<'a> {
    /// Every release host of the plan.
    pub release_hosts: &'a [String],
    /// Deployed release hosts and their deploy times (Unix seconds).
    pub deployed: &'a HashMap<String, i64>,
    pub reference_hosts: &'a [String],
    /// The app's pull source's host label, looked at first when set.
    pub host_label: Option<&'a str>,
    /// The first deploy: the span starts there.
    pub from: i64,
    /// The step judged: the span ends there.
    pub until: i64,
}

/// One alert name's outcome for a release.
#[derive(Debug, Clone, PartialEq)]
pub struct AlertMatch {
    pub name: String,
    /// `fault` or `anomaly`, from the most severe occurrence on release hosts (or of all of
    /// them when none is on a release host).
    pub severity: Verdict,
    /// The severity as sent, of that occurrence.
    pub severity_label: String,
    /// Deployed release hosts on which it started after their deploy.
    pub release_hosts: Vec<String>,
    /// Reference hosts it fired on in the span.
    pub reference_hosts: Vec<String>,
    /// Hosts outside the release and its reference group (release hosts not yet deployed
    /// among them) it fired on in the span.
    pub other_hosts: Vec<String>,
    /// Deployed release hosts on which it was already firing before their deploy.
    pub before_deploy: Vec<String>,
    /// Occurrences without any host label.
    pub without_host: usize,
    /// Its earliest start on release hosts (or of all occurrences when none).
    pub since: i64,
    /// The summary of its latest occurrence that has one.
    pub summary: String,
    /// Whether it is blamed on the release: a finding.
    pub blamed: bool,
}

impl AlertMatch {
    /// One line on why it is, or is not, blamed on the release.
    pub fn note(&self) -> String {
        if self.blamed {
            return self.evidence();
        }
        let list = |hosts: &[String]| hosts.join(", ");
        if !self.release_hosts.is_empty() {
            let mut elsewhere = Vec::new();
            if !self.reference_hosts.is_empty() {
                elsewhere.push(format!(
                    "also on reference hosts {}",
                    list(&self.reference_hosts)
                ));
            }
            if !self.other_hosts.is_empty() {
                elsewhere.push(format!(
                    "also on hosts outside the release {}",
                    list(&self.other_hosts)
                ));
            }
            return format!(
                "firing on release hosts {}, {}: not blamed on the release",
                list(&self.release_hosts),
                elsewhere.join(" and ")
            );
        }
        if !self.before_deploy.is_empty() {
            return format!(
                "firing on {} since before its deploy: not blamed on the release",
                list(&self.before_deploy)
            );
        }
        if !self.reference_hosts.is_empty() || !self.other_hosts.is_empty() {
            let hosts: Vec<String> = self
                .reference_hosts
                .iter()
                .chain(&self.other_hosts)
                .cloned()
                .collect();
            return format!("firing only on hosts outside the release: {}", list(&hosts));
        }
        format!(
            "no host label ({}): not blamed on the release",
            HOST_LABELS.join(", ")
        )
    }

    /// The finding's evidence: `alert: NAME firing on r1 since 12:03 UTC (severity critical):
    /// SUMMARY`.
    pub fn evidence(&self) -> String {
        let severity = if self.severity_label.is_empty() {
            "no severity".to_owned()
        } else {
            format!("severity {}", self.severity_label)
        };
        let mut text = format!(
            "alert: {} firing on {} since {} ({severity})",
            self.name,
            self.release_hosts.join(", "),
            clock_time_utc(self.since)
        );
        if !self.summary.is_empty() {
            text.push_str(": ");
            text.push_str(&self.summary);
        }
        text
    }
}

/// Where one occurrence fired.
enum Place {
    Release(String),
    BeforeDeploy(String),
    Reference(String),
    Other(String),
    NoHost,
}

/// The host an alert's labels name (see the module's rules), `None` without host labels.
fn host_of(alert: &Alert, scope: &AlertScope<'_>, known: &BTreeSet<&str>) -> Option<String> {
    let labels: Vec<&str> = scope.host_label.into_iter().chain(HOST_LABELS).collect();
    let mut first_present = None;
    for label in labels {
        let Some(value) = alert.labels.get(label) else {
            continue;
        };
        if value.is_empty() {
            continue;
        }
        if known.contains(value.as_str()) {
            return Some(value.clone());
        }
        if label == "instance" {
            if let Some((host, _port)) = value.rsplit_once(':') {
                if known.contains(host) {
                    return Some(host.to_owned());
                }
            }
        }
        first_present.get_or_insert_with(|| value.clone());
    }
    first_present
}

fn place_of(alert: &Alert, scope: &AlertScope<'_>, known: &BTreeSet<&str>) -> Place {
    let Some(host) = host_of(alert, scope, known) else {
        return Place::NoHost;
    };
    if let Some(&deployed_at) = scope.deployed.get(&host) {
        if alert.starts_at >= deployed_at {
            return Place::Release(host);
        }
        return Place::BeforeDeploy(host);
    }
    if scope.reference_hosts.contains(&host) {
        return Place::Reference(host);
    }
    Place::Other(host)
}

fn severity_of(label: &str) -> Verdict {
    if FAULT_SEVERITIES
        .iter()
        .any(|fault| fault.eq_ignore_ascii_case(label))
    {
        Verdict::Fault
    } else {
        Verdict::Anomaly
    }
}

/// Every alert name's outcome for the release, by name. `alerts` are the app's (any order);
/// those that fired at no time in the scope's span are left out.
pub fn match_alerts(alerts: &[Alert], scope: &AlertScope<'_>) -> Vec<AlertMatch> {
    let known: BTreeSet<&str> = scope
        .release_hosts
        .iter()
        .chain(scope.reference_hosts)
        .map(String::as_str)
        .collect();
    let mut by_name: BTreeMap<&str, Vec<&Alert>> = BTreeMap::new();
    for alert in alerts {
        let fired_in_span =
            alert.starts_at <= scope.until && alert.ends_at.is_none_or(|end| end >= scope.from);
        if fired_in_span {
            by_name.entry(alert.name.as_str()).or_default().push(alert);
        }
    }
    by_name
        .into_iter()
        .map(|(name, occurrences)| match_one(name, &occurrences, scope, &known))
        .collect()
}

fn match_one(
    name: &str,
    occurrences: &[&Alert],
    scope: &AlertScope<'_>,
    known: &BTreeSet<&str>,
) -> AlertMatch {
    let mut release_hosts = BTreeSet::new();
    let mut reference_hosts = BTreeSet::new();
    let mut other_hosts = BTreeSet::new();
    let mut before_deploy_hosts = BTreeSet::new();
    let mut without_host = 0;
    let mut on_release: Vec<&Alert> = Vec::new();
    for alert in occurrences {
        match place_of(alert, scope, known) {
            Place::Release(host) => {
                release_hosts.insert(host);
                on_release.push(alert);
            }
            Place::BeforeDeploy(host) => {
                before_deploy_hosts.insert(host);
            }
            Place::Reference(host) => {
                reference_hosts.insert(host);
            }
            Place::Other(host) => {
                other_hosts.insert(host);
            }
            Place::NoHost => without_host += 1,
        }
    }
    // A host blamed by a later occurrence is not "before its deploy" any more.
    let before_deploy: Vec<String> = before_deploy_hosts
        .into_iter()
        .filter(|host| !release_hosts.contains(host))
        .collect();
    let judged: &[&Alert] = if on_release.is_empty() {
        occurrences
    } else {
        &on_release
    };
    let most_severe = judged
        .iter()
        .min_by_key(|alert| (severity_of(&alert.severity), alert.starts_at))
        .map(|alert| alert.severity.clone())
        .unwrap_or_default();
    let since = judged
        .iter()
        .map(|alert| alert.starts_at)
        .min()
        .unwrap_or(scope.from);
    let summary = occurrences
        .iter()
        .filter(|alert| !alert.summary.is_empty())
        .max_by_key(|alert| alert.starts_at)
        .map(|alert| alert.summary.clone())
        .unwrap_or_default();
    let blamed = !release_hosts.is_empty() && reference_hosts.is_empty() && other_hosts.is_empty();
    AlertMatch {
        name: name.to_owned(),
        severity: severity_of(&most_severe),
        severity_label: most_severe,
        release_hosts: release_hosts.into_iter().collect(),
        reference_hosts: reference_hosts.into_iter().collect(),
        other_hosts: other_hosts.into_iter().collect(),
        before_deploy,
        without_host,
        since,
        summary,
        blamed,
    }
}

/// The findings of the alerts blamed on the release; `hosts_judged` is the number of deployed
/// release hosts. A finding counts hosts, not a metric: `observed` is the release hosts it
/// fires on, `expected` the reference hosts it fires on (none), effect and score 0.
pub fn alert_findings(matches: &[AlertMatch], hosts_judged: usize) -> Vec<Finding> {
    matches
        .iter()
        .filter(|found| found.blamed)
        .map(|found| {
            let mut explanation = format!(
                "alert {} ({}) fires on {} of {hosts_judged} release hosts ({}) and on no \
                 reference host, since {}",
                found.name,
                if found.severity_label.is_empty() {
                    "no severity"
                } else {
                    found.severity_label.as_str()
                },
                found.release_hosts.len(),
                found.release_hosts.join(", "),
                clock_time_utc(found.since)
            );
            if !found.summary.is_empty() {
                explanation.push_str(": ");
                explanation.push_str(&found.summary);
            }
            Finding {
                severity: found.severity,
                signal: Signal::Alert {
                    name: found.name.clone(),
                },
                hosts: found.release_hosts.clone(),
                hosts_judged,
                direction: "up".to_owned(),
                observed: found.release_hosts.len() as f64,
                expected: 0.0,
                effect: 0.0,
                score: 0.0,
                baseline: "alert".to_owned(),
                evidence: found.evidence(),
                since: found.since,
                explanation,
            }
        })
        .collect()
}

/// Every alert of the release's span as a scorecard row: `fail` (a blamed `fault`),
/// `recommend` (a blamed `anomaly`) or `pass`, compared with `alert`; `observed` the release
/// hosts it fires on, `reference` the reference hosts.
pub fn alert_rows(matches: &[AlertMatch], hosts_judged: usize) -> Vec<ScorecardRow> {
    matches
        .iter()
        .map(|found| ScorecardRow {
            signal: Signal::Alert {
                name: found.name.clone(),
            },
            verdict: if found.blamed {
                RowVerdict::of_severity(found.severity)
            } else {
                RowVerdict::Pass
            },
            observed: Some(found.release_hosts.len() as f64),
            reference: Some(found.reference_hosts.len() as f64),
            effect: None,
            score: None,
            compared_with: "alert".to_owned(),
            hosts_affected: if found.blamed {
                found.release_hosts.len()
            } else {
                0
            },
            hosts_judged,
            note: found.note(),
            source: None,
        })
        .collect()
}

/// The release's scope at step `until`: its deployed hosts, reference hosts and first deploy;
/// `None` before its first deploy (alerts speak only during a release).
fn scope_of<'a>(
    release: &'a Release,
    deployed: &'a HashMap<String, i64>,
    reference_hosts: &'a [String],
    host_label: Option<&'a str>,
    until: i64,
) -> Option<AlertScope<'a>> {
    let from = release.deployed.iter().map(|batch| batch.at).min()?;
    Some(AlertScope {
        release_hosts: release.spec.hosts.names(),
        deployed,
        reference_hosts,
        host_label,
        from,
        until,
    })
}

/// Each deployed release host and its deploy time (its first batch).
fn deploy_times(release: &Release) -> HashMap<String, i64> {
    let mut deployed: HashMap<String, i64> = HashMap::new();
    for batch in &release.deployed {
        for host in &batch.hosts {
            let at = deployed.entry(host.clone()).or_insert(batch.at);
            *at = (*at).min(batch.at);
        }
    }
    deployed
}

/// The alerts of the release's app matched from its first deploy to `until`, read from the
/// store with the app's host label; none before its first deploy.
pub fn release_alerts(
    store: &dyn Store,
    release: &Release,
    reference_hosts: &[String],
    until: i64,
) -> Result<(Vec<AlertMatch>, usize), StoreError> {
    let deployed = deploy_times(release);
    let Some(from) = release.deployed.iter().map(|batch| batch.at).min() else {
        return Ok((Vec::new(), 0));
    };
    let alerts = store.alerts(&release.spec.app, from, until)?;
    if alerts.is_empty() {
        return Ok((Vec::new(), deployed.len()));
    }
    let config = crate::apps::stored_app_config(store, &release.spec.app)?;
    let host_label = config
        .as_ref()
        .and_then(|config| config.prometheus.as_ref())
        .map(|source| source.host_label.as_str());
    let Some(scope) = scope_of(release, &deployed, reference_hosts, host_label, until) else {
        return Ok((Vec::new(), deployed.len()));
    };
    Ok((match_alerts(&alerts, &scope), deployed.len()))
}

/// The guard's one call after judging a step: the judgement with the findings of the alerts
/// blamed on the release from its first deploy to `now` ([`release_alerts`],
/// [`Judgement::with_findings`]). Alerts are not sampled in steps: one that started after the step judged
/// (which trails `now` by up to a step and the grace time) counts at once.
pub fn judged_with_alerts(
    store: &dyn Store,
    release: &Release,
    reference_hosts: &[String],
    judgement: Judgement,
    now: i64,
) -> Result<Judgement, StoreError> {
    let until = now.max(judgement.at);
    let (matches, hosts_judged) = release_alerts(store, release, reference_hosts, until)?;
    let findings = alert_findings(&matches, hosts_judged);
    if !findings.is_empty() {
        tracing::debug!(release = %release.id, at = judgement.at, findings = findings.len(), "alerts blamed on release");
    }
    Ok(judgement.with_findings(findings))
}

/// Which apps received alerts since each release was last weighed, so that the guard judges a
/// step it already judged again when new alerts of its app arrive: a critical alert pauses
/// within a pass, not at the next step.
#[derive(Debug, Default)]
pub struct AlertNews {
    /// Alert bodies received, per app.
    arrived: std::sync::Mutex<HashMap<String, u64>>,
    /// What each release was last weighed with, of its app's count.
    weighed: std::sync::Mutex<HashMap<String, u64>>,
}

impl AlertNews {
    /// Alerts of `apps` were stored.
    pub fn arrived<'a>(&self, apps: impl IntoIterator<Item = &'a str>) {
        let mut arrived = self
            .arrived
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        for app in apps {
            *arrived.entry(app.to_owned()).or_default() += 1;
        }
    }

    /// Whether alerts of `app` arrived since `release_id` was last asked about; it is then
    /// counted as weighed.
    pub fn take(&self, release_id: &str, app: &str) -> bool {
        let current = self
            .arrived
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(app)
            .copied()
            .unwrap_or(0);
        let seen = self
            .weighed
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(release_id.to_owned(), current)
            .unwrap_or(0);
        current != seen
    }

    /// Forgets releases no longer judged.
    pub fn retain(&self, observing: impl Fn(&str) -> bool) {
        self.weighed
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .retain(|id, _| observing(id));
    }
}

#[cfg(test)]
mod tests;
