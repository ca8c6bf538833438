//! Delivery against a receiver on 127.0.0.1: payloads, signatures, retries, giving up.
#![allow(clippy::unwrap_used)]

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::mpsc;
use std::sync::Mutex;
use std::thread;
use std::time::Duration;

use ring::hmac;
use serde_json::Value;
use vigil_core::release::{DeliveryState, NewNotification, NotificationEvent, OutboxItem};
use vigil_notify::{DeliveryReport, Notifier, NotifyConfig, Outbox};
use vigil_store::StoreError;

const T0: i64 = 1_700_000_000;

/// An outbox in memory, with the store's semantics for the three calls delivery makes.
#[derive(Debug, Default)]
struct MemoryOutbox {
    items: Mutex<Vec<OutboxItem>>,
    /// Claimed items: their claimer and the end of the claim.
    claims: Mutex<HashMap<i64, (String, i64)>>,
}

impl MemoryOutbox {
    fn with(notifications: Vec<NewNotification>, created_at: i64) -> MemoryOutbox {
        let outbox = MemoryOutbox::default();
        for notification in notifications {
            let mut items = outbox.items.lock().unwrap();
            let id = i64::try_from(items.len()).unwrap() + 1;
            items.push(OutboxItem {
                id,
                notification,
                created_at,
                state: DeliveryState::Pending,
                attempts: 0,
                next_attempt_at: created_at,
                last_error: String::new(),
            });
        }
        outbox
    }

    fn item(&self, id: i64) -> OutboxItem {
        let items = self.items.lock().unwrap();
        items.iter().find(|item| item.id == id).unwrap().clone()
    }

    fn update(&self, id: i64, change: impl FnOnce(&mut OutboxItem)) -> Result<(), StoreError> {
        let mut items = self.items.lock().unwrap();
        let item = items
            .iter_mut()
            .find(|item| item.id == id)
            .ok_or(StoreError::UnknownNotification { id })?;
        change(item);
        self.claims.lock().unwrap().remove(&id);
        Ok(())
    }

    fn claim_of(&self, id: i64) -> Option<(String, i64)> {
        self.claims.lock().unwrap().get(&id).cloned()
    }
}

impl Outbox for MemoryOutbox {
    fn claim(
        &self,
        claimer: &str,
        now: i64,
        claim_until: i64,
        limit: usize,
    ) -> Result<Vec<OutboxItem>, StoreError> {
        let items = self.items.lock().unwrap();
        let mut claims = self.claims.lock().unwrap();
        let claimed: Vec<OutboxItem> = items
            .iter()
            .filter(|item| item.state == DeliveryState::Pending && item.next_attempt_at <= now)
            .filter(|item| claims.get(&item.id).is_none_or(|(_, until)| *until <= now))
            .take(limit)
            .cloned()
            .collect();
        for item in &claimed {
            claims.insert(item.id, (claimer.to_owned(), claim_until));
        }
        Ok(claimed)
    }

    fn mark_sent(&self, id: i64, _at: i64) -> Result<(), StoreError> {
        self.update(id, |item| {
            item.attempts += 1;
            item.state = DeliveryState::Sent;
        })
    }

    fn mark_failed(&self, id: i64, error: &str, retry_at: Option<i64>) -> Result<(), StoreError> {
        self.update(id, |item| {
            item.attempts += 1;
            item.last_error = error.to_string();
            match retry_at {
                Some(at) => item.next_attempt_at = at,
                None => item.state = DeliveryState::Dead,
            }
        })
    }
}

/// One HTTP request as the receiver read it.
#[derive(Debug)]
struct Received {
    /// Path and query.
    target: String,
    /// Lowercase names.
    headers: HashMap<String, String>,
    body: Vec<u8>,
}

impl Received {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap()
    }

    fn query(&self, name: &str) -> String {
        let (_, query) = self.target.split_once('?').unwrap();
        query
            .split('&')
            .find_map(|pair| pair.strip_prefix(&format!("{name}=")))
            .unwrap()
            .to_string()
    }
}

