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
    let session = sessions::create(&state.db, &me, request).await?;
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
    let id = sessions::parse_id(&id, "session id")?;
    let session: SessionView = sessions::load_for(&state.db, &me, &id).await?.into();
    Ok(Json(json!({ "session": session })))
}

pub async fn list_messages(
    State(state): State<AppState>,
    Caller(me): Caller,
    Path(id): Path<String>,
    Query(query): Query<messages::ListMessages>,
) -> Result<Json<messages::MessagePage>, ApiError> {
    let id = sessions::parse_id(&id, "session id")?;
    sessions::load_for(&state.db, &me, &id).await?;
    Ok(Json(messages::list(&state.db, &id, query).await?))
}
