//! A pause reaches people: the pause is written to the outbox with its transition, and the
//! notifier delivers it, signed, to a webhook on loopback, with the link to the release.
#![allow(clippy::unwrap_used)]

mod support;

use std::io::{Read, Write};
use std::net::TcpListener;
use std::sync::mpsc;
use std::time::Duration;

use serde_json::json;
use support::{examples_dir, TempDir, TestServer};
use vigil_server::ServerConfig;

/// Accepts one request after another on a loopback port and sends each one's head and body.
fn receiver() -> (u16, mpsc::Receiver<String>) {
    slow_receiver(Duration::ZERO)
}

/// [`receiver`], answering each request `delay` after reading it.
fn slow_receiver(delay: Duration) -> (u16, mpsc::Receiver<String>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let (sender, received) = mpsc::channel();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            stream
                .set_read_timeout(Some(Duration::from_secs(5)))
                .unwrap();
            let mut request = Vec::new();
            let mut buffer = [0u8; 8192];
            loop {
                let read = stream.read(&mut buffer).unwrap_or(0);
                if read == 0 {
                    break;
                }
                request.extend_from_slice(&buffer[..read]);
                let text = String::from_utf8_lossy(&request).to_string();
                if let Some(head_end) = text.find("\r\n\r\n") {
                    let length = text[..head_end]
                        .lines()
                        .find_map(|line| {
                            line.to_ascii_lowercase()
                                .strip_prefix("content-length:")
                                .map(|value| value.trim().parse::<usize>().unwrap_or(0))
                        })
                        .unwrap_or(0);
                    if request.len() >= head_end + 4 + length {
                        break;
                    }
                }
            }
            std::thread::sleep(delay);
            let _ = stream
                .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok");
            let _ = sender.send(String::from_utf8_lossy(&request).to_string());
        }
    });
    (port, received)
}

#[test]
fn a_pause_is_delivered_to_a_signed_webhook() {
    let (port, received) = receiver();
    let config = ServerConfig {
        notifications: serde_json::from_value(json!({"channels": [
            {"name": "oncall", "kind": "webhook", "url": format!("http://127.0.0.1:{port}/vigil"), "secret": "s3cret"}
        ]}))
        .unwrap(),
        public_url: "https://vigil.example".to_string(),
        ..ServerConfig::default()
    };
    let dir = TempDir::new("notify");
    let database = dir.0.join("vigil.db").display().to_string();
    let bundle =
        vigil_core::Bundle::read(&examples_dir().join("releases/pub0059.json.gz")).unwrap();
    let server = TestServer::start_with(bundle.start, &database, Some(dir), config);
    let release_hosts: Vec<&str> = bundle
        .hosts
        .iter()
        .filter(|host| host.group == vigil_core::HostGroup::Release)
        .map(|host| host.name.as_str())
        .collect();
    let (status, answer) = server.post(
        "/api/v1/releases",
        &server.admin,
        &json!({"id": "shop-7", "app": bundle.app, "version": "7", "hosts": release_hosts,
                "batches": bundle.batches.iter().map(|b| json!({"hosts": b.hosts})).collect::<Vec<_>>(),
                "step_seconds": bundle.step_seconds, "metrics": bundle.metrics}),
    );
    assert_eq!(status, 201, "{answer}");
    // A person pauses it: the transition and its notification are stored together.
    let (status, answer) = server.post(
        "/api/v1/releases/shop-7/pause",
        &server.admin,
        &json!({"reason": "error rate on the dashboard"}),
    );
    assert_eq!(status, 200, "{answer}");
    let request = received
        .recv_timeout(Duration::from_secs(20))
        .expect("the webhook got nothing");
    let (head, body) = request.split_once("\r\n\r\n").unwrap();
    let head = head.to_ascii_lowercase();
    assert!(head.starts_with("post /vigil"), "{head}");
    assert!(head.contains("x-vigil-signature: sha256="), "{head}");
    let payload: serde_json::Value = serde_json::from_str(body).unwrap();
    assert_eq!(payload["event"], "paused");
    assert_eq!(payload["release_id"], "shop-7");
    assert_eq!(payload["link"], "https://vigil.example/releases/shop-7");
    assert!(payload["text"]
        .as_str()
        .unwrap()
        .contains("error rate on the dashboard"));
    // The outbox says it was sent.
    for _ in 0..50 {
        let (_, items) = server.get("/api/v1/releases/shop-7/notifications", &server.viewer);
        if items[0]["state"] == "sent" {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("the outbox item was not marked sent");
}

/// Three replicas on one PostgreSQL database, each with its notifier: a pause asked of one of
/// them reaches the webhook once, not once per replica (PostgreSQL only: SQLite serves one
/// process).
#[test]
fn three_replicas_on_one_postgres_deliver_a_pause_once() {
    let Some(scratch) =
        vigil_store::testing::ScratchPostgres::from_env("vigil_notify_replicas").unwrap()
    else {
        assert!(
            std::env::var_os("VIGIL_REQUIRE_POSTGRES").is_none(),
            "VIGIL_REQUIRE_POSTGRES is set but VIGIL_TEST_POSTGRES is not"
        );
        return;
    };
    // The webhook takes 4 s to answer: every other replica's notifier (each runs every 3 s)
    // looks at the outbox while the first send is under way.
    let (port, received) = slow_receiver(Duration::from_secs(4));
    let now = vigil_core::Clock::now(&vigil_core::SystemClock);
    let replicas: Vec<TestServer> = ["r1", "r2", "r3"]
        .into_iter()
        .map(|id| {
            let mut config = ServerConfig {
                notifications: serde_json::from_value(json!({"channels": [
                    {"name": "oncall", "kind": "webhook", "url": format!("http://127.0.0.1:{port}/vigil"), "secret": "s3cret"}
                ]}))
                .unwrap(),
                ..ServerConfig::default()
            };
            config.replica.id = id.to_string();
            TestServer::start_with(now, scratch.url(), None, config)
        })
        .collect();
    let (status, answer) = replicas[0].post(
        "/api/v1/releases",
        &replicas[0].admin,
        &json!({"id": "shop-8", "app": "shop", "version": "8", "hosts": ["h1", "h2"],
                "step_seconds": 10,
                "metrics": [{"name": "latency_ms", "kind": "middleware", "direction": "increase", "critical": true}]}),
    );
    assert_eq!(status, 201, "{answer}");
    let (status, answer) = replicas[1].post(
        "/api/v1/releases/shop-8/pause",
        &replicas[1].operator,
        &json!({"reason": "error rate on the dashboard"}),
    );
    assert_eq!(status, 200, "{answer}");
    let request = received
        .recv_timeout(Duration::from_secs(20))
        .expect("the webhook got nothing");
    assert!(request.contains("\"event\":\"paused\""), "{request}");
    // Every replica's notifier runs every 3 s: several rounds pass without a second send.
    std::thread::sleep(Duration::from_secs(10));
    assert!(
        received.try_recv().is_err(),
        "the pause was delivered more than once"
    );
    let (_, items) = replicas[2].get("/api/v1/releases/shop-8/notifications", &replicas[2].viewer);
    assert_eq!(items.as_array().unwrap().len(), 1, "{items}");
    assert_eq!(items[0]["state"], "sent", "{items}");
    drop(replicas);
}
