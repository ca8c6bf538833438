//! Channel configuration, read from the server's configuration file.

use std::collections::HashSet;

use serde::Deserialize;
use vigil_core::release::NotificationEvent;

use crate::NotifyError;

/// Every event, in the order they are documented: what a channel gets unless it lists events.
pub const ALL_EVENTS: [NotificationEvent; 4] = [
    NotificationEvent::Paused,
    NotificationEvent::Recommendation,
    NotificationEvent::Resumed,
    NotificationEvent::RolledBack,
];

/// The notification settings of the server, for example:
///
/// ```json
/// {
///   "timeout_seconds": 10,
///   "batch_size": 50,
///   "retry": { "delays_seconds": [10, 30, 120, 600, 1800, 3600], "max_attempts": 10,
///              "max_age_seconds": 86400 },
///   "channels": [
///     { "name": "ops", "kind": "slack",
///       "webhook_url": "https://hooks.slack.com/services/T000/B000/XXXX" },
///     { "name": "oncall", "kind": "dingtalk", "events": ["paused", "rolled_back"],
///       "webhook_url": "https://oapi.dingtalk.com/robot/send?access_token=XXXX",
///       "secret": "SECxxxx" },
///     { "name": "team", "kind": "feishu",
///       "webhook_url": "https://open.feishu.cn/open-apis/bot/v2/hook/XXXX", "secret": "xxxx" },
///     { "name": "audit", "kind": "webhook", "url": "https://audit.example.com/vigil",
///       "secret": "a long random string" }
///   ]
/// }
/// ```
///
/// Every field has a default (no channels: nothing is sent); a channel without `events` gets
/// every event.
/// Unknown fields, and fields that belong to another kind, are errors, so that a misspelt
/// `secret` does not silently send unsigned messages.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NotifyConfig {
    #[serde(default)]
    pub channels: Vec<ChannelConfig>,
    /// Time allowed for one HTTP request, connection and answer included.
    #[serde(default = "default_timeout_seconds")]
    pub timeout_seconds: u64,
    /// At most this many due items are taken per [`crate::Notifier::deliver_due`] call.
    #[serde(default = "default_batch_size")]
    pub batch_size: usize,
    #[serde(default)]
    pub retry: RetryPolicy,
    /// A proxy for every request (`http://host:port`); without it the usual environment
    /// variables (`HTTPS_PROXY`, `ALL_PROXY`, `NO_PROXY`) apply.
    #[serde(default)]
    pub proxy: Option<String>,
}

fn default_timeout_seconds() -> u64 {
    10
}

fn default_batch_size() -> usize {
    50
}

impl Default for NotifyConfig {
    fn default() -> Self {
        NotifyConfig {
            channels: Vec::new(),
            timeout_seconds: default_timeout_seconds(),
            batch_size: default_batch_size(),
            retry: RetryPolicy::default(),
            proxy: None,
        }
    }
}

impl NotifyConfig {
    /// Checks what serde cannot: unique channel names, URLs, secrets and the retry policy.
    pub fn validate(&self) -> Result<(), NotifyError> {
        let mut names = HashSet::new();
        for channel in &self.channels {
            if !names.insert(channel.name.as_str()) {
                return Err(NotifyError::DuplicateChannel {
                    name: channel.name.clone(),
                });
            }
        }
        if self.timeout_seconds == 0 {
            return Err(NotifyError::InvalidSetting(
                "timeout_seconds must be at least 1".to_string(),
            ));
        }
        self.retry.validate()
    }
}

