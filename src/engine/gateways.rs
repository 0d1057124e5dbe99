//! The tool registry (PROTOCOL §4.5): the tools each connected desktop
//! gateway registered, per user, and the built-in user tool
//! `ask_user_questions`.
//!
//! The registry lives in memory: a registration belongs to one socket. It
//! keeps the socket's id, not the socket: a gateway is reached through the
//! `SocketIo` handle ([`Registry::socket`]), so a socket that closed is
//! simply not found. When the socket goes, its tools stay *offered* for the
//! grace (the tool timeout): a gateway that drops for a network blip and
//! registers again (same `gateway_id`) finds the calls the model made
//! meanwhile waiting for it, instead of the model being told there is no
//! such tool. What must survive a disconnect or a restart — the calls
//! themselves — lives in the `tool_calls` table ([`super::calls`]).
//!
//! What a user can make it hold is bounded: at most
//! `limits.max_gateways_per_user` registrations at once (one per socket and
//! per `gateway_id`: registering again replaces), and as many gone ones in
//! their grace (the oldest go first), each within the limits
//! of [`super::registration`], its schemas kept as compact JSON text. A
//! registration is checked on a blocking thread ([`super::compile`]); the
//! async workers only hand it over.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use crate::cluster::adapter::{SocketIo, SocketRef};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use serde_json::value::RawValue;
use socketioxide::socket::Sid;

use super::EngineError;
use super::compile::Compiler;
use super::provider::ToolSpec;
use super::registration::{self, ToolDef};
use super::schema::{self, Budget};
use crate::auth::UserId;
use crate::realtime::GATEWAY_NS;

/// The built-in tool the model uses to ask the session's owner questions.
pub const ASK_USER: &str = "ask_user_questions";

/// Who answers a tool call: a gateway, the user, or the server itself
/// (only to refuse a call to no known tool).
pub use entity::states::Target;

/// A tool the model may be offered. Its argument schema is kept as
/// compact JSON text and compiled only to check arguments.
pub struct Tool {
    pub name: String,
    pub description: String,
    parameters: Box<RawValue>,
    pub target: Target,
    pub requires_approval: bool,
}

impl std::fmt::Debug for Tool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tool")
            .field("name", &self.name)
            .field("target", &self.target)
            .finish_non_exhaustive()
    }
}

impl Tool {
    pub(super) fn new(def: ToolDef, parameters: Box<RawValue>, target: Target) -> Self {
        Self {
            name: def.name,
            description: def.description,
            parameters,
            target,
            requires_approval: def.requires_approval,
        }
    }

    /// `ask_user_questions { questions: [string] }`.
    pub fn ask_user() -> Self {
        let def = ToolDef {
            name: ASK_USER.to_owned(),
            description: "Ask the user one or more questions and wait for their answers. \
                          Use it when you need a decision or information only the user has."
                .to_owned(),
            parameters: RawValue::from_string(ASK_USER_PARAMETERS.to_owned())
                .expect("the built-in schema is JSON"),
            requires_approval: false,
        };
        registration::admit_tool(def, Target::User, "tools", &mut Budget::default())
            .expect("the built-in schema is valid")
    }

    /// What the provider is sent: the schema as a JSON value.
    pub fn spec(&self) -> ToolSpec {
        ToolSpec {
            name: self.name.clone(),
            description: self.description.clone(),
            // It was admitted as JSON, so it parses.
            parameters: serde_json::from_str(self.parameters.get()).unwrap_or(Value::Null),
        }
    }

    /// Checks the model's arguments against the tool's schema; the error
    /// names where they are wrong, for the model to correct. Blocking: it
    /// compiles the schema (see [`Registry::compiler`]).
    pub fn check(&self, arguments: &Value) -> Result<(), String> {
        schema::check(&self.parameters, arguments)
    }
}

const ASK_USER_PARAMETERS: &str = r#"{
    "type": "object",
    "properties": {
        "questions": {
            "type": "array",
            "items": { "type": "string", "minLength": 1 },
            "minItems": 1,
            "description": "The questions, each one a full sentence."
        }
    },
    "required": ["questions"],
    "additionalProperties": false
}"#;

/// A tool as the shared registry stores it (several nodes).
#[derive(Debug, Serialize, Deserialize)]
pub struct StoredTool {
    name: String,
    description: String,
    parameters: Box<RawValue>,
    requires_approval: bool,
}

impl Tool {
    /// The tool as stored in the shared registry.
    pub fn stored(&self) -> StoredTool {
        StoredTool {
            name: self.name.clone(),
            description: self.description.clone(),
            parameters: self.parameters.clone(),
            requires_approval: self.requires_approval,
        }
    }

