//! Importing a bundle through the guard layer: the replay's outcome, everything stored in one
//! go, and the data in the index only once the store has kept it.
#![allow(clippy::unwrap_used)]

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};

use vigil_core::release::{Action, ReleaseState};
use vigil_core::Bundle;
use vigil_guard::import::import_bundle;
use vigil_guard::intake::Intake;
use vigil_guard::{DataIndex, GuardError};
use vigil_ingest::remote_write::RemoteWriteOptions;
use vigil_store::{DataKind, Store, StoreError};

/// When the imports happen, long after the bundles' releases.
const NOW: i64 = 1_800_000_000;

struct Importer {
    store: Arc<dyn Store>,
    index: Arc<RwLock<DataIndex>>,
    wakes: Arc<AtomicUsize>,
    intake: Intake,
}

fn importer() -> Importer {
    let store = vigil_store::open(vigil_store::SQLITE_MEMORY).unwrap();
    let index = Arc::new(RwLock::new(DataIndex::new()));
    let wakes = Arc::new(AtomicUsize::new(0));
    let counted = Arc::clone(&wakes);
    let intake = Intake::new(
        Arc::clone(&store),
        Arc::clone(&index),
        Arc::new(move || {
            counted.fetch_add(1, Ordering::SeqCst);
        }),
        RemoteWriteOptions::default(),
    );
    Importer {
        store,
        index,
        wakes,
        intake,
    }
}

fn example(name: &str) -> Bundle {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../examples/releases")
        .join(format!("{name}.json.gz"));
    Bundle::read(&path).unwrap()
}

/// The (from, to, action) of every transition of a release.
fn moves(store: &dyn Store, id: &str) -> Vec<(ReleaseState, ReleaseState, Action)> {
    store
        .transitions(id)
        .unwrap()
        .iter()
        .map(|transition| (transition.from, transition.to, transition.action))
        .collect()
}

/// How many metric chunks the store holds.
fn metric_chunks(store: &dyn Store) -> usize {
    store
        .data_between(DataKind::Metrics, 0, i64::MAX)
        .unwrap()
        .len()
}

#[test]
fn a_faulty_bundle_is_stored_paused_with_its_data_indexed() {
    let importer = importer();
    let release = import_bundle(&importer.intake, example("pub0031"), "ops".into(), NOW).unwrap();
    assert_eq!(release.state, ReleaseState::Paused);
    assert_eq!(importer.store.release("pub0031").unwrap(), Some(release));
    assert_eq!(
        moves(&*importer.store, "pub0031"),
        vec![
            (ReleaseState::Pending, ReleaseState::Pending, Action::Create),
            (ReleaseState::Pending, ReleaseState::Paused, Action::Pause),
        ]
    );
    assert_eq!(importer.store.verdicts("pub0031").unwrap().len(), 1);
    assert_eq!(metric_chunks(&*importer.store), 1);
    assert!(importer.index.read().unwrap().sample_count() > 0);
    assert_eq!(importer.wakes.load(Ordering::SeqCst), 1);
}

#[test]
fn a_healthy_bundle_is_stored_succeeded() {
    let importer = importer();
    let release = import_bundle(&importer.intake, example("pub0003"), "ops".into(), NOW).unwrap();
    assert_eq!(release.state, ReleaseState::Succeeded);
    assert_eq!(
        moves(&*importer.store, "pub0003")[1],
        (
            ReleaseState::Pending,
            ReleaseState::Succeeded,
            Action::Succeed
        )
    );
}

#[test]
fn an_import_the_store_refuses_leaves_the_store_and_the_index_as_they_were() {
    let importer = importer();
    let first = import_bundle(&importer.intake, example("pub0003"), "ops".into(), NOW).unwrap();
    let indexed = importer.index.read().unwrap().sample_count();
    // Another bundle under the same id: refused whole, after its replay.
    let mut clash = example("pub0031");
    clash.id = "pub0003".to_owned();
    let error = import_bundle(&importer.intake, clash, "ops".into(), NOW + 60).unwrap_err();
    assert!(
        matches!(&error, GuardError::Store(StoreError::ReleaseExists { id }) if id == "pub0003"),
        "{error:?}"
    );
    assert_eq!(importer.store.release("pub0003").unwrap(), Some(first));
    assert_eq!(importer.store.verdicts("pub0003").unwrap().len(), 1);
    assert_eq!(metric_chunks(&*importer.store), 1);
    assert_eq!(importer.index.read().unwrap().sample_count(), indexed);
    assert_eq!(importer.wakes.load(Ordering::SeqCst), 1);
}
