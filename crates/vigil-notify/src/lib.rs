//! Vigil's notifications: Slack, DingTalk, Feishu and signed webhooks, from a durable outbox.
