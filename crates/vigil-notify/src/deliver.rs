//! Delivery: due outbox items are sent one after the other and marked sent, failed with the
//! next retry time, or dead.

use std::time::Duration;

use vigil_core::release::{NewNotification, OutboxItem};
use vigil_store::{Store, StoreError};

use crate::compose::Notice;
use crate::config::{ChannelConfig, ChannelTarget, NotifyConfig, RetryPolicy};
use crate::render::{check_answer, render, HttpRequest};
use crate::NotifyError;

/// At most this much of an answer's body is read.
const ANSWER_READ_LIMIT: u64 = 64 * 1024;

/// The three outbox operations delivery needs; every [`Store`] has them.
pub trait Outbox {
    /// Pending items due at `now`, oldest first, at most `limit`.
    fn due(&self, now: i64, limit: usize) -> Result<Vec<OutboxItem>, StoreError>;
    fn mark_sent(&self, id: i64, at: i64) -> Result<(), StoreError>;
    /// Records a failed attempt; `retry_at: None` gives the item up.
    fn mark_failed(&self, id: i64, error: &str, retry_at: Option<i64>) -> Result<(), StoreError>;
}

impl<S: Store + ?Sized> Outbox for S {
    fn due(&self, now: i64, limit: usize) -> Result<Vec<OutboxItem>, StoreError> {
        self.due_notifications(now, limit)
    }

    fn mark_sent(&self, id: i64, at: i64) -> Result<(), StoreError> {
        self.notification_sent(id, at)
    }

    fn mark_failed(&self, id: i64, error: &str, retry_at: Option<i64>) -> Result<(), StoreError> {
        self.notification_failed(id, error, retry_at)
    }
}

/// What one [`Notifier::deliver_due`] call did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DeliveryReport {
    /// Items taken from the outbox.
    pub due: usize,
    pub sent: usize,
    /// Failed, with a later attempt scheduled.
    pub retried: usize,
    /// Failed and given up.
    pub dead: usize,
    /// Outbox calls that failed (each is logged); an item whose outcome could not be recorded
    /// is tried again when it is next due.
    pub store_errors: usize,
}

/// The configured channels and how to reach them.
pub struct Notifier {
    channels: Vec<ChannelConfig>,
    retry: RetryPolicy,
    batch_size: usize,
    agent: ureq::Agent,
}

/// Names and kinds only: a bot's webhook URL is its credential.
impl std::fmt::Debug for Notifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let channels: Vec<String> = self
            .channels
            .iter()
            .map(|channel| format!("{} ({})", channel.name, channel.target.kind()))
            .collect();
        f.debug_struct("Notifier")
            .field("channels", &channels)
            .field("retry", &self.retry)
            .field("batch_size", &self.batch_size)
            .finish_non_exhaustive()
    }
}

impl Notifier {
    /// Checks the configuration and prepares the HTTP client (nothing is sent).
    pub fn new(config: NotifyConfig) -> Result<Notifier, NotifyError> {
        config.validate()?;
        let proxy = match &config.proxy {
            Some(address) => Some(ureq::Proxy::new(address).map_err(|error| {
                NotifyError::InvalidSetting(format!("proxy {address}: {error}"))
            })?),
            None => ureq::Proxy::try_from_env(),
        };
        let agent = ureq::Agent::config_builder()
            .timeout_global(Some(Duration::from_secs(config.timeout_seconds)))
            .http_status_as_error(false)
            // A webhook that redirects is misconfigured; its answer counts as a failure.
            .max_redirects(0)
            .proxy(proxy)
            .user_agent("vigil-notify")
            .build()
            .new_agent();
        Ok(Notifier {
            channels: config.channels,
            retry: config.retry,
            batch_size: config.batch_size.max(1),
            agent,
        })
    }

    pub fn channels(&self) -> &[ChannelConfig] {
        &self.channels
    }

    pub fn channel(&self, name: &str) -> Option<&ChannelConfig> {
        self.channels.iter().find(|channel| channel.name == name)
    }

    /// The messages to queue for `notice`: one for each channel that wants its event.
    pub fn notifications_for(&self, notice: &Notice) -> Vec<NewNotification> {
        self.channels
            .iter()
            .filter(|channel| channel.wants(notice.event))
            .map(|channel| notice.for_channel(&channel.name))
            .collect()
    }

