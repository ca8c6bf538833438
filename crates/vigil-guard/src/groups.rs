//! Release and reference groups given by label selectors (`rollouts_pod_template_hash="abc123"`)
//! instead of names: pods are not known before a rollout. At every step the guard finds each
//! group again among the app's hosts in the index, by the labels their series carried, and
//! judges the release as if it had named them ([`judged_release`]).
//!
//! - Matchers are PromQL's: `=`, `!=`, `=~`, `!~`; a label a host does not carry has the
//!   empty value; a regex matches the whole value (anchored) and is size-limited. A selector
//!   needs one matcher that the empty value fails, so that it never takes every host.
//! - A pod of a selector release is deployed at its first sample or at the reported batch 0,
//!   whichever is later: the pipeline reports batch 0 when the new pods start, a pod started
//!   before counts from that report, a pod started after (a replacement, a scale-up) from its
//!   first sample.
//! - A host that sent nothing for [`DEPARTED_STEPS`] steps while another host of its group
//!   did has left the group (a replaced pod, a scale-down): it is no longer judged, so it is
//!   not a silent host. A whole group gone quiet stays, and its silence holds the release (and
//!   pauses it after `silent_host_fault_seconds` while the reference reports). A pod that
//!   crashes for good while the rest of its group reports is taken for a replaced one: in
//!   Kubernetes a crashed pod restarts under its name, or is replaced.

use std::collections::BTreeMap;

use regex::{Regex, RegexBuilder};
use vigil_core::release::{PlannedBatch, ReferenceHosts, Release, ReleaseHosts};
use vigil_core::{Batch, Judgement, Verdict};

use crate::apps::selector::{split_matchers, unquote};
use crate::index::{DataIndex, LabelledHost};

/// Steps without data after which a host has left its group, when another host of the group
/// sent data in them: as many as make a silent host in the coverage
/// ([`vigil_analysis::coverage::SILENT_STEPS`]), so that a replaced pod leaves its group when
/// it would start to hold the release, and one late step changes nothing.
pub const DEPARTED_STEPS: i64 = vigil_analysis::coverage::SILENT_STEPS as i64;

/// Largest compiled regex of one matcher, in bytes.
const MAX_REGEX_BYTES: usize = 64 * 1024;

/// Why a selector cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SelectorError {
    #[error("must be label matchers such as rollouts_pod_template_hash=\"abc123\"")]
    NotMatchers,
    #[error("the value of {label} holds an escape PromQL does not know")]
    BadValue { label: String },
    #[error("the regex of {label} is not valid: {reason}")]
    BadRegex { label: String, reason: String },
    #[error("every matcher accepts a host without labels: add one such as label=\"value\"")]
    MatchesEverything,
}

#[derive(Debug, Clone)]
enum Test {
    Equal(String),
    NotEqual(String),
    Matches(Regex),
    NotMatches(Regex),
}

impl Test {
    fn accepts(&self, value: &str) -> bool {
        match self {
            Test::Equal(expected) => value == expected,
            Test::NotEqual(expected) => value != expected,
            Test::Matches(regex) => regex.is_match(value),
            Test::NotMatches(regex) => !regex.is_match(value),
        }
    }
}

/// Parsed label matchers.
#[derive(Debug, Clone)]
pub struct Selector {
    matchers: Vec<(String, Test)>,
}

impl Selector {
    pub fn parse(text: &str) -> Result<Selector, SelectorError> {
        let split = split_matchers(text).ok_or(SelectorError::NotMatchers)?;
        let mut matchers = Vec::with_capacity(split.len());
        for (label, operator, quoted) in split {
            let value = unquote(quoted).ok_or_else(|| SelectorError::BadValue {
                label: label.to_owned(),
            })?;
            let anchored = || {
                RegexBuilder::new(&format!("^(?:{value})$"))
                    .size_limit(MAX_REGEX_BYTES)
                    .dfa_size_limit(MAX_REGEX_BYTES)
                    .build()
                    .map_err(|error| SelectorError::BadRegex {
                        label: label.to_owned(),
                        reason: error.to_string(),
                    })
            };
            let test = match operator {
                "=" => Test::Equal(value.clone()),
                "!=" => Test::NotEqual(value.clone()),
                "=~" => Test::Matches(anchored()?),
                _ => Test::NotMatches(anchored()?),
            };
            matchers.push((label.to_owned(), test));
        }
        if matchers.iter().all(|(_, test)| test.accepts("")) {
            return Err(SelectorError::MatchesEverything);
        }
        Ok(Selector { matchers })
    }

