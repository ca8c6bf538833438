//! Reading releases for the routes and pages: one release, a list, a release with its
//! history, and its window, each on a blocking thread and answered as an API error.

use std::sync::Arc;

use vigil_core::release::{Feedback, Release, Transition, VerdictRecord};
use vigil_core::Bundle;
use vigil_store::ReleaseFilter;

use crate::error::ApiError;
use crate::state::AppState;

/// The filter of a release list, as the guard layer reads a request's app, states and limit
/// ([`vigil_guard::requests::release_filter`]).
pub(crate) fn release_filter(
    app: Option<String>,
    states_text: Option<&str>,
    limit: Option<usize>,
) -> Result<ReleaseFilter, ApiError> {
    Ok(vigil_guard::requests::release_filter(
        app,
        states_text,
        limit,
    )?)
}

/// The releases a filter selects, newest first.
pub(crate) async fn find_releases(
    state: &AppState,
    filter: ReleaseFilter,
) -> Result<Vec<Release>, ApiError> {
    state
        .blocking(move |store| Ok(store.releases(&filter)?))
        .await
}

pub(crate) async fn load(state: &AppState, id: String) -> Result<Release, ApiError> {
    state
        .blocking(move |store| {
            store
                .release(&id)?
                .ok_or_else(|| ApiError::not_found(format!("no release {id}")))
        })
        .await
}

/// What is stored of one release: itself, its verdicts, transitions and feedback, each oldest
/// first.
#[derive(Debug)]
pub(crate) struct ReleaseRecord {
    pub release: Release,
    pub verdicts: Vec<VerdictRecord>,
    pub transitions: Vec<Transition>,
    pub feedback: Vec<Feedback>,
}

/// The release `id` with its history, read in one store call.
pub(crate) async fn release_record(
    state: &AppState,
    id: String,
) -> Result<ReleaseRecord, ApiError> {
    state
        .blocking(move |store| {
            let release = store
                .release(&id)?
                .ok_or_else(|| ApiError::not_found(format!("no release {id}")))?;
            Ok(ReleaseRecord {
                verdicts: store.verdicts(&id)?,
                transitions: store.transitions(&id)?,
                feedback: store.feedback(&id)?,
                release,
            })
        })
        .await
}

/// The release's window as a bundle, up to now or to the end of the release, as the guard
/// layer assembles it; on a blocking thread (it reads every step of every series).
pub(crate) async fn window(state: &AppState, release: &Release) -> Result<Bundle, ApiError> {
    let guard = Arc::clone(&state.guard);
    let intake = Arc::clone(&state.intake);
    let release = release.clone();
    state
        .blocking(move |_| Ok(guard.window(&release, &intake)?))
        .await
}
