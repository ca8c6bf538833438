//! What every handler shares: the store, the guard, the intake, the clock and the limits, with
//! the token checks and the blocking-thread helper they all use. Handlers take their state from
//! here, never from the router.

use std::sync::Arc;

use axum::http::HeaderMap;
use vigil_core::release::{ApiToken, Role};
use vigil_core::Clock;
use vigil_guard::intake::Intake;
use vigil_guard::Guard;
use vigil_store::Store;

use crate::auth::{self, hash_token};
use crate::budget;
use crate::decoders::{IngestOptions, IngestState};
use crate::error::ApiError;

/// Limits on what a request may carry and on the heavy work done at once.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Largest request body, in bytes (compressed, for remote write and gzip'd imports).
    pub max_body_bytes: usize,
    /// Most samples or log lines in one ingestion request.
    pub max_items: usize,
    /// Largest imported bundle once decompressed, in bytes.
    pub max_import_bytes: usize,
    /// Most values (samples and log counts) in one imported bundle.
    pub max_import_values: usize,
    /// Imports decompressed, parsed and replayed at once.
    pub imports_at_once: usize,
    /// Bytes being decoded at once across every ingestion request (a remote-write body counts
    /// twice its decompressed size, a JSON body four times its size: what parsing them takes).
    pub decode_budget_bytes: usize,
    /// How long a request waits for its share of the budget before a 503 with `Retry-After`.
    pub busy_wait_ms: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_body_bytes: 16 * 1024 * 1024,
            max_items: 1_000_000,
            max_import_bytes: 32 * 1024 * 1024,
            max_import_values: 2_000_000,
            imports_at_once: 1,
            decode_budget_bytes: 256 * 1024 * 1024,
            busy_wait_ms: 2000,
        }
    }
}

/// What every handler shares.
#[derive(Debug, Clone)]
pub struct AppState {
    pub store: Arc<dyn Store>,
    pub guard: Arc<Guard>,
    pub intake: Arc<Intake>,
    pub clock: Arc<dyn Clock>,
    pub limits: Limits,
    pub tokens: Arc<auth::TokenCache>,
    pub ingest: Arc<IngestState>,
    pub budget: Arc<budget::Budget>,
    /// The app pull queries failing now (the server's puller records them).
    pub pull_failures: Arc<vigil_guard::pull::PullFailures>,
    /// The replays of stored history, the running one and the last few finished.
    pub replays: Arc<crate::replay_runs::Replays>,
    /// An agent silent for longer is offline (the executor's timeout).
    pub agent_timeout_seconds: i64,
    /// The artifacts' origin and tracker; None when the server distributes no artifacts.
    pub artifacts: Option<Arc<crate::distribution::Artifacts>>,
    /// The artifacts each host fetches, read at most once a second for all agents' polls.
    pub fetches: Arc<vigil_executor::agents::FetchIndex>,
}

impl AppState {
    pub fn new(
        store: Arc<dyn Store>,
        guard: Arc<Guard>,
        intake: Arc<Intake>,
        clock: Arc<dyn Clock>,
        limits: Limits,
        ingest_options: IngestOptions,
    ) -> AppState {
        let budget = budget::Budget::new(
            limits.decode_budget_bytes,
            limits.imports_at_once,
            std::time::Duration::from_millis(limits.busy_wait_ms),
        );
        AppState {
            store,
            guard,
            intake,
            clock,
            limits,
            tokens: Arc::new(auth::TokenCache::default()),
            ingest: Arc::new(IngestState::new(ingest_options)),
            budget: Arc::new(budget),
            pull_failures: Arc::default(),
            replays: Arc::default(),
            agent_timeout_seconds: vigil_executor::DEFAULT_AGENT_TIMEOUT_SECONDS,
            artifacts: None,
            fetches: Arc::default(),
        }
    }

    /// The same state, distributing artifacts from `artifacts`.
    pub fn with_artifacts(mut self, artifacts: Arc<crate::distribution::Artifacts>) -> AppState {
        self.artifacts = Some(artifacts);
        self
    }

    /// The token of a request, checked against `needed`.
    pub async fn authorize(&self, headers: &HeaderMap, needed: Role) -> Result<ApiToken, ApiError> {
        self.authorize_secret(auth::bearer(headers)?, needed).await
    }

    /// The token whose secret is `secret`, checked against `needed`.
    pub(crate) async fn authorize_secret(
        &self,
        secret: &str,
        needed: Role,
    ) -> Result<ApiToken, ApiError> {
        let hash = hash_token(secret);
        let now = self.clock.now();
        let token = match self.tokens.get(&hash, now) {
            Some(token) => token,
            None => {
                let lookup_hash = hash.clone();
                let found = self
                    .blocking(move |store| Ok(store.token_by_hash(&lookup_hash)?))
                    .await?;
                let token = found.ok_or_else(|| {
                    ApiError::new(axum::http::StatusCode::UNAUTHORIZED, "unknown api token")
                })?;
                self.tokens.put(token.clone(), now);
                token
            }
        };
        auth::require_not_revoked(&token)?;
        auth::require(&token, needed)?;
        Ok(token)
    }

    /// The token of an ingestion request: the bearer token, or, for senders that cannot set
    /// headers, a `token` query parameter (`/api/v1/ingest/prometheus?token=...`).
    pub async fn authorize_ingest(
        &self,
        headers: &HeaderMap,
        uri: &axum::http::Uri,
    ) -> Result<ApiToken, ApiError> {
        if headers.contains_key(axum::http::header::AUTHORIZATION) {
            return self.authorize(headers, Role::Ingest).await;
        }
        let from_query = uri.query().and_then(|query| {
            query
                .split('&')
                .find_map(|pair| pair.strip_prefix("token="))
        });
        match from_query {
            Some(secret) => self.authorize_secret(secret, Role::Ingest).await,
            None => self.authorize(headers, Role::Ingest).await,
        }
    }

    /// Runs a store call on a blocking thread.
    pub async fn blocking<T, F>(&self, call: F) -> Result<T, ApiError>
    where
        T: Send + 'static,
        F: FnOnce(&dyn Store) -> Result<T, ApiError> + Send + 'static,
    {
        let store = Arc::clone(&self.store);
        tokio::task::spawn_blocking(move || call(store.as_ref()))
            .await
            .map_err(|error| ApiError::internal(format!("store task failed: {error}")))?
    }
}
