//! Replicas sharing one store: each notification is sent once, by the replica that claimed it,
//! on SQLite always and on PostgreSQL when `VIGIL_TEST_POSTGRES` names a server.
#![allow(clippy::unwrap_used, clippy::print_stderr)]

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::TcpListener;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Barrier, Mutex};
use std::thread;
use std::time::Duration;

use vigil_core::release::{
    DeliveryState, NewNotification, NotificationEvent, ReferenceHosts, Release, ReleaseSpec,
    ReleaseState, VerdictRecord,
};
use vigil_core::Verdict;
use vigil_notify::{Notifier, NotifyConfig, CLAIM_MARGIN_SECONDS};
use vigil_store::testing::{ScratchPostgres, TempDir};
use vigil_store::Store;

const T0: i64 = 1_700_000_000;

/// A webhook receiver on 127.0.0.1 answering 200 to every request, counting the deliveries of
/// each outbox id (`X-Vigil-Delivery`).
struct Receiver {
    url: String,
    deliveries: Arc<Mutex<HashMap<i64, usize>>>,
    stop: Arc<AtomicBool>,
}

impl Receiver {
    fn start() -> Receiver {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let url = format!("http://{}/hooks/vigil", listener.local_addr().unwrap());
        let deliveries = Arc::new(Mutex::new(HashMap::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let counted = Arc::clone(&deliveries);
        let stopping = Arc::clone(&stop);
        thread::spawn(move || {
            while !stopping.load(Ordering::Relaxed) {
                let Ok((mut stream, _)) = listener.accept() else {
                    thread::sleep(Duration::from_millis(2));
                    continue;
                };
                stream.set_nonblocking(false).unwrap();
                stream
                    .set_read_timeout(Some(Duration::from_secs(5)))
                    .unwrap();
                let id = read_delivery_id(&mut stream);
                *counted.lock().unwrap().entry(id).or_insert(0) += 1;
                stream
                    .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
                    .unwrap();
            }
        });
        Receiver {
            url,
            deliveries,
            stop,
        }
    }

    fn deliveries(&self) -> HashMap<i64, usize> {
        self.deliveries.lock().unwrap().clone()
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// Reads a whole request and returns its `X-Vigil-Delivery` header.
fn read_delivery_id(stream: &mut std::net::TcpStream) -> i64 {
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
    let header = |name: &str| -> String {
        head.split("\r\n")
            .filter_map(|line| line.split_once(':'))
            .find(|(key, _)| key.trim().eq_ignore_ascii_case(name))
            .map(|(_, value)| value.trim().to_string())
            .unwrap()
    };
    let length: usize = header("content-length").parse().unwrap();
    while buffer.len() < header_end + length {
        let read = stream.read(&mut chunk).unwrap();
        assert!(read > 0, "connection closed before the body ended");
        buffer.extend_from_slice(&chunk[..read]);
    }
    header("x-vigil-delivery").parse().unwrap()
}

fn release() -> Release {
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
        state: ReleaseState::Observing,
        created_by: "ci".to_string(),
        created_at: T0,
        updated_at: T0,
        deployed: Vec::new(),
        verdict: None,
        reason: "created".to_string(),
    }
}

/// `count` notifications of one release to the channel `audit`, due at `T0`.
fn queue(store: &dyn Store, count: usize) -> Vec<i64> {
    store.create_release(&release()).unwrap();
    let notifications: Vec<NewNotification> = (0..count)
        .map(|index| NewNotification {
            release_id: "r-42".to_string(),
            event: NotificationEvent::Recommendation,
            channel: "audit".to_string(),
            title: format!("Vigil recommends a look {index}"),
            text: "anomaly".to_string(),
            link: "https://vigil.example.com/releases/r-42".to_string(),
        })
        .collect();
    let record = VerdictRecord {
        release_id: "r-42".to_string(),
        at: T0,
        verdict: Verdict::Anomaly,
        findings: Vec::new(),
        explanation: "anomaly".to_string(),
        suppressed: Vec::new(),
    };
    store.record_verdict(&record, &notifications).unwrap();
    store
        .notifications("r-42")
        .unwrap()
        .iter()
        .map(|item| item.id)
        .collect()
}

fn notifier(receiver: &Receiver, replica: &str) -> Notifier {
    let json = format!(
        r#"{{"timeout_seconds": 2, "batch_size": 4, "channels": [
            {{"name":"audit","kind":"webhook","url":"{}","secret":"s3cret"}}]}}"#,
        receiver.url
    );
    let config: NotifyConfig = serde_json::from_str(&json).unwrap();
    Notifier::new(config).unwrap().for_replica(replica)
}

