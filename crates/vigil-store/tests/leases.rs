//! Replicas and leases, on every store: SQLite always, PostgreSQL when `VIGIL_TEST_POSTGRES`
//! holds a server URL (each test gets a database of its own there; skipped loudly without).
//! Claims, renewals, expiry, epochs, the fence of the guard's writes, and replicas claiming
//! the same leases at once.
#![allow(clippy::unwrap_used)]

use std::collections::HashMap;
use std::io::Write;
use std::sync::{Arc, Barrier, Once};

use vigil_core::release::{
    Action, NewNotification, NotificationEvent, PlannedBatch, ReferenceHosts, Release, ReleaseSpec,
    ReleaseState, VerdictRecord,
};
use vigil_core::{Direction, MetricKind, MetricMeta, Verdict};
use vigil_store::testing::{ScratchPostgres, TempDir, POSTGRES_TEST_ENV};
use vigil_store::{Change, Lease, LeaseFence, Store, StoreError};

/// Set (by CI) to fail instead of skipping when no PostgreSQL server is given.
const REQUIRE_POSTGRES_ENV: &str = "VIGIL_REQUIRE_POSTGRES";

/// Runs each test on a SQLite file and, when one is given, on a PostgreSQL database.
macro_rules! on_every_store {
    ($($test:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[test]
                fn $test() {
                    let directory = vigil_store::testing::TempDir::new("vigil_leases").unwrap();
                    let store = super::sqlite_store(&directory);
                    super::$test(store);
                }
            )*
        }

        mod postgres {
            $(
                #[test]
                fn $test() {
                    let Some(scratch) = super::postgres_scratch() else {
                        return;
                    };
                    let store = vigil_store::open(scratch.url()).unwrap();
                    super::$test(store);
                }
            )*
        }
    };
}

on_every_store! {
    free_leases_are_claimed_up_to_the_most_asked_and_renewed_until_they_expire,
    a_lease_taken_from_another_holder_gets_the_next_epoch,
    a_dropped_lease_is_free_at_once,
    a_fenced_change_applies_only_while_its_lease_is_held,
    a_fenced_verdict_is_recorded_only_while_its_lease_is_held,
    replicas_are_upserted_by_heartbeat_and_forgotten_when_gone,
    replicas_claiming_the_same_leases_at_once_each_get_a_share_of_their_own,
    replicas_racing_for_expired_leases_take_each_one_once,
}

fn sqlite_store(directory: &TempDir) -> Arc<dyn Store> {
    vigil_store::open(&format!(
        "sqlite://{}",
        directory.path().join("vigil.db").display()
    ))
    .unwrap()
}

fn postgres_scratch() -> Option<ScratchPostgres> {
    match ScratchPostgres::from_env("vigil_leases") {
        Ok(Some(scratch)) => Some(scratch),
        Ok(None) => {
            if std::env::var_os(REQUIRE_POSTGRES_ENV).is_some() {
                panic!("{REQUIRE_POSTGRES_ENV} is set but {POSTGRES_TEST_ENV} is not");
            }
            static SAY_SKIPPED: Once = Once::new();
            SAY_SKIPPED.call_once(|| {
                let _ = writeln!(
                    std::io::stderr(),
                    "\n*** SKIPPED: PostgreSQL leases ({POSTGRES_TEST_ENV} not set) ***\n"
                );
            });
            None
        }
        Err(error) => panic!("cannot prepare a PostgreSQL test database: {error}"),
    }
}

// ---------------------------------------------------------------- samples

fn release(id: &str) -> Release {
    Release {
        id: id.to_owned(),
        spec: ReleaseSpec {
            app: "shop".to_owned(),
            version: "1.2.3".to_owned(),
            hosts: vec!["h1".to_owned()].into(),
            reference: ReferenceHosts::Hosts {
                hosts: vec!["k1".to_owned()],
            },
            batches: vec![PlannedBatch {
                hosts: vec!["h1".to_owned()],
            }],
            step_seconds: 60,
            observe_seconds: 1800,
            metrics: vec![MetricMeta {
                name: "latency_p99".to_owned(),
                kind: MetricKind::Middleware,
                unit: "ms".to_owned(),
                direction: Direction::Increase,
                critical: true,
                judged: true,
            }],
            settings: serde_json::Map::new(),
            rules: Vec::new(),
        },
        state: ReleaseState::Pending,
        created_by: "pipeline".to_owned(),
        created_at: 1_000,
        updated_at: 1_000,
        deployed: Vec::new(),
        verdict: None,
        reason: "created by the pipeline".to_owned(),
    }
}

