//! A store that times every call of the store it wraps, for `vigil_store_seconds`.
//!
//! `vigil serve` wraps its store in a [`TimedStore`]; each call is one
//! [`StoreCalled`] event, labelled by the method's name (a bounded set).

use std::sync::Arc;

use vigil_core::release::{
    ApiToken, Feedback, NewNotification, OutboxItem, Release, Role, Transition, VerdictRecord,
};
use vigil_core::telemetry::event::StoreCalled;
use vigil_core::{LogTemplate, Stopwatch};

use crate::{
    Appended, Change, ChunkHead, DataChunk, DataKind, ImportedRelease, Lease, LeaseFence,
    ModelPromotion, ModelRollback, NewModel, PageSession, ReleaseFilter, ReplicaRecord, Store,
    StoreError, StoredChunk,
};
use crate::{Execution, NewTask, PollAnswer, StoredAgent};
use vigil_core::agent::{AgentHello, AgentPoll, HostTask};
use vigil_core::learned::{ModelRecord, ModelScores};

/// The store it wraps, each call timed.
#[derive(Debug)]
pub struct TimedStore {
    inner: Arc<dyn Store>,
}

impl TimedStore {
    pub fn new(inner: Arc<dyn Store>) -> TimedStore {
        TimedStore { inner }
    }
}

/// Runs `call` and records how long it took as `operation`.
fn timed<Answer>(operation: &'static str, call: impl FnOnce() -> Answer) -> Answer {
    let stopwatch = Stopwatch::start();
    let answer = call();
    StoreCalled {
        operation,
        seconds: stopwatch.seconds(),
    }
    .emit();
    answer
}

impl Store for TimedStore {
    fn create_release(&self, release: &Release) -> Result<(), StoreError> {
        timed("create_release", || self.inner.create_release(release))
    }

    fn import_release(
        &self,
        imported: &ImportedRelease,
    ) -> Result<(Release, Vec<Appended>), StoreError> {
        timed("import_release", || self.inner.import_release(imported))
    }

    fn release(&self, id: &str) -> Result<Option<Release>, StoreError> {
        timed("release", || self.inner.release(id))
    }

    fn releases(&self, filter: &ReleaseFilter) -> Result<Vec<Release>, StoreError> {
        timed("releases", || self.inner.releases(filter))
    }

    fn apply(&self, change: &Change) -> Result<(Release, Transition), StoreError> {
        timed("apply", || self.inner.apply(change))
    }

    fn transitions(&self, release_id: &str) -> Result<Vec<Transition>, StoreError> {
        timed("transitions", || self.inner.transitions(release_id))
    }

    fn record_verdict(
        &self,
        record: &VerdictRecord,
        notifications: &[NewNotification],
    ) -> Result<(), StoreError> {
        timed("record_verdict", || {
            self.inner.record_verdict(record, notifications)
        })
    }

    fn verdicts(&self, release_id: &str) -> Result<Vec<VerdictRecord>, StoreError> {
        timed("verdicts", || self.inner.verdicts(release_id))
    }

    fn add_feedback(&self, feedback: &Feedback) -> Result<(), StoreError> {
        timed("add_feedback", || self.inner.add_feedback(feedback))
    }

    fn feedback(&self, release_id: &str) -> Result<Vec<Feedback>, StoreError> {
        timed("feedback", || self.inner.feedback(release_id))
    }

    // ---- models of the learned stage
    fn promoted_model(&self) -> Result<Option<ModelRecord>, StoreError> {
        timed("promoted_model", || self.inner.promoted_model())
    }

    fn add_model(&self, model: &NewModel) -> Result<i64, StoreError> {
        timed("add_model", || self.inner.add_model(model))
    }

    fn models(&self) -> Result<Vec<ModelRecord>, StoreError> {
        timed("models", || self.inner.models())
    }

    fn model(&self, version: i64) -> Result<Option<ModelRecord>, StoreError> {
        timed("model", || self.inner.model(version))
    }

    fn promote_model(&self, version: i64, actor: &str, at: i64) -> Result<ModelRecord, StoreError> {
        timed("promote_model", || {
            self.inner.promote_model(version, actor, at)
        })
    }

    fn rollback_model(&self, actor: &str, at: i64) -> Result<ModelRollback, StoreError> {
        timed("rollback_model", || self.inner.rollback_model(actor, at))
    }

    fn set_model_scores(
        &self,
        version: i64,
        scores: &[ModelScores],
    ) -> Result<ModelRecord, StoreError> {
        timed("set_model_scores", || {
            self.inner.set_model_scores(version, scores)
        })
    }