/// How the receiver answers one connection.
#[derive(Debug, Clone, Copy)]
enum Answer {
    Reply(u16, &'static str),
    /// Reads the request and stays silent for this long.
    Silence(Duration),
}

/// A receiver on 127.0.0.1 that takes one connection per answer, in order, then stops.
struct Receiver {
    url: String,
    requests: mpsc::Receiver<Received>,
}

impl Receiver {
    fn start(answers: Vec<Answer>) -> Receiver {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let (sender, requests) = mpsc::channel();
        thread::spawn(move || {
            for answer in answers {
                let (mut stream, _) = listener.accept().unwrap();
                stream
                    .set_read_timeout(Some(Duration::from_secs(5)))
                    .unwrap();
                let request = read_request(&mut stream);
                sender.send(request).unwrap();
                match answer {
                    Answer::Reply(status, body) => {
                        let response = format!(
                            "HTTP/1.1 {status} Answer\r\nContent-Type: application/json\r\n\
                             Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
                            body.len()
                        );
                        stream.write_all(response.as_bytes()).unwrap();
                    }
                    Answer::Silence(duration) => thread::sleep(duration),
                }
            }
        });
        Receiver { url, requests }
    }

    fn next(&self) -> Received {
        self.requests.recv_timeout(Duration::from_secs(5)).unwrap()
    }

    fn nothing_more(&self) {
        assert!(self.requests.try_recv().is_err());
    }
}

fn read_request(stream: &mut TcpStream) -> Received {
    let mut buffer = Vec::new();
    let mut chunk = [0_u8; 4096];
    let header_end = loop {
        let read = stream.read(&mut chunk).unwrap();
        assert!(read > 0, "connection closed before the headers ended");
        buffer.extend_from_slice(&chunk[..read]);
        if let Some(position) = buffer.windows(4).position(|window| window == b"\r\n\r\n") {
            break position + 4;
        }
    };
    let head = String::from_utf8(buffer[..header_end].to_vec()).unwrap();
    let mut lines = head.split("\r\n");
    let request_line = lines.next().unwrap();
    let mut parts = request_line.split(' ');
    assert_eq!(parts.next(), Some("POST"));
    let target = parts.next().unwrap().to_string();
    let headers: HashMap<String, String> = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(name, value)| (name.trim().to_lowercase(), value.trim().to_string()))
        .collect();
    let length: usize = headers["content-length"].parse().unwrap();
    let mut body = buffer[header_end..].to_vec();
    while body.len() < length {
        let read = stream.read(&mut chunk).unwrap();
        assert!(read > 0, "connection closed before the body ended");
        body.extend_from_slice(&chunk[..read]);
    }
    Received {
        target,
        headers,
        body,
    }
}