/// Creates releases `r00`, `r01`... and returns their ids.
fn releases(store: &dyn Store, count: usize) -> Vec<String> {
    (0..count)
        .map(|number| {
            let id = format!("r{number:02}");
            store.create_release(&release(&id)).unwrap();
            id
        })
        .collect()
}

fn ids(leases: &[Lease]) -> Vec<&str> {
    leases
        .iter()
        .map(|lease| lease.release_id.as_str())
        .collect()
}

fn pause(release_id: &str, at: i64, lease: Option<LeaseFence>) -> Change {
    Change {
        release_id: release_id.to_owned(),
        expected: ReleaseState::Pending,
        to: ReleaseState::Paused,
        action: Action::Pause,
        actor: "guard".to_owned(),
        at,
        reason: "a fault".to_owned(),
        deployed: None,
        notifications: vec![NewNotification {
            release_id: release_id.to_owned(),
            event: NotificationEvent::Paused,
            channel: "ops".to_owned(),
            title: "paused".to_owned(),
            text: "a fault".to_owned(),
            link: String::new(),
        }],
        lease,
    }
}

fn fence(holder: &str, epoch: i64, now: i64) -> LeaseFence {
    LeaseFence {
        holder: holder.to_owned(),
        epoch,
        now,
    }
}

// ---------------------------------------------------------------- tests

fn free_leases_are_claimed_up_to_the_most_asked_and_renewed_until_they_expire(
    store: Arc<dyn Store>,
) {
    let wanted = releases(store.as_ref(), 4);
    let held = store.claim_leases("a", 100, 115, &wanted, 3).unwrap();
    assert_eq!(ids(&held), ["r00", "r01", "r02"]);
    assert!(held
        .iter()
        .all(|lease| lease.holder == "a" && lease.epoch == 1 && lease.expires_at == 115));
    // Held unexpired: another holder takes only the one left.
    let other = store.claim_leases("b", 105, 120, &wanted, 4).unwrap();
    assert_eq!(ids(&other), ["r03"]);
    // Claiming again asks for no more than the most: the three held count.
    let again = store.claim_leases("a", 106, 121, &wanted, 3).unwrap();
    assert_eq!(ids(&again), ["r00", "r01", "r02"]);
    assert!(again.iter().all(|lease| lease.expires_at == 115));
    // Renewed before expiry, they last longer; an expired one is not renewed.
    let renewed = store.renew_leases("a", 110, 125).unwrap();
    assert_eq!(ids(&renewed), ["r00", "r01", "r02"]);
    assert!(renewed.iter().all(|lease| lease.expires_at == 125));
    assert_eq!(store.renew_leases("b", 120, 135).unwrap(), Vec::new());
    assert_eq!(store.renew_leases("a", 125, 140).unwrap(), Vec::new());
    let all = store.leases().unwrap();
    assert_eq!(ids(&all), ["r00", "r01", "r02", "r03"]);
    assert_eq!(all[3].holder, "b");
    assert_eq!(all[3].expires_at, 120);
}

fn a_lease_taken_from_another_holder_gets_the_next_epoch(store: Arc<dyn Store>) {
    let wanted = releases(store.as_ref(), 2);
    store.claim_leases("a", 100, 115, &wanted, 2).unwrap();
    // At its expiry the lease is free: another holder takes it at the next epoch.
    let taken = store.claim_leases("b", 115, 130, &wanted[..1], 1).unwrap();
    assert_eq!(taken.len(), 1);
    assert_eq!((taken[0].holder.as_str(), taken[0].epoch), ("b", 2));
    // The holder it lapsed from takes the other one again at the same epoch: no one held it
    // in between.
    let again = store.claim_leases("a", 116, 131, &wanted, 2).unwrap();
    assert_eq!(ids(&again), ["r01"]);
    assert_eq!(again[0].epoch, 1);
    // And back to the first holder, one more.
    let back = store.claim_leases("a", 130, 145, &wanted, 2).unwrap();
    assert_eq!(ids(&back), ["r00", "r01"]);
    assert_eq!(back[0].epoch, 3);
}

