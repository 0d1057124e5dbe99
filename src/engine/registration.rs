//! The `gateway:register` payload (PROTOCOL §4.5) and the checks it
//! passes before the registry keeps it: at most [`MAX_REGISTRATION_BYTES`]
//! of JSON, refused before it is even decoded; at most [`MAX_TOOLS`] tools
//! with valid names and descriptions (no NUL); a `gateway_id` of at most
//! [`MAX_GATEWAY_ID_CHARS`] characters; and schemas within the limits of
//! [`super::schema`], which share one budget per registration. Everything
//! but the size check is CPU work for a blocking thread.

use std::sync::Arc;

use serde::Deserialize;
use serde_json::value::RawValue;

use super::EngineError;
use super::gateways::{ASK_USER, Target, Tool};
use super::schema::{self, Budget};
use crate::payload::{Invalid, check_text};

/// Tools one gateway may register.
pub const MAX_TOOLS: usize = 128;
/// Longest `gateway:register` payload, in bytes of JSON: 128 tools with
/// schemas of a few KB each fit.
pub const MAX_REGISTRATION_BYTES: usize = 1024 * 1024;
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

/// One tool of a `gateway:register`, its schema still as the JSON text
/// the gateway sent.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ToolDef {
    pub name: String,
    pub description: String,
    pub parameters: Box<RawValue>,
    #[serde(default)]
    pub requires_approval: bool,
}

/// Refuses a registration too big to decode.
pub(super) fn check_size(raw: &RawValue) -> Result<(), Invalid> {
    let size = raw.get().len();
    if size > MAX_REGISTRATION_BYTES {
        return Err(Invalid::TooLarge(format!(
            "tools: the registration is {size} bytes of JSON, more than the \
             {MAX_REGISTRATION_BYTES} allowed; register fewer tools or smaller schemas"
        )));
    }
    Ok(())
}

/// Decodes a `gateway:register` and checks its `gateway_id`; blocking
/// (the payload may be a MiB of JSON).
pub(super) fn decode(raw: &RawValue) -> Result<Register, Invalid> {
    let request: Register = crate::payload::parse_raw(raw)?;
    check_gateway_id(&request.gateway_id)?;
    Ok(request)
}

fn check_gateway_id(gateway_id: &str) -> Result<(), Invalid> {
    let count = gateway_id.chars().count();
    if count == 0 || count > MAX_GATEWAY_ID_CHARS {
        return Err(Invalid::Malformed(format!(
            "gateway_id: must be 1 to {MAX_GATEWAY_ID_CHARS} characters"
        )));
    }
    check_text("gateway_id", gateway_id)
}

/// Checks every tool of a registration; blocking.
pub(super) fn admit_tools(defs: Vec<ToolDef>) -> Result<Vec<Arc<Tool>>, EngineError> {
    if defs.len() > MAX_TOOLS {
        return Err(Invalid::TooLarge(format!(
            "tools: {} tools is more than the {MAX_TOOLS} allowed",
            defs.len()
        ))
        .into());
    }
    let mut budget = Budget::default();
    let mut tools: Vec<Arc<Tool>> = Vec::with_capacity(defs.len());
    for (i, def) in defs.into_iter().enumerate() {
        let field = format!("tools[{i}]");
        if def.name == ASK_USER {
            return Err(Invalid::Malformed(format!(
                "{field}.name: {ASK_USER:?} is a built-in tool and cannot be registered"
            ))
            .into());
        }
        if tools.iter().any(|t| t.name == def.name) {
            return Err(Invalid::Malformed(format!(
                "{field}.name: {:?} is registered twice",
                def.name
            ))
            .into());
        }
        let tool = admit_tool(def, Target::Gateway, &field, &mut budget)?;
        tools.push(Arc::new(tool));
    }
    Ok(tools)
}

/// Checks the tool at `field` (`tools[3]`) and its schema; blocking.
pub(super) fn admit_tool(
    def: ToolDef,
    target: Target,
    field: &str,
    budget: &mut Budget,
) -> Result<Tool, EngineError> {
    check_name(&def.name, field)?;
    if def.description.chars().count() > MAX_DESCRIPTION_CHARS {
        return Err(Invalid::Malformed(format!(
            "{field}.description: longer than {MAX_DESCRIPTION_CHARS} characters"
        ))
        .into());
    }
    check_text(&format!("{field}.description"), &def.description)?;
    let parameters = schema::admit(field, &def.parameters, budget)?;
    Ok(Tool::new(def, parameters, target))
}

fn check_name(name: &str, field: &str) -> Result<(), Invalid> {
    if name.is_empty()
        || name.len() > 64
        || !name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    {
        return Err(Invalid::Malformed(format!(
            "{field}.name: {name:?} must be 1 to 64 letters, digits, `_` or `-`"
        )));
    }
    Ok(())
}
