//! The tool registry (PROTOCOL §4.5): the tools each connected desktop
//! gateway registered, per user, and the built-in user tool
//! `ask_user_questions`.
//!
//! The registry lives in memory: a registration belongs to one socket and
//! goes away with it. What must survive a disconnect or a restart — the
//! calls themselves — lives in the `tool_calls` table ([`super::calls`]).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use serde::Deserialize;
use serde_json::{Value, json};
use socketioxide::extract::SocketRef;
use socketioxide::socket::Sid;

use super::provider::ToolSpec;
use crate::auth::UserId;
use crate::error::ApiError;

/// The built-in tool the model uses to ask the session's owner questions.
pub const ASK_USER: &str = "ask_user_questions";
/// Tools one gateway may register.
pub const MAX_TOOLS: usize = 128;
/// Longest `gateway_id`.
pub const MAX_GATEWAY_ID_CHARS: usize = 200;
/// Longest tool description.
pub const MAX_DESCRIPTION_CHARS: usize = 4096;

/// `gateway:register`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Register {
    pub gateway_id: String,
    pub tools: Vec<ToolDef>,
}

/// One tool of a `gateway:register`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ToolDef {
    pub name: String,
    pub description: String,
    pub parameters: Value,
    #[serde(default)]
    pub requires_approval: bool,
}

/// Who answers a tool's calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// A desktop gateway of the session's owner, on `/gateway`.
    Gateway,
    /// The session's owner, on `/agent`.
    User,
    /// The server itself (only to refuse a call to no known tool).
    Server,
}

impl Target {
    pub fn as_str(self) -> &'static str {
        match self {
            Target::Gateway => "gateway",
            Target::User => "user",
            Target::Server => "server",
        }
    }

    pub fn from_db(value: &str) -> Self {
        match value {
            "gateway" => Target::Gateway,
            "user" => Target::User,
            _ => Target::Server,
        }
    }
}

/// A tool the model may be offered, with its compiled argument schema.
pub struct Tool {
    pub spec: ToolSpec,
    pub target: Target,
    pub requires_approval: bool,
    validator: jsonschema::Validator,
}

impl std::fmt::Debug for Tool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tool")
            .field("name", &self.spec.name)
            .field("target", &self.target)
            .finish_non_exhaustive()
    }
}

impl Tool {
    fn new(def: ToolDef, target: Target, field: &str) -> Result<Self, ApiError> {
        let invalid = |message: String| ApiError::InvalidPayload(format!("{field}.{message}"));
        if def.name.is_empty()
            || def.name.len() > 64
            || !def
                .name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        {
            return Err(invalid(format!(
                "name: {:?} must be 1 to 64 letters, digits, `_` or `-`",
                def.name
            )));
        }
        if def.description.chars().count() > MAX_DESCRIPTION_CHARS {
            return Err(invalid(format!(
                "description: longer than {MAX_DESCRIPTION_CHARS} characters"
            )));
        }
        if !def.parameters.is_object() {
            return Err(invalid(
                "parameters: must be a JSON Schema object (`{\"type\": \"object\", …}`)".into(),
            ));
        }
        if let Err(error) = jsonschema::meta::validate(&def.parameters) {
            return Err(invalid(format!(
                "parameters: not a valid JSON Schema: {error} (at {})",
                pointer_or_root(&error.instance_path().to_string())
            )));
        }
        let validator = jsonschema::validator_for(&def.parameters).map_err(|error| {
            invalid(format!(
                "parameters: cannot be used as a JSON Schema: {error}"
            ))
        })?;
        Ok(Self {
            spec: ToolSpec {
                name: def.name,
                description: def.description,
                parameters: def.parameters,
            },
            target,
            requires_approval: def.requires_approval,
            validator,
        })
    }

    /// `ask_user_questions { questions: [string] }`.
    pub fn ask_user() -> Self {
        let def = ToolDef {
            name: ASK_USER.to_owned(),
            description: "Ask the user one or more questions and wait for their answers. \
                          Use it when you need a decision or information only the user has."
                .to_owned(),
            parameters: json!({
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
            }),
            requires_approval: false,
        };
        Self::new(def, Target::User, "tools").expect("the built-in schema is valid")
    }

    /// Checks the model's arguments against the tool's schema; the error
    /// names where they are wrong, for the model to correct.
    pub fn check(&self, arguments: &Value) -> Result<(), String> {
        let errors: Vec<String> = self
            .validator
            .iter_errors(arguments)
            .take(5)
            .map(|error| {
                format!(
                    "{}: {error}",
                    pointer_or_root(&error.instance_path().to_string())
                )
            })
            .collect();
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors.join("; "))
        }
    }
}

