//! `/agent` requests about sessions: create, list, get, subscribe,
//! unsubscribe, messages (PROTOCOL §4.2, §4.3).

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use serde::Deserialize;
use serde_json::{Value, json};
use socketioxide::extract::{Extension, State};

use crate::cluster::adapter::{AckSender, SocketRef};

use super::{Request, ack};
use crate::auth::Identity;
use crate::error::ApiError;
use crate::ids::{Seq, SessionId};
use crate::log::{Sink, Window};
use crate::payload::parse;
use crate::sessions::{self, SessionView, messages};
use crate::state::AppState;

/// Sessions one socket may be subscribed to at once (each keeps its
/// session's log active in memory).
pub const MAX_SUBSCRIPTIONS: usize = 256;

/// The sessions a socket is subscribed to, so a disconnect can end them.
#[derive(Clone, Default)]
pub struct Subscriptions(Arc<Mutex<HashSet<SessionId>>>);

/// The room of a session's subscribers.
pub fn session_room(id: &SessionId) -> String {
    format!("session:{id}")
}

pub fn register(s: &SocketRef) {
    s.extensions.insert(Subscriptions::default());
    s.on("session:create", create);
    s.on("session:list", list);
    s.on("session:get", get);
    s.on("session:subscribe", subscribe);
    s.on("session:unsubscribe", unsubscribe);
    s.on("session:messages", list_messages);
    s.on_disconnect(on_disconnect);
}

async fn create(
    State(state): State<AppState>,
    Extension(me): Extension<Identity>,
    Request(data): Request<Value>,
    ack: AckSender,
) {
    let result = async {
        let request = parse(data?)?;
        let session =
            sessions::create_within_quotas(&state.db, &state.quotas, &me, request).await?;
        Ok(json!({ "session": session }))
    };
    ack::reply(ack, result.await);
}

async fn list(
    State(state): State<AppState>,
    Extension(me): Extension<Identity>,
    Request(data): Request<Value>,
    ack: AckSender,
) {
    let result = async { Ok(sessions::list(&state.db, &me, parse(data?)?).await?) };
    ack::reply(ack, result.await);
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SessionRef {
    session_id: String,
}

async fn get(
    State(state): State<AppState>,
    Extension(me): Extension<Identity>,
    Request(data): Request<Value>,
    ack: AckSender,
) {
    let result = async {
        let request: SessionRef = parse(data?)?;
        let (_, session) =
            sessions::resolve(&state.db, &me, &request.session_id, "session_id").await?;
        Ok(json!({ "session": SessionView::from(session) }))
    };
    ack::reply(ack, result.await);
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Subscribe {
    session_id: String,
    #[serde(default)]
    after_seq: Option<Seq>,
}

async fn subscribe(
    s: SocketRef,
    State(state): State<AppState>,
    Extension(me): Extension<Identity>,
    Extension(subscriptions): Extension<Subscriptions>,
    Request(data): Request<Value>,
    ack: AckSender,
) {
    let prepared = async {
        let request: Subscribe = parse(data?)?;
        let after = request.after_seq.unwrap_or(Seq::ZERO);
        if after < Seq::ZERO {
            return Err(ApiError::InvalidPayload(
                "after_seq: must not be negative".into(),
            ));
        }
        let (id, session) =
            sessions::resolve(&state.db, &me, &request.session_id, "session_id").await?;
        let subscribed = {
            let subscribed = subscriptions.0.lock().expect("subscriptions");
            (!subscribed.contains(&id)).then_some(subscribed.len())
        };
        if subscribed.is_some_and(|n| n >= MAX_SUBSCRIPTIONS) {
            return Err(ApiError::Conflict(format!(
                "this connection is subscribed to {MAX_SUBSCRIPTIONS} sessions, the most \
                 allowed: unsubscribe from one first"
            )));
        }
        let stored = Window {
            head_seq: session.head_seq,
            first_seq: session.first_seq,
        };
        let pending = state
            .log
            .prepare_subscription(&id, Sink::Socket(s.clone()), after, stored)
            .await?;
        Ok((id, SessionView::from(session), pending))
    };
    match prepared.await {
        Ok((id, mut session, pending)) => {
            s.join(session_room(&id));
            subscriptions.0.lock().expect("subscriptions").insert(id);
            session.head_seq = pending.head_seq;
            let mut body = json!({ "session": session, "head_seq": pending.head_seq });
            if let Some(first_seq) = pending.truncated_to {
                body["truncated"] = json!(true);
                body["first_seq"] = json!(first_seq);
            }
            // The ack goes out before the first replayed event.
            ack::ok(ack, body);
            pending.start();
        }
        Err(e) => ack::error(ack, &e),
    }
}

async fn unsubscribe(
    s: SocketRef,
    State(state): State<AppState>,
    Extension(me): Extension<Identity>,
    Extension(subscriptions): Extension<Subscriptions>,
    Request(data): Request<Value>,
    ack: AckSender,
) {
    let result = async {
        let request: SessionRef = parse(data?)?;
        let (id, _) = sessions::resolve(&state.db, &me, &request.session_id, "session_id").await?;
        state.log.unsubscribe(&id, &Sink::Socket(s.clone()).id());
        s.leave(session_room(&id));
        subscriptions.0.lock().expect("subscriptions").remove(&id);
        Ok(json!({}))
    };
    ack::reply(ack, result.await);
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ListMessages {
    session_id: String,
    #[serde(default)]
    before: Option<String>,
    #[serde(default)]
    limit: Option<u64>,
}

async fn list_messages(
    State(state): State<AppState>,
    Extension(me): Extension<Identity>,
    Request(data): Request<Value>,
    ack: AckSender,
) {
    let result = async {
        let request: ListMessages = parse(data?)?;
        let (id, _) = sessions::resolve(&state.db, &me, &request.session_id, "session_id").await?;
        let page = messages::ListMessages {
            before: request.before,
            limit: request.limit,
        };
        Ok(messages::list(&state.db, &id, page, state.config.limits.max_page_bytes).await?)
    };
    ack::reply(ack, result.await);
}

async fn on_disconnect(
    s: SocketRef,
    State(state): State<AppState>,
    Extension(subscriptions): Extension<Subscriptions>,
) {
    let sink = Sink::Socket(s.clone()).id();
    let sessions: Vec<_> = subscriptions
        .0
        .lock()
        .expect("subscriptions")
        .drain()
        .collect();
    for id in sessions {
        state.log.unsubscribe(&id, &sink);
    }
}