fn a_dropped_lease_is_free_at_once(store: Arc<dyn Store>) {
    let wanted = releases(store.as_ref(), 2);
    store.claim_leases("a", 100, 115, &wanted, 2).unwrap();
    assert!(!store.drop_lease("b", "r00").unwrap());
    assert!(store.drop_lease("a", "r00").unwrap());
    assert_eq!(ids(&store.renew_leases("a", 101, 116).unwrap()), ["r01"]);
    let taken = store.claim_leases("b", 101, 116, &wanted, 2).unwrap();
    assert_eq!(ids(&taken), ["r00"]);
    assert_eq!(taken[0].epoch, 2);
}

fn a_fenced_change_applies_only_while_its_lease_is_held(store: Arc<dyn Store>) {
    let wanted = releases(store.as_ref(), 3);
    store.claim_leases("a", 100, 115, &wanted, 3).unwrap();
    // Held: applies, with its notification.
    store
        .apply(&pause("r00", 110, Some(fence("a", 1, 110))))
        .unwrap();
    assert_eq!(
        store.release("r00").unwrap().unwrap().state,
        ReleaseState::Paused
    );
    // Expired at the write's time: nothing changes.
    let expired = store
        .apply(&pause("r01", 115, Some(fence("a", 1, 115))))
        .unwrap_err();
    assert!(
        matches!(&expired, StoreError::LeaseLost { release_id } if release_id == "r01"),
        "{expired:?}"
    );
    assert_eq!(
        expired.to_string(),
        "the lease of release r01 is no longer held by this replica"
    );
    // Taken by another holder: the old holder's epoch and name no longer pass.
    store.claim_leases("b", 116, 131, &wanted[1..2], 1).unwrap();
    for stale in [fence("a", 1, 117), fence("a", 2, 117), fence("b", 1, 117)] {
        let lost = store.apply(&pause("r01", 117, Some(stale))).unwrap_err();
        assert!(matches!(lost, StoreError::LeaseLost { .. }), "{lost:?}");
    }
    assert_eq!(
        store.release("r01").unwrap().unwrap().state,
        ReleaseState::Pending
    );
    assert_eq!(store.transitions("r01").unwrap().len(), 1);
    assert!(store.notifications("r01").unwrap().is_empty());
    store
        .apply(&pause("r01", 118, Some(fence("b", 2, 118))))
        .unwrap();
    // Unfenced (a person's action) applies whoever holds the lease.
    store.apply(&pause("r02", 200, None)).unwrap();
    assert_eq!(store.notifications("r02").unwrap().len(), 1);
}

fn a_fenced_verdict_is_recorded_only_while_its_lease_is_held(store: Arc<dyn Store>) {
    let wanted = releases(store.as_ref(), 1);
    store.claim_leases("a", 100, 115, &wanted, 1).unwrap();
    let record = |at: i64| VerdictRecord {
        release_id: "r00".to_owned(),
        at,
        verdict: Verdict::Anomaly,
        findings: Vec::new(),
        explanation: "a look".to_owned(),
        suppressed: Vec::new(),
    };
    let note = NewNotification {
        release_id: "r00".to_owned(),
        event: NotificationEvent::Recommendation,
        channel: "ops".to_owned(),
        title: "a look".to_owned(),
        text: "a look".to_owned(),
        link: String::new(),
    };
    store
        .record_verdict_fenced(
            &record(110),
            std::slice::from_ref(&note),
            &fence("a", 1, 110),
        )
        .unwrap();
    store.claim_leases("b", 120, 135, &wanted, 1).unwrap();
    let lost = store
        .record_verdict_fenced(
            &record(121),
            std::slice::from_ref(&note),
            &fence("a", 1, 121),
        )
        .unwrap_err();
    assert!(matches!(lost, StoreError::LeaseLost { .. }), "{lost:?}");
    let verdicts = store.verdicts("r00").unwrap();
    assert_eq!(verdicts.len(), 1);
    assert_eq!(verdicts[0].at, 110);
    assert_eq!(store.notifications("r00").unwrap().len(), 1);
    store
        .record_verdict_fenced(&record(122), &[], &fence("b", 2, 122))
        .unwrap();
    assert_eq!(store.verdicts("r00").unwrap().len(), 2);
}

