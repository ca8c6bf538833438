//! One behaviour for every store: each test below takes a `&dyn Store` (or a backend that can
//! open its store again) and runs against SQLite always, and against PostgreSQL when
//! `VIGIL_TEST_POSTGRES` holds a server URL (each test gets a database of its own there).
#![allow(clippy::unwrap_used)]

use std::io::Write;
use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::sync::{Arc, Barrier, Once};

use vigil_core::agent::{
    AgentHello, AgentPoll, ArtifactProgress, ExecutorSpec, PlanStep, TaskKind, TaskReport,
    TaskState,
};
use vigil_core::learned::{LearnedModel, ModelScores, ModelState, TrainingSet, MODEL_FORMAT};
use vigil_core::release::{
    Action, DeliveryState, Feedback, FeedbackKind, NewNotification, NotificationEvent,
    PlannedBatch, ReferenceHosts, Release, ReleaseSpec, ReleaseState, Role, VerdictRecord,
};
use vigil_core::{Batch, Direction, Finding, LogTemplate, MetricKind, MetricMeta, Signal, Verdict};
use vigil_store::testing::{ScratchPostgres, TempDir, POSTGRES_TEST_ENV};
use vigil_store::{
    Appended, Change, ChunkHead, DataChunk, DataKind, Execution, ImportedRelease, NewModel,
    NewTask, PageSession, PromotionAction, ReleaseFilter, Store, StoreError,
};

/// The store URL the child process of the kill test writes to.
const KILLED_CHILD_URL_ENV: &str = "VIGIL_STORE_KILLED_CHILD_URL";

/// Set (by CI) to fail instead of skipping when no PostgreSQL server is given.
const REQUIRE_POSTGRES_ENV: &str = "VIGIL_REQUIRE_POSTGRES";

// ---------------------------------------------------------------- backends

/// A place a store lives, which can be opened again and tampered with.
trait Backend {
    /// The URL that [`vigil_store::open`] takes.
    fn url(&self) -> String;
    fn open_result(&self) -> Result<Arc<dyn Store>, StoreError> {
        vigil_store::open(&self.url())
    }
    fn open(&self) -> Arc<dyn Store> {
        self.open_result().unwrap()
    }
    /// Writes a schema version into the database as a newer build would.
    fn set_schema_version(&self, version: i64);
}

struct SqliteBackend {
    directory: TempDir,
}

impl SqliteBackend {
    fn new() -> SqliteBackend {
        SqliteBackend {
            directory: TempDir::new("vigil_store_conformance").unwrap(),
        }
    }

    fn path(&self) -> PathBuf {
        self.directory.path().join("vigil.db")
    }
}

impl Backend for SqliteBackend {
    fn url(&self) -> String {
        format!("sqlite://{}", self.path().display())
    }

    fn set_schema_version(&self, version: i64) {
        let connection = rusqlite::Connection::open(self.path()).unwrap();
        connection
            .execute(
                "INSERT INTO schema_version (version) VALUES (?1)",
                [version],
            )
            .unwrap();
    }
}

struct PostgresBackend {
    scratch: ScratchPostgres,
}

impl PostgresBackend {
    /// The backend, or `None` (after saying so loudly, once) when no server is configured.
    fn from_env() -> Option<PostgresBackend> {
        match ScratchPostgres::from_env("vigil_conformance") {
            Ok(Some(scratch)) => Some(PostgresBackend { scratch }),
            Ok(None) => {
                if std::env::var_os(REQUIRE_POSTGRES_ENV).is_some() {
                    panic!("{REQUIRE_POSTGRES_ENV} is set but {POSTGRES_TEST_ENV} is not");
                }
                static SAY_SKIPPED: Once = Once::new();
                SAY_SKIPPED.call_once(|| {
                    // Written past the test harness's capture so that it is seen.
                    let _ = writeln!(
                        std::io::stderr(),
                        "\n*** SKIPPED: PostgreSQL conformance ({POSTGRES_TEST_ENV} not set) ***\n"
                    );
                });
                None
            }
            Err(error) => panic!("cannot prepare a PostgreSQL test database: {error}"),
        }
    }
}

impl Backend for PostgresBackend {
    fn url(&self) -> String {
        self.scratch.url().to_owned()
    }

    fn set_schema_version(&self, version: i64) {
        let mut client =
            ::postgres::Client::connect(self.scratch.url(), ::postgres::NoTls).unwrap();
        client
            .execute(
                "INSERT INTO schema_version (version) VALUES ($1)",
                &[&version],
            )
            .unwrap();
    }
}

/// Declares every conformance test once per backend: `stores` take a `&dyn Store`, `backends`
/// take the `&dyn Backend` (to reopen the store).
macro_rules! conformance {
    (stores: [$($store_test:ident),* $(,)?], backends: [$($backend_test:ident),* $(,)?] $(,)?) => {
        mod sqlite {
            $(
                #[test]
                fn $store_test() {
                    let backend = super::SqliteBackend::new();
                    let store = super::Backend::open(&backend);
                    super::$store_test(&*store);
                }
            )*
            $(
                #[test]
                fn $backend_test() {
                    let backend = super::SqliteBackend::new();
                    super::$backend_test(&backend);
                }
            )*
        }

        mod postgres {
            $(
                #[test]
                fn $store_test() {
                    let Some(backend) = super::PostgresBackend::from_env() else {
                        return;
                    };
                    let store = super::Backend::open(&backend);
                    super::$store_test(&*store);
                }
            )*
            $(
                #[test]
                fn $backend_test() {
                    let Some(backend) = super::PostgresBackend::from_env() else {
                        return;
                    };
                    super::$backend_test(&backend);
                }
            )*
        }
    };
}

conformance! {
    stores: [
        a_created_release_reads_back_whole,
        creating_a_release_records_the_create_transition,
        a_duplicate_release_id_is_refused_and_changes_nothing,
        a_missing_release_is_none_and_has_no_history,
        apply_moves_the_state_and_records_everything_it_implies,
        apply_numbers_transitions_in_order,
        a_state_conflict_changes_nothing,
        apply_to_a_missing_release_is_unknown,
        a_change_that_fails_midway_leaves_nothing,
        an_import_stores_everything_with_its_outcome,
        an_import_that_fails_at_its_last_step_leaves_nothing,
        an_import_under_a_taken_id_is_refused_and_stores_nothing,
        one_of_many_racing_changes_wins,
        releases_are_listed_newest_first_by_app_and_state,
        verdicts_are_kept_oldest_first_and_the_latest_is_on_the_release,
        a_verdict_that_fails_midway_leaves_nothing,
        a_verdict_for_a_missing_release_is_unknown,
        feedback_reads_back_in_order,
        feedback_on_a_finding_keeps_its_signal_and_onset,
        a_verdict_keeps_the_findings_the_learned_stage_set_aside,
        signatures_are_saved_read_by_app_and_dropped,
        saving_an_unknown_signature_is_refused,
        new_notifications_are_due_at_once_oldest_first,
        a_failed_notification_is_retried_later_or_given_up,
        a_sent_notification_is_no_longer_due,
        unknown_notifications_are_reported,
        tokens_are_found_by_hash_and_names_may_repeat,
        a_revoked_token_keeps_its_first_revocation_and_loses_its_sessions,
        revoking_an_unknown_token_changes_nothing,
        sessions_are_found_by_hash_with_their_token_and_end_on_sign_out,
        a_new_session_clears_the_expired_ones,
        a_session_needs_an_existing_token,
        a_database_error_keeps_the_drivers_error_as_its_source,
        a_chunk_with_a_known_key_is_a_duplicate_and_stores_nothing,
        chunks_are_found_by_overlapping_range_in_insertion_order,
        pruning_spares_recent_chunks_and_kept_windows,
        concurrent_appends_from_many_threads_are_all_stored,
        templates_are_upserted_by_app_and_id,
        apps_are_put_and_replaced_by_name,
        alerts_are_keyed_by_fingerprint_and_start_and_replaced_on_resolve,
        alerts_are_found_by_app_and_the_time_they_fire,
        pruning_alerts_spares_recent_and_firing_ones,
        chunks_are_followed_by_id_with_their_origin,
        a_replica_reads_back_only_the_bodies_of_other_origins,
        claimed_notifications_are_claimed_by_one_replica_until_the_claim_ends,
        sent_or_failed_notifications_lose_their_claim,
        claims_racing_from_many_threads_take_each_item_once,
        models_are_added_as_candidates_and_listed_newest_first,
        a_promotion_retires_the_promoted_model_and_is_audited,
        promoting_an_unknown_or_promoted_model_changes_nothing,
        rollbacks_walk_the_promotions_back_to_the_funnel_alone,
        racing_promotions_leave_one_model_promoted,
        scores_are_appended_to_a_model,
        agents_register_again_keeping_their_first_registration,
        an_execution_is_stored_with_its_release,
        a_task_created_twice_is_the_first_one,
        tasks_created_racing_from_threads_are_one,
        polls_move_tasks_once_and_send_what_the_release_allows,
        a_poll_of_an_unknown_host_changes_nothing,
    ],
    backends: [
        a_reopened_store_still_has_everything,
        opening_again_migrates_nothing_and_keeps_data,
        a_newer_schema_is_refused_with_a_clear_error,
        committed_changes_survive_a_killed_process,
    ],
}

// ---------------------------------------------------------------- samples

fn spec(app: &str) -> ReleaseSpec {
    let mut settings = serde_json::Map::new();
    settings.insert("min_hosts".to_owned(), serde_json::json!(2));
    ReleaseSpec {
        app: app.to_owned(),
        version: "1.2.3".to_owned(),
        hosts: vec!["h1".to_owned(), "h2".to_owned()].into(),
        reference: ReferenceHosts::Hosts {
            hosts: vec!["r1".to_owned()],
        },
        batches: vec![
            PlannedBatch {
                hosts: vec!["h1".to_owned()],
            },
            PlannedBatch {
                hosts: vec!["h2".to_owned()],
            },
        ],
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
        settings,
        rules: Vec::new(),
    }
}

fn release(id: &str, app: &str, created_at: i64) -> Release {
    Release {
        id: id.to_owned(),
        spec: spec(app),
        state: ReleaseState::Pending,
        created_by: "pipeline".to_owned(),
        created_at,
        updated_at: created_at,
        deployed: Vec::new(),
        verdict: None,
        reason: "created by the pipeline".to_owned(),
    }
}

fn notification(release_id: &str, event: NotificationEvent, title: &str) -> NewNotification {
    NewNotification {
        release_id: release_id.to_owned(),
        event,
        channel: "ops-slack".to_owned(),
        title: title.to_owned(),
        text: format!("{title}: details"),
        link: format!("https://vigil.example/releases/{release_id}"),
    }
}

fn batch(index: u32, at: i64) -> Batch {
    Batch {
        index,
        at,
        hosts: vec![format!("h{}", index + 1)],
    }
}

fn change(release_id: &str, expected: ReleaseState, to: ReleaseState, at: i64) -> Change {
    let action = match to {
        ReleaseState::Observing => Action::BatchDeployed,
        ReleaseState::Paused => Action::Pause,
        ReleaseState::Cancelled => Action::Cancel,
        ReleaseState::Succeeded => Action::Succeed,
        _ => Action::Resume,
    };
    Change {
        release_id: release_id.to_owned(),
        expected,
        to,
        action,
        actor: "alice".to_owned(),
        at,
        reason: format!("to {to}"),
        deployed: None,
        notifications: Vec::new(),
        lease: None,
    }
}

fn finding() -> Finding {
    Finding {
        severity: Verdict::Fault,
        signal: Signal::Metric {
            name: "latency_p99".to_owned(),
        },
        hosts: vec!["h1".to_owned()],
        hosts_judged: 1,
        direction: "up".to_owned(),
        observed: 250.5,
        expected: 100.25,
        effect: 1.5,
        score: 7.75,
        baseline: "reference".to_owned(),
        evidence: "shift of 7.8 sigma for 5 steps".to_owned(),
        since: 1_000_120,
        explanation: "latency doubled on h1".to_owned(),
    }
}

fn verdict_record(release_id: &str, at: i64, verdict: Verdict) -> VerdictRecord {
    let findings = if verdict == Verdict::Fault {
        vec![finding()]
    } else {
        Vec::new()
    };
    VerdictRecord {
        release_id: release_id.to_owned(),
        at,
        verdict,
        findings,
        explanation: format!("{verdict} at {at}"),
        suppressed: Vec::new(),
    }
}

