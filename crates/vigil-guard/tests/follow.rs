//! Two intakes on one store, as two replicas: what one stores reaches the other's index
//! through its follower, remote-write bodies read in the order they came, and log templates
//! one replica mined are learned by the other.
#![allow(clippy::unwrap_used)]

use std::sync::{Arc, RwLock};

use vigil_core::samples::{LogChunk, LogCount, MetricChunk, Point, SeriesKey};
use vigil_core::{Clock, ManualClock};
use vigil_guard::follow::{FollowLimits, Follower};
use vigil_guard::intake::Intake;
use vigil_guard::DataIndex;
use vigil_ingest::json::LogLine;
use vigil_ingest::remote_write::{
    encode_remote_write, MetricType, RemoteWriteDecoder, RemoteWriteOptions, WriteMetadata,
    WriteSeries,
};
use vigil_store::Store;

const T0: i64 = 1_700_000_000_000;

/// A series as an index holds it: its name, whether it is a counter, and its samples.
type HeldSeries = (String, bool, Vec<(i64, f64)>);

struct Replica {
    intake: Arc<Intake>,
    index: Arc<RwLock<DataIndex>>,
}

fn replica(store: &Arc<dyn Store>, origin: &str) -> Replica {
    let index = Arc::new(RwLock::new(DataIndex::new()));
    let intake = Intake::new(
        Arc::clone(store),
        Arc::clone(&index),
        Arc::new(|| {}),
        RemoteWriteOptions::default(),
    )
    .with_origin(origin);
    Replica {
        intake: Arc::new(intake),
        index,
    }
}

fn follower(replica: &Replica) -> Follower {
    follower_on(replica, Arc::new(ManualClock::new(T0 / 1000)))
}

fn follower_on(replica: &Replica, clock: Arc<dyn Clock>) -> Follower {
    let (follower, _) = Follower::load(
        Arc::clone(&replica.intake),
        clock,
        FollowLimits::default(),
        0,
        i64::MAX,
    )
    .unwrap();
    follower
}

fn store(label: &str) -> (vigil_store::testing::TempDir, Arc<dyn Store>) {
    let dir = vigil_store::testing::TempDir::new(label).unwrap();
    let store = vigil_store::open(&dir.path().join("vigil.db").display().to_string()).unwrap();
    (dir, store)
}

fn log_lines(host: &str, texts: &[&str]) -> Vec<LogLine> {
    texts
        .iter()
        .map(|text| LogLine {
            app: "shop".to_owned(),
            host: host.to_owned(),
            ms: T0,
            line: format!("2023-11-14 22:13:20 INFO {text}"),
        })
        .collect()
}

#[test]
fn a_replica_indexes_what_another_stored_as_its_own_index_holds_it() {
    let (_dir, store) = store("follow");
    let first = replica(&store, "a");
    let second = replica(&store, "b");
    let mut following = follower(&second);

    let cpu = MetricChunk {
        series: vec![SeriesKey {
            app: "shop".into(),
            host: "h1".into(),
            metric: "cpu".into(),
            counter: false,
        }
        .into()],
        points: vec![Point {
            series: 0,
            ms: T0,
            value: 0.5,
        }],
        host_labels: Vec::new(),
    };
    first.intake.metrics(&cpu, None, 0).unwrap();
    // A family declared a counter by metadata only, in an earlier request than its samples:
    // the follower reads the requests in order, as the first replica did.
    let jobs = |ms: i64, value: f64| {
        WriteSeries::new(&[("__name__", "jobs_done"), ("host", "h1"), ("app", "shop")])
            .with_sample(ms, value)
    };
    let declared = encode_remote_write(
        &[jobs(T0, 1.0)],
        &[WriteMetadata {
            metric_type: MetricType::Counter,
            family: "jobs_done".into(),
            help: String::new(),
            unit: String::new(),
        }],
    )
    .unwrap();
    let later =
        encode_remote_write(&[jobs(T0 + 15_000, 2.0), jobs(T0 + 30_000, 4.0)], &[]).unwrap();
    let mut decoder = RemoteWriteDecoder::new(RemoteWriteOptions::default());
    for body in [&declared, &later] {
        let batch = decoder.decode(body).unwrap();
        first.intake.remote_write(body, &batch.chunk, 0).unwrap();
    }
    first
        .intake
        .log_lines(&log_lines("h1", &["cache warmed in 40 ms"]), None, 0)
        .unwrap();
    // The second replica's own data stays as its intake indexed it.
    second.intake.metrics(&cpu, None, 0).unwrap();

    assert_eq!(following.poll().unwrap(), 4);
    assert_eq!(following.poll().unwrap(), 0);
    let held = |index: &RwLock<DataIndex>| {
        let index = index.read().unwrap();
        let host = index.host("h1").unwrap();
        let mut series: Vec<HeldSeries> = host
            .series
            .iter()
            .map(|(name, series)| (name.clone(), series.counter, series.points.clone()))
            .collect();
        series.sort_by(|left, right| left.0.cmp(&right.0));
        (series, host.logs.clone())
    };
    assert_eq!(held(&second.index), held(&first.index));
    let (series, _) = held(&second.index);
    assert!(
        series
            .iter()
            .any(|(name, counter, _)| name == "jobs_done" && *counter),
        "{series:?}"
    );
}

