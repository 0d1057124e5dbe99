//! `/v1/sessions`: create, list, get, messages.

use axum::Json;
use axum::extract::{Path, State};
use http::StatusCode;
use serde_json::{Value, json};

use crate::auth::http::Caller;
use crate::error::ApiError;
use crate::http::extract::{JsonBody, Query};
use crate::sessions::{self, ListSessions, SessionPage, SessionView, messages};
use crate::state::AppState;

pub async fn create(
    State(state): State<AppState>,
    Caller(me): Caller,
    JsonBody(request): JsonBody<sessions::CreateSession>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let session = sessions::create_within_quotas(&state.db, &state.quotas, &me, request).await?;
    Ok((StatusCode::CREATED, Json(json!({ "session": session }))))
}

pub async fn list(
    State(state): State<AppState>,
    Caller(me): Caller,
    Query(query): Query<ListSessions>,
) -> Result<Json<SessionPage>, ApiError> {
    Ok(Json(sessions::list(&state.db, &me, query).await?))
}

pub async fn get(
    State(state): State<AppState>,
    Caller(me): Caller,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let (_, session) = sessions::resolve(&state.db, &me, &id, "session id").await?;
    let session = SessionView::from(session);
    Ok(Json(json!({ "session": session })))
}

pub async fn list_messages(
    State(state): State<AppState>,
    Caller(me): Caller,
    Path(id): Path<String>,
    Query(query): Query<messages::ListMessages>,
) -> Result<Json<messages::MessagePage>, ApiError> {
    let (id, _) = sessions::resolve(&state.db, &me, &id, "session id").await?;
    let max_bytes = state.config.limits.max_page_bytes;
    Ok(Json(
        messages::list(&state.db, &id, query, max_bytes).await?,
    ))
}
