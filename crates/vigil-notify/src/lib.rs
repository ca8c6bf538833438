//! Vigil's notifications: Slack, DingTalk, Feishu and signed webhooks, from a durable outbox.
//!
//! The server writes a [`NewNotification`](vigil_core::release::NewNotification) into the
//! store's outbox in the same transaction as its cause (a pause, a recommendation, a resume, a
//! rollback); [`Notifier::notifications_for`] builds those messages, one per channel that wants
//! the event. A delivery loop then calls [`Notifier::deliver_due`] with the time of its clock:
//! every due item is rendered for its channel's kind, signed when the channel has a secret,
//! sent, and marked sent, failed with the next retry time, or dead.
//!
//! Delivery is at least once: when a send succeeds but marking it sent fails, the item is sent
//! again later. The generic webhook carries the outbox id in `X-Vigil-Delivery` so that a
//! receiver can drop repeats.
#![forbid(unsafe_code)]

mod compose;
mod config;
mod deliver;
mod encode;
mod render;

pub use compose::Notice;
pub use config::{ChannelConfig, ChannelTarget, NotifyConfig, RetryPolicy, Secret};
pub use deliver::{DeliveryReport, Notifier, Outbox};
pub use render::{WEBHOOK_DELIVERY_HEADER, WEBHOOK_SIGNATURE_HEADER, WEBHOOK_TIMESTAMP_HEADER};

use vigil_core::release::NotificationEvent;
use vigil_store::StoreError;

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
    #[error("store error: {0}")]
    Store(#[from] StoreError),
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
