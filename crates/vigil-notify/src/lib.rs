//! Vigil's notifications: Slack, DingTalk, Feishu and signed webhooks, from a durable outbox.
//!
//! The server writes a [`NewNotification`](vigil_core::release::NewNotification) into the
//! store's outbox in the same transaction as its cause (a pause, a recommendation, a resume, a
//! rollback); [`Notifier::notifications_for`] builds those messages, one per channel that wants
//! the event. A delivery loop then calls [`Notifier::deliver_due`] with the time of its clock:
//! every due item is rendered for its channel's kind, signed when the channel has a secret,
//! sent, and marked sent, failed with the next retry time, or dead.
//!
//! Replicas sharing one store each deliver: an item is claimed in the store before it is sent
//! ([`Notifier::for_replica`]), so one replica sends it, and another one only after the claim
//! ended unmarked (its replica died mid-send).
//!
//! Delivery is at least once: when a send succeeds but marking it sent fails, the item is sent
//! again later. The generic webhook carries the outbox id in `X-Vigil-Delivery` so that a
//! receiver can drop repeats.
//!
//! # Signatures
//!
//! - **DingTalk** (group robot, "加签" security setting; open.dingtalk.com, custom robot
//!   security settings): `timestamp` is the time in milliseconds, `sign` is the base64 of
//!   HMAC-SHA256 keyed with the secret over `"{timestamp}\n{secret}"`, percent-encoded; both
//!   are added to the webhook URL's query. DingTalk refuses a timestamp more than an hour off.
//!   It answers HTTP 200 with `errcode` in the body; anything but 0 is a failure (310000 is a
//!   bad signature or a missing keyword; every title [`Notice`] writes contains `Vigil`, a
//!   keyword that works for robots with the keyword setting).
//! - **Feishu / Lark** (custom bot, signature verification; open.feishu.cn, custom bot guide):
//!   `timestamp` is the time in seconds, `sign` is the base64 of HMAC-SHA256 keyed with
//!   `"{timestamp}\n{secret}"` over an empty message; both go into the JSON body next to
//!   `msg_type`. Feishu answers HTTP 200 with `code` in the body (older deployments
//!   `StatusCode`); anything but 0 is a failure (19021 is a bad signature or timestamp).
//! - **Slack** incoming webhooks (api.slack.com, incoming webhooks) are secret by their URL and
//!   take no signature; a success is any 2xx, errors come as 4xx with a short text.
//! - **Generic webhook**: a JSON document
//!   `{"id", "event", "release_id", "title", "text", "link", "timestamp", "created_at"}` with
//!   the headers
//!   - `X-Vigil-Timestamp`: the sending time, Unix seconds (also `timestamp` in the body);
//!   - `X-Vigil-Signature`: `sha256=` and the lowercase hex HMAC-SHA256, keyed with the
//!     channel's secret, of the timestamp, a `.`, and the raw body bytes;
//!   - `X-Vigil-Delivery`: the outbox id, the same on every retry of one message.
//!
//!   A receiver recomputes the HMAC over `"{X-Vigil-Timestamp}.{raw body}"`, compares it in
//!   constant time, rejects timestamps more than a few minutes from its own clock (a replayed
//!   request carries an old timestamp, and changing it breaks the signature) and drops
//!   deliveries whose id it has seen (delivery is at least once). Any 2xx is a success.
#![forbid(unsafe_code)]

mod compose;
mod config;
mod deliver;
mod encode;
mod render;

pub use compose::{release_link, Notice, TOP_FINDINGS};
pub use config::{ChannelConfig, ChannelTarget, NotifyConfig, RetryPolicy, Secret, ALL_EVENTS};
pub use deliver::{DeliveryReport, Notifier, Outbox, CLAIM_MARGIN_SECONDS};
pub use render::{WEBHOOK_DELIVERY_HEADER, WEBHOOK_SIGNATURE_HEADER, WEBHOOK_TIMESTAMP_HEADER};

use vigil_core::release::NotificationEvent;

/// Why configuring or delivering notifications failed.
#[derive(Debug, thiserror::Error)]
pub enum NotifyError {
    #[error("channel {name} is configured more than once")]
    DuplicateChannel { name: String },
    #[error("channel {channel}: {reason}")]
    InvalidChannel { channel: String, reason: String },
    #[error("invalid notification settings: {0}")]
    InvalidSetting(String),
    #[error("no channel named {name} is configured")]
    UnknownChannel { name: String },
    #[error("channel {channel} does not take {event} events", event = event.as_str())]
    EventNotWanted {
        channel: String,
        event: NotificationEvent,
    },
    #[error("request failed: {0}")]
    Transport(String),
    #[error("answered http {status}: {body}")]
    Status { status: u16, body: String },
    #[error("rejected the message with code {code}: {message}")]
    Rejected { code: i64, message: String },
    #[error("cannot encode the message: {0}")]
    Encode(#[from] serde_json::Error),
}

impl NotifyError {
    /// True for errors that no retry can fix: the item is given up at once.
    pub fn is_permanent(&self) -> bool {
        matches!(
            self,
            NotifyError::UnknownChannel { .. }
                | NotifyError::EventNotWanted { .. }
                | NotifyError::Encode(_)
        )
    }
}