#[test]
fn a_replica_learns_the_templates_another_one_mined() {
    let (_dir, store) = store("follow-templates");
    let first = replica(&store, "a");
    let second = replica(&store, "b");
    let mut following = follower(&second);
    // The second replica mines the app before the first one's templates exist.
    second
        .intake
        .log_lines(&log_lines("h2", &["service started"]), None, 0)
        .unwrap();
    // The first one sees enough user names to make the name a variable.
    let users = ["ann", "bob", "cy", "dee", "eve", "fay"];
    let texts: Vec<String> = users
        .iter()
        .map(|user| format!("user {user} signed in"))
        .collect();
    let texts: Vec<&str> = texts.iter().map(String::as_str).collect();
    first
        .intake
        .log_lines(&log_lines("h1", &texts), None, 0)
        .unwrap();
    let general: Vec<_> = store
        .templates("shop")
        .unwrap()
        .into_iter()
        .filter(|template| template.text == "user <*> signed in")
        .collect();
    assert_eq!(general.len(), 1, "{:?}", store.templates("shop").unwrap());
    assert!(following.poll().unwrap() > 0);
    // A new name at the second replica joins the first one's template.
    second
        .intake
        .log_lines(&log_lines("h2", &["user zed signed in"]), None, 0)
        .unwrap();
    let index = second.index.read().unwrap();
    let counts = &index.host("h2").unwrap().logs;
    assert!(
        counts.contains_key(&general[0].id),
        "{counts:?} against {general:?}"
    );
    let user_templates = store
        .templates("shop")
        .unwrap()
        .into_iter()
        .filter(|template| template.text.starts_with("user "))
        .count();
    assert_eq!(user_templates, 1, "{:?}", store.templates("shop").unwrap());
}

/// One log line of template `7` on `host`.
fn one_line(host: &str) -> LogChunk {
    LogChunk {
        counts: vec![LogCount {
            app: "shop".to_owned(),
            host: host.to_owned(),
            template: "7".to_owned(),
            ms: T0,
            count: 1,
        }],
    }
}

fn lines_of(replica: &Replica, host: &str) -> u64 {
    let index = replica.index.read().unwrap();
    index
        .host(host)
        .and_then(|data| data.logs.get("7"))
        .map_or(0, |counts| counts.values().sum())
}

/// On PostgreSQL a chunk's id is taken when its insert begins and the row is seen when it
/// commits; a duplicate's insert uses an id up for good. Skipped loudly without
/// `VIGIL_TEST_POSTGRES` (failed when `VIGIL_REQUIRE_POSTGRES` is set).
#[test]
fn on_postgresql_a_chunk_committed_after_a_higher_id_is_followed_once() {
    let Some(scratch) = vigil_store::testing::ScratchPostgres::from_env("vigil_follow").unwrap()
    else {
        assert!(
            std::env::var_os("VIGIL_REQUIRE_POSTGRES").is_none(),
            "VIGIL_REQUIRE_POSTGRES is set but VIGIL_TEST_POSTGRES is not"
        );
        #[allow(clippy::print_stderr)]
        {
            eprintln!("SKIPPED on_postgresql_a_chunk_committed_after_a_higher_id_is_followed_once: set VIGIL_TEST_POSTGRES");
        }
        return;
    };
    let store = vigil_store::open(scratch.url()).unwrap();
    let first = replica(&store, "a");
    let second = replica(&store, "b");
    let clock = Arc::new(ManualClock::new(T0 / 1000));
    let mut following = follower_on(&second, Arc::clone(&clock) as Arc<dyn Clock>);

    // A transaction of the first replica takes an id and commits late (as a slow import does).
    let mut client = postgres::Client::connect(scratch.url(), postgres::NoTls).unwrap();
    let mut slow = client.transaction().unwrap();
    slow.execute(
        "INSERT INTO data_chunks (kind, key, min_ms, max_ms, received_at, body, origin) \
         VALUES ('logs', NULL, $1, $1, 0, $2, 'a')",
        &[&T0, &one_line("late").encode()],
    )
    .unwrap();
    first.intake.logs(&one_line("early"), None, 0).unwrap();
    assert_eq!(following.poll().unwrap(), 1);
    assert_eq!(following.missing(), 1, "the late id is looked for");
    assert_eq!(lines_of(&second, "late"), 0);
    slow.commit().unwrap();
    assert_eq!(following.poll().unwrap(), 1);
    assert_eq!(following.missing(), 0);
    assert_eq!(following.poll().unwrap(), 0);
    assert_eq!(lines_of(&second, "late"), 1);
    assert_eq!(lines_of(&second, "early"), 1);

    // A duplicate key stores nothing but uses an id: given up after the bound.
    let keyed = Some("batch-1".to_owned());
    first
        .intake
        .logs(&one_line("keyed"), keyed.clone(), 0)
        .unwrap();
    assert!(
        first
            .intake
            .logs(&one_line("keyed"), keyed, 0)
            .unwrap()
            .duplicate
    );
    first.intake.logs(&one_line("after"), None, 0).unwrap();
    assert_eq!(following.poll().unwrap(), 2);
    assert_eq!(following.missing(), 1, "the duplicate's id");
    clock.advance(FollowLimits::default().hole_seconds + 1);
    assert_eq!(following.poll().unwrap(), 0);
    assert_eq!(following.missing(), 0);
    for host in ["early", "late", "keyed", "after"] {
        assert_eq!(lines_of(&second, host), 1, "{host}");
        assert_eq!(lines_of(&first, host), u64::from(host != "late"), "{host}");
    }
}
