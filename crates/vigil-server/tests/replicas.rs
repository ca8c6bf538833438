//! Two servers on one PostgreSQL database, as two replicas behind a load balancer: both are
//! listed by `GET /api/v1/replicas`, the observing releases are split between them, and when
//! one stops, the other guards them all at once. Needs `VIGIL_TEST_POSTGRES` (skipped, loudly,
//! without it).
#![allow(clippy::unwrap_used)]

mod support;

use std::collections::BTreeSet;
use std::io::Write;
use std::time::Duration;

use serde_json::{json, Value};
use support::TestServer;
use vigil_core::Clock;
use vigil_server::{ReplicaSettings, ServerConfig};
use vigil_store::testing::ScratchPostgres;

const NOW: i64 = 1_800_000_000;
const RELEASES: usize = 6;

fn scratch() -> Option<ScratchPostgres> {
    let scratch = ScratchPostgres::from_env("vigil_replicas").unwrap();
    if scratch.is_none() {
        if std::env::var_os("VIGIL_REQUIRE_POSTGRES").is_some() {
            panic!("VIGIL_REQUIRE_POSTGRES is set but VIGIL_TEST_POSTGRES is not");
        }
        let _ = writeln!(
            std::io::stderr(),
            "\n*** SKIPPED: replicas on PostgreSQL (VIGIL_TEST_POSTGRES not set) ***\n"
        );
    }
    scratch
}

fn replica(database: &str, id: &str) -> TestServer {
    TestServer::start_with(
        NOW,
        database,
        None,
        ServerConfig {
            replica: ReplicaSettings {
                id: id.to_owned(),
                lease_seconds: 15,
            },
            ..ServerConfig::default()
        },
    )
}

fn release_body(id: &str) -> Value {
    json!({
        "id": id, "app": "shop", "version": "2",
        "hosts": ["a", "b"], "batches": [{"hosts": ["a", "b"]}],
        "reference": {"type": "hosts", "hosts": ["c", "d"]},
        "step_seconds": 30, "observe_seconds": 3600,
        "metrics": [{"name": "latency_ms", "kind": "middleware", "direction": "increase",
                     "unit": "ms", "critical": true}],
    })
}

/// The replicas as one server lists them: id, live, and the releases each guards.
fn replicas(server: &TestServer) -> Vec<(String, bool, BTreeSet<String>)> {
    let (status, answer) = server.get("/api/v1/replicas", &server.viewer);
    assert_eq!(status, 200, "{answer}");
    answer["replicas"]
        .as_array()
        .unwrap()
        .iter()
        .map(|replica| {
            let releases = replica["releases"]
                .as_array()
                .unwrap()
                .iter()
                .map(|id| id.as_str().unwrap().to_owned())
                .collect();
            (
                replica["id"].as_str().unwrap().to_owned(),
                replica["live"].as_bool().unwrap(),
                releases,
            )
        })
        .collect()
}

/// Moves every server's clock a second on (a lease round at most once a second of it) until
/// `done` holds for the replicas listed by the first, or fails after 100 tries (30 s).
fn wait_for(
    servers: &[&TestServer],
    what: &str,
    done: impl Fn(&[(String, bool, BTreeSet<String>)]) -> bool,
) -> Vec<(String, bool, BTreeSet<String>)> {
    for _ in 0..100 {
        let listed = replicas(servers[0]);
        if done(&listed) {
            return listed;
        }
        for server in servers {
            server.clock.advance(1);
        }
        std::thread::sleep(Duration::from_millis(300));
    }
    panic!("{what} never happened: {:?}", replicas(servers[0]));
}

#[test]
fn two_servers_on_one_postgres_split_the_releases_and_one_takes_all_when_the_other_stops() {
    let Some(scratch) = scratch() else {
        return;
    };
    let one = replica(scratch.url(), "one");
    let two = replica(scratch.url(), "two");
    // Releases are created and deployed through either server: both take the API.
    let every_id: BTreeSet<String> = (0..RELEASES)
        .map(|number| format!("rel-{number}"))
        .collect();
    for (number, id) in every_id.iter().enumerate() {
        let server = if number % 2 == 0 { &one } else { &two };
        let (status, answer) = server.post("/api/v1/releases", &server.admin, &release_body(id));
        assert_eq!(status, 201, "{answer}");
        let (status, answer) = server.post(
            &format!("/api/v1/releases/{id}/batches/0/deployed"),
            &server.admin,
            &json!({"at": NOW}),
        );
        assert_eq!(status, 200, "{answer}");
    }

    let split = wait_for(&[&one, &two], "an even split", |listed| {
        listed.len() == 2
            && listed
                .iter()
                .all(|(_, live, releases)| *live && releases.len() == RELEASES / 2)
    });
    let ids: Vec<&str> = split.iter().map(|(id, _, _)| id.as_str()).collect();
    assert_eq!(ids, ["one", "two"]);
    let guarded: BTreeSet<String> = split
        .iter()
        .flat_map(|(_, _, releases)| releases.iter().cloned())
        .collect();
    assert_eq!(guarded, every_id);
    // The other server lists the same.
    assert_eq!(replicas(&two), split);
    assert_eq!(one.state.guard.leases_held(), RELEASES / 2);
    assert_eq!(two.state.guard.leases_held(), RELEASES / 2);

    // One stops: it gives its leases back and leaves, and the other guards every release
    // without waiting for the leases to expire.
    let stopped_at = two.clock.now();
    drop(one);
    let alone = wait_for(&[&two], "the take-over", |listed| {
        listed.len() == 1 && listed[0].2 == every_id
    });
    assert_eq!(alone[0].0, "two");
    assert!(
        two.clock.now() - stopped_at < 15,
        "waited for the leases to expire"
    );
}
