//! A session's events over HTTP: producers append (`POST …/events`),
//! readers page through them (`GET …/events`) or stream them as
//! Server-Sent Events (`GET …/stream`).

use std::convert::Infallible;

use axum::Json;
use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::response::IntoResponse;
use axum::response::sse::{Event, KeepAlive, Sse};
use futures_util::{Stream, StreamExt};
use http::HeaderMap;
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{Value, json};
use tokio_stream::wrappers::ReceiverStream;

use crate::auth::http::Caller;
use crate::error::ApiError;
use crate::events::{self, MAX_X_TYPE_BYTES};
use crate::http::extract::Query;
use crate::ids::{Seq, SessionId};
use crate::log::{NewEvent, Sink, Window};
use crate::sessions;
use crate::state::AppState;

/// Most events one ingest request may carry.
pub const MAX_BATCH_EVENTS: usize = 1_000;
/// Largest ingest request body.
pub const MAX_BATCH_BYTES: usize = 4 * 1024 * 1024;
const MAX_IDEMPOTENCY_KEY: usize = 200;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Batch {
    events: Vec<IngestEvent>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct IngestEvent {
    #[serde(rename = "type")]
    kind: String,
    /// Kept as the producer sent it: stored and relayed without a re-encode.
    data: Box<RawValue>,
    #[serde(default)]
    idempotency_key: Option<String>,
}

/// `POST /v1/sessions/{id}/events`: `{ events: [{ type, data, idempotency_key? }] }`
/// → `{ first_seq, last_seq, duplicates }`. All or nothing.
pub async fn append(
    State(state): State<AppState>,
    Caller(me): Caller,
    Path(id): Path<String>,
    body: Body,
) -> Result<Json<Value>, ApiError> {
    let id = sessions::parse_id(&id, "session id")?;
    state.log.authorize_append(&id, &me).await?;
    let bytes: Bytes = axum::body::to_bytes(body, MAX_BATCH_BYTES)
        .await
        .map_err(|_| {
            ApiError::TooLarge(format!("the request body exceeds {MAX_BATCH_BYTES} bytes"))
        })?;
    let batch: Batch =
        serde_path_to_error::deserialize(&mut serde_json::Deserializer::from_slice(&bytes))
            .map_err(|e| {
                let path = e.path().to_string();
                let inner = e.into_inner();
                if inner.is_syntax() || inner.is_eof() || path == "." {
                    ApiError::InvalidPayload(format!("the body is not a batch of events: {inner}"))
                } else {
                    ApiError::InvalidPayload(format!("{path}: {inner}"))
                }
            })?;
    if batch.events.len() > MAX_BATCH_EVENTS {
        return Err(ApiError::TooLarge(format!(
            "events: {} events in one request; at most {MAX_BATCH_EVENTS}",
            batch.events.len()
        )));
    }
    let events = batch
        .events
        .into_iter()
        .enumerate()
        .map(|(i, event)| validate(i, event))
        .collect::<Result<Vec<_>, _>>()?;
    state
        .quotas
        .append(&me.user_id, events.len(), bytes.len())?;
    let appended = state.log.append(&id, events).await?;
    Ok(Json(json!({
        "first_seq": appended.first_seq(),
        "last_seq": appended.last_seq(),
        "duplicates": appended.duplicates,
    })))
}

fn validate(index: usize, event: IngestEvent) -> Result<NewEvent, ApiError> {
    let at = format!("events[{index}]");
    if !events::is_producer_type(&event.kind) {
        let shown: String = event.kind.chars().take(MAX_X_TYPE_BYTES).collect();
        return Err(ApiError::Unprocessable(format!(
            "{at}.type: {shown:?} cannot be appended by producers (allowed: {}, and x. followed \
             by up to {} letters, digits, `.`, `_`, `-`, `:` or `/`)",
            events::producer_types(),
            MAX_X_TYPE_BYTES - 2
        )));
    }
    if let Some(key) = &event.idempotency_key {
        if key.is_empty() || key.len() > MAX_IDEMPOTENCY_KEY {
            return Err(ApiError::Unprocessable(format!(
                "{at}.idempotency_key: must be 1 to {MAX_IDEMPOTENCY_KEY} bytes"
            )));
        }
        crate::payload::check_text(&format!("{at}.idempotency_key"), key).map_err(unprocessable)?;
    }
    crate::payload::check_raw_json(&format!("{at}.data"), &event.data).map_err(unprocessable)?;
    events::check_data(&event.kind, &event.data)
        .map_err(|e| ApiError::Unprocessable(format!("{at} ({}): data{e}", event.kind)))?;
    Ok(NewEvent {
        kind: event.kind,
        run_id: None,
        data: event.data,
        idempotency_key: event.idempotency_key,
    })
}

/// A batch that parsed but holds an event that cannot be stored (HTTP 422).
fn unprocessable(error: crate::payload::Invalid) -> ApiError {
    ApiError::Unprocessable(error.to_string())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReadQuery {
    #[serde(default)]
    after_seq: Option<Seq>,
    #[serde(default)]
    limit: Option<u64>,
}

/// `GET /v1/sessions/{id}/events?after_seq=&limit=`: stored events, oldest first.
pub async fn read(
    State(state): State<AppState>,
    Caller(me): Caller,
    Path(id): Path<String>,
    Query(query): Query<ReadQuery>,
) -> Result<axum::response::Response, ApiError> {
    let (id, session) = sessions::resolve(&state.db, &me, &id, "session id").await?;
    let limit = crate::payload::limit(query.limit, 100, 1_000)?;
    let after = non_negative(query.after_seq.unwrap_or(Seq::ZERO))?;
    if after > session.head_seq {
        return Err(ApiError::Conflict(format!(
            "after_seq {after} is beyond the session's head_seq {}",
            session.head_seq
        )));
    }
    let truncated = after < session.first_seq.prev();
    let from = after.max(session.first_seq.prev());
    // At most `limit` events and a page of bytes; a page cut short by
    // either says where to continue.
    let page = state.log.read_page(&id, from, limit).await?;
    let next_after_seq = page
        .events
        .last()
        .filter(|_| page.cut || page.events.len() as u64 == limit)
        .map(|e| e.seq);
    Ok(Json(EventPage {
        events: page.events.iter().map(|e| &*e.json).collect(),
        head_seq: session.head_seq,
        first_seq: session.first_seq,
        truncated: truncated.then_some(true),
        next_after_seq,
    })
    .into_response())
}

/// A page of stored events; each envelope is sent as it was serialized.
#[derive(serde::Serialize)]
struct EventPage<'a> {
    events: Vec<&'a RawValue>,
    head_seq: Seq,
    first_seq: Seq,
    #[serde(skip_serializing_if = "Option::is_none")]
    truncated: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    next_after_seq: Option<Seq>,
}

fn non_negative(seq: Seq) -> Result<Seq, ApiError> {
    if seq < Seq::ZERO {
        return Err(ApiError::InvalidPayload(
            "after_seq: must not be negative".into(),
        ));
    }
    Ok(seq)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StreamQuery {
    #[serde(default)]
    after_seq: Option<Seq>,
}

/// Events buffered per SSE stream before it falls back to catch-up (and at
/// most a page of bytes of them).
const SSE_BUFFER: usize = 256;

/// `GET /v1/sessions/{id}/stream`: Server-Sent Events, `id:` = seq, resuming
/// after `Last-Event-ID` (or `?after_seq=`), with keep-alive comments.
pub async fn stream(
    State(state): State<AppState>,
    Caller(me): Caller,
    Path(id): Path<String>,
    Query(query): Query<StreamQuery>,
    headers: HeaderMap,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    let (id, session) = sessions::resolve(&state.db, &me, &id, "session id").await?;
    let last_event_id = headers
        .get("last-event-id")
        .map(|v| {
            v.to_str()
                .ok()
                .and_then(|v| v.trim().parse().ok().map(Seq::new))
                .ok_or_else(|| ApiError::InvalidPayload("Last-Event-ID: not a seq".into()))
        })
        .transpose()?;
    let after = non_negative(last_event_id.or(query.after_seq).unwrap_or(Seq::ZERO))?;

    let (sink, rx) = Sink::channel(SSE_BUFFER, state.config.limits.max_page_bytes);
    let sink_id = sink.id();
    let pending = state
        .log
        .prepare_subscription(
            &id,
            sink,
            after,
            Window {
                head_seq: session.head_seq,
                first_seq: session.first_seq,
            },
        )
        .await?;
    let preamble = pending.truncated_to.map(|first_seq| {
        Ok(Event::default()
            .event("truncated")
            .data(json!({ "first_seq": first_seq }).to_string()))
    });
    pending.start();

    let guard = Unsubscribe {
        log: state.log.clone(),
        session: id,
        sink: sink_id,
    };
    // A queued event's bytes count against the buffer until it is written
    // into its SSE frame here.
    let events = ReceiverStream::new(rx).map(move |queued| {
        let _keep = &guard;
        let event = &queued.event;
        Ok(Event::default()
            .id(event.seq.to_string())
            .data(event.json.get()))
    });
    let stream = futures_util::stream::iter(preamble)
        .chain(events)
        .take_until(state.shutdown.clone().cancelled_owned());
    Ok(Sse::new(stream).keep_alive(KeepAlive::new().interval(state.config.sse_keep_alive)))
}

/// Ends the SSE subscription when the response stream is dropped.
struct Unsubscribe {
    log: crate::log::EventLog,
    session: SessionId,
    sink: crate::log::SinkId,
}

impl Drop for Unsubscribe {
    fn drop(&mut self) {
        self.log.unsubscribe(&self.session, &self.sink);
    }
}
