//! One outbox item as the HTTP request of its channel's kind, and what the answer means.
//!
//! Every kind shows the title, the one-line reason (the first line of the text), the findings
//! (the following lines) and a link to the release page.
//!
//! The signature schemes and the generic webhook's format are documented on the crate.

use serde_json::{json, Value};
use vigil_core::release::{NotificationEvent, OutboxItem};
use vigil_core::text::hex;

use crate::config::ChannelTarget;
use crate::encode::{base64, hmac_sha256, percent_encode};
use crate::NotifyError;

pub const WEBHOOK_TIMESTAMP_HEADER: &str = "X-Vigil-Timestamp";
pub const WEBHOOK_SIGNATURE_HEADER: &str = "X-Vigil-Signature";
pub const WEBHOOK_DELIVERY_HEADER: &str = "X-Vigil-Delivery";

const LINK_LABEL: &str = "Open the release page";
/// Slack's limits: 150 characters in a header, 3000 in a section's text.
const SLACK_HEADER_LIMIT: usize = 150;
const SLACK_SECTION_LIMIT: usize = 3000;
/// Kept well under DingTalk's and Feishu's message size limits.
const BOT_TEXT_LIMIT: usize = 4000;
/// How much of an error answer is kept in the outbox.
const ANSWER_EXCERPT_LIMIT: usize = 300;

/// A request ready to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct HttpRequest {
    pub url: String,
    pub headers: Vec<(&'static str, String)>,
    pub body: Vec<u8>,
}

/// The parts of a message every kind shows.
struct Message<'a> {
    event: NotificationEvent,
    title: &'a str,
    reason: &'a str,
    details: Vec<&'a str>,
    link: &'a str,
}