/// Three replicas deliver from one store at once until nothing is due: every item reaches the
/// receiver exactly once and is marked sent.
fn replicas_delivering_at_once_send_each_notification_once(store: &dyn Store) {
    let ids = queue(store, 30);
    let receiver = Receiver::start();
    let barrier = Barrier::new(3);
    let sent_by_replica: Vec<usize> = thread::scope(|scope| {
        let handles: Vec<_> = ["r1", "r2", "r3"]
            .into_iter()
            .map(|replica| {
                let notifier = notifier(&receiver, replica);
                let barrier = &barrier;
                scope.spawn(move || {
                    barrier.wait();
                    let mut sent = 0;
                    loop {
                        let report = notifier.deliver_due(store, T0);
                        assert_eq!(report.store_errors, 0);
                        sent += report.sent;
                        if report.due == 0 {
                            return sent;
                        }
                    }
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|handle| handle.join().unwrap())
            .collect()
    });
    assert_eq!(
        sent_by_replica.iter().sum::<usize>(),
        30,
        "{sent_by_replica:?}"
    );
    let deliveries = receiver.deliveries();
    let mut delivered: Vec<i64> = deliveries.keys().copied().collect();
    delivered.sort_unstable();
    assert_eq!(delivered, ids);
    assert!(
        deliveries.values().all(|times| *times == 1),
        "{deliveries:?}"
    );
    let items = store.notifications("r-42").unwrap();
    assert!(items.iter().all(|item| item.state == DeliveryState::Sent));
}

/// A replica killed while sending leaves its claimed item; another replica sends it once the
/// claim has ended, not before.
fn an_item_of_a_replica_killed_mid_send_is_sent_by_another_after_its_claim(store: &dyn Store) {
    let ids = queue(store, 1);
    let receiver = Receiver::start();
    let dead = notifier(&receiver, "r1");
    // What r1's deliver_due claims before it sends: the first item, for one send.
    let claim_until = T0 + 2 + CLAIM_MARGIN_SECONDS;
    let claimed = store
        .claim_notifications(dead.claimer(), T0, claim_until, 1)
        .unwrap();
    assert_eq!(claimed.len(), 1);
    let survivor = notifier(&receiver, "r2");
    assert_eq!(survivor.deliver_due(store, claim_until - 1).due, 0);
    assert!(receiver.deliveries().is_empty());
    assert_eq!(survivor.deliver_due(store, claim_until).sent, 1);
    assert_eq!(receiver.deliveries(), HashMap::from([(ids[0], 1)]));
    assert_eq!(survivor.deliver_due(store, claim_until + 60).due, 0);
}

fn on_sqlite(test: fn(&dyn Store)) {
    let directory = TempDir::new("vigil_notify_replicas").unwrap();
    let url = format!("sqlite://{}", directory.path().join("vigil.db").display());
    let store = vigil_store::open(&url).unwrap();
    test(store.as_ref());
}

fn on_postgres(test: fn(&dyn Store)) {
    let Some(scratch) = ScratchPostgres::from_env("vigil_notify_replicas").unwrap() else {
        assert!(
            std::env::var_os("VIGIL_REQUIRE_POSTGRES").is_none(),
            "VIGIL_REQUIRE_POSTGRES is set but VIGIL_TEST_POSTGRES is not"
        );
        eprintln!("\n*** SKIPPED: PostgreSQL replicas (VIGIL_TEST_POSTGRES not set) ***\n");
        return;
    };
    let store = vigil_store::open(scratch.url()).unwrap();
    test(store.as_ref());
}

#[test]
fn sqlite_replicas_delivering_at_once_send_each_notification_once() {
    on_sqlite(replicas_delivering_at_once_send_each_notification_once);
}

#[test]
fn postgres_replicas_delivering_at_once_send_each_notification_once() {
    on_postgres(replicas_delivering_at_once_send_each_notification_once);
}

#[test]
fn sqlite_an_item_of_a_replica_killed_mid_send_is_sent_by_another_after_its_claim() {
    on_sqlite(an_item_of_a_replica_killed_mid_send_is_sent_by_another_after_its_claim);
}

#[test]
fn postgres_an_item_of_a_replica_killed_mid_send_is_sent_by_another_after_its_claim() {
    on_postgres(an_item_of_a_replica_killed_mid_send_is_sent_by_another_after_its_claim);
}