    /// True when every matcher accepts the host's labels (a missing label is empty).
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.matchers
            .iter()
            .all(|(label, test)| test.accepts(labels.get(label).map_or("", String::as_str)))
    }
}

/// The selectors of a release's groups, checked: the field at fault and why.
pub fn check_selectors(release: &Release) -> Result<(), (&'static str, SelectorError)> {
    if let Some(selector) = release.spec.hosts.selector() {
        Selector::parse(selector).map_err(|error| ("hosts.selector", error))?;
    }
    if let ReferenceHosts::Selector { selector } = &release.spec.reference {
        Selector::parse(selector).map_err(|error| ("reference.selector", error))?;
    }
    Ok(())
}

/// The hosts of `candidates` still in their group at `step_ms`: those that sent data in the
/// last [`DEPARTED_STEPS`] steps, and the others too when none did (a group gone quiet stays).
fn still_in_group<'a>(
    candidates: Vec<LabelledHost<'a>>,
    step_ms: i64,
    step_time_ms: i64,
) -> Vec<LabelledHost<'a>> {
    let quiet_since = step_time_ms - DEPARTED_STEPS * step_ms;
    let recent = |host: &LabelledHost<'_>| host.last_ms > quiet_since;
    if !candidates.iter().any(recent) {
        return candidates;
    }
    candidates.into_iter().filter(recent).collect()
}

/// The release as the guard judges it at `step_time` (Unix seconds): for a release with a
/// selector, a copy whose groups are the hosts the selectors find in `index` among the app's
/// hosts with data after `since_ms`, and whose deployed batches give each pod of the release
/// group its own deploy time (see the module's notes); `None` for a release that names its
/// groups, which is judged as it is. A selector that cannot be read (admission refuses it)
/// finds no host.
pub fn judged_release(
    release: &Release,
    index: &DataIndex,
    since_ms: i64,
    step_time: i64,
) -> Option<Release> {
    if release.spec.reference == ReferenceHosts::NotYetDeployed
        && release.spec.hosts.selector().is_none()
    {
        return Some(judged_against_hosts_not_yet_deployed(release));
    }
    if !release.spec.uses_selectors() {
        return None;
    }
    let step_ms = release.spec.step_seconds.max(1) * 1000;
    let step_time_ms = step_time.saturating_mul(1000);
    let app_hosts = index.labelled_hosts_of_app(&release.spec.app, since_ms);
    let matching = |matchers: &str| -> Vec<LabelledHost<'_>> {
        let Ok(selector) = Selector::parse(matchers) else {
            return Vec::new();
        };
        let found: Vec<LabelledHost<'_>> = app_hosts
            .iter()
            .copied()
            .filter(|host| host.first_ms <= step_time_ms && selector.matches(host.labels))
            .collect();
        still_in_group(found, step_ms, step_time_ms)
    };
    let mut judged = release.clone();
    if let Some(selector) = release.spec.hosts.selector() {
        let pods = matching(selector);
        judged.deployed = pod_batches(release, &pods);
        let names: Vec<String> = pods.iter().map(|pod| pod.name.to_owned()).collect();
        judged.spec.batches = vec![PlannedBatch {
            hosts: names.clone(),
        }];
        judged.spec.hosts = ReleaseHosts::Names(names);
    }
    judged.spec.reference = match &release.spec.reference {
        ReferenceHosts::Selector { selector } => ReferenceHosts::Hosts {
            hosts: matching(selector)
                .iter()
                .map(|host| host.name.to_owned())
                .collect(),
        },
        ReferenceHosts::EveryOtherHost => {
            // Every host of the app the release selector does not take, departed pods of the
            // release group included.
            let release_selector = release
                .spec
                .hosts
                .selector()
                .and_then(|selector| Selector::parse(selector).ok());
            let others: Vec<LabelledHost<'_>> = app_hosts
                .iter()
                .copied()
                .filter(|host| {
                    release_selector.as_ref().map_or(
                        !release
                            .spec
                            .hosts
                            .names()
                            .iter()
                            .any(|name| name == host.name),
                        |selector| !selector.matches(host.labels),
                    )
                })
                .collect();
            ReferenceHosts::Hosts {
                hosts: others.iter().map(|host| host.name.to_owned()).collect(),
            }
        }
        ReferenceHosts::Hosts { .. } | ReferenceHosts::None => release.spec.reference.clone(),
        // Every pod a selector finds is deployed: none is left to compare with.
        ReferenceHosts::NotYetDeployed => ReferenceHosts::None,
    };
    Some(judged)
}