    /// Sends every item due at `now` (the caller's clock, Unix seconds) and records each
    /// outcome in the outbox. No lock is held while sending.
    ///
    /// It blocks while sending, one item after the other (each within the configured timeout):
    /// call it from a blocking thread, and again while it reports a full batch.
    ///
    /// ```
    /// # fn run(notifier: &vigil_notify::Notifier, store: &dyn vigil_store::Store,
    /// #        clock: &dyn vigil_core::Clock) {
    /// let report = notifier.deliver_due(store, clock.now());
    /// # let _ = report;
    /// # }
    /// ```
    pub fn deliver_due<O: Outbox + ?Sized>(&self, outbox: &O, now: i64) -> DeliveryReport {
        let items = match outbox.due(now, self.batch_size) {
            Ok(items) => items,
            Err(error) => {
                tracing::warn!(error = %error, "cannot read the notification outbox");
                return DeliveryReport {
                    store_errors: 1,
                    ..DeliveryReport::default()
                };
            }
        };
        let mut report = DeliveryReport {
            due: items.len(),
            ..DeliveryReport::default()
        };
        for item in &items {
            self.attempt(outbox, item, now, &mut report);
        }
        report
    }

    /// Sends one item now, without touching the outbox.
    pub fn deliver(&self, item: &OutboxItem, now: i64) -> Result<(), NotifyError> {
        let notification = &item.notification;
        let channel =
            self.channel(&notification.channel)
                .ok_or_else(|| NotifyError::UnknownChannel {
                    name: notification.channel.clone(),
                })?;
        if !channel.wants(notification.event) {
            return Err(NotifyError::EventNotWanted {
                channel: channel.name.clone(),
                event: notification.event,
            });
        }
        let request = render(&channel.target, item, now)?;
        self.send(&channel.target, &request)
    }

    fn attempt<O: Outbox + ?Sized>(
        &self,
        outbox: &O,
        item: &OutboxItem,
        now: i64,
        report: &mut DeliveryReport,
    ) {
        let attempt = item.attempts.saturating_add(1);
        let release = item.notification.release_id.as_str();
        let channel = item.notification.channel.as_str();
        let failure = match self.deliver(item, now) {
            Ok(()) => {
                report.sent += 1;
                tracing::info!(
                    release,
                    channel,
                    notification = item.id,
                    attempt,
                    outcome = "sent",
                    "notification sent"
                );
                if let Err(error) = outbox.mark_sent(item.id, now) {
                    report.store_errors += 1;
                    tracing::warn!(notification = item.id, error = %error, "cannot mark a notification sent");
                }
                return;
            }
            Err(failure) => failure,
        };
        let retry_at = if failure.is_permanent() {
            None
        } else {
            self.retry.retry_at(attempt, item.created_at, now)
        };
        let outcome = if retry_at.is_some() {
            report.retried += 1;
            "retry"
        } else {
            report.dead += 1;
            "dead"
        };
        tracing::warn!(
            release,
            channel,
            notification = item.id,
            attempt,
            outcome,
            retry_at,
            error = %failure,
            "notification failed"
        );
        if let Err(error) = outbox.mark_failed(item.id, &failure.to_string(), retry_at) {
            report.store_errors += 1;
            tracing::warn!(notification = item.id, error = %error, "cannot record a failed notification");
        }
    }

    fn send(&self, target: &ChannelTarget, request: &HttpRequest) -> Result<(), NotifyError> {
        let mut builder = self.agent.post(request.url.as_str());
        for (name, value) in &request.headers {
            builder = builder.header(*name, value.as_str());
        }
        // The URL of a bot webhook is its credential: keep it out of stored errors.
        let transport_error = |error: ureq::Error| {
            NotifyError::Transport(error.to_string().replace(&request.url, "the webhook url"))
        };
        let mut response = builder
            .send(request.body.as_slice())
            .map_err(transport_error)?;
        let status = response.status().as_u16();
        let body = response
            .body_mut()
            .with_config()
            .limit(ANSWER_READ_LIMIT)
            .lossy_utf8(true)
            .read_to_string()
            .unwrap_or_default();
        check_answer(target, status, &body)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compose::tests::{sample_finding, sample_release};
    use vigil_core::release::NotificationEvent;

    #[test]
    fn notices_go_to_the_channels_that_want_them() {
        let config: NotifyConfig = serde_json::from_str(
            r#"{"channels":[
                {"name":"all","kind":"slack","webhook_url":"https://x"},
                {"name":"pauses","kind":"dingtalk","webhook_url":"https://y","events":["paused"]}
            ]}"#,
        )
        .unwrap();
        let notifier = Notifier::new(config).unwrap();
        let release = sample_release();
        let findings = vec![sample_finding("errors")];
        let notice = |event| Notice {
            event,
            release: &release,
            reason: "why",
            findings: &findings,
            public_url: "https://vigil.example.com",
        };
        let paused = notifier.notifications_for(&notice(NotificationEvent::Paused));
        let channels: Vec<&str> = paused.iter().map(|item| item.channel.as_str()).collect();
        assert_eq!(channels, vec!["all", "pauses"]);
        let resumed = notifier.notifications_for(&notice(NotificationEvent::Resumed));
        assert_eq!(resumed.len(), 1);
        assert_eq!(resumed[0].channel, "all");
        let shown = format!("{notifier:?}");
        assert!(shown.contains("pauses (dingtalk)"), "{shown}");
        assert!(!shown.contains("https://y"), "{shown}");
    }
}
