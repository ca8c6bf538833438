//! What a notification says: its title, its one-line reason with the top findings, and the
//! link to the release page, the same for every channel kind.
//!
//! The text of a [`NewNotification`] is one line of reason followed by one line per finding;
//! each kind renders that as it can (see `render.rs`).

use vigil_core::release::{NewNotification, NotificationEvent, Release};
use vigil_core::Finding;

/// At most this many findings are listed; the rest are counted.
pub const TOP_FINDINGS: usize = 3;

/// Something that happened to a release, to be told on every channel that wants it.
#[derive(Debug, Clone, Copy)]
pub struct Notice<'a> {
    pub event: NotificationEvent,
    pub release: &'a Release,
    /// Why, in one line (the pause reason, the recommendation, who resumed it).
    pub reason: &'a str,
    /// The evidence, most severe first; the first few are listed.
    pub findings: &'a [Finding],
    /// The server's public address, such as `https://vigil.example.com`.
    pub public_url: &'a str,
}

impl Notice<'_> {
    /// The title names Vigil, the app and the version (DingTalk robots with the keyword
    /// setting can use `Vigil` as their keyword).
    pub fn title(&self) -> String {
        let spec = &self.release.spec;
        let release = format!("{} {}", spec.app, spec.version);
        match self.event {
            NotificationEvent::Paused => format!("Vigil paused the release of {release}"),
            NotificationEvent::Recommendation => {
                format!("Vigil recommends a look at the release of {release}")
            }
            NotificationEvent::Resumed => format!("Vigil: the release of {release} was resumed"),
            NotificationEvent::RolledBack => {
                format!("Vigil: the release of {release} was rolled back")
            }
        }
    }

    pub fn text(&self) -> String {
        let mut lines = vec![one_line(self.reason)];
        for finding in self.findings.iter().take(TOP_FINDINGS) {
            lines.push(finding_line(finding));
        }
        let more = self.findings.len().saturating_sub(TOP_FINDINGS);
        if more > 0 {
            let plural = if more == 1 { "" } else { "s" };
            lines.push(format!("and {more} more finding{plural}"));
        }
        lines.join("\n")
    }

    pub fn link(&self) -> String {
        release_link(self.public_url, &self.release.id)
    }

    /// The message for one channel.
    pub fn for_channel(&self, channel: &str) -> NewNotification {
        NewNotification {
            release_id: self.release.id.clone(),
            event: self.event,
            channel: channel.to_string(),
            title: self.title(),
            text: self.text(),
            link: self.link(),
        }
    }
}

/// `{public_url}/releases/{id}`, without a doubled slash.
pub fn release_link(public_url: &str, release_id: &str) -> String {
    format!("{}/releases/{release_id}", public_url.trim_end_matches('/'))
}

fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn finding_line(finding: &Finding) -> String {
    let label = one_line(&finding.signal.label());
    let hosts = format!("{} of {} hosts", finding.hosts.len(), finding.hosts_judged);
    let explanation = one_line(&finding.explanation);
    if explanation.is_empty() {
        return format!("{label} ({hosts}, {})", finding.severity);
    }
    format!("{label} ({hosts}, {}): {explanation}", finding.severity)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use vigil_core::release::{ReferenceHosts, ReleaseSpec, ReleaseState};
    use vigil_core::{Signal, Verdict};

    pub(crate) fn sample_release() -> Release {
        Release {
            id: "r-42".to_string(),
            spec: ReleaseSpec {
                app: "checkout".to_string(),
                version: "1.4.2".to_string(),
                hosts: vec!["h1".to_string(), "h2".to_string()].into(),
                reference: ReferenceHosts::EveryOtherHost,
                batches: Vec::new(),
                step_seconds: 60,
                observe_seconds: 600,
                metrics: Vec::new(),
                settings: serde_json::Map::new(),
                rules: Vec::new(),
            },
            state: ReleaseState::Paused,
            created_by: "ci".to_string(),
            created_at: 1_700_000_000,
            updated_at: 1_700_000_600,
            deployed: Vec::new(),
            verdict: Some(Verdict::Fault),
            reason: "error rate up".to_string(),
        }
    }

    pub(crate) fn sample_finding(name: &str) -> Finding {
        Finding {
            severity: Verdict::Fault,
            signal: Signal::Metric {
                name: name.to_string(),
            },
            hosts: vec!["h1".to_string(), "h2".to_string()],
            hosts_judged: 2,
            direction: "up".to_string(),
            observed: 0.05,
            expected: 0.01,
            effect: 4.0,
            score: 9.0,
            baseline: "reference".to_string(),
            evidence: "z 9.0".to_string(),
            since: 1_700_000_300,
            explanation: "5x the reference hosts'\nerror rate".to_string(),
        }
    }

    #[test]
    fn a_notice_has_title_reason_findings_and_link() {
        let release = sample_release();
        let findings: Vec<Finding> = ["errors", "latency", "cpu", "memory", "disk"]
            .into_iter()
            .map(sample_finding)
            .collect();
        let notice = Notice {
            event: NotificationEvent::Paused,
            release: &release,
            reason: "fault: errors\non 2 hosts",
            findings: &findings,
            public_url: "https://vigil.example.com/",
        };
        let message = notice.for_channel("ops");
        assert_eq!(message.title, "Vigil paused the release of checkout 1.4.2");
        assert_eq!(message.link, "https://vigil.example.com/releases/r-42");
        assert_eq!(message.channel, "ops");
        let lines: Vec<&str> = message.text.lines().collect();
        assert_eq!(
            lines,
            vec![
                "fault: errors on 2 hosts",
                "errors (2 of 2 hosts, fault): 5x the reference hosts' error rate",
                "latency (2 of 2 hosts, fault): 5x the reference hosts' error rate",
                "cpu (2 of 2 hosts, fault): 5x the reference hosts' error rate",
                "and 2 more findings",
            ]
        );
    }
}
