//! The import route: a `release-bundle/1` read within the limits, then replayed and stored
//! by the guard layer.

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::Json;
use vigil_core::release::{Release, Role};
use vigil_core::Bundle;
use vigil_deploy::spec::{check_id, check_name};

use crate::error::ApiError;
use crate::state::{AppState, Limits};

/// Imports a `release-bundle/1` through the guard layer ([`vigil_guard::import`]), which
/// replays it and stores it in one transaction, paused (when the replay paused it, or ended
/// with data missing) or succeeded.
///
/// A few MiB of gzip can expand to gigabytes and a replay takes seconds: one of a bounded
/// number of imports at once decompresses (up to [`Limits::max_import_bytes`]), parses
/// and replays on a blocking thread; the release id is checked, free and valid, before the
/// replay.
pub async fn import(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Result<(StatusCode, Json<Release>), ApiError> {
    let token = state.authorize(&headers, Role::Operator).await?;
    let held = state.budget.import().await?;
    // Decompressing and parsing is decoding like any other: it takes its share of the
    // decoding budget (the parsed bundle holds about four times its JSON) and a decoder's core.
    let decoding = state
        .budget
        .decode(state.limits.max_import_bytes.saturating_mul(4))
        .await?;
    let limits = state.limits.clone();
    let bundle = state
        .blocking(move |store| read_import(store, &body, &limits))
        .await?;
    drop(decoding);
    let now = state.clock.now();
    let intake = state.intake.clone();
    let actor = token.name;
    let final_release = state
        .blocking(move |_store| {
            let release = vigil_guard::import::import_bundle(&intake, bundle, actor, now)
                .map_err(import_error)?;
            drop(held);
            Ok(release)
        })
        .await?;
    Ok((StatusCode::CREATED, Json(final_release)))
}

/// The answer to an import the guard layer could not store.
fn import_error(error: vigil_guard::GuardError) -> ApiError {
    match error {
        vigil_guard::GuardError::Store(store_error) => ApiError::from(store_error),
        vigil_guard::GuardError::Transition(transition_error) => ApiError::from(transition_error),
        other => ApiError::internal(other.to_string()),
    }
}

/// The bundle of an import body, within the limits, with an id that is valid and free.
fn read_import(
    store: &dyn vigil_store::Store,
    body: &[u8],
    limits: &Limits,
) -> Result<Bundle, ApiError> {
    let bundle = Bundle::from_bytes_limited(body, "request body", limits.max_import_bytes)
        .map_err(|error| match error {
            vigil_core::BundleError::TooLarge { limit, .. } => ApiError::too_large(format!(
                "body: the bundle decompresses to more than the limit of {limit} bytes"
            )),
            other => ApiError::bad_request(other.to_string()),
        })?;
    check_id("id", &bundle.id)?;
    check_name("app", &bundle.app)?;
    for (index, host) in bundle.hosts.iter().enumerate() {
        check_name(format_args!("hosts[{index}].name"), &host.name)?;
    }
    let values = bundle_values(&bundle);
    if values > limits.max_import_values {
        return Err(ApiError::too_large(format!(
            "series: the bundle holds {values} values, more than the limit of {}",
            limits.max_import_values
        )));
    }
    if bundle.batches.is_empty() {
        return Err(ApiError::bad_request("batches: the bundle has no batch"));
    }
    if store.release(&bundle.id)?.is_some() {
        return Err(ApiError::conflict(format!(
            "id: release {} already exists",
            bundle.id
        )));
    }
    Ok(bundle)
}

/// Values of every series and log count of a bundle.
fn bundle_values(bundle: &Bundle) -> usize {
    let series = bundle.series.values().flat_map(|by_host| by_host.values());
    let logs = bundle
        .logs
        .counts
        .values()
        .flat_map(|by_host| by_host.values());
    series.chain(logs).map(Vec::len).sum()
}