    /// A gateway's tool read back from the shared registry (it was checked
    /// when its gateway registered).
    pub fn from_stored(stored: StoredTool) -> Self {
        Self {
            name: stored.name,
            description: stored.description,
            parameters: stored.parameters,
            target: Target::Gateway,
            requires_approval: stored.requires_approval,
        }
    }
}

/// What one gateway socket registered.
#[derive(Clone)]
pub struct Gateway {
    pub sid: Sid,
    pub gateway_id: String,
    /// In registration order.
    tools: Arc<[Arc<Tool>]>,
}

impl Gateway {
    pub fn has(&self, tool: &str) -> bool {
        self.tools.iter().any(|t| t.name == tool)
    }

    pub fn tool_count(&self) -> usize {
        self.tools.len()
    }

    /// Its tools, in registration order.
    pub fn tools(&self) -> &[Arc<Tool>] {
        &self.tools
    }
}

/// The tools offered to the model in one step, by name.
#[derive(Debug, Default)]
pub struct Offer {
    tools: Vec<Arc<Tool>>,
}

impl Offer {
    pub fn specs(&self) -> Vec<ToolSpec> {
        self.tools.iter().map(|t| t.spec()).collect()
    }

    pub fn get(&self, name: &str) -> Option<&Arc<Tool>> {
        self.tools.iter().find(|t| t.name == name)
    }
}

/// A registration, and since when its socket is gone (`None`: connected).
struct Registered {
    gateway: Gateway,
    gone_since: Option<Instant>,
}

type Users = HashMap<UserId, Vec<Registered>>;

/// Gateways by user: connected, and gone within the grace.
pub struct Registry {
    users: Arc<Mutex<Users>>,
    ask_user: Arc<Tool>,
    compiler: Compiler,
    /// Where gateway sockets are found; set once the Socket.IO server is
    /// built ([`super::Engine::reach_gateways_through`]).
    io: OnceLock<SocketIo>,
    /// How long a gone gateway's tools stay offered.
    grace: Duration,
}

impl Registry {
    pub fn new(grace: Duration) -> Self {
        Self {
            users: Arc::default(),
            ask_user: Arc::new(Tool::ask_user()),
            compiler: Compiler::default(),
            io: OnceLock::new(),
            grace,
        }
    }
}

impl super::Engine {
    /// Gives the tool registry the Socket.IO server its gateways are
    /// connected to (built after the engine, which its handlers share).
    pub fn reach_gateways_through(&self, io: &SocketIo) {
        let _ = self.inner.registry.io.set(io.clone());
    }
}

impl Registry {
    /// Checks a registration (on a blocking thread) and records it for
    /// `socket`, replacing what this socket, or an earlier socket with the
    /// same `gateway_id`, registered; refused when the user already has
    /// `max_gateways` other registrations.
    pub async fn register(
        &self,
        user: &UserId,
        socket: &SocketRef,
        request: Box<RawValue>,
        max_gateways: usize,
    ) -> Result<Gateway, EngineError> {
        registration::check_size(&request)?;
        let users = self.users.clone();
        let (owner, sid) = (user.clone(), socket.id);
        let (gateway_id, tools) = self
            .compiler
            .registration(user, move || {
                let request = registration::decode(&request)?;
                // Refused before the costly part when it would be after.
                let users = users.lock().expect("registry");
                room(&users, &owner, sid, &request.gateway_id, max_gateways)?;
                drop(users);
                Ok((
                    request.gateway_id,
                    registration::admit_tools(request.tools)?,
                ))
            })
            .await?;
        let gateway = Gateway {
            sid,
            gateway_id,
            tools: tools.into(),
        };
        {
            let mut users = self.users.lock().expect("registry");
            room(&users, user, sid, &gateway.gateway_id, max_gateways)?;
            let list = users.entry(user.clone()).or_default();
            list.retain(|g| {
                g.gateway.sid != gateway.sid && g.gateway.gateway_id != gateway.gateway_id
            });
            list.push(Registered {
                gateway: gateway.clone(),
                gone_since: None,
            });
            // Gone ones past the grace go; then the oldest gone ones while
            // there are more than `max_gateways`.
            let grace = self.grace;
            list.retain(|g| g.gone_since.is_none_or(|t| t.elapsed() < grace));
            while list.iter().filter(|g| g.gone_since.is_some()).count() > max_gateways {
                let oldest = list.iter().position(|g| g.gone_since.is_some());
                list.remove(oldest.expect("a gone one"));
            }
        }
        // The socket may have closed while its registration was checked,
        // and its disconnect found nothing to forget then.
        if !socket.connected() {
            self.forget(user, sid);
            return Err(EngineError::SocketClosed);
        }
        Ok(gateway)
    }

