//! Delivery: due outbox items are claimed for this replica, sent one after the other and
//! marked sent, failed with the next retry time, or dead.
//!
//! Replicas sharing one store each run delivery; an item is claimed (atomically, in the store)
//! before it is sent, so only one replica sends it. The claim of the `k`-th item of a call
//! (from 0) lasts `(k + 1) × timeout + CLAIM_MARGIN_SECONDS` from the call's time: each send
//! before it ends within the timeout, so the claim outlasts its own attempt, and a replica
//! killed while sending lets another one send the item once its claim ends.

use std::time::Duration;

use vigil_core::release::{NewNotification, OutboxItem};
use vigil_core::telemetry::event::{NotificationFailed, NotificationSent};
use vigil_store::{Store, StoreError};

use crate::compose::Notice;
use crate::config::{ChannelConfig, ChannelTarget, NotifyConfig, RetryPolicy};
use crate::render::{check_answer, render, HttpRequest};
use crate::NotifyError;

/// At most this much of an answer's body is read.
const ANSWER_READ_LIMIT: u64 = 64 * 1024;

/// What a claim lasts beyond the sends it waits for: the store calls around them.
pub const CLAIM_MARGIN_SECONDS: i64 = 15;

/// The claimer of a notifier not given a replica id (a single server).
const DEFAULT_CLAIMER: &str = "local";

/// The three outbox operations delivery needs; every [`Store`] has them.
pub trait Outbox {
    /// Claims pending items due at `now` that no one claims, for `claimer` until
    /// `claim_until`, oldest first, at most `limit` (see [`Store::claim_notifications`]).
    fn claim(
        &self,
        claimer: &str,
        now: i64,
        claim_until: i64,
        limit: usize,
    ) -> Result<Vec<OutboxItem>, StoreError>;
    fn mark_sent(&self, id: i64, at: i64) -> Result<(), StoreError>;
    /// Records a failed attempt; `retry_at: None` gives the item up.
    fn mark_failed(&self, id: i64, error: &str, retry_at: Option<i64>) -> Result<(), StoreError>;
}

impl<S: Store + ?Sized> Outbox for S {
    fn claim(
        &self,
        claimer: &str,
        now: i64,
        claim_until: i64,
        limit: usize,
    ) -> Result<Vec<OutboxItem>, StoreError> {
        self.claim_notifications(claimer, now, claim_until, limit)
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
    /// Items claimed from the outbox.
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
    timeout_seconds: i64,
    /// Who claims the items this notifier sends: its replica's id.
    claimer: String,
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
            .field("claimer", &self.claimer)
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
            timeout_seconds: i64::try_from(config.timeout_seconds).unwrap_or(i64::MAX),
            claimer: DEFAULT_CLAIMER.to_owned(),
            agent,
        })
    }

    /// The notifier of one replica among several on one store: it claims the items it sends
    /// under the replica's id, so that no other replica sends them too.
    pub fn for_replica(self, replica_id: &str) -> Notifier {
        Notifier {
            claimer: replica_id.to_owned(),
            ..self
        }
    }

    /// Who claims the items this notifier sends.
    pub fn claimer(&self) -> &str {
        &self.claimer
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

    /// Claims and sends the items due at `now` (the caller's clock, Unix seconds), up to the
    /// batch size, and records each outcome in the outbox. No lock is held while sending.
    ///
    /// Items are claimed one at a time, each just before it is sent, so the other replicas
    /// take the rest meanwhile; the `k`-th claim (from 0) lasts until
    /// `now + (k + 1) × timeout + CLAIM_MARGIN_SECONDS`.
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
        let mut report = DeliveryReport::default();
        for position in 0..self.batch_size {
            let claim_until = self.claim_end(now, position);
            let items = match outbox.claim(&self.claimer, now, claim_until, 1) {
                Ok(items) => items,
                Err(error) => {
                    report.store_errors += 1;
                    tracing::warn!(error = %error, "cannot claim from the notification outbox");
                    break;
                }
            };
            if items.is_empty() {
                break;
            }
            report.due += items.len();
            for item in &items {
                self.attempt(outbox, item, now, &mut report);
            }
        }
        report
    }

    /// When the claim of the item at `position` (from 0) of a call at `now` ends: after the
    /// sends before it and its own, each within the timeout, and the margin.
    fn claim_end(&self, now: i64, position: usize) -> i64 {
        let sends = i64::try_from(position)
            .unwrap_or(i64::MAX)
            .saturating_add(1);
        now.saturating_add(sends.saturating_mul(self.timeout_seconds))
            .saturating_add(CLAIM_MARGIN_SECONDS)
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
                NotificationSent {
                    release,
                    channel,
                    notification: item.id,
                    attempt,
                }
                .emit();
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
        let error_text = failure.to_string();
        NotificationFailed {
            release,
            channel,
            notification: item.id,
            attempt,
            outcome,
            retry_at,
            error: &error_text,
        }
        .emit();
        if let Err(error) = outbox.mark_failed(item.id, &error_text, retry_at) {
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

    #[test]
    fn each_claim_of_a_call_outlasts_the_sends_before_it_and_its_own() {
        let config: NotifyConfig = serde_json::from_str(r#"{"timeout_seconds": 4}"#).unwrap();
        let notifier = Notifier::new(config).unwrap().for_replica("r1");
        assert_eq!(
            notifier.claim_end(1_000, 0),
            1_000 + 4 + CLAIM_MARGIN_SECONDS
        );
        assert_eq!(
            notifier.claim_end(1_000, 2),
            1_000 + 3 * 4 + CLAIM_MARGIN_SECONDS
        );
        assert_eq!(notifier.claim_end(i64::MAX - 1, 5), i64::MAX);
        assert!(format!("{notifier:?}").contains("r1"));
    }
}
