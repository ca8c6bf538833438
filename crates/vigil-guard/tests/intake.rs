//! What the intake stores reads back into the same index: remote-write bodies kept as received
//! and chunks in Vigil's own encoding, side by side.
#![allow(clippy::unwrap_used)]

use std::sync::{Arc, RwLock};

use vigil_core::samples::{MetricChunk, Point, SeriesKey};
use vigil_guard::intake::Intake;
use vigil_guard::DataIndex;
use vigil_ingest::remote_write::{
    encode_remote_write, MetricType, RemoteWriteDecoder, RemoteWriteOptions, WriteMetadata,
    WriteSeries,
};
use vigil_store::{DataChunk, DataKind, Store};

const T0: i64 = 1_700_000_000_000;

fn intake(store: &Arc<dyn Store>) -> (Intake, Arc<RwLock<DataIndex>>) {
    let index = Arc::new(RwLock::new(DataIndex::new()));
    let intake = Intake::new(
        Arc::clone(store),
        Arc::clone(&index),
        Arc::new(|| {}),
        RemoteWriteOptions::default(),
    );
    (intake, index)
}

/// A store in a fresh directory, which lasts as long as the directory is kept.
fn file_store(label: &str) -> (vigil_store::testing::TempDir, Arc<dyn Store>) {
    let dir = vigil_store::testing::TempDir::new(label).unwrap();
    let store = vigil_store::open(&dir.path().join("vigil.db").display().to_string()).unwrap();
    (dir, store)
}

fn received(intake: &Intake, decoder: &mut RemoteWriteDecoder, body: &[u8]) -> usize {
    let batch = decoder.decode(body).unwrap();
    intake.remote_write(body, &batch.chunk, 0).unwrap().items
}

fn points(index: &RwLock<DataIndex>, host: &str, metric: &str) -> (bool, Vec<(i64, f64)>) {
    let index = index.read().unwrap();
    let series = &index.host(host).unwrap().series[metric];
    (series.counter, series.points.clone())
}