/// A secret from the configuration; its `Debug` form does not show it.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(text: impl Into<String>) -> Secret {
        Secret(text.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// One named destination and the events it wants.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "RawChannel")]
pub struct ChannelConfig {
    pub name: String,
    /// The events sent to this channel; every event unless the configuration lists some.
    pub events: Vec<NotificationEvent>,
    pub target: ChannelTarget,
}

impl ChannelConfig {
    pub fn wants(&self, event: NotificationEvent) -> bool {
        self.events.contains(&event)
    }
}

/// Where and how a channel's messages go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChannelTarget {
    /// A Slack incoming webhook.
    Slack { webhook_url: String },
    /// A DingTalk group robot; with a secret, requests carry DingTalk's signature.
    DingTalk {
        webhook_url: String,
        secret: Option<Secret>,
    },
    /// A Feishu or Lark custom bot; with a secret, messages carry Feishu's signature.
    Feishu {
        webhook_url: String,
        secret: Option<Secret>,
    },
    /// Any HTTP endpoint: a JSON document signed with the secret (see `render.rs`).
    Webhook { url: String, secret: Secret },
}

impl ChannelTarget {
    pub fn kind(&self) -> &'static str {
        match self {
            ChannelTarget::Slack { .. } => "slack",
            ChannelTarget::DingTalk { .. } => "dingtalk",
            ChannelTarget::Feishu { .. } => "feishu",
            ChannelTarget::Webhook { .. } => "webhook",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
enum ChannelKind {
    Slack,
    #[serde(rename = "dingtalk")]
    DingTalk,
    /// Lark is Feishu's international name; the custom bot protocol is the same.
    #[serde(alias = "lark")]
    Feishu,
    Webhook,
}

/// The channel as written: every kind's fields, checked against the kind by `try_from`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawChannel {
    name: String,
    kind: ChannelKind,
    #[serde(default)]
    events: Option<Vec<NotificationEvent>>,
    #[serde(default)]
    webhook_url: Option<String>,
    #[serde(default)]
    url: Option<String>,
    #[serde(default)]
    secret: Option<Secret>,
}

impl TryFrom<RawChannel> for ChannelConfig {
    type Error = NotifyError;

    fn try_from(raw: RawChannel) -> Result<ChannelConfig, NotifyError> {
        let invalid = |reason: &str| NotifyError::InvalidChannel {
            channel: raw.name.clone(),
            reason: reason.to_string(),
        };
        if raw.name.trim().is_empty() {
            return Err(invalid("the name is empty"));
        }
        let events = raw.events.clone().unwrap_or_else(|| ALL_EVENTS.to_vec());
        if events.is_empty() {
            return Err(invalid("events is empty; leave it out to get every event"));
        }
        let secret = match &raw.secret {
            Some(given) if given.expose().is_empty() => {
                return Err(invalid("the secret is empty; leave it out or set one"))
            }
            other => other.clone(),
        };
        let bot_url = || {
            if raw.url.is_some() {
                return Err(invalid("this kind takes webhook_url, not url"));
            }
            raw.webhook_url
                .clone()
                .ok_or_else(|| invalid("webhook_url is missing"))
        };
        let target = match raw.kind {
            ChannelKind::Slack => {
                if secret.is_some() {
                    return Err(invalid("a slack channel takes no secret"));
                }
                ChannelTarget::Slack {
                    webhook_url: bot_url()?,
                }
            }
            ChannelKind::DingTalk => ChannelTarget::DingTalk {
                webhook_url: bot_url()?,
                secret,
            },
            ChannelKind::Feishu => ChannelTarget::Feishu {
                webhook_url: bot_url()?,
                secret,
            },
            ChannelKind::Webhook => {
                if raw.webhook_url.is_some() {
                    return Err(invalid("a webhook channel takes url, not webhook_url"));
                }
                let url = raw.url.clone().ok_or_else(|| invalid("url is missing"))?;
                let required = secret.ok_or_else(|| invalid("a webhook channel needs a secret"))?;
                ChannelTarget::Webhook {
                    url,
                    secret: required,
                }
            }
        };
        let target_url = match &target {
            ChannelTarget::Slack { webhook_url }
            | ChannelTarget::DingTalk { webhook_url, .. }
            | ChannelTarget::Feishu { webhook_url, .. } => webhook_url,
            ChannelTarget::Webhook { url, .. } => url,
        };
        if !(target_url.starts_with("https://") || target_url.starts_with("http://")) {
            return Err(invalid("the url must start with https:// or http://"));
        }
        Ok(ChannelConfig {
            name: raw.name,
            events,
            target,
        })
    }
}

/// When failed sends are tried again: a fixed schedule, the same for every item.
///
/// After the n-th failed attempt the next one is `delays_seconds[n - 1]` later (the last delay
/// repeats). An item is given up (dead) after `max_attempts` attempts, or when the next attempt
/// would come more than `max_age_seconds` after the item was queued.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetryPolicy {
    #[serde(default = "default_delays")]
    pub delays_seconds: Vec<i64>,
    #[serde(default = "default_max_attempts")]
    pub max_attempts: i64,
    #[serde(default = "default_max_age_seconds")]
    pub max_age_seconds: i64,
}

