//! `/agent` requests about runs: `agent:execute` and `agent:stop`
//! (PROTOCOL §4.4). The engine ([`crate::engine`]) does the work.

use serde::Deserialize;
use serde_json::{Value, json};
use socketioxide::extract::{Extension, State};

use crate::cluster::adapter::{AckSender, SocketRef};

use super::{Request, ack};
use crate::auth::Identity;
use crate::engine::Execute;
use crate::payload::parse;
use crate::state::AppState;

pub fn register(s: &SocketRef) {
    s.on("agent:execute", execute);
    s.on("agent:stop", stop);
}

async fn execute(
    State(state): State<AppState>,
    Extension(me): Extension<Identity>,
    Request(data): Request<Value>,
    ack: AckSender,
) {
    let result = async {
        let request: Execute = parse(data?)?;
        Ok(state.engine.execute(&me, request).await?)
    };
    ack::reply(ack, result.await);
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Stop {
    session_id: String,
}

async fn stop(
    State(state): State<AppState>,
    Extension(me): Extension<Identity>,
    Request(data): Request<Value>,
    ack: AckSender,
) {
    let result = async {
        let request: Stop = parse(data?)?;
        let stopped = state.engine.stop(&me, &request.session_id).await?;
        Ok(json!({ "stopped": stopped }))
    };
    ack::reply(ack, result.await);
}