/// A release whose reference group is its own hosts not yet deployed, as the guard judges it:
/// its release group is the hosts its deployed batches hold, its batches those deployed, and
/// its reference group the rest of its hosts; once every host is deployed it has none, and
/// each host is compared with its own history ([`ReferenceHosts::None`]).
fn judged_against_hosts_not_yet_deployed(release: &Release) -> Release {
    let mut deployed_hosts: Vec<String> = Vec::new();
    for batch in &release.deployed {
        for host in &batch.hosts {
            if !deployed_hosts.contains(host) {
                deployed_hosts.push(host.clone());
            }
        }
    }
    let not_yet_deployed: Vec<String> = release
        .spec
        .hosts
        .names()
        .iter()
        .filter(|host| !deployed_hosts.contains(host))
        .cloned()
        .collect();
    let mut judged = release.clone();
    judged.spec.batches = release
        .deployed
        .iter()
        .map(|batch| PlannedBatch {
            hosts: batch.hosts.clone(),
        })
        .collect();
    judged.spec.hosts = ReleaseHosts::Names(deployed_hosts);
    judged.spec.reference = if not_yet_deployed.is_empty() {
        ReferenceHosts::None
    } else {
        ReferenceHosts::Hosts {
            hosts: not_yet_deployed,
        }
    };
    judged
}

/// A selector release whose release group finds no host is not covered: it holds, saying so,
/// and never succeeds (silence never passes); a fault still stops it. `judged` is the release as [`judged_release`]
/// resolved it; a release that names its hosts keeps its judgement and coverage.
pub fn hold_an_empty_group(
    stored: &Release,
    judged: &Release,
    judgement: Judgement,
    covered: bool,
) -> (Judgement, bool) {
    let Some(selector) = stored.spec.hosts.selector() else {
        return (judgement, covered);
    };
    if !judged.spec.hosts.names().is_empty() || stored.deployed.is_empty() {
        return (judgement, covered);
    }
    // A fault found anyway (a rule, an alert) still stops the release.
    if judgement.verdict == Verdict::Fault {
        return (judgement, false);
    }
    let held = Judgement {
        verdict: Verdict::InsufficientData,
        reason: Some(format!(
            "waiting for data: no host of {} labelled {selector} sends data",
            stored.spec.app
        )),
        ..judgement
    };
    (held, false)
}

