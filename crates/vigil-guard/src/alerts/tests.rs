use std::collections::{BTreeMap, HashMap};

use super::*;

/// 2024-03-01T12:00:00Z: the first deploy.
const DEPLOY: i64 = 1_709_294_400;

fn hosts(names: &[&str]) -> Vec<String> {
    names.iter().map(|name| (*name).to_owned()).collect()
}

fn alert(name: &str, labels: &[(&str, &str)], starts_at: i64, ends_at: Option<i64>) -> Alert {
    let labels: BTreeMap<String, String> = labels
        .iter()
        .map(|(label, value)| ((*label).to_owned(), (*value).to_owned()))
        .collect();
    Alert {
        fingerprint: vigil_core::alert::label_fingerprint(name, &labels),
        starts_at,
        ends_at,
        name: name.to_owned(),
        app: "shop".to_owned(),
        severity: labels.get("severity").cloned().unwrap_or_default(),
        labels,
        summary: "5xx above 5 %".to_owned(),
        source: "api".to_owned(),
        received_at: starts_at,
    }
}

/// Release hosts r1, r2 (r1 deployed at DEPLOY, r2 at DEPLOY + 600 when `both`), reference
/// k1, k2, judged at DEPLOY + 1200.
struct Setup {
    release_hosts: Vec<String>,
    deployed: HashMap<String, i64>,
    reference_hosts: Vec<String>,
}

impl Setup {
    fn new(both: bool) -> Setup {
        let mut deployed = HashMap::from([("r1".to_owned(), DEPLOY)]);
        if both {
            deployed.insert("r2".to_owned(), DEPLOY + 600);
        }
        Setup {
            release_hosts: hosts(&["r1", "r2"]),
            deployed,
            reference_hosts: hosts(&["k1", "k2"]),
        }
    }