#[test]
fn stored_remote_write_bodies_and_chunks_fill_a_fresh_index_alike() {
    let (_dir, store) = file_store("intake");
    let (live, live_index) = intake(&store);
    let mut decoder = RemoteWriteDecoder::new(RemoteWriteOptions::default());

    let json_like = MetricChunk {
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
    live.metrics(&json_like, None, 0).unwrap();

    let jobs = |ms: i64, value: f64| {
        WriteSeries::new(&[("__name__", "jobs_done"), ("host", "h1"), ("app", "shop")])
            .with_sample(ms, value)
    };
    // A family declared a counter by metadata only, in an earlier request than its samples.
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
    assert_eq!(received(&live, &mut decoder, &declared), 1);
    let later = encode_remote_write(
        &[
            jobs(T0 + 30_000, 4.0),
            jobs(T0 + 15_000, 2.0),
            WriteSeries::new(&[("__name__", "cpu"), ("host", "h1"), ("app", "shop")])
                .with_sample(T0 + 30_000, 0.75),
            WriteSeries::new(&[("__name__", "cpu"), ("host", "h2")]).with_sample(T0, 0.1),
            WriteSeries::new(&[("__name__", "cpu"), ("pod", "p1")]).with_sample(T0, 9.0),
        ],
        &[],
    )
    .unwrap();
    assert_eq!(received(&live, &mut decoder, &later), 4);
    // A resent request changes nothing.
    assert_eq!(received(&live, &mut decoder, &later), 4);

    let stored = store.data_between(DataKind::Metrics, 0, i64::MAX).unwrap();
    assert_eq!(stored.len(), 4);
    assert!(stored[0].body.starts_with(b"VMC1"));
    assert!(stored[1].body.starts_with(b"VRW1"));
    assert_eq!(
        &stored[1].body[4..],
        declared.as_slice(),
        "kept as received"
    );

    // Something unreadable on the way is skipped, the rest still loads.
    store
        .append_data(&DataChunk {
            kind: DataKind::Metrics,
            key: None,
            min_ms: T0,
            max_ms: T0,
            received_at: 0,
            body: b"VRW1not snappy at all".to_vec(),
            origin: String::new(),
        })
        .unwrap();

    let (restarted, restarted_index) = intake(&store);
    assert_eq!(restarted.load(0, i64::MAX).unwrap(), 4);
    for (host, metric) in [("h1", "cpu"), ("h1", "jobs_done"), ("h2", "cpu")] {
        assert_eq!(
            points(&restarted_index, host, metric),
            points(&live_index, host, metric),
            "{host} {metric}"
        );
    }
    assert_eq!(
        points(&restarted_index, "h1", "jobs_done"),
        (
            true,
            vec![(T0, 1.0), (T0 + 15_000, 2.0), (T0 + 30_000, 4.0)]
        )
    );
    assert_eq!(
        points(&restarted_index, "h1", "cpu").1,
        vec![(T0, 0.5), (T0 + 30_000, 0.75)]
    );
    let restarted_index = restarted_index.read().unwrap();
    assert!(
        restarted_index.host("p1").is_none(),
        "no host label: skipped"
    );
    assert_eq!(restarted_index.sample_count(), 6);
    assert_eq!(
        restarted
            .stored_window(T0, T0 + 60_000)
            .unwrap()
            .sample_count(),
        6
    );
}

#[test]
fn resent_overlapping_requests_are_all_stored_and_hold_one_sample_a_second_live_and_reloaded() {
    let (_dir, store) = file_store("intake-resent");
    let (live, live_index) = intake(&store);
    let mut decoder = RemoteWriteDecoder::new(RemoteWriteOptions::default());
    // Ten seconds of samples, sent three times, each time 0.3 s later: a resending sender.
    let bodies: Vec<Vec<u8>> = (0..3)
        .map(|run| {
            let series = (0..10).fold(
                WriteSeries::new(&[("__name__", "cpu"), ("host", "h1"), ("app", "shop")]),
                |series, second| {
                    series.with_sample(T0 + run * 300 + second * 1000, (run * 10 + second) as f64)
                },
            );
            encode_remote_write(&[series], &[]).unwrap()
        })
        .collect();
    for body in &bodies {
        assert_eq!(received(&live, &mut decoder, body), 10);
    }
    assert_eq!(
        store
            .data_between(DataKind::Metrics, 0, i64::MAX)
            .unwrap()
            .len(),
        3,
        "acknowledged means stored"
    );
    let (_, held) = points(&live_index, "h1", "cpu");
    // The seconds ending at T0 to T0 + 10 s: each holds the newest sample sent for it.
    assert_eq!(held.len(), 11);
    assert_eq!(held[0], (T0, 0.0));
    assert_eq!(held[10], (T0 + 9_600, 29.0));
    assert!(held[1..10]
        .iter()
        .enumerate()
        .all(|(second, &(ms, _))| ms == T0 + (second as i64 + 1) * 1000));

    let (restarted, restarted_index) = intake(&store);
    assert_eq!(restarted.load(0, i64::MAX).unwrap(), 3);
    assert_eq!(points(&restarted_index, "h1", "cpu").1, held);
}

/// Host labels sent with JSON samples (stored as a chunk) and by remote write (stored as
/// received) come back into a fresh index from `store`, as a restarted server refills it.
fn host_labels_survive_a_restart_on(store: &Arc<dyn Store>) {
    let (live, _) = intake(store);
    let mut decoder = RemoteWriteDecoder::new(RemoteWriteOptions::default());
    let json_like = MetricChunk {
        series: vec![SeriesKey {
            app: "shop".into(),
            host: "shop-abc123-x".into(),
            metric: "latency_ms".into(),
            counter: false,
        }
        .into()],
        points: vec![Point {
            series: 0,
            ms: T0,
            value: 100.0,
        }],
        host_labels: vec![vigil_core::samples::HostLabels::bounded(
            "shop-abc123-x",
            [("rollouts_pod_template_hash", "abc123")],
        )],
    };
    live.metrics(&json_like, None, 0).unwrap();
    let pushed = encode_remote_write(
        &[WriteSeries::new(&[
            ("__name__", "latency_ms"),
            ("host", "shop-def456-y"),
            ("app", "shop"),
            ("rollouts_pod_template_hash", "def456"),
        ])
        .with_sample(T0, 99.0)],
        &[],
    )
    .unwrap();
    assert_eq!(received(&live, &mut decoder, &pushed), 1);

    let (restarted, restarted_index) = intake(store);
    assert_eq!(restarted.load(0, i64::MAX).unwrap(), 2);
    let index = restarted_index.read().unwrap();
    let hashes: Vec<(String, Option<String>, i64)> = index
        .labelled_hosts_of_app("shop", 0)
        .iter()
        .map(|host| {
            (
                host.name.to_owned(),
                host.labels.get("rollouts_pod_template_hash").cloned(),
                host.first_ms,
            )
        })
        .collect();
    assert_eq!(
        hashes,
        vec![
            ("shop-abc123-x".to_owned(), Some("abc123".to_owned()), T0),
            ("shop-def456-y".to_owned(), Some("def456".to_owned()), T0),
        ]
    );
    // The template hash is the host's label, not part of the metric's name.
    assert!(index
        .host("shop-def456-y")
        .unwrap()
        .series
        .contains_key("latency_ms"));
}

#[test]
fn host_labels_survive_a_restart_on_sqlite() {
    let (_dir, store) = file_store("labels");
    host_labels_survive_a_restart_on(&store);
}

#[test]
fn host_labels_survive_a_restart_on_postgres() {
    let Some(database) = vigil_store::testing::ScratchPostgres::from_env("labels").unwrap() else {
        eprintln!("skipped: VIGIL_TEST_POSTGRES is not set");
        return;
    };
    let store = vigil_store::open(database.url()).unwrap();
    host_labels_survive_a_restart_on(&store);
}