    fn model_promotions(&self) -> Result<Vec<ModelPromotion>, StoreError> {
        timed("model_promotions", || self.inner.model_promotions())
    }

    fn app_signatures(&self, app: &str) -> Result<Vec<vigil_core::Signature>, StoreError> {
        timed("app_signatures", || self.inner.app_signatures(app))
    }

    fn all_app_signatures(&self, app: &str) -> Result<Vec<vigil_core::Signature>, StoreError> {
        timed("all_app_signatures", || self.inner.all_app_signatures(app))
    }

    fn signature(&self, id: i64) -> Result<Option<vigil_core::Signature>, StoreError> {
        timed("signature", || self.inner.signature(id))
    }

    fn save_signature(
        &self,
        signature: &vigil_core::Signature,
    ) -> Result<vigil_core::Signature, StoreError> {
        timed("save_signature", || self.inner.save_signature(signature))
    }

    fn due_notifications(&self, now: i64, limit: usize) -> Result<Vec<OutboxItem>, StoreError> {
        timed("due_notifications", || {
            self.inner.due_notifications(now, limit)
        })
    }

    fn notification_sent(&self, id: i64, at: i64) -> Result<(), StoreError> {
        timed("notification_sent", || self.inner.notification_sent(id, at))
    }

    fn notification_failed(
        &self,
        id: i64,
        error: &str,
        retry_at: Option<i64>,
    ) -> Result<(), StoreError> {
        timed("notification_failed", || {
            self.inner.notification_failed(id, error, retry_at)
        })
    }

    fn notifications(&self, release_id: &str) -> Result<Vec<OutboxItem>, StoreError> {
        timed("notifications", || self.inner.notifications(release_id))
    }

    fn create_token(
        &self,
        name: &str,
        role: Role,
        hash: &str,
        at: i64,
    ) -> Result<ApiToken, StoreError> {
        timed("create_token", || {
            self.inner.create_token(name, role, hash, at)
        })
    }

    fn token_by_hash(&self, hash: &str) -> Result<Option<ApiToken>, StoreError> {
        timed("token_by_hash", || self.inner.token_by_hash(hash))
    }

    fn tokens(&self) -> Result<Vec<ApiToken>, StoreError> {
        timed("tokens", || self.inner.tokens())
    }

    fn revoke_token(&self, id: i64, at: i64) -> Result<ApiToken, StoreError> {
        timed("revoke_token", || self.inner.revoke_token(id, at))
    }

    fn create_session(&self, session: &PageSession) -> Result<(), StoreError> {
        timed("create_session", || self.inner.create_session(session))
    }

    fn session(&self, hash: &str) -> Result<Option<(ApiToken, PageSession)>, StoreError> {
        timed("session", || self.inner.session(hash))
    }

    fn end_session(&self, hash: &str) -> Result<bool, StoreError> {
        timed("end_session", || self.inner.end_session(hash))
    }

    fn append_data(&self, chunk: &DataChunk) -> Result<Appended, StoreError> {
        timed("append_data", || self.inner.append_data(chunk))
    }

    fn prune_data(&self, before_ms: i64, keep: &[(i64, i64)]) -> Result<usize, StoreError> {
        timed("prune_data", || self.inner.prune_data(before_ms, keep))
    }

    fn upsert_templates(&self, app: &str, templates: &[LogTemplate]) -> Result<(), StoreError> {
        timed("upsert_templates", || {
            self.inner.upsert_templates(app, templates)
        })
    }

    fn templates(&self, app: &str) -> Result<Vec<LogTemplate>, StoreError> {
        timed("templates", || self.inner.templates(app))
    }

    fn put_app(&self, app: &str, config: &serde_json::Value) -> Result<(), StoreError> {
        timed("put_app", || self.inner.put_app(app, config))
    }

    fn apps(&self) -> Result<Vec<(String, serde_json::Value)>, StoreError> {
        timed("apps", || self.inner.apps())
    }

    fn put_alerts(&self, alerts: &[vigil_core::Alert]) -> Result<(), StoreError> {
        timed("put_alerts", || self.inner.put_alerts(alerts))
    }

    fn alerts(&self, app: &str, from: i64, to: i64) -> Result<Vec<vigil_core::Alert>, StoreError> {
        timed("alerts", || self.inner.alerts(app, from, to))
    }

    fn prune_alerts(&self, before: i64, stale_seconds: i64) -> Result<usize, StoreError> {
        timed("prune_alerts", || {
            self.inner.prune_alerts(before, stale_seconds)
        })
    }