fn chunk(kind: DataKind, key: Option<&str>, min_ms: i64, max_ms: i64, body: &[u8]) -> DataChunk {
    DataChunk {
        kind,
        key: key.map(str::to_owned),
        min_ms,
        max_ms,
        received_at: max_ms / 1000 + 1,
        body: body.to_vec(),
        origin: String::new(),
    }
}

fn all_releases() -> ReleaseFilter {
    ReleaseFilter::default()
}

/// Creates release `r1` (pending) and returns the change that deploys its first batch.
fn create_r1_and_its_first_batch(store: &dyn Store) -> Change {
    store
        .create_release(&release("r1", "shop", 1_000_000))
        .unwrap();
    let mut deploy = change(
        "r1",
        ReleaseState::Pending,
        ReleaseState::Observing,
        1_000_060,
    );
    deploy.deployed = Some(batch(0, 1_000_060));
    deploy
}

/// Everything the store says about a release, to compare before and after.
fn snapshot(store: &dyn Store, release_id: &str) -> String {
    format!(
        "{:?}\n{:?}\n{:?}\n{:?}\n{:?}",
        store.release(release_id).unwrap(),
        store.transitions(release_id).unwrap(),
        store.verdicts(release_id).unwrap(),
        store.notifications(release_id).unwrap(),
        store.feedback(release_id).unwrap(),
    )
}

// ---------------------------------------------------------------- releases

fn a_created_release_reads_back_whole(store: &dyn Store) {
    let mut created = release("r1", "shop", 1_000_000);
    created.deployed = vec![batch(0, 1_000_060)];
    created.verdict = Some(Verdict::Healthy);
    created.state = ReleaseState::Observing;
    store.create_release(&created).unwrap();
    assert_eq!(store.release("r1").unwrap(), Some(created));
}

fn creating_a_release_records_the_create_transition(store: &dyn Store) {
    store
        .create_release(&release("r1", "shop", 1_000_000))
        .unwrap();
    let transitions = store.transitions("r1").unwrap();
    assert_eq!(transitions.len(), 1);
    let create = &transitions[0];
    assert_eq!(create.seq, 1);
    assert_eq!(create.action, Action::Create);
    assert_eq!(create.from, ReleaseState::Pending);
    assert_eq!(create.to, ReleaseState::Pending);
    assert_eq!(create.actor, "pipeline");
    assert_eq!(create.at, 1_000_000);
    assert_eq!(create.release_id, "r1");
}

fn a_duplicate_release_id_is_refused_and_changes_nothing(store: &dyn Store) {
    store
        .create_release(&release("r1", "shop", 1_000_000))
        .unwrap();
    let before = snapshot(store, "r1");
    let mut again = release("r1", "other-app", 2_000_000);
    again.created_by = "mallory".to_owned();
    let error = store.create_release(&again).unwrap_err();
    assert!(
        matches!(&error, StoreError::ReleaseExists { id } if id == "r1"),
        "{error:?}"
    );
    assert_eq!(error.to_string(), "release r1 already exists");
    assert_eq!(snapshot(store, "r1"), before);
    assert_eq!(store.releases(&all_releases()).unwrap().len(), 1);
}

fn a_missing_release_is_none_and_has_no_history(store: &dyn Store) {
    assert_eq!(store.release("nope").unwrap(), None);
    assert!(store.transitions("nope").unwrap().is_empty());
    assert!(store.verdicts("nope").unwrap().is_empty());
    assert!(store.notifications("nope").unwrap().is_empty());
    assert!(store.feedback("nope").unwrap().is_empty());
    assert!(store.releases(&all_releases()).unwrap().is_empty());
}

fn apply_moves_the_state_and_records_everything_it_implies(store: &dyn Store) {
    let mut deploy = create_r1_and_its_first_batch(store);
    deploy.notifications = vec![
        notification("r1", NotificationEvent::Resumed, "batch 1 out"),
        notification("r1", NotificationEvent::Recommendation, "look at it"),
    ];
    let (changed, transition) = store.apply(&deploy).unwrap();

    assert_eq!(changed.state, ReleaseState::Observing);
    assert_eq!(changed.reason, "to observing");
    assert_eq!(changed.updated_at, 1_000_060);
    assert_eq!(changed.created_at, 1_000_000);
    assert_eq!(changed.deployed, vec![batch(0, 1_000_060)]);
    assert_eq!(store.release("r1").unwrap(), Some(changed.clone()));

    assert_eq!(transition.seq, 2);
    assert_eq!(transition.from, ReleaseState::Pending);
    assert_eq!(transition.to, ReleaseState::Observing);
    assert_eq!(transition.action, Action::BatchDeployed);
    assert_eq!(transition.actor, "alice");
    assert_eq!(transition.at, 1_000_060);
    assert_eq!(transition.reason, "to observing");
    assert_eq!(store.transitions("r1").unwrap()[1], transition);

    let queued = store.notifications("r1").unwrap();
    assert_eq!(queued.len(), 2);
    assert_eq!(queued[0].notification, deploy.notifications[0]);
    assert_eq!(queued[1].notification, deploy.notifications[1]);
    for item in &queued {
        assert_eq!(item.state, DeliveryState::Pending);
        assert_eq!(item.created_at, 1_000_060);
        assert_eq!(item.next_attempt_at, 1_000_060);
        assert_eq!(item.attempts, 0);
        assert_eq!(item.last_error, "");
    }

    let mut second = change(
        "r1",
        ReleaseState::Observing,
        ReleaseState::Observing,
        1_000_120,
    );
    second.deployed = Some(batch(1, 1_000_120));
    let (after_second, _) = store.apply(&second).unwrap();
    assert_eq!(
        after_second.deployed,
        vec![batch(0, 1_000_060), batch(1, 1_000_120)]
    );
}

fn apply_numbers_transitions_in_order(store: &dyn Store) {
    store
        .create_release(&release("r1", "shop", 1_000_000))
        .unwrap();
    store
        .create_release(&release("r2", "shop", 1_000_001))
        .unwrap();
    let path = [
        ReleaseState::Observing,
        ReleaseState::Paused,
        ReleaseState::Observing,
        ReleaseState::Succeeded,
    ];
    let mut state = ReleaseState::Pending;
    for (step, next) in path.into_iter().enumerate() {
        let at = 1_000_100 + step as i64;
        let (_, transition) = store.apply(&change("r1", state, next, at)).unwrap();
        assert_eq!(transition.seq, step as i64 + 2);
        state = next;
    }
    let seqs: Vec<i64> = store
        .transitions("r1")
        .unwrap()
        .iter()
        .map(|transition| transition.seq)
        .collect();
    assert_eq!(seqs, vec![1, 2, 3, 4, 5]);
    let (_, other) = store
        .apply(&change(
            "r2",
            ReleaseState::Pending,
            ReleaseState::Cancelled,
            1_000_200,
        ))
        .unwrap();
    assert_eq!(other.seq, 2, "sequences are per release");
}

fn a_state_conflict_changes_nothing(store: &dyn Store) {
    store
        .create_release(&release("r1", "shop", 1_000_000))
        .unwrap();
    store
        .apply(&change(
            "r1",
            ReleaseState::Pending,
            ReleaseState::Observing,
            1_000_060,
        ))
        .unwrap();
    let before = snapshot(store, "r1");
    let mut stale = change(
        "r1",
        ReleaseState::Pending,
        ReleaseState::Cancelled,
        1_000_090,
    );
    stale.deployed = Some(batch(1, 1_000_090));
    stale.notifications = vec![notification("r1", NotificationEvent::Paused, "stale")];
    let error = store.apply(&stale).unwrap_err();
    match &error {
        StoreError::StateConflict {
            id,
            expected,
            actual,
        } => {
            assert_eq!(id, "r1");
            assert_eq!(*expected, ReleaseState::Pending);
            assert_eq!(*actual, ReleaseState::Observing);
        }
        other => panic!("expected a state conflict, got {other:?}"),
    }
    assert_eq!(error.to_string(), "release r1 is observing, not pending");
    assert_eq!(snapshot(store, "r1"), before);
    assert!(store.due_notifications(i64::MAX, 100).unwrap().is_empty());
}

fn apply_to_a_missing_release_is_unknown(store: &dyn Store) {
    let error = store
        .apply(&change(
            "ghost",
            ReleaseState::Pending,
            ReleaseState::Observing,
            1,
        ))
        .unwrap_err();
    assert!(
        matches!(&error, StoreError::UnknownRelease { id } if id == "ghost"),
        "{error:?}"
    );
    assert!(store.transitions("ghost").unwrap().is_empty());
}

fn a_change_that_fails_midway_leaves_nothing(store: &dyn Store) {
    store
        .create_release(&release("r1", "shop", 1_000_000))
        .unwrap();
    let before = snapshot(store, "r1");
    // The second notification names a release that does not exist: the outbox refuses it
    // after the state, the batch and the transition were written.
    let mut doomed = change(
        "r1",
        ReleaseState::Pending,
        ReleaseState::Observing,
        1_000_060,
    );
    doomed.deployed = Some(batch(0, 1_000_060));
    doomed.notifications = vec![
        notification("r1", NotificationEvent::Resumed, "fine"),
        notification("ghost", NotificationEvent::Resumed, "dangling"),
    ];
    assert!(store.apply(&doomed).is_err());
    assert_eq!(snapshot(store, "r1"), before);
    assert!(store.due_notifications(i64::MAX, 100).unwrap().is_empty());
    // The store is still usable and the same change without the bad part goes through.
    doomed.notifications.truncate(1);
    let (changed, transition) = store.apply(&doomed).unwrap();
    assert_eq!(changed.state, ReleaseState::Observing);
    assert_eq!(transition.seq, 2);
}

// ---------------------------------------------------------------- imports

/// Release `id` imported with a template, a chunk of each kind and a fault verdict, ending
/// paused.
fn imported(id: &str) -> ImportedRelease {
    let mut outcome = change(id, ReleaseState::Pending, ReleaseState::Paused, 1_000_010);
    outcome.reason = "imported and replayed".to_owned();
    ImportedRelease {
        release: release(id, "shop", 1_000_010),
        templates: vec![LogTemplate {
            id: "t1".to_owned(),
            text: "request took <*> ms".to_owned(),
            level: "info".to_owned(),
        }],
        chunks: vec![
            chunk(
                DataKind::Metrics,
                Some(&format!("import:{id}:metrics")),
                1_000,
                2_000,
                b"m",
            ),
            chunk(
                DataKind::Logs,
                Some(&format!("import:{id}:logs")),
                1_000,
                2_000,
                b"l",
            ),
        ],
        verdict: verdict_record(id, 1_000_005, Verdict::Fault),
        outcome,
    }
}

/// Everything an import may have stored, to compare before and after.
fn import_snapshot(store: &dyn Store, release_id: &str) -> String {
    format!(
        "{}\n{:?}\n{:?}\n{:?}",
        snapshot(store, release_id),
        store.templates("shop").unwrap(),
        store.data_between(DataKind::Metrics, 0, i64::MAX).unwrap(),
        store.data_between(DataKind::Logs, 0, i64::MAX).unwrap(),
    )
}

fn an_import_stores_everything_with_its_outcome(store: &dyn Store) {
    let import = imported("r1");
    let (stored, appended) = store.import_release(&import).unwrap();
    assert_eq!(appended, vec![Appended::Stored, Appended::Stored]);
    assert_eq!(stored.state, ReleaseState::Paused);
    assert_eq!(stored.reason, "imported and replayed");
    assert_eq!(stored.verdict, Some(Verdict::Fault));
    assert_eq!(store.release("r1").unwrap(), Some(stored));
    let transitions = store.transitions("r1").unwrap();
    let moves: Vec<_> = transitions
        .iter()
        .map(|transition| {
            (
                transition.seq,
                transition.from,
                transition.to,
                transition.action,
            )
        })
        .collect();
    assert_eq!(
        moves,
        vec![
            (
                1,
                ReleaseState::Pending,
                ReleaseState::Pending,
                Action::Create
            ),
            (
                2,
                ReleaseState::Pending,
                ReleaseState::Paused,
                Action::Pause
            ),
        ]
    );
    assert_eq!(store.verdicts("r1").unwrap(), vec![import.verdict.clone()]);
    assert!(store.notifications("r1").unwrap().is_empty());
    assert_eq!(store.templates("shop").unwrap(), import.templates);
    assert_eq!(
        store.data_between(DataKind::Metrics, 0, i64::MAX).unwrap(),
        vec![import.chunks[0].clone()]
    );
    assert_eq!(
        store.data_between(DataKind::Logs, 0, i64::MAX).unwrap(),
        vec![import.chunks[1].clone()]
    );
}