fn replicas_are_upserted_by_heartbeat_and_forgotten_when_gone(store: Arc<dyn Store>) {
    store.replica_seen("b", "http://b:7070", 90, 100).unwrap();
    store.replica_seen("a", "http://a:7070", 95, 100).unwrap();
    store.replica_seen("a", "http://a:7071", 95, 101).unwrap();
    let replicas = store.replicas().unwrap();
    let seen: Vec<(&str, &str, i64, i64)> = replicas
        .iter()
        .map(|replica| {
            (
                replica.id.as_str(),
                replica.address.as_str(),
                replica.started_at,
                replica.seen_at,
            )
        })
        .collect();
    assert_eq!(
        seen,
        [
            ("a", "http://a:7071", 95, 101),
            ("b", "http://b:7070", 90, 100)
        ]
    );
    store.replica_gone("a").unwrap();
    store.replica_gone("nobody").unwrap();
    assert_eq!(store.replicas().unwrap().len(), 1);
}

/// Each racer claims at most `most` of every release at once.
fn race(
    store: &Arc<dyn Store>,
    wanted: &[String],
    racers: usize,
    most: usize,
    now: i64,
) -> Vec<Vec<Lease>> {
    let barrier = Barrier::new(racers);
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..racers)
            .map(|racer| {
                let barrier = &barrier;
                let store = Arc::clone(store);
                // Each racer tries the releases from another place, as replicas do.
                let mut order = wanted.to_vec();
                order.rotate_left(racer * 3 % wanted.len());
                scope.spawn(move || {
                    barrier.wait();
                    store
                        .claim_leases(&format!("racer-{racer}"), now, now + 15, &order, most)
                        .unwrap()
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|handle| handle.join().unwrap())
            .collect()
    })
}

/// Every release's lease is held by exactly one racer, and each holds at most `most`.
fn assert_each_held_once(store: &dyn Store, wanted: &[String], held: &[Vec<Lease>], most: usize) {
    let mut holders: HashMap<&str, Vec<&str>> = HashMap::new();
    for leases in held {
        assert!(leases.len() <= most, "{leases:?}");
        for lease in leases {
            holders
                .entry(lease.release_id.as_str())
                .or_default()
                .push(lease.holder.as_str());
        }
    }
    for id in wanted {
        assert_eq!(
            holders.get(id.as_str()).map(Vec::len),
            Some(1),
            "{id}: {holders:?}"
        );
    }
    for lease in store.leases().unwrap() {
        assert_eq!(holders[lease.release_id.as_str()], [lease.holder.as_str()]);
    }
}

fn replicas_claiming_the_same_leases_at_once_each_get_a_share_of_their_own(store: Arc<dyn Store>) {
    let wanted = releases(store.as_ref(), 24);
    let held = race(&store, &wanted, 8, 3, 100);
    assert_each_held_once(store.as_ref(), &wanted, &held, 3);
    assert!(held.iter().all(|leases| leases.len() == 3), "{held:?}");
}

fn replicas_racing_for_expired_leases_take_each_one_once(store: Arc<dyn Store>) {
    let wanted = releases(store.as_ref(), 20);
    store.claim_leases("dead", 50, 65, &wanted, 20).unwrap();
    let held = race(&store, &wanted, 6, 20, 100);
    assert_each_held_once(store.as_ref(), &wanted, &held, 20);
    // Each lease changed holder once: the next epoch, not two more.
    assert!(store
        .leases()
        .unwrap()
        .iter()
        .all(|lease| lease.epoch == 2 && lease.holder != "dead"));
}