    fn scope(&self, host_label: Option<&'static str>) -> AlertScope<'_> {
        AlertScope {
            release_hosts: &self.release_hosts,
            deployed: &self.deployed,
            reference_hosts: &self.reference_hosts,
            host_label,
            from: DEPLOY,
            until: DEPLOY + 1200,
        }
    }

    fn matched(&self, alerts: &[Alert]) -> Vec<AlertMatch> {
        match_alerts(alerts, &self.scope(None))
    }
}

fn critical_on(host_label: &str, host: &str, starts_at: i64) -> Alert {
    alert(
        "HighErrorRate",
        &[
            (host_label, host),
            ("severity", "critical"),
            ("app", "shop"),
        ],
        starts_at,
        None,
    )
}

#[test]
fn a_critical_alert_on_release_hosts_only_is_a_fault_finding() {
    let setup = Setup::new(true);
    let matches = setup.matched(&[
        critical_on("host", "r1", DEPLOY + 180),
        critical_on("host", "r2", DEPLOY + 900),
    ]);
    assert_eq!(matches.len(), 1);
    assert!(matches[0].blamed);
    assert_eq!(matches[0].release_hosts, ["r1", "r2"]);
    let findings = alert_findings(&matches, 2);
    assert_eq!(findings.len(), 1);
    let finding = &findings[0];
    assert_eq!(finding.severity, Verdict::Fault);
    assert_eq!(finding.signal.label(), "alert:HighErrorRate");
    assert_eq!(finding.hosts, ["r1", "r2"]);
    assert_eq!(finding.since, DEPLOY + 180);
    assert_eq!(
        finding.evidence,
        "alert: HighErrorRate firing on r1, r2 since 12:03 UTC (severity critical): 5xx above 5 %"
    );
    assert_eq!(
        finding.explanation,
        "alert HighErrorRate (critical) fires on 2 of 2 release hosts (r1, r2) and on no \
         reference host, since 12:03 UTC: 5xx above 5 %"
    );
    let rows = alert_rows(&matches, 2);
    assert_eq!(rows[0].verdict, RowVerdict::Fail);
    assert_eq!(rows[0].compared_with, "alert");
    assert_eq!(rows[0].hosts_affected, 2);
}

#[test]
fn the_same_alert_on_a_reference_host_too_is_not_blamed_on_the_release() {
    let setup = Setup::new(true);
    let matches = setup.matched(&[
        critical_on("host", "r1", DEPLOY + 180),
        // On the reference host since before the deploy, still firing in the span.
        critical_on("host", "k1", DEPLOY - 3000),
    ]);
    assert!(!matches[0].blamed);
    assert!(alert_findings(&matches, 2).is_empty());
    let rows = alert_rows(&matches, 2);
    assert_eq!(rows[0].verdict, RowVerdict::Pass);
    assert_eq!(
        rows[0].note,
        "firing on release hosts r1, also on reference hosts k1: not blamed on the release"
    );
    assert_eq!(rows[0].reference, Some(1.0));
    // One that fired on the reference host and ended before the deploy does not count.
    let earlier = alert(
        "HighErrorRate",
        &[("host", "k1"), ("severity", "critical")],
        DEPLOY - 3000,
        Some(DEPLOY - 1),
    );
    let matches = setup.matched(&[critical_on("host", "r1", DEPLOY + 180), earlier]);
    assert!(matches[0].blamed);
}

#[test]
fn an_alert_without_host_labels_is_not_blamed_and_says_why() {
    let setup = Setup::new(true);
    let matches = setup.matched(&[alert(
        "QueueBacklog",
        &[("severity", "critical"), ("app", "shop")],
        DEPLOY + 60,
        None,
    )]);
    assert!(!matches[0].blamed);
    assert_eq!(matches[0].without_host, 1);
    assert_eq!(
        alert_rows(&matches, 2)[0].note,
        "no host label (host, instance, pod, node): not blamed on the release"
    );
}

#[test]
fn an_instance_with_a_port_names_its_host_and_other_labels_are_looked_at_in_order() {
    let setup = Setup::new(true);
    let matches = setup.matched(&[critical_on("instance", "r2:9100", DEPLOY + 700)]);
    assert!(matches[0].blamed);
    assert_eq!(matches[0].release_hosts, ["r2"]);
    // `pod` names the host when `instance` is a scrape address of no known host.
    let matches = setup.matched(&[alert(
        "Crash",
        &[("instance", "10.0.0.7:8080"), ("pod", "r1")],
        DEPLOY + 60,
        None,
    )]);
    assert_eq!(matches[0].release_hosts, ["r1"]);
    // A host label naming no known host: outside the release.
    let matches = setup.matched(&[
        critical_on("host", "r1", DEPLOY + 60),
        critical_on("instance", "x9:9100", DEPLOY + 60),
    ]);
    assert!(!matches[0].blamed);
    assert_eq!(matches[0].other_hosts, ["x9:9100"]);
}

#[test]
fn the_apps_host_label_comes_first() {
    let setup = Setup::new(true);
    let alerts = [alert(
        "Crash",
        &[("host", "k1"), ("machine", "r1")],
        DEPLOY + 60,
        None,
    )];
    assert_eq!(setup.matched(&alerts)[0].reference_hosts, ["k1"]);
    let with_label = match_alerts(&alerts, &setup.scope(Some("machine")));
    assert_eq!(with_label[0].release_hosts, ["r1"]);
    assert!(with_label[0].blamed);
}

#[test]
fn an_alert_firing_before_the_deploy_is_not_blamed_unless_new_on_a_release_host_after() {
    let setup = Setup::new(true);
    let old = critical_on("host", "r1", DEPLOY - 600);
    let matches = setup.matched(std::slice::from_ref(&old));
    assert!(!matches[0].blamed);
    assert_eq!(
        matches[0].note(),
        "firing on r1 since before its deploy: not blamed on the release"
    );
    // r2 is deployed at DEPLOY + 600: an occurrence starting on it after that is new.
    let matches = setup.matched(&[old.clone(), critical_on("host", "r2", DEPLOY + 650)]);
    assert!(matches[0].blamed);
    assert_eq!(matches[0].release_hosts, ["r2"]);
    assert_eq!(matches[0].before_deploy, ["r1"]);
    // Before r2's own deploy it still ran the old version: not the release's.
    let matches = setup.matched(&[critical_on("host", "r2", DEPLOY + 300)]);
    assert!(!matches[0].blamed);
    // Before the first deploy, the release has no deployed host at all.
    let undeployed = Setup::new(false);
    let matches = undeployed.matched(&[critical_on("host", "r2", DEPLOY + 300)]);
    assert_eq!(matches[0].other_hosts, ["r2"]);
    assert!(!matches[0].blamed);
}

#[test]
fn alerts_outside_the_span_are_left_out() {
    let setup = Setup::new(true);
    let matches = setup.matched(&[
        alert("Old", &[("host", "r1")], DEPLOY - 900, Some(DEPLOY - 300)),
        alert("Later", &[("host", "r1")], DEPLOY + 1201, None),
    ]);
    assert!(matches.is_empty());
}

#[test]
fn severities_other_than_critical_recommend() {
    let setup = Setup::new(true);
    for (severity, expected) in [
        ("warning", Verdict::Anomaly),
        ("", Verdict::Anomaly),
        ("CRITICAL", Verdict::Fault),
        ("page", Verdict::Fault),
        ("fatal", Verdict::Fault),
    ] {
        let matches = setup.matched(&[alert(
            "Slow",
            &[("host", "r1"), ("severity", severity)],
            DEPLOY + 60,
            None,
        )]);
        assert_eq!(matches[0].severity, expected, "{severity}");
    }
    let matches = setup.matched(&[alert("Slow", &[("host", "r1")], DEPLOY + 60, None)]);
    assert_eq!(
        alert_findings(&matches, 2)[0].evidence,
        "alert: Slow firing on r1 since 12:01 UTC (no severity): 5xx above 5 %"
    );
    assert_eq!(alert_rows(&matches, 2)[0].verdict, RowVerdict::Recommend);
}

fn judgement(verdict: Verdict) -> Judgement {
    Judgement {
        at: DEPLOY + 1200,
        verdict,
        findings: Vec::new(),
        reason: Some("waiting for data".to_owned()),
        suppressed: Vec::new(),
    }
}

#[test]
fn findings_set_the_verdict_most_severe_first() {
    let setup = Setup::new(true);
    let fault = alert_findings(&setup.matched(&[critical_on("host", "r1", DEPLOY + 60)]), 2);
    let anomaly = alert_findings(
        &setup.matched(&[alert("Slow", &[("host", "r1")], DEPLOY + 60, None)]),
        2,
    );
    let held = Judgement::with_findings(judgement(Verdict::InsufficientData), fault.clone());
    assert_eq!(held.verdict, Verdict::Fault);
    let recommended = Judgement::with_findings(judgement(Verdict::Healthy), anomaly.clone());
    assert_eq!(recommended.verdict, Verdict::Anomaly);
    let still_held =
        Judgement::with_findings(judgement(Verdict::InsufficientData), anomaly.clone());
    assert_eq!(still_held.verdict, Verdict::InsufficientData);
    let both = Judgement::with_findings(
        judgement(Verdict::Healthy),
        anomaly.into_iter().chain(fault).collect(),
    );
    assert_eq!(both.verdict, Verdict::Fault);
    assert_eq!(both.findings[0].signal.label(), "alert:HighErrorRate");
    assert_eq!(
        Judgement::with_findings(judgement(Verdict::Healthy), Vec::new()),
        judgement(Verdict::Healthy)
    );
}