fn pointer_or_root(pointer: &str) -> &str {
    if pointer.is_empty() { "/" } else { pointer }
}

/// What one gateway socket registered.
#[derive(Clone)]
pub struct Gateway {
    pub sid: Sid,
    pub gateway_id: String,
    pub socket: SocketRef,
    tools: Arc<HashMap<String, Arc<Tool>>>,
    /// Tool names in registration order.
    order: Arc<[String]>,
}

impl Gateway {
    pub fn has(&self, tool: &str) -> bool {
        self.tools.contains_key(tool)
    }

    pub fn tool_count(&self) -> usize {
        self.order.len()
    }
}

/// The tools offered to the model in one step, by name.
#[derive(Debug, Default)]
pub struct Offer {
    tools: Vec<Arc<Tool>>,
}

impl Offer {
    pub fn specs(&self) -> Vec<ToolSpec> {
        self.tools.iter().map(|t| t.spec.clone()).collect()
    }

    pub fn get(&self, name: &str) -> Option<&Arc<Tool>> {
        self.tools.iter().find(|t| t.spec.name == name)
    }
}

/// Connected gateways by user.
pub struct Registry {
    users: Mutex<HashMap<UserId, Vec<Gateway>>>,
    ask_user: Arc<Tool>,
}

impl Default for Registry {
    fn default() -> Self {
        Self {
            users: Mutex::default(),
            ask_user: Arc::new(Tool::ask_user()),
        }
    }
}

impl Registry {
    /// Validates a registration and records it for `socket`, replacing what
    /// this socket, or an earlier socket with the same `gateway_id`,
    /// registered.
    pub fn register(
        &self,
        user: &UserId,
        socket: &SocketRef,
        request: Register,
    ) -> Result<Gateway, ApiError> {
        let count = request.gateway_id.chars().count();
        if count == 0 || count > MAX_GATEWAY_ID_CHARS {
            return Err(ApiError::InvalidPayload(format!(
                "gateway_id: must be 1 to {MAX_GATEWAY_ID_CHARS} characters"
            )));
        }
        if request.tools.len() > MAX_TOOLS {
            return Err(ApiError::TooLarge(format!(
                "tools: {} tools is more than the {MAX_TOOLS} allowed",
                request.tools.len()
            )));
        }
        let mut tools = HashMap::new();
        let mut order = Vec::new();
        for (i, def) in request.tools.into_iter().enumerate() {
            let field = format!("tools[{i}]");
            if def.name == ASK_USER {
                return Err(ApiError::InvalidPayload(format!(
                    "{field}.name: {ASK_USER:?} is a built-in tool and cannot be registered"
                )));
            }
            let tool = Tool::new(def, Target::Gateway, &field)?;
            let name = tool.spec.name.clone();
            if tools.insert(name.clone(), Arc::new(tool)).is_some() {
                return Err(ApiError::InvalidPayload(format!(
                    "{field}.name: {name:?} is registered twice"
                )));
            }
            order.push(name);
        }
        let gateway = Gateway {
            sid: socket.id,
            gateway_id: request.gateway_id,
            socket: socket.clone(),
            tools: Arc::new(tools),
            order: order.into(),
        };
        let mut users = self.users.lock().expect("registry");
        let list = users.entry(user.clone()).or_default();
        list.retain(|g| g.sid != gateway.sid && g.gateway_id != gateway.gateway_id);
        list.push(gateway.clone());
        Ok(gateway)
    }

    /// Forgets what the socket `sid` registered; `false` when it had no
    /// current registration (none, or one replaced since).
    pub fn unregister(&self, user: &UserId, sid: Sid) -> bool {
        let mut users = self.users.lock().expect("registry");
        let Some(list) = users.get_mut(user) else {
            return false;
        };
        let before = list.len();
        list.retain(|g| g.sid != sid);
        let removed = list.len() != before;
        if list.is_empty() {
            users.remove(user);
        }
        removed
    }

    /// The user's connected gateways, oldest registration first.
    pub fn gateways(&self, user: &UserId) -> Vec<Gateway> {
        self.users
            .lock()
            .expect("registry")
            .get(user)
            .cloned()
            .unwrap_or_default()
    }

    /// What the model is offered in a session of `user`: the tools of the
    /// user's connected gateways (the first registration of a name wins),
    /// then `ask_user_questions`.
    pub fn offer(&self, user: &UserId) -> Offer {
        let mut tools: Vec<Arc<Tool>> = Vec::new();
        for gateway in self.gateways(user) {
            for name in gateway.order.iter() {
                if tools.iter().all(|t| &t.spec.name != name) {
                    tools.push(gateway.tools[name].clone());
                }
            }
        }
        tools.push(self.ask_user.clone());
        Offer { tools }
    }
}
