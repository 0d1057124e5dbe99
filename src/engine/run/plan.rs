//! A step's tool calls: each is logged and gets a row, refused at once or
//! left open for an approval, a gateway or the user.

use std::sync::Arc;

use serde_json::{Value, json};

use super::Turn;
use super::wait::waiting_status;
use crate::engine::calls::{self, CallStatus, Outcome};
use crate::engine::conversation::arguments_value;
use crate::engine::gateways::{Offer, Target, Tool};
use crate::engine::provider::ToolCall;
use crate::engine::record::Batch;
use crate::engine::tools;
use crate::error::Chain;
use crate::events;
use crate::ids::CallId;
use crate::sessions::Status;

/// Logs the model's tool calls and makes a row for each: refused at once
/// (no such tool, arguments that do not fit its schema), waiting for
/// approval, for a gateway, or for the user. `ids` are the calls' ids, in
/// order ([`calls::make_ids_unique`]). Returns the ids still open.
pub(super) async fn plan_calls(
    turn: &Turn,
    batch: &mut Batch,
    offer: &Offer,
    calls: &[ToolCall],
    ids: &[CallId],
) -> Vec<CallId> {
    let deadline = turn.inner.settings.tool_deadline();
    let all_arguments: Vec<Value> = calls
        .iter()
        .map(|call| arguments_value(&call.arguments))
        .collect();
    let mut misfits = check_calls(turn, offer, calls, &all_arguments).await;
    let mut open = Vec::new();
    let mut waiting = Vec::new();
    let mut then = Vec::new();
    let planned = calls.iter().zip(ids).zip(all_arguments).zip(&mut misfits);
    for (((call, id), arguments), misfit) in planned {
        let tool = offer.get(&call.name);
        let target = tool.map_or(Target::Server, |t| t.target);
        batch.event(events::ToolCall {
            call_id: id.clone(),
            name: call.name.clone(),
            arguments: arguments.clone(),
            target,
        });
        let refused = match tool {
            None => Some(Outcome::error(format!(
                "no tool named {:?} is available in this session",
                call.name
            ))),
            Some(_) => misfit.take().map(Outcome::error),
        };
        let requires_approval = tool.is_some_and(|t| t.requires_approval);
        let (status, deadline) = match (&refused, target) {
            (Some(_), _) => (CallStatus::Resolved, None),
            (None, _) if requires_approval => (CallStatus::AwaitingApproval, None),
            (None, Target::Gateway) => (CallStatus::Pending, Some(deadline)),
            (None, _) => (CallStatus::Pending, None),
        };
        batch.tool_call(calls::row(
            id,
            call,
            &arguments,
            calls::NewCall {
                session: &turn.session,
                run_id: &turn.run_id,
                owner: turn.owner.as_str(),
                target,
                requires_approval,
                status,
                deadline,
                outcome: refused.as_ref(),
            },
        ));
        if refused.is_none() {
            open.push(id.clone());
            waiting.push((status == CallStatus::AwaitingApproval, target));
        }
        then.push((call, id, arguments, refused, requires_approval));
    }
    // After every `tool.call`: the refusals' results and the approval requests.
    for (call, id, arguments, refused, requires_approval) in then {
        match refused {
            Some(outcome) => tools::result(batch, id, outcome),
            None if requires_approval => {
                batch.event(events::ToolApprovalRequested {
                    call_id: id.clone(),
                    name: call.name.clone(),
                    arguments,
                });
            }
            None => {}
        }
    }
    let status = waiting_status(waiting.iter().copied());
    if status != Status::Running {
        batch.status(status);
        turn.progress().status = status;
    }
    open
}