    /// Forgets what the socket `sid` registered, at once.
    fn forget(&self, user: &UserId, sid: Sid) {
        let mut users = self.users.lock().expect("registry");
        if let Some(list) = users.get_mut(user) {
            list.retain(|g| g.gateway.sid != sid);
            if list.is_empty() {
                users.remove(user);
            }
        }
    }

    /// Drops the gone gateways past their grace (every user's).
    pub fn sweep(&self) {
        let grace = self.grace;
        let mut users = self.users.lock().expect("registry");
        users.retain(|_, list| {
            list.retain(|g| g.gone_since.is_none_or(|t| t.elapsed() < grace));
            !list.is_empty()
        });
    }

    /// The gateway's socket on `/gateway`, while it is connected.
    pub fn socket(&self, gateway: &Gateway) -> Option<SocketRef> {
        self.io.get()?.of(GATEWAY_NS)?.get_socket(gateway.sid)
    }

    /// Where checks of a call's arguments ([`Tool::check`]) run.
    pub fn compiler(&self) -> &Compiler {
        &self.compiler
    }

    /// The socket `sid` went away: its registration is gone (its tools
    /// stay offered for the grace); `false` when it had no current
    /// registration (none, or one replaced since).
    pub fn unregister(&self, user: &UserId, sid: Sid) -> bool {
        let mut users = self.users.lock().expect("registry");
        let Some(list) = users.get_mut(user) else {
            return false;
        };
        match list
            .iter_mut()
            .find(|g| g.gateway.sid == sid && g.gone_since.is_none())
        {
            Some(registered) => {
                registered.gone_since = Some(Instant::now());
                true
            }
            None => false,
        }
    }

    /// The user's connected gateways, oldest registration first.
    pub fn gateways(&self, user: &UserId) -> Vec<Gateway> {
        self.users
            .lock()
            .expect("registry")
            .get(user)
            .map(|list| {
                list.iter()
                    .filter(|g| g.gone_since.is_none())
                    .map(|g| g.gateway.clone())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The user's gateways whose tools are offered: connected, or gone
    /// within the grace; oldest registration first.
    fn offered(&self, user: &UserId) -> Vec<Gateway> {
        let grace = self.grace;
        self.users
            .lock()
            .expect("registry")
            .get(user)
            .map(|list| {
                list.iter()
                    .filter(|g| g.gone_since.is_none_or(|t| t.elapsed() < grace))
                    .map(|g| g.gateway.clone())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// What the model is offered in a session of `user`: the tools of the
    /// user's gateways, connected or gone within the grace (the first
    /// registration of a name wins), then `ask_user_questions`. A call to
    /// a gone gateway's tool waits for it to come back.
    pub fn offer(&self, user: &UserId) -> Offer {
        let gateways = self.offered(user);
        self.offer_of(gateways.iter().flat_map(|g| g.tools.iter().cloned()))
    }

    /// The offer of `tools` (the first of a name wins), then
    /// `ask_user_questions`.
    pub fn offer_of(&self, all: impl IntoIterator<Item = Arc<Tool>>) -> Offer {
        let mut tools: Vec<Arc<Tool>> = Vec::new();
        for tool in all {
            if tools.iter().all(|t| t.name != tool.name) {
                tools.push(tool);
            }
        }
        tools.push(self.ask_user.clone());
        Offer { tools }
    }
}

/// Refuses a registration that would be one too many for `user`: the
/// registrations of other sockets and other `gateway_id`s count.
fn room(
    users: &Users,
    user: &UserId,
    sid: Sid,
    gateway_id: &str,
    max_gateways: usize,
) -> Result<(), EngineError> {
    let others = users.get(user).map_or(0, |list| {
        list.iter()
            .filter(|g| {
                g.gone_since.is_none() && g.gateway.sid != sid && g.gateway.gateway_id != gateway_id
            })
            .count()
    });
    if others >= max_gateways {
        return Err(EngineError::TooManyGateways(others));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn the_built_in_question_tool_checks_its_arguments() {
        let tool = Tool::ask_user();
        assert_eq!(tool.spec().parameters["required"], json!(["questions"]));
        tool.check(&json!({ "questions": ["Which branch?"] }))
            .unwrap();
        tool.check(&json!({ "questions": [] })).unwrap_err();
    }
}