    // ---- Vigil's executor
    fn register_agent(&self, hello: &AgentHello, at: i64) -> Result<StoredAgent, StoreError> {
        timed("register_agent", || self.inner.register_agent(hello, at))
    }

    fn agent(&self, host: &str) -> Result<Option<StoredAgent>, StoreError> {
        timed("agent", || self.inner.agent(host))
    }

    fn agents(&self) -> Result<Vec<StoredAgent>, StoreError> {
        timed("agents", || self.inner.agents())
    }

    fn create_execution(&self, release: &Release, execution: &Execution) -> Result<(), StoreError> {
        timed("create_execution", || {
            self.inner.create_execution(release, execution)
        })
    }

    fn execution(&self, release_id: &str) -> Result<Option<Execution>, StoreError> {
        timed("execution", || self.inner.execution(release_id))
    }

    fn create_task(&self, task: &NewTask) -> Result<HostTask, StoreError> {
        timed("create_task", || self.inner.create_task(task))
    }

    fn release_tasks(&self, release_id: &str) -> Result<Vec<HostTask>, StoreError> {
        timed("release_tasks", || self.inner.release_tasks(release_id))
    }

    fn agent_poll(
        &self,
        host: &str,
        poll: &AgentPoll,
        at: i64,
    ) -> Result<Option<PollAnswer>, StoreError> {
        timed("agent_poll", || self.inner.agent_poll(host, poll, at))
    }

    fn claim_notifications(
        &self,
        claimer: &str,
        now: i64,
        claim_until: i64,
        limit: usize,
    ) -> Result<Vec<OutboxItem>, StoreError> {
        timed("claim_notifications", || {
            self.inner
                .claim_notifications(claimer, now, claim_until, limit)
        })
    }

    fn last_chunk_id(&self) -> Result<i64, StoreError> {
        timed("last_chunk_id", || self.inner.last_chunk_id())
    }

    fn chunk_heads_after(&self, after_id: i64, limit: usize) -> Result<Vec<ChunkHead>, StoreError> {
        timed("chunk_heads_after", || {
            self.inner.chunk_heads_after(after_id, limit)
        })
    }

    fn chunks_with_ids(
        &self,
        ids: &[i64],
        own_origin: &str,
    ) -> Result<Vec<StoredChunk>, StoreError> {
        timed("chunks_with_ids", || {
            self.inner.chunks_with_ids(ids, own_origin)
        })
    }

    fn stored_chunks_between(
        &self,
        kind: DataKind,
        from_ms: i64,
        to_ms: i64,
    ) -> Result<Vec<StoredChunk>, StoreError> {
        timed("stored_chunks_between", || {
            self.inner.stored_chunks_between(kind, from_ms, to_ms)
        })
    }

    fn replica_seen(
        &self,
        id: &str,
        address: &str,
        started_at: i64,
        now: i64,
    ) -> Result<(), StoreError> {
        timed("replica_seen", || {
            self.inner.replica_seen(id, address, started_at, now)
        })
    }

    fn replica_gone(&self, id: &str) -> Result<(), StoreError> {
        timed("replica_gone", || self.inner.replica_gone(id))
    }

    fn replicas(&self) -> Result<Vec<ReplicaRecord>, StoreError> {
        timed("replicas", || self.inner.replicas())
    }

    fn claim_leases(
        &self,
        holder: &str,
        now: i64,
        expires_at: i64,
        wanted: &[String],
        max: usize,
    ) -> Result<Vec<Lease>, StoreError> {
        timed("claim_leases", || {
            self.inner
                .claim_leases(holder, now, expires_at, wanted, max)
        })
    }

    fn renew_leases(
        &self,
        holder: &str,
        now: i64,
        expires_at: i64,
    ) -> Result<Vec<Lease>, StoreError> {
        timed("renew_leases", || {
            self.inner.renew_leases(holder, now, expires_at)
        })
    }

    fn drop_lease(&self, holder: &str, release_id: &str) -> Result<bool, StoreError> {
        timed("drop_lease", || self.inner.drop_lease(holder, release_id))
    }

    fn leases(&self) -> Result<Vec<Lease>, StoreError> {
        timed("leases", || self.inner.leases())
    }

    fn record_verdict_fenced(
        &self,
        record: &VerdictRecord,
        notifications: &[NewNotification],
        lease: &LeaseFence,
    ) -> Result<(), StoreError> {
        timed("record_verdict_fenced", || {
            self.inner
                .record_verdict_fenced(record, notifications, lease)
        })
    }
}