fn default_delays() -> Vec<i64> {
    vec![10, 30, 120, 600, 1800, 3600]
}

fn default_max_attempts() -> i64 {
    10
}

fn default_max_age_seconds() -> i64 {
    24 * 3600
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            delays_seconds: default_delays(),
            max_attempts: default_max_attempts(),
            max_age_seconds: default_max_age_seconds(),
        }
    }
}

impl RetryPolicy {
    pub fn validate(&self) -> Result<(), NotifyError> {
        if self.delays_seconds.is_empty() {
            return Err(NotifyError::InvalidSetting(
                "delays_seconds needs at least one delay".to_string(),
            ));
        }
        if self.delays_seconds.iter().any(|delay| *delay <= 0) {
            return Err(NotifyError::InvalidSetting(
                "every delay must be at least one second".to_string(),
            ));
        }
        if self.max_attempts < 1 {
            return Err(NotifyError::InvalidSetting(
                "max_attempts must be at least 1".to_string(),
            ));
        }
        if self.max_age_seconds < 1 {
            return Err(NotifyError::InvalidSetting(
                "max_age_seconds must be at least 1".to_string(),
            ));
        }
        Ok(())
    }

    /// When to try again after attempt number `attempt` (1 for the first) failed at `now`,
    /// for an item queued at `created_at`; `None` gives the item up.
    pub fn retry_at(&self, attempt: i64, created_at: i64, now: i64) -> Option<i64> {
        if attempt >= self.max_attempts {
            return None;
        }
        let index = usize::try_from(attempt.saturating_sub(1)).unwrap_or(0);
        let delay = self
            .delays_seconds
            .get(index)
            .or(self.delays_seconds.last())
            .copied()?;
        let next = now.saturating_add(delay);
        if next.saturating_sub(created_at) > self.max_age_seconds {
            return None;
        }
        Some(next)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(json: &str) -> Result<NotifyConfig, String> {
        let config: NotifyConfig = serde_json::from_str(json).map_err(|error| error.to_string())?;
        config.validate().map_err(|error| error.to_string())?;
        Ok(config)
    }

    #[test]
    fn the_documented_example_parses() {
        let json = r#"{
          "timeout_seconds": 10,
          "batch_size": 50,
          "retry": { "delays_seconds": [10, 30, 120, 600, 1800, 3600], "max_attempts": 10,
                     "max_age_seconds": 86400 },
          "channels": [
            { "name": "ops", "kind": "slack",
              "webhook_url": "https://hooks.slack.com/services/T000/B000/XXXX" },
            { "name": "oncall", "kind": "dingtalk", "events": ["paused", "rolled_back"],
              "webhook_url": "https://oapi.dingtalk.com/robot/send?access_token=XXXX",
              "secret": "SECxxxx" },
            { "name": "team", "kind": "feishu",
              "webhook_url": "https://open.feishu.cn/open-apis/bot/v2/hook/XXXX", "secret": "xxxx" },
            { "name": "audit", "kind": "webhook", "url": "https://audit.example.com/vigil",
              "secret": "a long random string" }
          ]
        }"#;
        let config = parse(json).unwrap();
        assert_eq!(config.channels.len(), 4);
        assert_eq!(config.channels[0].events, ALL_EVENTS.to_vec());
        assert!(config.channels[1].wants(NotificationEvent::RolledBack));
        assert!(!config.channels[1].wants(NotificationEvent::Recommendation));
        assert_eq!(config.channels[2].target.kind(), "feishu");
        assert_eq!(
            config.channels[3].target,
            ChannelTarget::Webhook {
                url: "https://audit.example.com/vigil".to_string(),
                secret: Secret::new("a long random string"),
            }
        );
        assert_eq!(config.retry, RetryPolicy::default());
        let lark = parse(r#"{"channels":[{"name":"l","kind":"lark","webhook_url":"https://x"}]}"#)
            .unwrap();
        assert_eq!(lark.channels[0].target.kind(), "feishu");
    }

    #[test]
    fn defaults_fill_everything_but_channels() {
        let config = parse(r#"{}"#).unwrap();
        assert_eq!(config, NotifyConfig::default());
    }

    #[test]
    fn mistakes_are_named() {
        let cases = [
            (
                r#"{"channels":[{"name":"a","kind":"slack","webhook_url":"https://x","secert":"s"}]}"#,
                "unknown field `secert`",
            ),
            (
                r#"{"channels":[{"name":"a","kind":"slack","webhook_url":"https://x","secret":"s"}]}"#,
                "channel a: a slack channel takes no secret",
            ),
            (
                r#"{"channels":[{"name":"a","kind":"webhook","url":"https://x"}]}"#,
                "channel a: a webhook channel needs a secret",
            ),
            (
                r#"{"channels":[{"name":"a","kind":"webhook","webhook_url":"https://x","secret":"s"}]}"#,
                "channel a: a webhook channel takes url, not webhook_url",
            ),
            (
                r#"{"channels":[{"name":"a","kind":"feishu","webhook_url":"ftp://x"}]}"#,
                "channel a: the url must start with https:// or http://",
            ),
            (
                r#"{"channels":[{"name":"a","kind":"dingtalk","webhook_url":"https://x","events":[]}]}"#,
                "channel a: events is empty",
            ),
            (
                r#"{"channels":[{"name":"a","kind":"teams","webhook_url":"https://x"}]}"#,
                "unknown variant `teams`",
            ),
            (
                r#"{"channels":[{"name":"a","kind":"slack","webhook_url":"https://x"},
                                {"name":"a","kind":"slack","webhook_url":"https://y"}]}"#,
                "channel a is configured more than once",
            ),
            (
                r#"{"retry":{"delays_seconds":[]}}"#,
                "delays_seconds needs at least one delay",
            ),
        ];
        for (json, expected) in cases {
            let error = parse(json).unwrap_err();
            assert!(error.contains(expected), "{json}: {error}");
        }
    }

    #[test]
    fn secrets_stay_out_of_debug_output() {
        let secret = Secret::new("hunter2");
        assert!(!format!("{secret:?}").contains("hunter2"));
    }

    #[test]
    fn the_schedule_backs_off_then_gives_up() {
        let policy = RetryPolicy {
            delays_seconds: vec![10, 30, 120],
            max_attempts: 5,
            max_age_seconds: 1000,
        };
        assert_eq!(policy.retry_at(1, 0, 0), Some(10));
        assert_eq!(policy.retry_at(2, 0, 10), Some(40));
        assert_eq!(policy.retry_at(3, 0, 40), Some(160));
        // The last delay repeats.
        assert_eq!(policy.retry_at(4, 0, 160), Some(280));
        // Out of attempts.
        assert_eq!(policy.retry_at(5, 0, 280), None);
        // Too old: the next attempt would come after max_age.
        assert_eq!(policy.retry_at(1, 0, 995), None);
    }
}
