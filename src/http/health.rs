//! `GET /healthz` (the process runs) and `GET /readyz` (the database
//! answers, and Redis too when this server is one node of several).

use std::time::Duration;

use axum::Json;
use axum::extract::State;
use http::StatusCode;
use serde_json::{Value, json};

use crate::state::AppState;

pub async fn healthz() -> Json<Value> {
    Json(json!({ "status": "ok" }))
}

pub async fn readyz(State(state): State<AppState>) -> (StatusCode, Json<Value>) {
    match tokio::time::timeout(Duration::from_secs(2), state.db.ping()).await {
        Ok(Ok(())) => {}
        Ok(Err(error)) => {
            tracing::warn!(%error, "readiness check: the database does not answer");
            return unavailable("the database does not answer");
        }
        Err(_) => {
            tracing::warn!("readiness check: the database did not answer within 2 s");
            return unavailable("the database does not answer");
        }
    }
    if let Some(cluster) = &state.cluster
        && let Err(error) = cluster.ping().await
    {
        tracing::warn!(%error, "readiness check: Redis does not answer");
        return unavailable("Redis does not answer");
    }
    (StatusCode::OK, Json(json!({ "status": "ready" })))
}

fn unavailable(message: &str) -> (StatusCode, Json<Value>) {
    (
        StatusCode::SERVICE_UNAVAILABLE,
        Json(json!({
            "status": "unavailable",
            "error": { "code": "unavailable", "message": message }
        })),
    )
}