fn an_import_that_fails_at_its_last_step_leaves_nothing(store: &dyn Store) {
    let empty = import_snapshot(store, "r1");
    // The outcome expects a state the new release is not in: it fails after the release, its
    // templates, chunks and verdict were written.
    let mut doomed = imported("r1");
    doomed.outcome.expected = ReleaseState::Observing;
    let error = store.import_release(&doomed).unwrap_err();
    assert!(
        matches!(&error, StoreError::StateConflict { id, .. } if id == "r1"),
        "{error:?}"
    );
    assert_eq!(import_snapshot(store, "r1"), empty);
    assert_eq!(store.release("r1").unwrap(), None);
    assert!(store.templates("shop").unwrap().is_empty());
    // Nothing was kept of its chunks' keys either: the same import goes through whole.
    let (stored, appended) = store.import_release(&imported("r1")).unwrap();
    assert_eq!(stored.state, ReleaseState::Paused);
    assert_eq!(appended, vec![Appended::Stored, Appended::Stored]);
}

fn an_import_under_a_taken_id_is_refused_and_stores_nothing(store: &dyn Store) {
    store
        .create_release(&release("r1", "shop", 1_000_000))
        .unwrap();
    let before = import_snapshot(store, "r1");
    let error = store.import_release(&imported("r1")).unwrap_err();
    assert!(
        matches!(&error, StoreError::ReleaseExists { id } if id == "r1"),
        "{error:?}"
    );
    assert_eq!(import_snapshot(store, "r1"), before);
    assert!(store
        .data_between(DataKind::Logs, 0, i64::MAX)
        .unwrap()
        .is_empty());
}