/// The deployed batches of a selector release's pods: batch 0 at its reported time with the
/// pods that started by then, then one batch per later start time with the pods that started
/// at it. None before batch 0 is reported.
fn pod_batches(release: &Release, pods: &[LabelledHost<'_>]) -> Vec<Batch> {
    let Some(reported) = release.deployed.first() else {
        return Vec::new();
    };
    let mut by_time: BTreeMap<i64, Vec<String>> = BTreeMap::new();
    by_time.insert(reported.at, Vec::new());
    for pod in pods {
        // A pod's first second: a sample at 12.3 s belongs to the step that ends at 13 s.
        let started = pod.first_ms.div_euclid(1000) + i64::from(pod.first_ms.rem_euclid(1000) > 0);
        by_time
            .entry(started.max(reported.at))
            .or_default()
            .push(pod.name.to_owned());
    }
    by_time
        .into_iter()
        .enumerate()
        .map(|(index, (at, hosts))| Batch {
            index: u32::try_from(index).unwrap_or(u32::MAX),
            at,
            hosts,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    use std::sync::Arc;

    use vigil_core::samples::{HostLabels, MetricChunk, Point, SeriesKey};

    use crate::assemble::tests::release;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(name, value)| ((*name).to_owned(), (*value).to_owned()))
            .collect()
    }

    #[test]
    fn matchers_follow_promql() {
        let canary = labels(&[("rollouts_pod_template_hash", "abc123"), ("env", "prod")]);
        let stable = labels(&[("rollouts_pod_template_hash", "def456"), ("env", "prod")]);
        let bare = labels(&[]);
        let equal = Selector::parse("rollouts_pod_template_hash=\"abc123\"").unwrap();
        assert!(equal.matches(&canary) && !equal.matches(&stable) && !equal.matches(&bare));
        let braces =
            Selector::parse("{env=\"prod\", rollouts_pod_template_hash!=\"abc123\"}").unwrap();
        assert!(!braces.matches(&canary) && braces.matches(&stable));
        let anchored = Selector::parse("rollouts_pod_template_hash=~\"abc\"").unwrap();
        assert!(
            !anchored.matches(&canary),
            "a regex matches the whole value"
        );
        let regex = Selector::parse("rollouts_pod_template_hash=~'abc.*|xyz'").unwrap();
        assert!(regex.matches(&canary) && !regex.matches(&stable));
        let not_regex =
            Selector::parse("env=\"prod\",rollouts_pod_template_hash!~\"def.*\"").unwrap();
        assert!(not_regex.matches(&canary) && !not_regex.matches(&stable));
    }

    #[test]
    fn bad_selectors_are_refused_with_why() {
        assert_eq!(
            Selector::parse("hash abc").unwrap_err(),
            SelectorError::NotMatchers
        );
        assert_eq!(
            Selector::parse("hash!=\"abc\"").unwrap_err(),
            SelectorError::MatchesEverything
        );
        assert!(matches!(
            Selector::parse("hash=~\"(\"").unwrap_err(),
            SelectorError::BadRegex { .. }
        ));
        assert!(matches!(
            Selector::parse("hash=~\"a{1000}{1000}{1000}\"").unwrap_err(),
            SelectorError::BadRegex { .. }
        ));
        assert_eq!(
            Selector::parse("hash=\"a\\q\"").unwrap_err(),
            SelectorError::BadValue {
                label: "hash".to_owned()
            }
        );
    }

    /// Pods `name` with `hash` sending one sample at each of `seconds`.
    fn pods(index: &mut DataIndex, sent: &[(&str, &str, &[i64])]) {
        let mut chunk = MetricChunk::default();
        for (position, (name, hash, seconds)) in sent.iter().enumerate() {
            chunk.series.push(Arc::new(SeriesKey {
                app: "shop".into(),
                host: (*name).to_owned(),
                metric: "latency".into(),
                counter: false,
            }));
            for second in seconds.iter() {
                chunk.points.push(Point {
                    series: u32::try_from(position).unwrap(),
                    ms: second * 1000,
                    value: 1.0,
                });
            }
            chunk.host_labels.push(HostLabels::bounded(
                name,
                [("rollouts_pod_template_hash", *hash)],
            ));
        }
        index.insert_metrics(&chunk);
    }

    fn selector_release() -> Release {
        let mut release = release();
        release.spec.hosts = ReleaseHosts::Selector {
            selector: "rollouts_pod_template_hash=\"new\"".into(),
        };
        release.spec.reference = ReferenceHosts::Selector {
            selector: "rollouts_pod_template_hash=\"old\"".into(),
        };
        release.deployed[0].hosts = Vec::new();
        release
    }

    #[test]
    fn a_release_that_names_its_hosts_is_judged_as_it_is() {
        let mut index = DataIndex::new();
        pods(&mut index, &[("a", "new", &[100])]);
        assert!(judged_release(&release(), &index, 0, 200).is_none());
    }

    #[test]
    fn pods_are_deployed_at_their_first_sample_or_the_reported_batch() {
        let mut index = DataIndex::new();
        let every_10s: Vec<i64> = (0..30).map(|step| 10 * step).collect();
        let from_150: Vec<i64> = (15..30).map(|step| 10 * step).collect();
        pods(
            &mut index,
            &[
                ("canary-1", "new", &every_10s[9..]),
                ("canary-2", "new", &from_150),
                ("stable-1", "old", &every_10s),
                ("stable-2", "old", &every_10s),
                ("other", "x", &every_10s),
            ],
        );
        let judged = judged_release(&selector_release(), &index, 0, 290).unwrap();
        assert_eq!(judged.spec.hosts.names(), ["canary-1", "canary-2"]);
        assert_eq!(
            judged.spec.reference,
            ReferenceHosts::Hosts {
                hosts: vec!["stable-1".into(), "stable-2".into()]
            }
        );
        let deploys: Vec<(i64, Vec<String>)> = judged
            .deployed
            .iter()
            .map(|batch| (batch.at, batch.hosts.clone()))
            .collect();
        assert_eq!(
            deploys,
            vec![
                (100, vec!["canary-1".to_owned()]),
                (150, vec!["canary-2".to_owned()])
            ]
        );
        // Before canary-2's first sample it is not in the group yet.
        let earlier = judged_release(&selector_release(), &index, 0, 120).unwrap();
        assert_eq!(earlier.spec.hosts.names(), ["canary-1"]);
    }

    #[test]
    fn a_replaced_pod_leaves_its_group_but_a_group_gone_quiet_stays() {
        let mut index = DataIndex::new();
        let until_200: Vec<i64> = (0..=20).map(|step| 10 * step).collect();
        let from_210: Vec<i64> = (21..=40).map(|step| 10 * step).collect();
        let all: Vec<i64> = (0..=40).map(|step| 10 * step).collect();
        pods(
            &mut index,
            &[
                ("canary-old", "new", &until_200),
                ("canary-more", "new", &all),
                ("canary-replacement", "new", &from_210),
                ("stable-old", "old", &until_200),
                ("stable-kept", "old", &all),
            ],
        );
        // One quiet step: late, still in the group.
        let late = judged_release(&selector_release(), &index, 0, 210).unwrap();
        assert!(late.spec.hosts.names().contains(&"canary-old".to_owned()));
        // Two, as many as make a silent host: replaced, gone from both groups.
        let replaced = judged_release(&selector_release(), &index, 0, 220).unwrap();
        assert_eq!(
            replaced.spec.hosts.names(),
            ["canary-more", "canary-replacement"]
        );
        assert_eq!(
            replaced.spec.reference,
            ReferenceHosts::Hosts {
                hosts: vec!["stable-kept".into()]
            }
        );
        // Every pod of the release group quiet: none has left, all are still judged.
        let quiet = judged_release(&selector_release(), &index, 0, 600).unwrap();
        assert_eq!(
            quiet.spec.hosts.names(),
            ["canary-more", "canary-old", "canary-replacement"]
        );
    }

    #[test]
    fn a_release_group_that_finds_nobody_holds_and_is_not_covered() {
        let mut index = DataIndex::new();
        let every_10s: Vec<i64> = (0..30).map(|step| 10 * step).collect();
        pods(&mut index, &[("stable-1", "old", &every_10s)]);
        let stored = selector_release();
        let judged = judged_release(&stored, &index, 0, 290).unwrap();
        assert!(judged.spec.hosts.names().is_empty());
        let healthy = Judgement {
            at: 290,
            verdict: Verdict::Healthy,
            findings: Vec::new(),
            reason: None,
            suppressed: Vec::new(),
        };
        let (held, covered) = hold_an_empty_group(&stored, &judged, healthy.clone(), true);
        assert!(!covered);
        assert_eq!(held.verdict, Verdict::InsufficientData);
        assert_eq!(
            held.reason.as_deref(),
            Some(
                "waiting for data: no host of shop labelled rollouts_pod_template_hash=\"new\" \
                 sends data"
            )
        );
        // A release that names its hosts is left as it is.
        let named = release();
        assert_eq!(
            hold_an_empty_group(&named, &named, healthy.clone(), true),
            (healthy, true)
        );
    }

    #[test]
    fn every_other_host_leaves_out_every_pod_of_the_release_selector() {
        let mut index = DataIndex::new();
        let until_200: Vec<i64> = (0..=20).map(|step| 10 * step).collect();
        let all: Vec<i64> = (0..=40).map(|step| 10 * step).collect();
        pods(
            &mut index,
            &[
                ("canary-old", "new", &until_200),
                ("canary", "new", &all),
                ("stable", "old", &all),
            ],
        );
        let mut release = selector_release();
        release.spec.reference = ReferenceHosts::EveryOtherHost;
        let judged = judged_release(&release, &index, 0, 400).unwrap();
        assert_eq!(judged.spec.hosts.names(), ["canary"]);
        assert_eq!(
            judged.spec.reference,
            ReferenceHosts::Hosts {
                hosts: vec!["stable".into()]
            }
        );
    }
}