fn notifier(channels: &str, extra: &str) -> Notifier {
    let json = format!(r#"{{"timeout_seconds": 2, "channels": [{channels}]{extra}}}"#);
    let config: NotifyConfig = serde_json::from_str(&json).unwrap();
    Notifier::new(config).unwrap()
}

fn notification(channel: &str, event: NotificationEvent) -> NewNotification {
    NewNotification {
        release_id: "r-42".to_string(),
        event,
        channel: channel.to_string(),
        title: "Vigil paused the release of checkout 1.4.2".to_string(),
        text: "fault: errors on 2 hosts\nerrors (2 of 2 hosts, fault): 5x the reference"
            .to_string(),
        link: "https://vigil.example.com/releases/r-42".to_string(),
    }
}

/// A receiver, a notifier with one channel and an outbox with one item for that channel.
///
/// `channel` is the channel's JSON with `{receiver}` standing for the receiver's address;
/// `extra` is appended to the settings; the item is `event`, queued at `queued_at`.
fn case(
    answers: Vec<Answer>,
    channel: &str,
    extra: &str,
    event: NotificationEvent,
    queued_at: i64,
) -> (Receiver, Notifier, MemoryOutbox) {
    let receiver = Receiver::start(answers);
    let channel = channel.replace("{receiver}", &receiver.url);
    let notifier = notifier(&channel, extra);
    let name = notifier.channels()[0].name.clone();
    let outbox = MemoryOutbox::with(vec![notification(&name, event)], queued_at);
    (receiver, notifier, outbox)
}

const SLACK: &str = r#"{"name":"ops","kind":"slack","webhook_url":"{receiver}/services/T/B/X"}"#;

fn report(due: usize, sent: usize, retried: usize, dead: usize) -> DeliveryReport {
    DeliveryReport {
        due,
        sent,
        retried,
        dead,
        store_errors: 0,
    }
}

#[test]
fn slack_gets_the_title_the_reason_and_the_link() {
    let (receiver, notifier, outbox) = case(
        vec![Answer::Reply(200, "ok")],
        SLACK,
        "",
        NotificationEvent::Paused,
        T0,
    );

    assert_eq!(notifier.deliver_due(&outbox, T0), report(1, 1, 0, 0));

    let request = receiver.next();
    assert_eq!(request.target, "/services/T/B/X");
    assert_eq!(request.headers["content-type"], "application/json");
    let body = request.json();
    assert_eq!(
        body["blocks"][0]["text"]["text"],
        "Vigil paused the release of checkout 1.4.2"
    );
    let text = body["text"].as_str().unwrap();
    assert!(text.contains("fault: errors on 2 hosts"), "{text}");
    assert!(
        text.contains("https://vigil.example.com/releases/r-42"),
        "{text}"
    );
    assert_eq!(outbox.item(1).state, DeliveryState::Sent);
}

#[test]
fn dingtalk_requests_carry_the_documented_signature() {
    let (receiver, notifier, outbox) = case(
        vec![Answer::Reply(200, r#"{"errcode":0,"errmsg":"ok"}"#)],
        r#"{"name":"oncall","kind":"dingtalk","secret":"SECthis-is-secret",
            "webhook_url":"{receiver}/robot/send?access_token=abc"}"#,
        "",
        NotificationEvent::Paused,
        T0,
    );

    assert_eq!(notifier.deliver_due(&outbox, T0), report(1, 1, 0, 0));

    let request = receiver.next();
    assert!(request.target.starts_with("/robot/send?access_token=abc&"));
    assert_eq!(request.query("timestamp"), "1700000000000");
    // base64(HMAC-SHA256("SECthis-is-secret", "1700000000000\nSECthis-is-secret")),
    // percent-encoded, as computed by an independent implementation.
    assert_eq!(
        request.query("sign"),
        "MGTSynT35H3YyJy6IMPL8G%2ByYna%2BgwkBH%2F0Cd4%2Ba2hI%3D"
    );
    let body = request.json();
    assert_eq!(body["msgtype"], "markdown");
    let text = body["markdown"]["text"].as_str().unwrap();
    assert!(
        text.contains("](https://vigil.example.com/releases/r-42)"),
        "{text}"
    );
}

#[test]
fn feishu_messages_carry_the_documented_signature() {
    let now = 1_599_360_473;
    let (receiver, notifier, outbox) = case(
        vec![Answer::Reply(200, r#"{"code":0,"msg":"success"}"#)],
        r#"{"name":"team","kind":"feishu","secret":"this-is-secret",
            "webhook_url":"{receiver}/open-apis/bot/v2/hook/x"}"#,
        "",
        NotificationEvent::Resumed,
        now,
    );

    assert_eq!(notifier.deliver_due(&outbox, now), report(1, 1, 0, 0));

    let body = receiver.next().json();
    assert_eq!(body["timestamp"], "1599360473");
    // base64(HMAC-SHA256 keyed with "1599360473\nthis-is-secret" over nothing), computed by an
    // independent implementation.
    assert_eq!(body["sign"], "P8ililcUS2k3l2NMCzco8uxScD8WOKgMN6YSLRhpo6M=");
    assert_eq!(body["msg_type"], "interactive");
    assert_eq!(body["card"]["header"]["template"], "green");
}

#[test]
fn a_webhook_receiver_can_verify_the_signature() {
    let (receiver, notifier, outbox) = case(
        vec![Answer::Reply(204, "")],
        r#"{"name":"audit","kind":"webhook","url":"{receiver}/hooks/vigil","secret":"s3cret"}"#,
        "",
        NotificationEvent::RolledBack,
        T0,
    );

    assert_eq!(notifier.deliver_due(&outbox, T0 + 5), report(1, 1, 0, 0));

    let request = receiver.next();
    let timestamp = &request.headers["x-vigil-timestamp"];
    assert_eq!(timestamp, &(T0 + 5).to_string());
    assert_eq!(request.headers["x-vigil-delivery"], "1");
    let mut signed = format!("{timestamp}.").into_bytes();
    signed.extend_from_slice(&request.body);
    let key = hmac::Key::new(hmac::HMAC_SHA256, b"s3cret");
    let expected: String = hmac::sign(&key, &signed)
        .as_ref()
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect();
    assert_eq!(
        request.headers["x-vigil-signature"],
        format!("sha256={expected}")
    );
    let body = request.json();
    assert_eq!(body["event"], "rolled_back");
    assert_eq!(body["release_id"], "r-42");
    assert_eq!(body["id"], 1);
    assert_eq!(body["timestamp"], T0 + 5);
    assert_eq!(body["link"], "https://vigil.example.com/releases/r-42");
    assert!(body["text"].as_str().unwrap().starts_with("fault: errors"));
}

#[test]
fn a_server_error_is_retried_at_the_scheduled_time_then_sent() {
    let (receiver, notifier, outbox) = case(
        vec![Answer::Reply(500, "boom"), Answer::Reply(200, "ok")],
        SLACK,
        r#", "retry": {"delays_seconds": [10, 30]}"#,
        NotificationEvent::Paused,
        T0,
    );

    assert_eq!(notifier.deliver_due(&outbox, T0), report(1, 0, 1, 0));
    let failed = outbox.item(1);
    assert_eq!(failed.state, DeliveryState::Pending);
    assert_eq!(failed.attempts, 1);
    assert_eq!(failed.next_attempt_at, T0 + 10);
    assert_eq!(failed.last_error, "answered http 500: boom");
    receiver.next();

    // Not due before the scheduled time: nothing is sent.
    assert_eq!(notifier.deliver_due(&outbox, T0 + 9), report(0, 0, 0, 0));
    receiver.nothing_more();

    assert_eq!(notifier.deliver_due(&outbox, T0 + 10), report(1, 1, 0, 0));
    receiver.next();
    let sent = outbox.item(1);
    assert_eq!(sent.state, DeliveryState::Sent);
    assert_eq!(sent.attempts, 2);
}

#[test]
fn an_item_is_dead_after_its_last_attempt() {
    let (receiver, notifier, outbox) = case(
        vec![
            Answer::Reply(503, "busy"),
            Answer::Reply(502, "bad gateway"),
            Answer::Reply(500, "still down"),
        ],
        SLACK,
        r#", "retry": {"delays_seconds": [10, 30], "max_attempts": 3}"#,
        NotificationEvent::Paused,
        T0,
    );

    assert_eq!(notifier.deliver_due(&outbox, T0), report(1, 0, 1, 0));
    assert_eq!(outbox.item(1).next_attempt_at, T0 + 10);
    assert_eq!(notifier.deliver_due(&outbox, T0 + 10), report(1, 0, 1, 0));
    assert_eq!(outbox.item(1).next_attempt_at, T0 + 40);
    assert_eq!(notifier.deliver_due(&outbox, T0 + 40), report(1, 0, 0, 1));

    let dead = outbox.item(1);
    assert_eq!(dead.state, DeliveryState::Dead);
    assert_eq!(dead.attempts, 3);
    assert_eq!(dead.last_error, "answered http 500: still down");
    assert_eq!(
        notifier.deliver_due(&outbox, T0 + 10_000),
        report(0, 0, 0, 0)
    );
    for _ in 0..3 {
        receiver.next();
    }
}

#[test]
fn an_item_older_than_the_max_age_is_given_up() {
    let (receiver, notifier, outbox) = case(
        vec![Answer::Reply(500, "down")],
        SLACK,
        r#", "retry": {"delays_seconds": [600], "max_age_seconds": 3600}"#,
        NotificationEvent::Paused,
        T0,
    );

    assert_eq!(notifier.deliver_due(&outbox, T0 + 3500), report(1, 0, 0, 1));
    assert_eq!(outbox.item(1).state, DeliveryState::Dead);
    receiver.next();
}

#[test]
fn a_dingtalk_error_code_is_a_failure() {
    let (receiver, notifier, outbox) = case(
        vec![Answer::Reply(
            200,
            r#"{"errcode":310000,"errmsg":"keywords not in content"}"#,
        )],
        r#"{"name":"oncall","kind":"dingtalk","webhook_url":"{receiver}/robot/send?access_token=abc"}"#,
        "",
        NotificationEvent::Paused,
        T0,
    );

    assert_eq!(notifier.deliver_due(&outbox, T0), report(1, 0, 1, 0));
    let failed = outbox.item(1);
    assert_eq!(failed.state, DeliveryState::Pending);
    assert_eq!(
        failed.last_error,
        "rejected the message with code 310000: keywords not in content"
    );
    receiver.next();
}

#[test]
fn an_unknown_channel_is_dead_at_once() {
    let notifier = notifier(
        r#"{"name":"ops","kind":"slack","webhook_url":"http://127.0.0.1:9/hook"}"#,
        "",
    );
    let outbox = MemoryOutbox::with(vec![notification("gone", NotificationEvent::Paused)], T0);

    assert_eq!(notifier.deliver_due(&outbox, T0), report(1, 0, 0, 1));
    let dead = outbox.item(1);
    assert_eq!(dead.state, DeliveryState::Dead);
    assert_eq!(dead.last_error, "no channel named gone is configured");
}

#[test]
fn an_event_the_channel_no_longer_wants_is_dead_at_once() {
    let notifier = notifier(
        r#"{"name":"ops","kind":"slack","webhook_url":"http://127.0.0.1:9/hook",
            "events":["paused"]}"#,
        "",
    );
    let outbox = MemoryOutbox::with(vec![notification("ops", NotificationEvent::Resumed)], T0);

    assert_eq!(notifier.deliver_due(&outbox, T0), report(1, 0, 0, 1));
    assert_eq!(
        outbox.item(1).last_error,
        "channel ops does not take resumed events"
    );
}

#[test]
fn a_silent_receiver_times_out_and_is_retried() {
    let (receiver, notifier, outbox) = case(
        vec![Answer::Silence(Duration::from_secs(4))],
        r#"{"name":"audit","kind":"webhook","url":"{receiver}/hook","secret":"s"}"#,
        "",
        NotificationEvent::Paused,
        T0,
    );

    assert_eq!(notifier.deliver_due(&outbox, T0), report(1, 0, 1, 0));
    let failed = outbox.item(1);
    assert_eq!(failed.last_error, "request failed: timeout: global");
    assert_eq!(failed.next_attempt_at, T0 + 10);
    receiver.next();
}

#[test]
fn a_refused_connection_is_retried_without_naming_the_url() {
    let closed_port = {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let notifier = notifier(
        &format!(
            r#"{{"name":"ops","kind":"slack","webhook_url":"http://127.0.0.1:{closed_port}/services/SECRET"}}"#
        ),
        "",
    );
    let outbox = MemoryOutbox::with(vec![notification("ops", NotificationEvent::Paused)], T0);

    assert_eq!(notifier.deliver_due(&outbox, T0), report(1, 0, 1, 0));
    let failed = outbox.item(1);
    assert!(
        failed.last_error.starts_with("request failed:"),
        "{}",
        failed.last_error
    );
    assert!(
        !failed.last_error.contains("SECRET"),
        "{}",
        failed.last_error
    );
}

#[test]
fn one_call_takes_at_most_a_batch() {
    let notifier = notifier(
        r#"{"name":"ops","kind":"slack","webhook_url":"http://127.0.0.1:9/hook"}"#,
        r#", "batch_size": 2"#,
    );
    let outbox = MemoryOutbox::with(
        vec![
            notification("gone", NotificationEvent::Paused),
            notification("gone", NotificationEvent::Resumed),
            notification("gone", NotificationEvent::RolledBack),
        ],
        T0,
    );

    assert_eq!(notifier.deliver_due(&outbox, T0), report(2, 0, 0, 2));
    assert_eq!(notifier.deliver_due(&outbox, T0), report(1, 0, 0, 1));
}

#[test]
fn an_item_another_replica_claims_is_left_to_it_until_its_claim_ends() {
    let receiver = Receiver::start(vec![Answer::Reply(200, "ok"); 3]);
    let notifier = notifier(&SLACK.replace("{receiver}", &receiver.url), "").for_replica("r2");
    assert_eq!(notifier.claimer(), "r2");
    let outbox = MemoryOutbox::with(
        vec![
            notification("ops", NotificationEvent::Paused),
            notification("ops", NotificationEvent::Resumed),
            notification("ops", NotificationEvent::RolledBack),
        ],
        T0,
    );
    // Replica r1 claimed the first item and died while sending it.
    let taken = outbox.claim("r1", T0, T0 + 17, 1).unwrap();
    assert_eq!(taken.len(), 1);

    assert_eq!(notifier.deliver_due(&outbox, T0), report(2, 2, 0, 0));
    assert_eq!(outbox.item(1).state, DeliveryState::Pending);
    assert_eq!(outbox.claim_of(1), Some(("r1".to_string(), T0 + 17)));
    assert_eq!(notifier.deliver_due(&outbox, T0 + 16), report(0, 0, 0, 0));
    receiver.next();
    receiver.next();
    receiver.nothing_more();

    assert_eq!(notifier.deliver_due(&outbox, T0 + 17), report(1, 1, 0, 0));
    assert_eq!(outbox.item(1).state, DeliveryState::Sent);
    assert_eq!(outbox.claim_of(1), None, "sending clears the claim");
    let body = receiver.next().json();
    assert!(body["text"].as_str().unwrap().contains("errors on 2 hosts"));
}

#[test]
fn sends_and_failures_are_counted_by_channel() {
    use vigil_core::telemetry::{NOTIFICATIONS_FAILED, NOTIFICATIONS_SENT};
    let receiver = Receiver::start(vec![Answer::Reply(200, "ok"), Answer::Reply(503, "busy")]);
    let channel = r#"{"name":"counted","kind":"slack","webhook_url":"{receiver}/services/T/B/X"}"#
        .replace("{receiver}", &receiver.url);
    let notifier = notifier(&channel, "");
    let outbox = MemoryOutbox::with(
        vec![
            notification("counted", NotificationEvent::Paused),
            notification("counted", NotificationEvent::Resumed),
        ],
        T0,
    );
    let count = |family: &vigil_core::telemetry::Family| family.value(&["counted"]).unwrap_or(0.0);
    let (sent_before, failed_before) = (count(&NOTIFICATIONS_SENT), count(&NOTIFICATIONS_FAILED));

    assert_eq!(notifier.deliver_due(&outbox, T0), report(2, 1, 1, 0));

    assert_eq!(count(&NOTIFICATIONS_SENT) - sent_before, 1.0);
    assert_eq!(count(&NOTIFICATIONS_FAILED) - failed_before, 1.0);
}