fn one_of_many_racing_changes_wins(store: &dyn Store) {
    store
        .create_release(&release("r1", "shop", 1_000_000))
        .unwrap();
    let racers = 8;
    let barrier = Barrier::new(racers);
    let outcomes: Vec<Result<(Release, vigil_core::release::Transition), StoreError>> =
        std::thread::scope(|scope| {
            let handles: Vec<_> = (0..racers)
                .map(|racer| {
                    let barrier = &barrier;
                    scope.spawn(move || {
                        let mut pause =
                            change("r1", ReleaseState::Pending, ReleaseState::Paused, 1_000_060);
                        pause.actor = format!("racer-{racer}");
                        pause.notifications =
                            vec![notification("r1", NotificationEvent::Paused, "paused")];
                        barrier.wait();
                        store.apply(&pause)
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|handle| handle.join().unwrap())
                .collect()
        });
    let winners = outcomes.iter().filter(|outcome| outcome.is_ok()).count();
    assert_eq!(winners, 1, "{outcomes:?}");
    for outcome in &outcomes {
        if let Err(error) = outcome {
            assert!(
                matches!(error, StoreError::StateConflict { .. }),
                "{error:?}"
            );
        }
    }
    assert_eq!(store.transitions("r1").unwrap().len(), 2);
    assert_eq!(store.notifications("r1").unwrap().len(), 1);
}

fn releases_are_listed_newest_first_by_app_and_state(store: &dyn Store) {
    store
        .create_release(&release("a-old", "shop", 100))
        .unwrap();
    store
        .create_release(&release("a-new", "shop", 300))
        .unwrap();
    store
        .create_release(&release("b-tie", "shop", 200))
        .unwrap();
    store
        .create_release(&release("a-tie", "shop", 200))
        .unwrap();
    store
        .create_release(&release("other", "search", 250))
        .unwrap();
    store
        .apply(&change(
            "a-new",
            ReleaseState::Pending,
            ReleaseState::Paused,
            310,
        ))
        .unwrap();
    store
        .apply(&change(
            "other",
            ReleaseState::Pending,
            ReleaseState::Observing,
            260,
        ))
        .unwrap();
    let ids = |filter: ReleaseFilter| -> Vec<String> {
        store
            .releases(&filter)
            .unwrap()
            .into_iter()
            .map(|found| found.id)
            .collect()
    };
    assert_eq!(
        ids(all_releases()),
        vec!["a-new", "other", "a-tie", "b-tie", "a-old"]
    );
    let shop = ReleaseFilter {
        app: Some("shop".to_owned()),
        ..ReleaseFilter::default()
    };
    assert_eq!(ids(shop.clone()), vec!["a-new", "a-tie", "b-tie", "a-old"]);
    assert_eq!(
        ids(ReleaseFilter {
            limit: 2,
            ..shop.clone()
        }),
        vec!["a-new", "a-tie"]
    );
    assert_eq!(
        ids(ReleaseFilter {
            states: vec![ReleaseState::Paused, ReleaseState::Observing],
            ..ReleaseFilter::default()
        }),
        vec!["a-new", "other"]
    );
    assert_eq!(
        ids(ReleaseFilter {
            states: vec![ReleaseState::Pending],
            ..shop
        }),
        vec!["a-tie", "b-tie", "a-old"]
    );
    assert!(ids(ReleaseFilter {
        app: Some("nobody".to_owned()),
        ..ReleaseFilter::default()
    })
    .is_empty());
}

// ---------------------------------------------------------------- verdicts and feedback

fn verdicts_are_kept_oldest_first_and_the_latest_is_on_the_release(store: &dyn Store) {
    store
        .create_release(&release("r1", "shop", 1_000_000))
        .unwrap();
    let healthy = verdict_record("r1", 1_000_060, Verdict::Healthy);
    let fault = verdict_record("r1", 1_000_120, Verdict::Fault);
    store.record_verdict(&healthy, &[]).unwrap();
    let pause_note = notification("r1", NotificationEvent::Paused, "fault found");
    store
        .record_verdict(&fault, std::slice::from_ref(&pause_note))
        .unwrap();
    assert_eq!(store.verdicts("r1").unwrap(), vec![healthy, fault]);
    let stored = store.release("r1").unwrap().unwrap();
    assert_eq!(stored.verdict, Some(Verdict::Fault));
    assert_eq!(
        stored.state,
        ReleaseState::Pending,
        "a verdict is no state change"
    );
    let queued = store.notifications("r1").unwrap();
    assert_eq!(queued.len(), 1);
    assert_eq!(queued[0].notification, pause_note);
    assert_eq!(queued[0].created_at, 1_000_120);
    assert_eq!(queued[0].next_attempt_at, 1_000_120);
}

fn a_verdict_that_fails_midway_leaves_nothing(store: &dyn Store) {
    store
        .create_release(&release("r1", "shop", 1_000_000))
        .unwrap();
    store
        .record_verdict(&verdict_record("r1", 1_000_060, Verdict::Healthy), &[])
        .unwrap();
    let before = snapshot(store, "r1");
    let result = store.record_verdict(
        &verdict_record("r1", 1_000_120, Verdict::Fault),
        &[
            notification("r1", NotificationEvent::Paused, "fine"),
            notification("ghost", NotificationEvent::Paused, "dangling"),
        ],
    );
    assert!(result.is_err());
    assert_eq!(snapshot(store, "r1"), before);
}

fn a_verdict_for_a_missing_release_is_unknown(store: &dyn Store) {
    let error = store
        .record_verdict(
            &verdict_record("ghost", 1, Verdict::Fault),
            &[notification("ghost", NotificationEvent::Paused, "x")],
        )
        .unwrap_err();
    assert!(
        matches!(&error, StoreError::UnknownRelease { id } if id == "ghost"),
        "{error:?}"
    );
    assert!(store.verdicts("ghost").unwrap().is_empty());
    assert!(store.due_notifications(i64::MAX, 10).unwrap().is_empty());
}

fn feedback_on_a_finding_keeps_its_signal_and_onset(store: &dyn Store) {
    store
        .create_release(&release("r1", "shop", 1_000_000))
        .unwrap();
    let on_finding = Feedback {
        release_id: "r1".to_owned(),
        kind: FeedbackKind::FalseAlarm,
        note: "the batch job".to_owned(),
        actor: "alice".to_owned(),
        at: 1_000_500,
        signal: Some("cpu_usage".to_owned()),
        onset: None,
    };
    let missed = Feedback {
        kind: FeedbackKind::MissedFault,
        signal: Some("log:Timeout <*>".to_owned()),
        onset: Some(1_000_300),
        ..on_finding.clone()
    };
    let whole = Feedback {
        kind: FeedbackKind::ConfirmFault,
        signal: None,
        onset: None,
        ..on_finding.clone()
    };
    for feedback in [&on_finding, &missed, &whole] {
        store.add_feedback(feedback).unwrap();
    }
    assert_eq!(
        store.feedback("r1").unwrap(),
        vec![on_finding, missed, whole]
    );
}

fn a_verdict_keeps_the_findings_the_learned_stage_set_aside(store: &dyn Store) {
    store
        .create_release(&release("r1", "shop", 1_000_000))
        .unwrap();
    let plain = verdict_record("r1", 1_000_060, Verdict::Fault);
    let aside = VerdictRecord {
        verdict: Verdict::Healthy,
        findings: Vec::new(),
        suppressed: vec![vigil_core::Suppressed {
            finding: Finding {
                severity: Verdict::Anomaly,
                ..finding()
            },
            reason: "suppressed because latency_p99 up matches signature 3".to_owned(),
            signature: Some(3),
            probability: None,
        }],
        ..verdict_record("r1", 1_000_120, Verdict::Healthy)
    };
    store.record_verdict(&plain, &[]).unwrap();
    store.record_verdict(&aside, &[]).unwrap();
    assert_eq!(store.verdicts("r1").unwrap(), vec![plain, aside]);
}

fn signature_of(app: &str, signal: &str, at: i64) -> vigil_core::Signature {
    let marked = Finding {
        severity: Verdict::Anomaly,
        signal: Signal::Metric {
            name: signal.to_owned(),
        },
        ..finding()
    };
    vigil_core::Signature::from_finding(
        app,
        &marked,
        vigil_core::signature::SignatureMark {
            release_id: "r1".to_owned(),
            finding_at: at - 60,
            actor: "alice".to_owned(),
            at,
            note: "a nightly batch".to_owned(),
        },
    )
}

fn signatures_are_saved_read_by_app_and_dropped(store: &dyn Store) {
    assert!(store.app_signatures("shop").unwrap().is_empty());
    let cpu = store
        .save_signature(&signature_of("shop", "cpu_usage", 1_000))
        .unwrap();
    assert!(cpu.id > 0);
    assert_eq!(
        cpu,
        vigil_core::Signature {
            id: cpu.id,
            ..signature_of("shop", "cpu_usage", 1_000)
        }
    );
    let latency = store
        .save_signature(&signature_of("shop", "latency_p99", 1_100))
        .unwrap();
    let other_app = store
        .save_signature(&signature_of("cart", "cpu_usage", 1_200))
        .unwrap();
    assert!(latency.id > cpu.id && other_app.id > latency.id);
    assert_eq!(
        store.app_signatures("shop").unwrap(),
        vec![cpu.clone(), latency.clone()]
    );
    assert_eq!(store.signature(other_app.id + 100).unwrap(), None);
    assert_eq!(store.signature(other_app.id).unwrap(), Some(other_app));

    // A second release's mark makes it active; its shape and marks are kept.
    let mut marked_again = cpu.clone();
    let wider = Finding {
        severity: Verdict::Anomaly,
        signal: Signal::Metric {
            name: "cpu_usage".to_owned(),
        },
        effect: 2.5,
        ..finding()
    };
    marked_again.add_mark(
        &wider,
        vigil_core::signature::SignatureMark {
            release_id: "r2".to_owned(),
            finding_at: 1_900,
            actor: "bob".to_owned(),
            at: 2_000,
            note: String::new(),
        },
    );
    // What never changes stays as stored, whatever the caller passes.
    marked_again.app = "elsewhere".to_owned();
    let stored = store.save_signature(&marked_again).unwrap();
    assert_eq!(stored.state, vigil_core::SignatureState::Active);
    assert_eq!(stored.app, "shop");
    assert_eq!(stored.updated_at, 2_000);
    assert_eq!(stored.marks.len(), 2);
    assert!((stored.shape.max_effect - 2.5).abs() < 1e-12);
    assert_eq!(store.signature(cpu.id).unwrap(), Some(stored.clone()));

    // Dropped: gone from the app's library, still in its history.
    let dropped = vigil_core::Signature {
        state: vigil_core::SignatureState::Dropped,
        dropped: Some(vigil_core::signature::SignatureDrop {
            release_id: Some("r3".to_owned()),
            actor: "carol".to_owned(),
            at: 3_000,
            reason: "release r3 was confirmed a fault".to_owned(),
        }),
        updated_at: 3_000,
        ..stored
    };
    assert_eq!(store.save_signature(&dropped).unwrap(), dropped);
    assert_eq!(store.app_signatures("shop").unwrap(), vec![latency.clone()]);
    assert_eq!(
        store.all_app_signatures("shop").unwrap(),
        vec![dropped, latency]
    );
}

fn saving_an_unknown_signature_is_refused(store: &dyn Store) {
    let ghost = vigil_core::Signature {
        id: 42,
        ..signature_of("shop", "cpu_usage", 1_000)
    };
    let error = store.save_signature(&ghost).unwrap_err();
    assert!(
        matches!(error, StoreError::UnknownSignature { id: 42 }),
        "{error:?}"
    );
    assert!(store.all_app_signatures("shop").unwrap().is_empty());
}

fn feedback_reads_back_in_order(store: &dyn Store) {
    store
        .create_release(&release("r1", "shop", 1_000_000))
        .unwrap();
    let first = Feedback {
        release_id: "r1".to_owned(),
        kind: FeedbackKind::FalseAlarm,
        note: "the spike was a cron job".to_owned(),
        actor: "bob".to_owned(),
        at: 1_000_500,
        signal: None,
        onset: None,
    };
    let second = Feedback {
        kind: FeedbackKind::ConfirmFault,
        note: String::new(),
        at: 1_000_400,
        ..first.clone()
    };
    store.add_feedback(&first).unwrap();
    store.add_feedback(&second).unwrap();
    assert_eq!(store.feedback("r1").unwrap(), vec![first.clone(), second]);
    let error = store
        .add_feedback(&Feedback {
            release_id: "ghost".to_owned(),
            ..first
        })
        .unwrap_err();
    assert!(
        matches!(error, StoreError::UnknownRelease { .. }),
        "{error:?}"
    );
}

// ---------------------------------------------------------------- outbox

/// A release with one queued notification per `at`, each from its own change.
fn queue_at(store: &dyn Store, release_id: &str, times: &[i64]) -> Vec<i64> {
    store
        .create_release(&release(release_id, "shop", 1_000))
        .unwrap();
    let mut state = ReleaseState::Pending;
    for &at in times {
        let next = if state == ReleaseState::Paused {
            ReleaseState::Observing
        } else {
            ReleaseState::Paused
        };
        let mut step = change(release_id, state, next, at);
        step.notifications = vec![notification(
            release_id,
            NotificationEvent::Paused,
            &format!("at {at}"),
        )];
        store.apply(&step).unwrap();
        state = next;
    }
    store
        .notifications(release_id)
        .unwrap()
        .iter()
        .map(|item| item.id)
        .collect()
}

fn new_notifications_are_due_at_once_oldest_first(store: &dyn Store) {
    let ids = queue_at(store, "r1", &[2_000, 2_010, 2_020]);
    assert_eq!(ids.len(), 3);
    assert!(ids.windows(2).all(|pair| pair[0] < pair[1]));
    let due_ids = |now: i64, limit: usize| -> Vec<i64> {
        store
            .due_notifications(now, limit)
            .unwrap()
            .iter()
            .map(|item| item.id)
            .collect()
    };
    assert!(due_ids(1_999, 10).is_empty());
    assert_eq!(due_ids(2_000, 10), vec![ids[0]]);
    assert_eq!(due_ids(2_015, 10), vec![ids[0], ids[1]]);
    assert_eq!(due_ids(9_999, 10), ids);
    assert_eq!(due_ids(9_999, 2), vec![ids[0], ids[1]]);
    assert!(due_ids(9_999, 0).is_empty());
    let first = &store.due_notifications(2_000, 1).unwrap()[0];
    assert_eq!(first.notification.title, "at 2000");
    assert_eq!(first.notification.release_id, "r1");
}

fn a_failed_notification_is_retried_later_or_given_up(store: &dyn Store) {
    let ids = queue_at(store, "r1", &[2_000, 2_000]);
    store
        .notification_failed(ids[0], "http 503 from hooks", Some(2_060))
        .unwrap();
    let due: Vec<i64> = store
        .due_notifications(2_030, 10)
        .unwrap()
        .iter()
        .map(|item| item.id)
        .collect();
    assert_eq!(due, vec![ids[1]], "a retried item waits for its time");
    let retried = store.due_notifications(2_060, 10).unwrap();
    assert_eq!(retried.len(), 2);
    assert_eq!(retried[0].id, ids[0]);
    assert_eq!(retried[0].attempts, 1);
    assert_eq!(retried[0].last_error, "http 503 from hooks");
    assert_eq!(retried[0].next_attempt_at, 2_060);
    assert_eq!(retried[0].state, DeliveryState::Pending);

    store
        .notification_failed(ids[0], "http 500", Some(2_120))
        .unwrap();
    store.notification_failed(ids[0], "http 410", None).unwrap();
    let items = store.notifications("r1").unwrap();
    assert_eq!(items[0].state, DeliveryState::Dead);
    assert_eq!(items[0].attempts, 3);
    assert_eq!(items[0].last_error, "http 410");
    let still_due: Vec<i64> = store
        .due_notifications(i64::MAX, 10)
        .unwrap()
        .iter()
        .map(|item| item.id)
        .collect();
    assert_eq!(still_due, vec![ids[1]], "a dead item is never due again");
}

fn a_sent_notification_is_no_longer_due(store: &dyn Store) {
    let ids = queue_at(store, "r1", &[2_000, 2_001]);
    store.notification_sent(ids[0], 2_005).unwrap();
    let items = store.notifications("r1").unwrap();
    assert_eq!(items[0].state, DeliveryState::Sent);
    assert_eq!(items[1].state, DeliveryState::Pending);
    let due: Vec<i64> = store
        .due_notifications(i64::MAX, 10)
        .unwrap()
        .iter()
        .map(|item| item.id)
        .collect();
    assert_eq!(due, vec![ids[1]]);
}

fn unknown_notifications_are_reported(store: &dyn Store) {
    let error = store.notification_sent(424_242, 1).unwrap_err();
    assert!(
        matches!(error, StoreError::UnknownNotification { id: 424_242 }),
        "{error:?}"
    );
    let error = store
        .notification_failed(424_242, "boom", Some(5))
        .unwrap_err();
    assert!(
        matches!(error, StoreError::UnknownNotification { id: 424_242 }),
        "{error:?}"
    );
}

// ---------------------------------------------------------------- tokens

fn tokens_are_found_by_hash_and_names_may_repeat(store: &dyn Store) {
    let admin = store
        .create_token("deployer", Role::Admin, "aa11", 1_000)
        .unwrap();
    let ingest = store
        .create_token("deployer", Role::Ingest, "bb22", 1_001)
        .unwrap();
    assert_ne!(admin.id, ingest.id);
    assert_eq!(admin.name, "deployer");
    assert_eq!(admin.role, Role::Admin);
    assert_eq!(admin.hash, "aa11");
    assert_eq!(admin.created_at, 1_000);
    assert_eq!(store.token_by_hash("bb22").unwrap(), Some(ingest.clone()));
    assert_eq!(store.token_by_hash("aa11").unwrap(), Some(admin.clone()));
    assert_eq!(store.token_by_hash("cc33").unwrap(), None);
    assert_eq!(store.tokens().unwrap(), vec![admin, ingest]);
}

fn page_session(hash: &str, token_id: i64, created_at: i64, expires_at: i64) -> PageSession {
    PageSession {
        hash: hash.to_owned(),
        token_id,
        created_at,
        expires_at,
    }
}

fn a_revoked_token_keeps_its_first_revocation_and_loses_its_sessions(store: &dyn Store) {
    let alice = store
        .create_token("alice", Role::Operator, "aa11", 1_000)
        .unwrap();
    let bob = store
        .create_token("bob", Role::Viewer, "bb22", 1_000)
        .unwrap();
    assert_eq!(alice.revoked_at, None);
    store
        .create_session(&page_session("s1", alice.id, 1_100, 9_000))
        .unwrap();
    store
        .create_session(&page_session("s2", alice.id, 1_200, 9_000))
        .unwrap();
    store
        .create_session(&page_session("s3", bob.id, 1_200, 9_000))
        .unwrap();

    let revoked = store.revoke_token(alice.id, 2_000).unwrap();
    assert_eq!(revoked.revoked_at, Some(2_000));
    assert_eq!(revoked.id, alice.id);
    assert_eq!(store.token_by_hash("aa11").unwrap(), Some(revoked.clone()));
    assert_eq!(store.session("s1").unwrap(), None);
    assert_eq!(store.session("s2").unwrap(), None);
    assert!(
        store.session("s3").unwrap().is_some(),
        "other tokens' sessions stay"
    );
    assert_eq!(store.token_by_hash("bb22").unwrap(), Some(bob));

    let again = store.revoke_token(alice.id, 3_000).unwrap();
    assert_eq!(
        again.revoked_at,
        Some(2_000),
        "the first revocation is kept"
    );
    let listed = store.tokens().unwrap();
    assert_eq!(listed[0].revoked_at, Some(2_000));
    assert_eq!(listed[1].revoked_at, None);
}

fn revoking_an_unknown_token_changes_nothing(store: &dyn Store) {
    let kept = store
        .create_token("ci", Role::Ingest, "cc33", 1_000)
        .unwrap();
    let missing = store.revoke_token(kept.id + 100, 2_000).unwrap_err();
    assert!(
        matches!(missing, StoreError::UnknownToken { id } if id == kept.id + 100),
        "{missing:?}"
    );
    assert_eq!(store.tokens().unwrap(), vec![kept]);
}

fn sessions_are_found_by_hash_with_their_token_and_end_on_sign_out(store: &dyn Store) {
    let token = store
        .create_token("alice", Role::Admin, "aa11", 1_000)
        .unwrap();
    let opened = page_session("s1", token.id, 1_100, 44_300);
    store.create_session(&opened).unwrap();
    assert_eq!(
        store.session("s1").unwrap(),
        Some((token.clone(), opened.clone()))
    );
    assert_eq!(
        store.session("aa11").unwrap(),
        None,
        "a token hash is no session"
    );
    assert!(store.end_session("s1").unwrap());
    assert_eq!(store.session("s1").unwrap(), None);
    assert!(!store.end_session("s1").unwrap(), "already ended");
    assert!(
        store.create_session(&opened).is_ok(),
        "the same hash after it ended"
    );
}

fn a_new_session_clears_the_expired_ones(store: &dyn Store) {
    let token = store
        .create_token("alice", Role::Viewer, "aa11", 1_000)
        .unwrap();
    store
        .create_session(&page_session("old", token.id, 1_000, 2_000))
        .unwrap();
    store
        .create_session(&page_session("current", token.id, 1_500, 5_000))
        .unwrap();
    assert!(
        store.session("old").unwrap().is_some(),
        "kept until a later sign-in"
    );
    store
        .create_session(&page_session("new", token.id, 2_000, 6_000))
        .unwrap();
    assert_eq!(store.session("old").unwrap(), None);
    assert!(store.session("current").unwrap().is_some());
    assert!(store.session("new").unwrap().is_some());
}

fn a_database_error_keeps_the_drivers_error_as_its_source(store: &dyn Store) {
    // A session of a token that does not exist breaks the foreign key.
    let error = store
        .create_session(&page_session("s1", 4_242, 1_000, 2_000))
        .unwrap_err();
    let message = error.to_string();
    assert!(message.starts_with("database error: "), "{message}");
    let source = std::error::Error::source(&error).expect("the driver's error is kept");
    let driver_error = source.is::<rusqlite::Error>() || source.is::<::postgres::Error>();
    assert!(driver_error, "{source:?}");
    assert!(message.contains(&source.to_string()), "{message}");
}

fn a_session_needs_an_existing_token(store: &dyn Store) {
    let refused = store.create_session(&page_session("s1", 4_242, 1_000, 2_000));
    assert!(refused.is_err(), "{refused:?}");
    assert_eq!(store.session("s1").unwrap(), None);
}

// ---------------------------------------------------------------- data chunks

fn a_chunk_with_a_known_key_is_a_duplicate_and_stores_nothing(store: &dyn Store) {
    let original = chunk(DataKind::Metrics, Some("req-1"), 1_000, 2_000, b"first");
    assert_eq!(store.append_data(&original).unwrap(), Appended::Stored);
    let resent = chunk(DataKind::Metrics, Some("req-1"), 5_000, 6_000, b"second");
    assert_eq!(store.append_data(&resent).unwrap(), Appended::Duplicate);
    assert_eq!(
        store
            .data_between(DataKind::Metrics, i64::MIN, i64::MAX)
            .unwrap(),
        vec![original.clone()]
    );
    let same_key_other_kind = chunk(DataKind::Logs, Some("req-1"), 1_000, 2_000, b"logs");
    assert_eq!(
        store.append_data(&same_key_other_kind).unwrap(),
        Appended::Stored
    );
    let keyless = chunk(DataKind::Metrics, None, 1_000, 2_000, b"no key");
    assert_eq!(store.append_data(&keyless).unwrap(), Appended::Stored);
    assert_eq!(store.append_data(&keyless).unwrap(), Appended::Stored);
    assert_eq!(
        store
            .data_between(DataKind::Metrics, i64::MIN, i64::MAX)
            .unwrap(),
        vec![original, keyless.clone(), keyless]
    );
}

fn chunks_are_found_by_overlapping_range_in_insertion_order(store: &dyn Store) {
    let late = chunk(DataKind::Metrics, Some("a"), 5_000, 6_000, b"late");
    let early = chunk(DataKind::Metrics, Some("b"), 1_000, 2_000, b"early");
    let wide = chunk(DataKind::Metrics, Some("c"), 0, 10_000, &[7u8; 4096]);
    let logs = chunk(DataKind::Logs, Some("d"), 1_000, 2_000, b"logs");
    for stored in [&late, &early, &wide, &logs] {
        assert_eq!(store.append_data(stored).unwrap(), Appended::Stored);
    }
    let between = |from: i64, to: i64| -> Vec<Vec<u8>> {
        store
            .data_between(DataKind::Metrics, from, to)
            .unwrap()
            .into_iter()
            .map(|found| found.body)
            .collect()
    };
    let late_body = b"late".to_vec();
    let early_body = b"early".to_vec();
    let wide_body = vec![7u8; 4096];
    assert_eq!(
        between(0, 10_000),
        vec![late_body.clone(), early_body.clone(), wide_body.clone()]
    );
    assert_eq!(
        between(2_000, 5_000),
        vec![late_body.clone(), early_body.clone(), wide_body.clone()],
        "touching ends overlap"
    );
    assert_eq!(between(2_001, 4_999), vec![wide_body.clone()]);
    assert_eq!(between(5_500, 5_600), vec![late_body, wide_body.clone()]);
    assert_eq!(between(10_001, 20_000), Vec::<Vec<u8>>::new());
    assert_eq!(
        store.data_between(DataKind::Logs, 0, 10_000).unwrap(),
        vec![logs]
    );
    assert_eq!(
        store.data_between(DataKind::Metrics, 1_500, 1_500).unwrap(),
        vec![early, wide]
    );
}

// ---- following the chunks other replicas store

fn chunk_of(origin: &str, kind: DataKind, key: Option<&str>, body: &[u8]) -> DataChunk {
    DataChunk {
        origin: origin.to_owned(),
        ..chunk(kind, key, 1_000, 2_000, body)
    }
}

fn chunks_are_followed_by_id_with_their_origin(store: &dyn Store) {
    assert_eq!(store.last_chunk_id().unwrap(), 0);
    assert_eq!(
        store.chunk_heads_after(0, 10).unwrap(),
        Vec::<ChunkHead>::new()
    );
    let appended = [
        chunk_of("r1", DataKind::Metrics, Some("k1"), b"one"),
        chunk_of("r2", DataKind::Logs, None, b"second"),
        chunk_of("r2", DataKind::Metrics, Some("k1"), b"a duplicate"),
        chunk_of("", DataKind::Metrics, None, &[9u8; 3000]),
    ];
    for stored in &appended {
        store.append_data(stored).unwrap();
    }
    let heads = store.chunk_heads_after(0, 10).unwrap();
    let described: Vec<(&str, DataKind, i64)> = heads
        .iter()
        .map(|head| (head.origin.as_str(), head.kind, head.bytes))
        .collect();
    assert_eq!(
        described,
        vec![
            ("r1", DataKind::Metrics, 3),
            ("r2", DataKind::Logs, 6),
            ("", DataKind::Metrics, 3000),
        ],
        "the duplicate is not stored"
    );
    let ids: Vec<i64> = heads.iter().map(|head| head.id).collect();
    assert!(ids.windows(2).all(|pair| pair[0] < pair[1]), "{ids:?}");
    assert_eq!(store.last_chunk_id().unwrap(), ids[2]);
    assert_eq!(store.chunk_heads_after(0, 2).unwrap(), heads[..2].to_vec());
    assert_eq!(
        store.chunk_heads_after(0, 0).unwrap(),
        Vec::<ChunkHead>::new()
    );
    assert_eq!(
        store.chunk_heads_after(ids[0], 10).unwrap(),
        heads[1..].to_vec()
    );
    assert_eq!(
        store.chunk_heads_after(ids[2], 10).unwrap(),
        Vec::<ChunkHead>::new()
    );

    let metrics = store
        .stored_chunks_between(DataKind::Metrics, 0, 10_000)
        .unwrap();
    let metric_ids: Vec<i64> = metrics.iter().map(|stored| stored.id).collect();
    assert_eq!(metric_ids, vec![ids[0], ids[2]]);
    assert_eq!(metrics[0].chunk, appended[0]);
    assert_eq!(metrics[1].chunk, appended[3]);
    assert_eq!(
        store.data_between(DataKind::Metrics, 0, 10_000).unwrap(),
        vec![appended[0].clone(), appended[3].clone()],
        "the origin reads back"
    );
    assert!(store
        .stored_chunks_between(DataKind::Logs, 3_000, 4_000)
        .unwrap()
        .is_empty());
}

fn a_replica_reads_back_only_the_bodies_of_other_origins(store: &dyn Store) {
    let mine = chunk_of("r1", DataKind::Metrics, None, b"mine");
    let theirs = chunk_of("r2", DataKind::Logs, None, b"theirs");
    store.append_data(&mine).unwrap();
    store.append_data(&theirs).unwrap();
    let ids: Vec<i64> = store
        .chunk_heads_after(0, 10)
        .unwrap()
        .iter()
        .map(|head| head.id)
        .collect();
    let unused_id = ids[1] + 1000;
    let found = store
        .chunks_with_ids(&[ids[1], unused_id, ids[0]], "r1")
        .unwrap();
    assert_eq!(found.len(), 2, "{found:?}");
    assert_eq!(found[0].id, ids[0]);
    assert_eq!(
        found[0].chunk,
        DataChunk {
            body: Vec::new(),
            ..mine
        },
        "a chunk of the asking replica comes without its body"
    );
    assert_eq!(found[1].id, ids[1]);
    assert_eq!(found[1].chunk, theirs);
    assert!(store.chunks_with_ids(&[], "r1").unwrap().is_empty());
    assert!(store
        .chunks_with_ids(&[unused_id], "r1")
        .unwrap()
        .is_empty());
}

fn pruning_spares_recent_chunks_and_kept_windows(store: &dyn Store) {
    let chunks = [
        chunk(DataKind::Metrics, Some("old"), 100, 200, b"old"),
        chunk(DataKind::Logs, Some("old-logs"), 150, 250, b"old logs"),
        chunk(DataKind::Metrics, Some("kept"), 300, 400, b"kept"),
        chunk(
            DataKind::Metrics,
            Some("straddles"),
            900,
            1_100,
            b"straddles",
        ),
        chunk(DataKind::Metrics, Some("recent"), 1_200, 1_300, b"recent"),
        chunk(DataKind::Logs, Some("kept-logs"), 550, 560, b"kept logs"),
    ];
    for stored in &chunks {
        store.append_data(stored).unwrap();
    }
    let deleted = store.prune_data(1_000, &[(350, 360), (500, 600)]).unwrap();
    assert_eq!(deleted, 2, "old and old-logs");
    let bodies = |kind: DataKind| -> Vec<Vec<u8>> {
        store
            .data_between(kind, i64::MIN, i64::MAX)
            .unwrap()
            .into_iter()
            .map(|found| found.body)
            .collect()
    };
    assert_eq!(
        bodies(DataKind::Metrics),
        vec![b"kept".to_vec(), b"straddles".to_vec(), b"recent".to_vec()]
    );
    assert_eq!(bodies(DataKind::Logs), vec![b"kept logs".to_vec()]);
    // A pruned key may come again: it is stored anew.
    assert_eq!(store.append_data(&chunks[0]).unwrap(), Appended::Stored);
    assert_eq!(store.prune_data(1_000, &[]).unwrap(), 3);
    assert_eq!(
        bodies(DataKind::Metrics),
        vec![b"straddles".to_vec(), b"recent".to_vec()]
    );
    assert_eq!(store.prune_data(1_000, &[]).unwrap(), 0);
}

fn concurrent_appends_from_many_threads_are_all_stored(store: &dyn Store) {
    let threads = 4;
    let per_thread = 25;
    std::thread::scope(|scope| {
        for thread in 0..threads {
            scope.spawn(move || {
                for index in 0..per_thread {
                    let key = format!("t{thread}-{index}");
                    let body = vec![thread as u8; 1_000 + index];
                    let at = (index as i64) * 10;
                    let stored = chunk(DataKind::Metrics, Some(&key), at, at + 5, &body);
                    assert_eq!(store.append_data(&stored).unwrap(), Appended::Stored);
                    assert_eq!(store.append_data(&stored).unwrap(), Appended::Duplicate);
                }
            });
        }
    });
    let all = store
        .data_between(DataKind::Metrics, i64::MIN, i64::MAX)
        .unwrap();
    assert_eq!(all.len(), threads * per_thread);
    for (thread, index) in (0..threads).flat_map(|thread| (0..per_thread).map(move |i| (thread, i)))
    {
        let key = format!("t{thread}-{index}");
        let found: Vec<_> = all
            .iter()
            .filter(|found| found.key.as_deref() == Some(key.as_str()))
            .collect();
        assert_eq!(found.len(), 1, "{key}");
        assert_eq!(found[0].body.len(), 1_000 + index);
    }
}

// ---------------------------------------------------------------- templates and apps

fn templates_are_upserted_by_app_and_id(store: &dyn Store) {
    let template = |id: &str, text: &str, level: &str| LogTemplate {
        id: id.to_owned(),
        text: text.to_owned(),
        level: level.to_owned(),
    };
    store
        .upsert_templates(
            "shop",
            &[
                template("t2", "timeout calling <*>", "ERROR"),
                template("t1", "started in <*> ms", "INFO"),
            ],
        )
        .unwrap();
    store
        .upsert_templates("search", &[template("t1", "index <*> loaded", "INFO")])
        .unwrap();
    store
        .upsert_templates(
            "shop",
            &[
                template("t2", "timeout calling <*> after <*>", "WARN"),
                template("t3", "panic: <*>", "FATAL"),
            ],
        )
        .unwrap();
    assert_eq!(
        store.templates("shop").unwrap(),
        vec![
            template("t1", "started in <*> ms", "INFO"),
            template("t2", "timeout calling <*> after <*>", "WARN"),
            template("t3", "panic: <*>", "FATAL"),
        ]
    );
    assert_eq!(
        store.templates("search").unwrap(),
        vec![template("t1", "index <*> loaded", "INFO")]
    );
    assert!(store.templates("nobody").unwrap().is_empty());
    store.upsert_templates("shop", &[]).unwrap();
    assert_eq!(store.templates("shop").unwrap().len(), 3);
}

fn apps_are_put_and_replaced_by_name(store: &dyn Store) {
    assert!(store.apps().unwrap().is_empty());
    let shop = serde_json::json!({"pull": {"url": "http://prom:9090"}, "host_label": "instance"});
    let search = serde_json::json!({"log_format": "json", "nested": [1, 2.5, null, "x"]});
    store.put_app("shop", &shop).unwrap();
    store.put_app("search", &search).unwrap();
    let replaced = serde_json::json!({"host_label": "pod"});
    store.put_app("shop", &replaced).unwrap();
    assert_eq!(
        store.apps().unwrap(),
        vec![("search".to_owned(), search), ("shop".to_owned(), replaced)]
    );
}

fn alert(fingerprint: &str, app: &str, starts_at: i64, ends_at: Option<i64>) -> vigil_core::Alert {
    let labels = [
        ("alertname", "HighErrorRate"),
        ("app", app),
        ("instance", "r1:9100"),
        ("severity", "critical"),
    ]
    .into_iter()
    .map(|(label, value)| (label.to_owned(), value.to_owned()))
    .collect();
    vigil_core::Alert {
        fingerprint: fingerprint.to_owned(),
        starts_at,
        ends_at,
        name: "HighErrorRate".to_owned(),
        app: app.to_owned(),
        severity: "critical".to_owned(),
        labels,
        summary: "5xx \"above\" 5 % \u{e9}".to_owned(),
        source: "alertmanager".to_owned(),
        received_at: starts_at + 1,
    }
}

fn alerts_are_keyed_by_fingerprint_and_start_and_replaced_on_resolve(store: &dyn Store) {
    let firing = alert("a1", "shop", 1_000, None);
    // The same alert firing again later is another occurrence.
    let again = alert("a1", "shop", 5_000, None);
    store.put_alerts(&[firing.clone(), again.clone()]).unwrap();
    // A resend changes nothing.
    store.put_alerts(std::slice::from_ref(&firing)).unwrap();
    assert_eq!(
        store.alerts("shop", 0, 10_000).unwrap(),
        vec![firing.clone(), again.clone()]
    );
    let resolved = vigil_core::Alert {
        ends_at: Some(1_200),
        received_at: 1_201,
        ..firing.clone()
    };
    store.put_alerts(std::slice::from_ref(&resolved)).unwrap();
    assert_eq!(
        store.alerts("shop", 0, 10_000).unwrap(),
        vec![resolved, again]
    );
}

fn alerts_are_found_by_app_and_the_time_they_fire(store: &dyn Store) {
    let ended = alert("a1", "shop", 1_000, Some(1_100));
    let firing = alert("a2", "shop", 1_050, None);
    let later = alert("a3", "shop", 2_000, Some(2_100));
    let other_app = alert("a4", "search", 1_000, None);
    store
        .put_alerts(&[
            later.clone(),
            firing.clone(),
            ended.clone(),
            other_app.clone(),
        ])
        .unwrap();
    let fingerprints = |from: i64, to: i64| -> Vec<String> {
        store
            .alerts("shop", from, to)
            .unwrap()
            .into_iter()
            .map(|found| found.fingerprint)
            .collect()
    };
    assert_eq!(fingerprints(0, 10_000), ["a1", "a2", "a3"]);
    // Ended at 1 100: fired in [1 100, 1 500] still (ends are inclusive), not in [1 101, 1 500].
    assert_eq!(fingerprints(1_100, 1_500), ["a1", "a2"]);
    assert_eq!(fingerprints(1_101, 1_500), ["a2"]);
    // Not yet started.
    assert_eq!(fingerprints(0, 999), Vec::<String>::new());
    assert_eq!(fingerprints(2_100, 9_000), ["a2", "a3"]);
    assert_eq!(store.alerts("search", 0, 1_000).unwrap(), vec![other_app]);
    assert!(store.alerts("nobody", 0, 10_000).unwrap().is_empty());
    // An empty list stores nothing and is no error.
    store.put_alerts(&[]).unwrap();
}

fn pruning_alerts_spares_recent_and_firing_ones(store: &dyn Store) {
    let old_ended = alert("a1", "shop", 1_000, Some(1_100));
    let recent_ended = alert("a2", "shop", 1_000, Some(5_000));
    // Received at 1 001 and never resolved.
    let stale_firing = alert("a3", "shop", 1_000, None);
    let firing = vigil_core::Alert {
        received_at: 4_500,
        ..alert("a4", "shop", 1_000, None)
    };
    store
        .put_alerts(&[old_ended, recent_ended, stale_firing, firing])
        .unwrap();
    assert_eq!(store.prune_alerts(4_000, 3_000).unwrap(), 1);
    assert_eq!(store.prune_alerts(4_002, 3_000).unwrap(), 1);
    let kept: Vec<String> = store
        .alerts("shop", 0, 10_000)
        .unwrap()
        .into_iter()
        .map(|found| found.fingerprint)
        .collect();
    assert_eq!(kept, ["a2", "a4"]);
    assert_eq!(store.prune_alerts(4_002, 3_000).unwrap(), 0);
}

// ---------------------------------------------------------------- reopening and migrations

fn a_reopened_store_still_has_everything(backend: &dyn Backend) {
    let store = backend.open();
    let mut deploy = create_r1_and_its_first_batch(&*store);
    deploy.notifications = vec![notification("r1", NotificationEvent::Resumed, "out")];
    store.apply(&deploy).unwrap();
    store
        .record_verdict(&verdict_record("r1", 1_000_120, Verdict::Fault), &[])
        .unwrap();
    store
        .add_feedback(&Feedback {
            release_id: "r1".to_owned(),
            kind: FeedbackKind::ConfirmFault,
            note: "yes".to_owned(),
            actor: "bob".to_owned(),
            at: 1_000_200,
            signal: None,
            onset: None,
        })
        .unwrap();
    let queued_id = store.notifications("r1").unwrap()[0].id;
    store
        .notification_failed(queued_id, "timeout", Some(1_000_300))
        .unwrap();
    let token = store
        .create_token("ci", Role::Operator, "feed", 1_000)
        .unwrap();
    let session = page_session("cafe", token.id, 1_000, 9_000);
    store.create_session(&session).unwrap();
    store
        .append_data(&chunk(DataKind::Metrics, Some("k"), 1, 2, &[1, 2, 3]))
        .unwrap();
    store
        .upsert_templates(
            "shop",
            &[LogTemplate {
                id: "t1".to_owned(),
                text: "x".to_owned(),
                level: "ERROR".to_owned(),
            }],
        )
        .unwrap();
    store.put_app("shop", &serde_json::json!({"a": 1})).unwrap();
    let before = snapshot(&*store, "r1");
    let data_before = store
        .data_between(DataKind::Metrics, i64::MIN, i64::MAX)
        .unwrap();
    drop(store);

    let reopened = backend.open();
    assert_eq!(snapshot(&*reopened, "r1"), before);
    assert_eq!(
        reopened.session("cafe").unwrap(),
        Some((token.clone(), session))
    );
    assert_eq!(reopened.tokens().unwrap(), vec![token]);
    assert_eq!(
        reopened
            .data_between(DataKind::Metrics, i64::MIN, i64::MAX)
            .unwrap(),
        data_before
    );
    assert_eq!(
        reopened
            .append_data(&chunk(DataKind::Metrics, Some("k"), 1, 2, &[9]))
            .unwrap(),
        Appended::Duplicate,
        "idempotency keys survive a restart"
    );
    assert_eq!(reopened.templates("shop").unwrap().len(), 1);
    assert_eq!(reopened.apps().unwrap().len(), 1);
    let (_, transition) = reopened
        .apply(&change(
            "r1",
            ReleaseState::Observing,
            ReleaseState::Paused,
            1_000_400,
        ))
        .unwrap();
    assert_eq!(transition.seq, 3);
}

fn opening_again_migrates_nothing_and_keeps_data(backend: &dyn Backend) {
    let first = backend.open();
    first.create_release(&release("r1", "shop", 1)).unwrap();
    // Two stores open on the same database at once, as two replicas or a restart would.
    let second = backend.open();
    assert!(second.release("r1").unwrap().is_some());
    second.create_release(&release("r2", "shop", 2)).unwrap();
    assert_eq!(first.releases(&all_releases()).unwrap().len(), 2);
    drop(first);
    drop(second);
    let third = backend.open();
    assert_eq!(third.releases(&all_releases()).unwrap().len(), 2);
}

fn a_newer_schema_is_refused_with_a_clear_error(backend: &dyn Backend) {
    drop(backend.open());
    backend.set_schema_version(9_999);
    let error = match backend.open_result() {
        Ok(store) => panic!("a newer schema was accepted: {store:?}"),
        Err(error) => error,
    };
    assert!(matches!(error, StoreError::Migration(_)), "{error:?}");
    let message = error.to_string();
    assert!(message.contains("schema version 9999"), "{message}");
    assert!(message.contains("newer vigil"), "{message}");
}

fn committed_changes_survive_a_killed_process(backend: &dyn Backend) {
    drop(backend.open());
    let test_binary = std::env::current_exe().unwrap();
    let status = std::process::Command::new(test_binary)
        .args([
            "--exact",
            "killed_child_writes_then_dies",
            "--test-threads",
            "1",
            "--nocapture",
        ])
        .env(KILLED_CHILD_URL_ENV, backend.url())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .unwrap();
    assert_eq!(
        status.signal(),
        Some(9),
        "the child dies by SIGKILL: {status:?}"
    );
    let reopened = backend.open();
    let survived = reopened
        .release("r1")
        .unwrap()
        .expect("the release survives");
    assert_eq!(survived.state, ReleaseState::Observing);
    assert_eq!(reopened.transitions("r1").unwrap().len(), 2);
    assert_eq!(reopened.notifications("r1").unwrap().len(), 1);
    assert_eq!(
        reopened
            .data_between(DataKind::Metrics, i64::MIN, i64::MAX)
            .unwrap()
            .len(),
        1
    );
}

/// The child of `committed_changes_survive_a_killed_process`: writes, then has itself killed
/// with SIGKILL while the store is still open. Does nothing in an ordinary test run.
#[test]
fn killed_child_writes_then_dies() {
    let Ok(url) = std::env::var(KILLED_CHILD_URL_ENV) else {
        return;
    };
    let store = vigil_store::open(&url).unwrap();
    let mut deploy = create_r1_and_its_first_batch(&*store);
    deploy.notifications = vec![notification("r1", NotificationEvent::Resumed, "out")];
    store.apply(&deploy).unwrap();
    store
        .append_data(&chunk(DataKind::Metrics, Some("k"), 1, 2, &[1, 2, 3]))
        .unwrap();
    let pid = std::process::id().to_string();
    let _ = std::process::Command::new("kill")
        .args(["-KILL", &pid])
        .status();
    std::thread::sleep(std::time::Duration::from_secs(30));
    panic!("kill -KILL did not end the process");
}

// ---------------------------------------------------------------- outbox claims

fn ids_of(items: &[vigil_core::release::OutboxItem]) -> Vec<i64> {
    items.iter().map(|item| item.id).collect()
}

fn claimed_notifications_are_claimed_by_one_replica_until_the_claim_ends(store: &dyn Store) {
    let ids = queue_at(store, "r1", &[2_000, 2_010, 2_020]);
    assert!(store
        .claim_notifications("a", 1_999, 2_100, 10)
        .unwrap()
        .is_empty());
    assert!(store
        .claim_notifications("a", 2_015, 2_100, 0)
        .unwrap()
        .is_empty());
    let first_claim = store.claim_notifications("a", 2_015, 2_100, 10).unwrap();
    assert_eq!(
        ids_of(&first_claim),
        vec![ids[0], ids[1]],
        "due ones, oldest first"
    );
    assert_eq!(first_claim[0].notification.title, "at 2000");
    assert_eq!(first_claim[0].state, DeliveryState::Pending);
    // Another replica gets only what is due and unclaimed.
    let second_claim = store.claim_notifications("b", 2_050, 2_150, 10).unwrap();
    assert_eq!(ids_of(&second_claim), vec![ids[2]]);
    assert!(store
        .claim_notifications("a", 2_099, 2_200, 10)
        .unwrap()
        .is_empty());
    // A claim ends at its time: the items of a replica that died are claimed again.
    let taken_over = store.claim_notifications("c", 2_100, 2_300, 1).unwrap();
    assert_eq!(ids_of(&taken_over), vec![ids[0]], "at most the limit");
    let rest = store.claim_notifications("c", 2_150, 2_300, 10).unwrap();
    assert_eq!(ids_of(&rest), vec![ids[1], ids[2]]);
    // Claims leave the items pending and due for anyone reading the outbox.
    assert_eq!(ids_of(&store.due_notifications(2_150, 10).unwrap()), ids);
}

fn sent_or_failed_notifications_lose_their_claim(store: &dyn Store) {
    let ids = queue_at(store, "r1", &[2_000, 2_000, 2_000]);
    let claimed = store.claim_notifications("a", 2_000, 2_500, 10).unwrap();
    assert_eq!(ids_of(&claimed), ids);
    store.notification_sent(ids[0], 2_001).unwrap();
    store
        .notification_failed(ids[1], "http 503", Some(2_060))
        .unwrap();
    store.notification_failed(ids[2], "http 410", None).unwrap();
    // The retried item is claimable at its retry time, long before the claim would have ended;
    // the sent and the dead ones never are.
    assert!(store
        .claim_notifications("b", 2_059, 9_000, 10)
        .unwrap()
        .is_empty());
    let retried = store.claim_notifications("b", 2_060, 9_000, 10).unwrap();
    assert_eq!(ids_of(&retried), vec![ids[1]]);
    assert_eq!(retried[0].attempts, 1);
    assert_eq!(retried[0].last_error, "http 503");
    assert!(store
        .claim_notifications("c", 8_999, 9_500, 10)
        .unwrap()
        .is_empty());
    let after_the_claim = store.claim_notifications("c", 9_000, 9_500, 10).unwrap();
    assert_eq!(ids_of(&after_the_claim), vec![ids[1]]);
}

/// Three replicas claim 100 due items at once, a few at a time, and mark each sent: every item
/// is claimed exactly once.
fn claims_racing_from_many_threads_take_each_item_once(store: &dyn Store) {
    let times: Vec<i64> = (0..100).map(|index| 2_000 + index).collect();
    let ids = queue_at(store, "r1", &times);
    assert_eq!(ids.len(), 100);
    let barrier = Barrier::new(3);
    let claims: Vec<(String, Vec<i64>)> = std::thread::scope(|scope| {
        let handles: Vec<_> = ["a", "b", "c"]
            .into_iter()
            .map(|claimer| {
                let barrier = &barrier;
                scope.spawn(move || {
                    barrier.wait();
                    let mut claimed = Vec::new();
                    loop {
                        let batch = store.claim_notifications(claimer, 5_000, 5_600, 3).unwrap();
                        if batch.is_empty() {
                            break;
                        }
                        for item in &batch {
                            claimed.push(item.id);
                            store.notification_sent(item.id, 5_000).unwrap();
                        }
                    }
                    (claimer.to_owned(), claimed)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|handle| handle.join().unwrap())
            .collect()
    });
    let mut every_claim: Vec<i64> = claims
        .iter()
        .flat_map(|(_, claimed)| claimed.iter().copied())
        .collect();
    every_claim.sort_unstable();
    assert_eq!(every_claim, ids, "each item claimed exactly once");
    let items = store.notifications("r1").unwrap();
    assert!(items.iter().all(|item| item.state == DeliveryState::Sent));
}

/// PostgreSQL only: a store whose connection the server ended connects again on a later call.
#[test]
fn postgres_store_connects_again_after_the_server_ends_its_connection() {
    let Some(backend) = PostgresBackend::from_env() else {
        return;
    };
    let store = backend.open();
    store.create_release(&release("r1", "shop", 1)).unwrap();
    let mut admin = ::postgres::Client::connect(&backend.url(), ::postgres::NoTls).unwrap();
    let ended = admin
        .query(
            // Waits (up to 10 s) for the server process to be gone.
            "SELECT pg_terminate_backend(pid, 10000) FROM pg_stat_activity \
             WHERE datname = current_database() AND application_name = 'vigil'",
            &[],
        )
        .unwrap();
    assert_eq!(ended.len(), 1, "the one connection a single caller needs");
    assert!(ended[0].get::<_, bool>(0), "the connection ended in time");
    // The call that meets the broken connection may fail; the ones after it must not.
    let attempts: Vec<bool> = (0..3)
        .map(|_| store.release("r1").is_ok_and(|found| found.is_some()))
        .collect();
    assert!(attempts[1] && attempts[2], "{attempts:?}");
}

#[test]
fn postgres_store_serves_other_calls_while_one_waits_on_a_lock() {
    let Some(backend) = PostgresBackend::from_env() else {
        return;
    };
    let store = backend.open();
    store.create_release(&release("r1", "shop", 1)).unwrap();
    // Another client locks the releases table: a read of a release waits on it, holding the
    // connection it took.
    let mut locker = ::postgres::Client::connect(&backend.url(), ::postgres::NoTls).unwrap();
    let mut lock = locker.transaction().unwrap();
    lock.batch_execute("LOCK TABLE releases IN ACCESS EXCLUSIVE MODE")
        .unwrap();
    let waiting_store = Arc::clone(&store);
    let waiting = std::thread::spawn(move || waiting_store.release("r1").unwrap());
    let mut watcher = ::postgres::Client::connect(&backend.url(), ::postgres::NoTls).unwrap();
    let mut waits_on_lock = || {
        watcher
            .query_one(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() \
                 AND application_name = 'vigil' AND wait_event_type = 'Lock'",
                &[],
            )
            .unwrap()
            .get::<_, i64>(0)
            == 1
    };
    let mut polls = 0;
    while !waits_on_lock() {
        polls += 1;
        assert!(polls < 500, "the read never waited on the lock");
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    // Meanwhile other calls go on, on other connections.
    let (done, finished) = std::sync::mpsc::channel();
    let other_store = Arc::clone(&store);
    std::thread::spawn(move || {
        let stored = other_store.append_data(&chunk(DataKind::Metrics, Some("k"), 1, 2, b"x"));
        let _ = done.send(stored.map_err(|error| error.to_string()));
    });
    let appended = finished.recv_timeout(std::time::Duration::from_secs(10));
    lock.commit().unwrap();
    assert_eq!(
        appended.expect("an append waited for a read held up by a lock elsewhere"),
        Ok(Appended::Stored)
    );
    assert!(waiting.join().unwrap().is_some());
}

// ---------------------------------------------------------------- models of the learned stage

fn new_model(created_at: i64, intercept: f64, note: &str) -> NewModel {
    NewModel {
        created_at,
        created_by: "trainer".to_owned(),
        model: LearnedModel {
            format: MODEL_FORMAT.to_owned(),
            features: vec!["a".to_owned(), "b".to_owned()],
            mean: vec![0.5, 1.0],
            scale: vec![1.0, 2.0],
            weights: vec![0.25, -1.5],
            intercept,
            threshold: 0.4,
            target_precision: 0.8,
        },
        training: TrainingSet {
            sources: vec!["corpus/public".to_owned(), "store".to_owned()],
            releases: 240,
            examples: 900,
            positives: 130,
        },
        scores: vec![model_scores("train", 0.9)],
        note: note.to_owned(),
    }
}

fn model_scores(on: &str, precision: f64) -> ModelScores {
    ModelScores {
        on: on.to_owned(),
        releases: 60,
        precision,
        recall: 1.0,
        f1: 0.95,
        anomaly_recommended: Some(0.6),
        healthy_recommended: Some(0.08),
        recommendation_precision: Some(0.75),
        delay_min_median: None,
    }
}

/// Each model's version and state, by version.
fn model_states(store: &dyn Store) -> Vec<(i64, ModelState)> {
    let mut states: Vec<(i64, ModelState)> = store
        .models()
        .unwrap()
        .into_iter()
        .map(|record| (record.version, record.state))
        .collect();
    states.sort_by_key(|(version, _)| *version);
    states
}

fn models_are_added_as_candidates_and_listed_newest_first(store: &dyn Store) {
    assert!(store.models().unwrap().is_empty());
    assert_eq!(store.promoted_model().unwrap(), None);
    let first = new_model(1_000, 0.5, "first");
    let second = new_model(2_000, -0.5, "second");
    assert_eq!(store.add_model(&first).unwrap(), 1);
    assert_eq!(store.add_model(&second).unwrap(), 2);
    let listed = store.models().unwrap();
    let versions: Vec<i64> = listed.iter().map(|record| record.version).collect();
    assert_eq!(versions, [2, 1]);
    let stored = store.model(1).unwrap().unwrap();
    assert_eq!(stored.state, ModelState::Candidate);
    assert_eq!(stored.model, first.model);
    assert_eq!(stored.training, first.training);
    assert_eq!(stored.scores, first.scores);
    assert_eq!(stored.note, "first");
    assert_eq!(stored.created_at, 1_000);
    assert_eq!(stored.created_by, "trainer");
    assert_eq!(stored.promoted_at, None);
    assert_eq!(store.model(3).unwrap(), None);
    assert_eq!(store.promoted_model().unwrap(), None);
    assert!(store.model_promotions().unwrap().is_empty());
}

fn a_promotion_retires_the_promoted_model_and_is_audited(store: &dyn Store) {
    store.add_model(&new_model(1_000, 0.5, "")).unwrap();
    store.add_model(&new_model(2_000, 0.1, "")).unwrap();
    store.add_model(&new_model(3_000, 0.2, "")).unwrap();
    let promoted = store.promote_model(1, "alice", 5_000).unwrap();
    assert_eq!(promoted.state, ModelState::Promoted);
    assert_eq!(promoted.promoted_at, Some(5_000));
    assert_eq!(store.promoted_model().unwrap().unwrap().version, 1);
    store.promote_model(2, "bob", 6_000).unwrap();
    assert_eq!(
        model_states(store),
        [
            (1, ModelState::Retired),
            (2, ModelState::Promoted),
            (3, ModelState::Candidate)
        ]
    );
    let current = store.promoted_model().unwrap().unwrap();
    assert_eq!((current.version, current.promoted_at), (2, Some(6_000)));
    // The retired one keeps when it was promoted.
    assert_eq!(store.model(1).unwrap().unwrap().promoted_at, Some(5_000));
    let audit: Vec<(i64, i64, PromotionAction, String, i64)> = store
        .model_promotions()
        .unwrap()
        .into_iter()
        .map(|entry| (entry.seq, entry.version, entry.action, entry.by, entry.at))
        .collect();
    assert_eq!(
        audit,
        [
            (1, 1, PromotionAction::Promoted, "alice".to_owned(), 5_000),
            (2, 2, PromotionAction::Promoted, "bob".to_owned(), 6_000),
        ]
    );
}

fn promoting_an_unknown_or_promoted_model_changes_nothing(store: &dyn Store) {
    store.add_model(&new_model(1_000, 0.5, "")).unwrap();
    assert!(matches!(
        store.promote_model(7, "alice", 5_000),
        Err(StoreError::UnknownModel { version: 7 })
    ));
    assert_eq!(model_states(store), [(1, ModelState::Candidate)]);
    store.promote_model(1, "alice", 5_000).unwrap();
    let again = store.promote_model(1, "bob", 6_000).unwrap_err();
    assert!(
        matches!(again, StoreError::ModelPromoted { version: 1 }),
        "{again:?}"
    );
    assert_eq!(again.to_string(), "model version 1 is promoted already");
    assert_eq!(
        store.promoted_model().unwrap().unwrap().promoted_at,
        Some(5_000)
    );
    assert_eq!(store.model_promotions().unwrap().len(), 1);
    assert!(matches!(
        store.set_model_scores(9, &[model_scores("x", 0.5)]),
        Err(StoreError::UnknownModel { version: 9 })
    ));
}

fn rollbacks_walk_the_promotions_back_to_the_funnel_alone(store: &dyn Store) {
    for created_at in [1_000, 2_000, 3_000] {
        store.add_model(&new_model(created_at, 0.0, "")).unwrap();
    }
    let nothing = store.rollback_model("alice", 4_000).unwrap_err();
    assert!(
        matches!(nothing, StoreError::NothingToRollBack),
        "{nothing:?}"
    );
    assert_eq!(
        nothing.to_string(),
        "no model is promoted: there is nothing to roll back"
    );
    // 1, then 2, then 1 again, then 3: each rollback undoes the last promotion in force.
    store.promote_model(1, "alice", 5_000).unwrap();
    store.promote_model(2, "alice", 6_000).unwrap();
    store.promote_model(1, "alice", 7_000).unwrap();
    store.promote_model(3, "alice", 8_000).unwrap();
    let mut walked = Vec::new();
    for step in 0..4 {
        let rollback = store.rollback_model("bob", 9_000 + step).unwrap();
        assert_eq!(rollback.retired.state, ModelState::Retired);
        let promoted = rollback.promoted.as_ref().map(|record| record.version);
        assert_eq!(
            store.promoted_model().unwrap().map(|record| record.version),
            promoted
        );
        if let Some(record) = &rollback.promoted {
            assert_eq!(record.state, ModelState::Promoted);
            assert_eq!(record.promoted_at, Some(9_000 + step));
        }
        walked.push((rollback.retired.version, promoted));
    }
    assert_eq!(
        walked,
        [(3, Some(1)), (1, Some(2)), (2, Some(1)), (1, None)]
    );
    assert!(model_states(store)
        .iter()
        .all(|(_, state)| *state == ModelState::Retired));
    assert!(matches!(
        store.rollback_model("bob", 10_000),
        Err(StoreError::NothingToRollBack)
    ));
    let audit = store.model_promotions().unwrap();
    let seqs: Vec<i64> = audit.iter().map(|entry| entry.seq).collect();
    assert_eq!(seqs, (1..=11).collect::<Vec<i64>>());
    let last = audit.last().unwrap();
    assert_eq!(
        (last.version, last.action, last.by.as_str(), last.at),
        (1, PromotionAction::RolledBack, "bob", 9_003)
    );
    // A promotion after the stack emptied replaced nothing: rolling it back leaves none.
    store.promote_model(2, "carol", 11_000).unwrap();
    let rollback = store.rollback_model("carol", 12_000).unwrap();
    assert_eq!(rollback.retired.version, 2);
    assert_eq!(rollback.promoted, None);
}

fn racing_promotions_leave_one_model_promoted(store: &dyn Store) {
    let racers = 6;
    for index in 0..racers {
        store.add_model(&new_model(1_000 + index, 0.0, "")).unwrap();
    }
    let barrier = Barrier::new(racers as usize);
    std::thread::scope(|scope| {
        for version in 1..=racers {
            let barrier = &barrier;
            scope.spawn(move || {
                barrier.wait();
                store
                    .promote_model(version, &format!("racer-{version}"), 5_000)
                    .unwrap();
            });
        }
    });
    let promoted: Vec<i64> = model_states(store)
        .into_iter()
        .filter(|(_, state)| *state == ModelState::Promoted)
        .map(|(version, _)| version)
        .collect();
    assert_eq!(promoted.len(), 1, "{promoted:?}");
    let audit = store.model_promotions().unwrap();
    let seqs: Vec<i64> = audit.iter().map(|entry| entry.seq).collect();
    assert_eq!(seqs, (1..=racers).collect::<Vec<i64>>());
    // The last promotion is the one in force.
    assert_eq!(audit.last().unwrap().version, promoted[0]);
}

fn scores_are_appended_to_a_model(store: &dyn Store) {
    store.add_model(&new_model(1_000, 0.5, "")).unwrap();
    let added = [
        model_scores("held-out: corpus/a", 0.97),
        model_scores("funnel on held-out: corpus/a", 0.96),
    ];
    let record = store.set_model_scores(1, &added).unwrap();
    assert_eq!(record.scores.len(), 3);
    assert_eq!(record.scores[1..], added);
    assert_eq!(store.model(1).unwrap().unwrap().scores, record.scores);
    assert_eq!(
        store.model(1).unwrap().unwrap().state,
        ModelState::Candidate
    );
}

// ---------------------------------------------------------------- Vigil's executor

fn hello(host: &str, version: Option<&str>) -> AgentHello {
    AgentHello {
        host: host.to_owned(),
        app: "shop".to_owned(),
        labels: [("zone".to_owned(), "b".to_owned())].into_iter().collect(),
        version: version.map(str::to_owned),
        peer_addr: Some("127.0.0.1:7000".to_owned()),
        agent_version: "0.1.0".to_owned(),
    }
}

fn execution() -> Execution {
    Execution {
        spec: ExecutorSpec {
            artifact: "ab".repeat(32),
            observe_seconds: vec![60, 300],
        },
        plan: vec![
            PlanStep {
                size: "1".to_owned(),
                observe_seconds: 60,
            },
            PlanStep {
                size: "100%".to_owned(),
                observe_seconds: 300,
            },
        ],
        previous_versions: [("h1".to_owned(), Some("1.2.2".to_owned()))]
            .into_iter()
            .collect(),
    }
}

fn new_task(release_id: &str, host: &str, kind: TaskKind, at: i64) -> NewTask {
    NewTask {
        release: release_id.to_owned(),
        host: host.to_owned(),
        batch: 0,
        kind,
        version: "1.2.3".to_owned(),
        artifact: Some("ab".repeat(32)),
        created_at: at,
    }
}

fn report(task: i64, state: TaskState, message: &str) -> TaskReport {
    TaskReport {
        task,
        state,
        at: 5,
        message: message.to_owned(),
    }
}

fn agents_register_again_keeping_their_first_registration(store: &dyn Store) {
    let first = store.register_agent(&hello("h1", None), 1_000).unwrap();
    assert_eq!(first.record.registered_at, 1_000);
    assert_eq!(first.record.last_seen_at, 1_000);
    assert!(first.artifacts.is_empty());
    let progress = ArtifactProgress {
        artifact: "ab".repeat(32),
        pieces_held: 3,
        pieces: 4,
        verified: false,
    };
    let poll = AgentPoll {
        reports: Vec::new(),
        artifacts: vec![progress.clone()],
    };
    store.agent_poll("h1", &poll, 1_010).unwrap().unwrap();
    let again = store
        .register_agent(&hello("h1", Some("1.2.2")), 1_020)
        .unwrap();
    assert_eq!(again.record.registered_at, 1_000);
    assert_eq!(again.record.last_seen_at, 1_020);
    assert_eq!(again.record.version.as_deref(), Some("1.2.2"));
    assert_eq!(again.artifacts, vec![progress]);
    store.register_agent(&hello("h0", None), 1_030).unwrap();
    let hosts: Vec<String> = store
        .agents()
        .unwrap()
        .into_iter()
        .map(|agent| agent.record.host)
        .collect();
    assert_eq!(hosts, ["h0", "h1"]);
    assert_eq!(store.agent("h1").unwrap(), Some(again));
    assert_eq!(store.agent("h9").unwrap(), None);
}

fn an_execution_is_stored_with_its_release(store: &dyn Store) {
    let shipped = release("r1", "shop", 1_000);
    store.create_execution(&shipped, &execution()).unwrap();
    assert_eq!(store.release("r1").unwrap(), Some(shipped.clone()));
    assert_eq!(store.execution("r1").unwrap(), Some(execution()));
    let taken = store.create_execution(&shipped, &execution()).unwrap_err();
    assert!(matches!(taken, StoreError::ReleaseExists { .. }), "{taken}");
    store.create_release(&release("r2", "shop", 1_000)).unwrap();
    assert_eq!(store.execution("r2").unwrap(), None);
}

fn a_task_created_twice_is_the_first_one(store: &dyn Store) {
    store
        .create_execution(&release("r1", "shop", 1_000), &execution())
        .unwrap();
    let first = store
        .create_task(&new_task("r1", "h1", TaskKind::Deploy, 1_010))
        .unwrap();
    assert_eq!(first.state, TaskState::Pending);
    assert_eq!(first.created_at, 1_010);
    let again = store
        .create_task(&new_task("r1", "h1", TaskKind::Deploy, 1_020))
        .unwrap();
    assert_eq!(again, first);
    let rollback = store
        .create_task(&new_task("r1", "h1", TaskKind::Rollback, 1_030))
        .unwrap();
    assert_ne!(rollback.id, first.id);
    let other_host = store
        .create_task(&new_task("r1", "h2", TaskKind::Deploy, 1_040))
        .unwrap();
    let ids: Vec<i64> = store
        .release_tasks("r1")
        .unwrap()
        .iter()
        .map(|task| task.id)
        .collect();
    assert_eq!(ids, [first.id, rollback.id, other_host.id]);
    assert!(store
        .create_task(&new_task("missing", "h1", TaskKind::Deploy, 1_050))
        .is_err());
}

fn tasks_created_racing_from_threads_are_one(store: &dyn Store) {
    store
        .create_execution(&release("r1", "shop", 1_000), &execution())
        .unwrap();
    let racers = 8;
    let barrier = Barrier::new(racers);
    let created: Vec<i64> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..racers)
            .map(|racer| {
                let barrier = &barrier;
                scope.spawn(move || {
                    barrier.wait();
                    store
                        .create_task(&new_task(
                            "r1",
                            "h1",
                            TaskKind::Deploy,
                            1_000 + racer as i64,
                        ))
                        .unwrap()
                        .id
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|handle| handle.join().unwrap())
            .collect()
    });
    assert!(created.iter().all(|id| *id == created[0]), "{created:?}");
    assert_eq!(store.release_tasks("r1").unwrap().len(), 1);
}

fn polls_move_tasks_once_and_send_what_the_release_allows(store: &dyn Store) {
    let shipped = release("r1", "shop", 1_000);
    store.create_execution(&shipped, &execution()).unwrap();
    store.register_agent(&hello("h1", None), 1_000).unwrap();
    let deploy = store
        .create_task(&new_task("r1", "h1", TaskKind::Deploy, 1_001))
        .unwrap();
    // Pending: nothing is sent before the release deploys.
    let idle = store
        .agent_poll("h1", &AgentPoll::default(), 1_002)
        .unwrap()
        .unwrap();
    assert!(idle.tasks.is_empty());
    let mut deploying = change("r1", ReleaseState::Pending, ReleaseState::Deploying, 1_003);
    deploying.action = Action::DeployBatch;
    store.apply(&deploying).unwrap();
    let sent = store
        .agent_poll("h1", &AgentPoll::default(), 1_004)
        .unwrap()
        .unwrap();
    assert_eq!(sent.tasks.len(), 1);
    assert_eq!(sent.tasks[0].state, TaskState::Sent);
    assert_eq!(store.release_tasks("r1").unwrap()[0].state, TaskState::Sent);
    let started = AgentPoll {
        reports: vec![report(deploy.id, TaskState::Started, "")],
        artifacts: Vec::new(),
    };
    let answer = store.agent_poll("h1", &started, 1_005).unwrap().unwrap();
    assert_eq!(answer.acknowledged, [deploy.id]);
    assert_eq!(answer.tasks[0].state, TaskState::Started);
    assert_eq!(answer.tasks[0].started_at, Some(1_005));
    let failed = AgentPoll {
        reports: vec![
            report(deploy.id, TaskState::Failed, "exit status 3"),
            report(9_999, TaskState::Succeeded, ""),
        ],
        artifacts: Vec::new(),
    };
    let answer = store.agent_poll("h1", &failed, 1_006).unwrap().unwrap();
    assert_eq!(answer.acknowledged, [deploy.id, 9_999]);
    assert!(answer.tasks.is_empty());
    // A repeated or late report changes nothing.
    let late = AgentPoll {
        reports: vec![report(deploy.id, TaskState::Succeeded, "ok")],
        artifacts: Vec::new(),
    };
    store.agent_poll("h1", &late, 1_007).unwrap().unwrap();
    let stored = &store.release_tasks("r1").unwrap()[0];
    assert_eq!(stored.state, TaskState::Failed);
    assert_eq!(stored.message, "exit status 3");
    assert_eq!(stored.started_at, Some(1_005));
    assert_eq!(stored.ended_at, Some(1_006));
    // Another host's report is acknowledged and ignored.
    store.register_agent(&hello("h2", None), 1_000).unwrap();
    let rollback = store
        .create_task(&new_task("r1", "h1", TaskKind::Rollback, 1_008))
        .unwrap();
    let foreign = AgentPoll {
        reports: vec![report(rollback.id, TaskState::Started, "")],
        artifacts: Vec::new(),
    };
    let answer = store.agent_poll("h2", &foreign, 1_009).unwrap().unwrap();
    assert_eq!(answer.acknowledged, [rollback.id]);
    assert_eq!(
        store.release_tasks("r1").unwrap()[1].state,
        TaskState::Pending
    );
    assert_eq!(
        store.agent("h2").unwrap().unwrap().record.last_seen_at,
        1_009
    );
}

fn a_poll_of_an_unknown_host_changes_nothing(store: &dyn Store) {
    let poll = AgentPoll {
        reports: vec![report(1, TaskState::Started, "")],
        artifacts: Vec::new(),
    };
    assert_eq!(store.agent_poll("h9", &poll, 1_000).unwrap(), None);
    assert_eq!(store.agent("h9").unwrap(), None);
}