/// Why each call's arguments do not fit its tool's schema (`None`: they
/// do, or there is no such tool). Compiling and checking schemas is CPU
/// work: it runs on a blocking thread, one batch per step.
async fn check_calls(
    turn: &Turn,
    offer: &Offer,
    calls: &[ToolCall],
    arguments: &[Value],
) -> Vec<Option<String>> {
    let jobs: Vec<Option<(Arc<Tool>, String, Value)>> = calls
        .iter()
        .zip(arguments)
        .map(|(call, value)| {
            let tool = offer.get(&call.name)?;
            Some((tool.clone(), call.arguments.clone(), value.clone()))
        })
        .collect();
    if jobs.iter().all(Option::is_none) {
        return vec![None; calls.len()];
    }
    let names: Vec<Option<String>> = jobs
        .iter()
        .map(|job| job.as_ref().map(|(tool, ..)| tool.name.clone()))
        .collect();
    let checked = turn
        .inner
        .registry
        .compiler()
        .check(move || {
            jobs.into_iter()
                .map(|job| {
                    let (tool, raw, value) = job?;
                    check_arguments(&tool, &raw, &value).err()
                })
                .collect::<Vec<_>>()
        })
        .await;
    checked.unwrap_or_else(|error| {
        tracing::error!(
            error = %Chain(&error), run_id = %turn.run_id,
            "cannot check tool arguments"
        );
        names
            .into_iter()
            .map(|name| {
                name.map(|name| {
                    format!("the arguments of {name} could not be checked; call it again")
                })
            })
            .collect()
    })
}

/// The arguments as the tool's schema wants them: a JSON object that fits.
fn check_arguments(tool: &Tool, raw: &str, arguments: &Value) -> Result<(), String> {
    if !raw.trim().is_empty() && serde_json::from_str::<Value>(raw).is_err() {
        return Err(format!(
            "the arguments are not valid JSON; call {} again with a JSON object",
            tool.name
        ));
    }
    let arguments = if raw.trim().is_empty() {
        &json!({})
    } else {
        arguments
    };
    tool.check(arguments).map_err(|why| {
        format!(
            "the arguments do not match the parameters of {}: {why}; call it again with valid \
             arguments",
            tool.name
        )
    })
}

#[cfg(test)]
mod tests {
    use serde_json::value::RawValue;

    use super::*;
    use crate::engine::registration::{ToolDef, admit_tools};

    /// Checks `raw` as the model's arguments, read the way a step reads them.
    fn check(tool: &Tool, raw: &str) -> Result<(), String> {
        check_arguments(tool, raw, &arguments_value(raw))
    }

    fn gateway_tool(schema: &str) -> Arc<Tool> {
        let def = ToolDef {
            name: "run_tests".to_owned(),
            description: "Runs the test suite.".to_owned(),
            parameters: RawValue::from_string(schema.to_owned()).expect("JSON"),
            requires_approval: false,
        };
        admit_tools(vec![def]).expect("a valid schema").remove(0)
    }

    #[test]
    fn arguments_that_fit_the_schema_pass() {
        let ask = Tool::ask_user();
        assert_eq!(check(&ask, r#"{"questions":["Which branch?"]}"#), Ok(()));
    }

    #[test]
    fn arguments_that_are_not_json_ask_the_model_to_call_again() {
        let why = check(&Tool::ask_user(), r#"{"questions": ["Which"#).unwrap_err();
        assert_eq!(
            why,
            "the arguments are not valid JSON; call ask_user_questions again with a JSON object"
        );
    }

    #[test]
    fn arguments_that_miss_the_schema_name_where_they_are_wrong() {
        let why = check(&Tool::ask_user(), r#"{"questions":[""]}"#).unwrap_err();
        assert!(
            why.starts_with("the arguments do not match the parameters of ask_user_questions: "),
            "{why}"
        );
        assert!(why.contains("/questions/0"), "the path is named: {why}");
        assert!(
            why.ends_with("; call it again with valid arguments"),
            "{why}"
        );
    }

    #[test]
    fn no_arguments_are_checked_as_an_empty_object() {
        // Models send "" for a tool without parameters.
        let open = gateway_tool(r#"{"type":"object","properties":{}}"#);
        assert_eq!(check(&open, ""), Ok(()));
        assert_eq!(check(&open, "  \n"), Ok(()));
        // …and a tool that needs some says which.
        let why = check(&Tool::ask_user(), "").unwrap_err();
        assert!(
            why.contains(r#""questions" is a required property"#),
            "{why}"
        );
    }

    #[test]
    fn a_json_value_that_is_not_an_object_is_checked_as_given() {
        let tool = gateway_tool(r#"{"type":"object"}"#);
        let why = check(&tool, "[1, 2]").unwrap_err();
        assert!(
            why.starts_with("the arguments do not match the parameters of run_tests"),
            "{why}"
        );
        assert_eq!(check(&tool, r#"{"filter": "api"}"#), Ok(()));
    }
}