impl<'a> Message<'a> {
    fn of(item: &'a OutboxItem) -> Message<'a> {
        let notification = &item.notification;
        let mut lines = notification
            .text
            .lines()
            .map(str::trim)
            .filter(|line| !line.is_empty());
        let reason = lines.next().unwrap_or("");
        let details = lines
            .map(|line| line.trim_start_matches(['-', '*', '•']).trim_start())
            .collect();
        Message {
            event: notification.event,
            title: &notification.title,
            reason,
            details,
            link: &notification.link,
        }
    }
}

/// The request that delivers `item` to `target`, signed with the time `now` (Unix seconds).
pub(crate) fn render(
    target: &ChannelTarget,
    item: &OutboxItem,
    now: i64,
) -> Result<HttpRequest, NotifyError> {
    let message = Message::of(item);
    match target {
        ChannelTarget::Slack { webhook_url } => json_request(webhook_url.clone(), &slack(&message)),
        ChannelTarget::DingTalk {
            webhook_url,
            secret,
        } => {
            let url = match secret {
                Some(key) => dingtalk_signed_url(webhook_url, key.expose(), now),
                None => webhook_url.clone(),
            };
            json_request(url, &dingtalk(&message))
        }
        ChannelTarget::Feishu {
            webhook_url,
            secret,
        } => {
            let mut body = feishu(&message);
            if let Some(key) = secret {
                body["timestamp"] = json!(now.to_string());
                body["sign"] = json!(feishu_sign(key.expose(), now));
            }
            json_request(webhook_url.clone(), &body)
        }
        ChannelTarget::Webhook { url, secret } => {
            let notification = &item.notification;
            let body = serde_json::to_vec(&json!({
                "id": item.id,
                "event": notification.event.as_str(),
                "release_id": notification.release_id,
                "title": notification.title,
                "text": notification.text,
                "link": notification.link,
                "timestamp": now,
                "created_at": item.created_at,
            }))?;
            let signature = webhook_signature(secret.expose(), now, &body);
            Ok(HttpRequest {
                url: url.clone(),
                headers: vec![
                    ("Content-Type", "application/json".to_string()),
                    (WEBHOOK_TIMESTAMP_HEADER, now.to_string()),
                    (WEBHOOK_SIGNATURE_HEADER, format!("sha256={signature}")),
                    (WEBHOOK_DELIVERY_HEADER, item.id.to_string()),
                ],
                body,
            })
        }
    }
}

fn json_request(url: String, body: &Value) -> Result<HttpRequest, NotifyError> {
    Ok(HttpRequest {
        url,
        headers: vec![("Content-Type", "application/json".to_string())],
        body: serde_json::to_vec(body)?,
    })
}

fn slack(message: &Message) -> Value {
    let mut section = format!("*{}*", slack_escape(message.reason));
    for detail in &message.details {
        section.push_str(&format!("\n• {}", slack_escape(detail)));
    }
    let fallback = format!("{}: {} {}", message.title, message.reason, message.link);
    json!({
        "text": fallback,
        "blocks": [
            {
                "type": "header",
                "text": {
                    "type": "plain_text",
                    "text": truncate(message.title, SLACK_HEADER_LIMIT),
                },
            },
            {
                "type": "section",
                "text": { "type": "mrkdwn", "text": truncate(&section, SLACK_SECTION_LIMIT) },
            },
            {
                "type": "section",
                "text": { "type": "mrkdwn", "text": format!("<{}|{LINK_LABEL}>", message.link) },
            },
        ],
    })
}

/// Slack reads `&`, `<` and `>` as markup (links, mentions).
fn slack_escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

fn dingtalk(message: &Message) -> Value {
    let mut text = format!("#### {}\n\n**{}**\n\n", message.title, message.reason);
    for detail in &message.details {
        text.push_str(&format!("- {detail}\n"));
    }
    text.push_str(&format!("\n[{LINK_LABEL}]({})", message.link));
    json!({
        "msgtype": "markdown",
        "markdown": { "title": message.title, "text": truncate(&text, BOT_TEXT_LIMIT) },
    })
}

fn feishu(message: &Message) -> Value {
    let mut content = format!("**{}**", message.reason);
    for detail in &message.details {
        content.push_str(&format!("\n- {detail}"));
    }
    let color = match message.event {
        NotificationEvent::Paused => "red",
        NotificationEvent::Recommendation => "orange",
        NotificationEvent::Resumed => "green",
        NotificationEvent::RolledBack => "grey",
    };
    json!({
        "msg_type": "interactive",
        "card": {
            "config": { "wide_screen_mode": true },
            "header": {
                "title": { "tag": "plain_text", "content": message.title },
                "template": color,
            },
            "elements": [
                {
                    "tag": "div",
                    "text": { "tag": "lark_md", "content": truncate(&content, BOT_TEXT_LIMIT) },
                },
                {
                    "tag": "action",
                    "actions": [{
                        "tag": "button",
                        "text": { "tag": "plain_text", "content": LINK_LABEL },
                        "type": "primary",
                        "url": message.link,
                    }],
                },
            ],
        },
    })
}

/// The webhook URL with DingTalk's `timestamp` (milliseconds) and `sign` appended.
pub(crate) fn dingtalk_signed_url(webhook_url: &str, secret: &str, now: i64) -> String {
    let timestamp_ms = now.saturating_mul(1000);
    let string_to_sign = format!("{timestamp_ms}\n{secret}");
    let sign = base64(&hmac_sha256(secret.as_bytes(), string_to_sign.as_bytes()));
    let separator = if webhook_url.contains('?') { '&' } else { '?' };
    format!(
        "{webhook_url}{separator}timestamp={timestamp_ms}&sign={}",
        percent_encode(&sign)
    )
}

/// Feishu's `sign` for `timestamp` (seconds): the key is `"{timestamp}\n{secret}"`, the
/// message is empty.
pub(crate) fn feishu_sign(secret: &str, timestamp: i64) -> String {
    let key = format!("{timestamp}\n{secret}");
    base64(&hmac_sha256(key.as_bytes(), b""))
}

/// Hex HMAC-SHA256 of `"{timestamp}.{body}"` under the channel's secret.
pub(crate) fn webhook_signature(secret: &str, timestamp: i64, body: &[u8]) -> String {
    let mut signed = format!("{timestamp}.").into_bytes();
    signed.extend_from_slice(body);
    hex(&hmac_sha256(secret.as_bytes(), &signed))
}

/// Whether the answer `status` and `body` from `target` means the message was taken.
pub(crate) fn check_answer(
    target: &ChannelTarget,
    status: u16,
    body: &str,
) -> Result<(), NotifyError> {
    if !(200..300).contains(&status) {
        return Err(NotifyError::Status {
            status,
            body: truncate(body.trim(), ANSWER_EXCERPT_LIMIT),
        });
    }
    let code_fields: &[(&str, &str)] = match target {
        ChannelTarget::DingTalk { .. } => &[("errcode", "errmsg")],
        ChannelTarget::Feishu { .. } => &[("code", "msg"), ("StatusCode", "StatusMessage")],
        ChannelTarget::Slack { .. } | ChannelTarget::Webhook { .. } => &[],
    };
    if code_fields.is_empty() {
        return Ok(());
    }
    let Ok(answer) = serde_json::from_str::<Value>(body) else {
        return Ok(());
    };
    for (code_field, message_field) in code_fields {
        let Some(code) = answer.get(code_field).and_then(Value::as_i64) else {
            continue;
        };
        if code != 0 {
            let message = answer
                .get(message_field)
                .and_then(Value::as_str)
                .unwrap_or("");
            return Err(NotifyError::Rejected {
                code,
                message: truncate(message, ANSWER_EXCERPT_LIMIT),
            });
        }
    }
    Ok(())
}

/// At most `limit` characters, the last one an ellipsis when cut.
pub(crate) fn truncate(text: &str, limit: usize) -> String {
    if text.chars().count() <= limit {
        return text.to_string();
    }
    let mut cut: String = text.chars().take(limit.saturating_sub(1)).collect();
    cut.push('…');
    cut
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Secret;
    use vigil_core::release::{DeliveryState, NewNotification};

    fn item(event: NotificationEvent) -> OutboxItem {
        OutboxItem {
            id: 7,
            notification: NewNotification {
                release_id: "r-42".to_string(),
                event,
                channel: "ops".to_string(),
                title: "Vigil paused the release of checkout 1.4.2".to_string(),
                text: "fault: errors on 2 hosts\nerrors (2 of 2 hosts, fault): 5x <b>".to_string(),
                link: "https://vigil.example.com/releases/r-42".to_string(),
            },
            created_at: 1_700_000_000,
            state: DeliveryState::Pending,
            attempts: 0,
            next_attempt_at: 1_700_000_000,
            last_error: String::new(),
        }
    }

    fn body_of(request: &HttpRequest) -> Value {
        serde_json::from_slice(&request.body).unwrap()
    }

    // Expected signatures computed independently (Python's hmac, hashlib and base64 modules).
    #[test]
    fn dingtalk_signature_matches_an_independent_computation() {
        let url = dingtalk_signed_url(
            "https://oapi.dingtalk.com/robot/send?access_token=abc",
            "SECthis-is-secret",
            1_700_000_000,
        );
        assert_eq!(
            url,
            "https://oapi.dingtalk.com/robot/send?access_token=abc&timestamp=1700000000000\
             &sign=MGTSynT35H3YyJy6IMPL8G%2ByYna%2BgwkBH%2F0Cd4%2Ba2hI%3D"
        );
    }

    #[test]
    fn feishu_signature_matches_an_independent_computation() {
        assert_eq!(
            feishu_sign("this-is-secret", 1_599_360_473),
            "P8ililcUS2k3l2NMCzco8uxScD8WOKgMN6YSLRhpo6M="
        );
    }

    #[test]
    fn webhook_signature_matches_an_independent_computation() {
        assert_eq!(
            webhook_signature("s3cret", 1_700_000_000, br#"{"a":1}"#),
            "1698a50bc74d1ff1db85c4e0a5297c2ad9fdba245d5737cdb789e4cc6e098940"
        );
    }

    #[test]
    fn slack_gets_text_blocks_and_escaped_markup() {
        let target = ChannelTarget::Slack {
            webhook_url: "https://hooks.slack.com/services/T/B/X".to_string(),
        };
        let request = render(&target, &item(NotificationEvent::Paused), 1_700_000_100).unwrap();
        let body = body_of(&request);
        assert!(body["text"]
            .as_str()
            .unwrap()
            .starts_with("Vigil paused the release of checkout 1.4.2: fault: errors on 2 hosts"));
        let blocks = body["blocks"].as_array().unwrap();
        assert_eq!(blocks[0]["type"], "header");
        assert_eq!(
            blocks[1]["text"]["text"],
            "*fault: errors on 2 hosts*\n• errors (2 of 2 hosts, fault): 5x &lt;b&gt;"
        );
        assert_eq!(
            blocks[2]["text"]["text"],
            "<https://vigil.example.com/releases/r-42|Open the release page>"
        );
    }

    #[test]
    fn dingtalk_gets_markdown_and_an_unsigned_url_without_secret() {
        let target = ChannelTarget::DingTalk {
            webhook_url: "https://oapi.dingtalk.com/robot/send?access_token=abc".to_string(),
            secret: None,
        };
        let request = render(&target, &item(NotificationEvent::Paused), 1_700_000_100).unwrap();
        assert_eq!(
            request.url,
            "https://oapi.dingtalk.com/robot/send?access_token=abc"
        );
        let body = body_of(&request);
        assert_eq!(body["msgtype"], "markdown");
        let text = body["markdown"]["text"].as_str().unwrap();
        assert!(text.contains("**fault: errors on 2 hosts**"));
        assert!(text.contains("- errors (2 of 2 hosts, fault)"));
        assert!(text.ends_with("[Open the release page](https://vigil.example.com/releases/r-42)"));
    }

    #[test]
    fn feishu_gets_a_signed_card() {
        let target = ChannelTarget::Feishu {
            webhook_url: "https://open.feishu.cn/open-apis/bot/v2/hook/x".to_string(),
            secret: Some(Secret::new("this-is-secret")),
        };
        let request = render(
            &target,
            &item(NotificationEvent::Recommendation),
            1_599_360_473,
        )
        .unwrap();
        let body = body_of(&request);
        assert_eq!(body["msg_type"], "interactive");
        assert_eq!(body["timestamp"], "1599360473");
        assert_eq!(body["sign"], feishu_sign("this-is-secret", 1_599_360_473));
        assert_eq!(body["card"]["header"]["template"], "orange");
        assert_eq!(
            body["card"]["elements"][1]["actions"][0]["url"],
            "https://vigil.example.com/releases/r-42"
        );
    }

    #[test]
    fn answers_with_an_error_code_are_failures() {
        let dingtalk = ChannelTarget::DingTalk {
            webhook_url: "https://x".to_string(),
            secret: None,
        };
        let feishu = ChannelTarget::Feishu {
            webhook_url: "https://x".to_string(),
            secret: None,
        };
        let slack = ChannelTarget::Slack {
            webhook_url: "https://x".to_string(),
        };
        assert!(check_answer(&dingtalk, 200, r#"{"errcode":0,"errmsg":"ok"}"#).is_ok());
        let error = check_answer(
            &dingtalk,
            200,
            r#"{"errcode":310000,"errmsg":"sign not match"}"#,
        )
        .unwrap_err();
        assert_eq!(
            error.to_string(),
            "rejected the message with code 310000: sign not match"
        );
        assert!(check_answer(&feishu, 200, r#"{"code":0,"msg":"success"}"#).is_ok());
        assert!(check_answer(&feishu, 200, r#"{"StatusCode":0,"code":0}"#).is_ok());
        assert!(check_answer(&feishu, 200, r#"{"code":19021,"msg":"sign match fail"}"#).is_err());
        assert!(check_answer(&feishu, 200, r#"{"StatusCode":9499}"#).is_err());
        assert!(check_answer(&slack, 200, "ok").is_ok());
        let error = check_answer(&slack, 404, "no_service").unwrap_err();
        assert_eq!(error.to_string(), "answered http 404: no_service");
    }

    #[test]
    fn truncation_counts_characters() {
        assert_eq!(truncate("abc", 3), "abc");
        assert_eq!(truncate("abcdef", 4), "abc…");
        assert_eq!(truncate("ééééé", 3), "éé…");
    }
}
