//! Pruning keeps recent data and the windows of releases still kept, and drops the rest.
#![allow(clippy::unwrap_used)]

use std::sync::RwLock;

use vigil_core::release::{PlannedBatch, ReferenceHosts, Release, ReleaseSpec, ReleaseState};
use vigil_core::samples::{MetricChunk, Point, SeriesKey};
use vigil_core::Batch;
use vigil_guard::retention::{prune, Retention};
use vigil_guard::DataIndex;
use vigil_store::{DataChunk, DataKind};

const DAY: i64 = 86_400;

fn release(id: &str, state: ReleaseState, deployed_at: i64, updated_at: i64) -> Release {
    Release {
        id: id.into(),
        spec: ReleaseSpec {
            app: "shop".into(),
            version: "2".into(),
            hosts: vec![format!("{id}-host")].into(),
            reference: ReferenceHosts::EveryOtherHost,
            batches: vec![PlannedBatch {
                hosts: vec![format!("{id}-host")],
            }],
            step_seconds: 60,
            observe_seconds: 600,
            metrics: vec![],
            settings: Default::default(),
            rules: Vec::new(),
        },
        state,
        created_by: "test".into(),
        created_at: deployed_at,
        updated_at,
        deployed: vec![Batch {
            index: 0,
            at: deployed_at,
            hosts: vec![format!("{id}-host")],
        }],
        verdict: None,
        reason: String::new(),
    }
}

fn chunk(host: &str, at: i64) -> MetricChunk {
    MetricChunk {
        series: vec![SeriesKey {
            app: "shop".into(),
            host: host.into(),
            metric: "cpu".into(),
            counter: false,
        }
        .into()],
        points: vec![Point {
            series: 0,
            ms: at * 1000,
            value: 1.0,
        }],
        host_labels: Vec::new(),
    }
}

#[test]
fn only_data_around_kept_releases_and_recent_data_survive() {
    let dir = vigil_store::testing::TempDir::new("retention").unwrap();
    let store = vigil_store::open(&dir.path().join("vigil.db").display().to_string()).unwrap();
    let now = 100 * DAY;
    // Finished 40 days ago: beyond a 30-day retention. Finished 5 days ago: kept. Still
    // observing since 3 days: kept.
    store
        .create_release(&release(
            "old",
            ReleaseState::Succeeded,
            now - 41 * DAY,
            now - 40 * DAY,
        ))
        .unwrap();
    store
        .create_release(&release(
            "done",
            ReleaseState::Succeeded,
            now - 6 * DAY,
            now - 5 * DAY,
        ))
        .unwrap();
    store
        .create_release(&release(
            "live",
            ReleaseState::Observing,
            now - 3 * DAY,
            now - 3 * DAY,
        ))
        .unwrap();
    let index = RwLock::new(DataIndex::new());
    let samples = [
        ("old-host", now - 41 * DAY),
        ("done-host", now - 6 * DAY + 60),
        ("live-host", now - 3 * DAY + 60),
        ("other-host", now - 10 * DAY),
        ("other-host", now - 60),
    ];
    for (host, at) in samples {
        let metrics = chunk(host, at);
        store
            .append_data(&DataChunk {
                kind: DataKind::Metrics,
                key: None,
                min_ms: at * 1000,
                max_ms: at * 1000,
                received_at: at,
                body: metrics.encode(),
                origin: String::new(),
            })
            .unwrap();
        index.write().unwrap().insert_metrics(&metrics);
    }
    let alert = |fingerprint: &str, received_at: i64, ends_at: Option<i64>| vigil_core::Alert {
        fingerprint: fingerprint.to_owned(),
        starts_at: received_at - 60,
        ends_at,
        name: "Down".to_owned(),
        app: "shop".to_owned(),
        severity: "critical".to_owned(),
        labels: Default::default(),
        summary: String::new(),
        source: "api".to_owned(),
        received_at,
    };
    store
        .put_alerts(&[
            // Ended with the old release: gone.
            alert("old", now - 41 * DAY, Some(now - 41 * DAY)),
            // Ended within the finished release's window: kept.
            alert("done", now - 6 * DAY + 600, Some(now - 6 * DAY + 900)),
            // Firing, and last received 20 days ago: its resolution was lost, gone.
            alert("lost", now - 20 * DAY, None),
            // Firing, received an hour ago: kept.
            alert("firing", now - 3600, None),
        ])
        .unwrap();
    let pruned = prune(
        store.as_ref(),
        &index,
        now,
        Retention {
            recent_seconds: 2 * 3600,
            finished_seconds: 30 * DAY,
        },
    )
    .unwrap();
    assert_eq!(
        pruned.chunks, 2,
        "the old release's data and the stale host's old sample"
    );
    assert_eq!(pruned.kept_windows, 2);
    assert_eq!(pruned.alerts, 2, "the old release's alert and the lost one");
    let kept_alerts: Vec<String> = store
        .alerts("shop", 0, now)
        .unwrap()
        .into_iter()
        .map(|kept| kept.fingerprint)
        .collect();
    assert_eq!(kept_alerts, ["done", "firing"]);
    let left = store.data_between(DataKind::Metrics, 0, i64::MAX).unwrap();
    assert_eq!(left.len(), 3);
    let index = index.read().unwrap();
    assert!(index.host("old-host").is_none());
    assert!(
        index.host("live-host").is_some(),
        "hosts of releases still judged keep their data"
    );
    assert_eq!(
        index.host("other-host").unwrap().series["cpu"].points.len(),
        1
    );
}
