//! `/models`: the learned stage's models, newest first: state, training set and note, each
//! one's replay scores beside those of the funnel alone (or of the model it was compared
//! with) on the same held-out releases, and the promotions' audit. Read through the same
//! function as `GET /api/v1/models`; promotions and rollbacks are the API's and the CLI's.

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::Response;
use maud::{html, Markup};
use vigil_core::learned::{ModelRecord, ModelScores, ModelState};

use super::html::{time_element, Text};
use super::session::signed_in;
use super::{html_page, PageError, Section};
use crate::models::{models_view, ModelsView};
use crate::state::AppState;

pub async fn page(
    State(state): State<AppState>,
    headers: HeaderMap,
    uri: Uri,
) -> Result<Response, PageError> {
    let session = signed_in(&state, &headers, &uri).await?;
    let view = models_view(&state).await?;
    Ok(html_page(
        StatusCode::OK,
        "Models",
        Some(&session),
        Some(Section::Models),
        models_body(&view),
    ))
}

fn share(value: Option<f64>) -> String {
    value.map_or_else(|| "n/a".to_owned(), |value| format!("{value:.3}"))
}

fn state_words(state: ModelState) -> &'static str {
    match state {
        ModelState::Promoted => "promoted: the guard applies it",
        ModelState::Candidate => "candidate",
        ModelState::Retired => "retired",
    }
}

pub(crate) fn models_body(view: &ModelsView) -> Markup {
    let promoted = view
        .models
        .iter()
        .find(|record| record.state == ModelState::Promoted);
    html! {
        h1 { "Models" }
        p class="subtitle" {
            @match promoted {
                Some(record) => {
                    "The guard applies model v" (record.version) ", promoted "
                    @if let Some(at) = record.promoted_at { (time_element(at)) }
                    ". It sets aside the recommendations it scores below its threshold; faults \
                     are never set aside."
                }
                None => {
                    "No model is promoted: the guard runs the funnel alone."
                }
            }
            " Models are added with " code { "vigil model import" } ", promoted through the \
             promotion gate with " code { "vigil model promote" } " and rolled back with "
            code { "vigil model rollback" } "."
        }
        table class="models" {
            caption { "Models, newest first, with what each was trained on" }
            thead {
                tr {
                    th scope="col" { "Version" }
                    th scope="col" { "State" }
                    th scope="col" { "Added" }
                    th scope="col" { "Training set" }
                    th scope="col" { "Threshold" }
                    th scope="col" { "Note" }
                }
            }
            tbody {
                @if view.models.is_empty() {
                    tr { td colspan="6" { "No model yet." } }
                }
                @for record in &view.models {
                    (model_row(record))
                }
            }
        }
        @for record in view.models.iter().filter(|record| !record.scores.is_empty()) {
            (scores_table(record))
        }
        @if !view.promotions.is_empty() {
            table class="promotions" {
                caption { "Promotions and rollbacks, oldest first" }
                thead {
                    tr {
                        th scope="col" { "When" }
                        th scope="col" { "Model" }
                        th scope="col" { "What" }
                        th scope="col" { "By" }
                    }
                }
                tbody {
                    @for promotion in &view.promotions {
                        tr {
                            td { (time_element(promotion.at)) }
                            td { "v" (promotion.version) }
                            td {
                                (match promotion.action {
                                    vigil_store::PromotionAction::Promoted => "promoted",
                                    vigil_store::PromotionAction::RolledBack => "rolled back",
                                    vigil_store::PromotionAction::Restored => "promoted again by a rollback",
                                })
                            }
                            td { (Text(&promotion.by)) }
                        }
                    }
                }
            }
        }
    }
}

fn model_row(record: &ModelRecord) -> Markup {
    let training = &record.training;
    html! {
        tr id={ "model-" (record.version) } {
            th scope="row" { "v" (record.version) }
            td { (state_words(record.state)) }
            td { (time_element(record.created_at)) " by " (Text(&record.created_by)) }
            td {
                @if training.sources.is_empty() { "not given" } @else { (Text(&training.sources.join(", "))) }
                ": " (training.releases) " releases, " (training.examples) " findings ("
                (training.positives) " that mattered)"
            }
            td { (format!("{:.2}", record.model.threshold)) }
            td { (Text(&record.note)) }
        }
    }
}

/// A model's replays, each held-out replay of the model beside the baseline's on the same
/// releases.
fn scores_table(record: &ModelRecord) -> Markup {
    html! {
        table class="scores" {
            caption {
                "Replays of model v" (record.version) " (" em { "held-out" } ": the model; "
                em { "funnel on" } " / " em { "current vN on" } ": what it was compared with)"
            }
            thead {
                tr {
                    th scope="col" { "Replayed" }
                    th scope="col" { "Releases" }
                    th scope="col" { "Precision" }
                    th scope="col" { "Recall" }
                    th scope="col" { "Anomalies recommended" }
                    th scope="col" { "False recommendations" }
                    th scope="col" { "Recommendation precision" }
                }
            }
            tbody {
                @for row in &record.scores {
                    (score_row(row))
                }
            }
        }
    }
}

fn score_row(row: &ModelScores) -> Markup {
    html! {
        tr {
            th scope="row" { (Text(&row.on)) }
            td { (row.releases) }
            td { (share(Some(row.precision))) }
            td { (share(Some(row.recall))) }
            td { (share(row.anomaly_recommended)) }
            td { (share(row.healthy_recommended)) }
            td { (share(row.recommendation_precision)) }
        }
    }
}
