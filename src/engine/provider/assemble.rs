//! Joins streamed Chat Completions chunks into [`ProviderEvent`]s.
//!
//! Tool calls arrive in fragments: the first names the call (`id`,
//! `function.name`) at an `index`, later ones append to its
//! `function.arguments`. Fragments are joined by `index`; a fragment that
//! brings a new `id` at an index already in use starts a new call (some
//! servers send every call at index 0).

use serde::Deserialize;

use super::{ProviderError, ProviderEvent, ToolCall, Usage};

#[derive(Debug, Deserialize)]
struct Chunk {
    #[serde(default)]
    choices: Vec<Choice>,
    #[serde(default)]
    usage: Option<Usage>,
    #[serde(default)]
    error: Option<serde_json::Value>,
}

#[derive(Debug, Deserialize)]
struct Choice {
    #[serde(default)]
    delta: Option<Delta>,
    #[serde(default)]
    finish_reason: Option<String>,
}

#[derive(Debug, Deserialize)]
struct Delta {
    #[serde(default)]
    content: Option<String>,
    #[serde(default)]
    tool_calls: Option<Vec<ToolCallFragment>>,
}

#[derive(Debug, Deserialize)]
struct ToolCallFragment {
    #[serde(default)]
    index: Option<usize>,
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    function: Option<FunctionFragment>,
}

#[derive(Debug, Deserialize)]
struct FunctionFragment {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    arguments: Option<String>,
}

/// The state of one streamed completion.
#[derive(Debug, Default)]
pub struct Assembler {
    /// Calls in the order they were started; `(index, call)`.
    calls: Vec<(usize, ToolCall)>,
    finish_reason: Option<String>,
    usage: Option<Usage>,
    done: bool,
}

impl Assembler {
    /// Takes one SSE `data:` payload; returns the events it completes.
    pub fn push(&mut self, data: &str) -> Result<Vec<ProviderEvent>, ProviderError> {
        if data.trim() == "[DONE]" {
            self.done = true;
            return Ok(Vec::new());
        }
        let chunk: Chunk = serde_json::from_str(data)
            .map_err(|e| ProviderError::Malformed(format!("{e} in chunk {}", preview(data))))?;
        if let Some(error) = chunk.error {
            let message = error
                .get("message")
                .and_then(|m| m.as_str())
                .map(str::to_owned)
                .unwrap_or_else(|| error.to_string());
            return Err(ProviderError::Upstream(message));
        }
        if chunk.usage.is_some() {
            self.usage = chunk.usage;
        }
        let mut events = Vec::new();
        for choice in chunk.choices.into_iter().take(1) {
            if let Some(delta) = choice.delta {
                if let Some(text) = delta.content.filter(|t| !t.is_empty()) {
                    events.push(ProviderEvent::TextDelta(text));
                }
                for fragment in delta.tool_calls.unwrap_or_default() {
                    self.add_fragment(fragment)?;
                }
            }
            if let Some(reason) = choice.finish_reason {
                self.finish_reason = Some(reason);
            }
        }
        Ok(events)
    }

    fn add_fragment(&mut self, fragment: ToolCallFragment) -> Result<(), ProviderError> {
        let index = fragment.index.unwrap_or(0);
        let function = fragment.function.unwrap_or(FunctionFragment {
            name: None,
            arguments: None,
        });
        let current = self.calls.iter().rposition(|(i, _)| *i == index);
        let starts_new = match (&fragment.id, current) {
            (_, None) => true,
            (Some(id), Some(at)) => !id.is_empty() && self.calls[at].1.id != *id,
            (None, Some(_)) => false,
        };
        if starts_new {
            self.calls.push((
                index,
                ToolCall {
                    id: fragment.id.unwrap_or_default(),
                    name: function.name.unwrap_or_default(),
                    arguments: function.arguments.unwrap_or_default(),
                },
            ));
        } else if let Some(at) = current {
            let call = &mut self.calls[at].1;
            if let Some(name) = function.name {
                call.name.push_str(&name);
            }
            if let Some(arguments) = function.arguments {
                call.arguments.push_str(&arguments);
            }
        }
        Ok(())
    }

    /// Whether the provider sent `[DONE]`.
    pub fn is_done(&self) -> bool {
        self.done
    }

    /// Ends the stream: the assembled tool calls and the finish, or
    /// [`ProviderError::Incomplete`] when the provider never said it was done.
    pub fn finish(self) -> Result<Vec<ProviderEvent>, ProviderError> {
        let reason = match (self.finish_reason, self.done) {
            (Some(reason), _) => reason,
            (None, true) if !self.calls.is_empty() => "tool_calls".to_owned(),
            (None, true) => "stop".to_owned(),
            (None, false) => return Err(ProviderError::Incomplete),
        };
        let mut events = Vec::with_capacity(self.calls.len() + 1);
        for (n, (_, mut call)) in self.calls.into_iter().enumerate() {
            if call.name.is_empty() {
                return Err(ProviderError::Malformed(format!(
                    "tool call {n} has no function name"
                )));
            }
            if call.id.is_empty() {
                call.id = format!("call_{n}");
            }
            events.push(ProviderEvent::ToolCall(call));
        }
        events.push(ProviderEvent::Finished {
            reason,
            usage: self.usage,
        });
        Ok(events)
    }
}

fn preview(data: &str) -> String {
    let end = data
        .char_indices()
        .nth(120)
        .map(|(i, _)| i)
        .unwrap_or(data.len());
    format!("{:?}", &data[..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(chunks: &[&str]) -> Result<Vec<ProviderEvent>, ProviderError> {
        let mut assembler = Assembler::default();
        let mut events = Vec::new();
        for chunk in chunks {
            events.extend(assembler.push(chunk)?);
        }
        events.extend(assembler.finish()?);
        Ok(events)
    }

    #[test]
    fn text_deltas_come_as_they_arrive_and_the_finish_carries_usage() {
        let events = run(&[
            r#"{"choices":[{"delta":{"role":"assistant","content":""}}]}"#,
            r#"{"choices":[{"delta":{"content":"Hel"}}]}"#,
            r#"{"choices":[{"delta":{"content":"lo"},"finish_reason":null}]}"#,
            r#"{"choices":[{"delta":{},"finish_reason":"stop"}]}"#,
            r#"{"choices":[],"usage":{"prompt_tokens":5,"completion_tokens":2,"total_tokens":7}}"#,
            "[DONE]",
        ])
        .unwrap();
        assert_eq!(
            events,
            vec![
                ProviderEvent::TextDelta("Hel".into()),
                ProviderEvent::TextDelta("lo".into()),
                ProviderEvent::Finished {
                    reason: "stop".into(),
                    usage: Some(Usage {
                        prompt_tokens: 5,
                        completion_tokens: 2,
                        total_tokens: 7
                    }),
                },
            ]
        );
    }

    #[test]
    fn tool_call_fragments_are_joined_by_index() {
        let events = run(&[
            r#"{"choices":[{"delta":{"tool_calls":[{"index":0,"id":"call_a","type":"function","function":{"name":"read_file","arguments":""}}]}}]}"#,
            r#"{"choices":[{"delta":{"tool_calls":[{"index":1,"id":"call_b","function":{"name":"list_dir","arguments":"{\"pa"}}]}}]}"#,
            r#"{"choices":[{"delta":{"tool_calls":[{"index":0,"function":{"arguments":"{\"path\":"}}]}}]}"#,
            r#"{"choices":[{"delta":{"tool_calls":[{"index":0,"function":{"arguments":"\"a.txt\"}"}}]}}]}"#,
            r#"{"choices":[{"delta":{"tool_calls":[{"index":1,"function":{"arguments":"th\":\".\"}"}}]}}]}"#,
            r#"{"choices":[{"delta":{},"finish_reason":"tool_calls"}]}"#,
        ])
        .unwrap();
        assert_eq!(
            events[..2],
            [
                ProviderEvent::ToolCall(ToolCall {
                    id: "call_a".into(),
                    name: "read_file".into(),
                    arguments: r#"{"path":"a.txt"}"#.into()
                }),
                ProviderEvent::ToolCall(ToolCall {
                    id: "call_b".into(),
                    name: "list_dir".into(),
                    arguments: r#"{"path":"."}"#.into()
                }),
            ]
        );
        assert!(
            matches!(&events[2], ProviderEvent::Finished { reason, .. } if reason == "tool_calls")
        );
    }

    #[test]
    fn a_new_id_at_a_reused_index_starts_a_new_call() {
        let events = run(&[
            r#"{"choices":[{"delta":{"tool_calls":[{"index":0,"id":"c1","function":{"name":"a","arguments":"{}"}}]}}]}"#,
            r#"{"choices":[{"delta":{"tool_calls":[{"index":0,"id":"c2","function":{"name":"b","arguments":"{"}}]}}]}"#,
            r#"{"choices":[{"delta":{"tool_calls":[{"index":0,"function":{"arguments":"}"}}]}}]}"#,
            "[DONE]",
        ])
        .unwrap();
        let names: Vec<_> = events
            .iter()
            .filter_map(|e| match e {
                ProviderEvent::ToolCall(c) => {
                    Some((c.id.as_str(), c.name.as_str(), c.arguments.as_str()))
                }
                _ => None,
            })
            .collect();
        assert_eq!(names, [("c1", "a", "{}"), ("c2", "b", "{}")]);
        assert!(
            matches!(events.last(), Some(ProviderEvent::Finished { reason, .. }) if reason == "tool_calls")
        );
    }

    #[test]
    fn errors_malformed_chunks_and_missing_ends_are_errors() {
        assert_eq!(
            run(&[r#"{"error":{"message":"overloaded"}}"#]).unwrap_err(),
            ProviderError::Upstream("overloaded".into())
        );
        assert!(matches!(
            run(&[r#"{"choices":[{"delta":{"content":"x"}}"#]).unwrap_err(),
            ProviderError::Malformed(_)
        ));
        assert_eq!(
            run(&[r#"{"choices":[{"delta":{"content":"x"}}]}"#]).unwrap_err(),
            ProviderError::Incomplete
        );
    }

    #[test]
    fn a_call_without_an_id_gets_one_and_a_call_without_a_name_is_malformed() {
        let events = run(&[
            r#"{"choices":[{"delta":{"tool_calls":[{"index":0,"function":{"name":"a","arguments":"{}"}}]}}]}"#,
            "[DONE]",
        ])
        .unwrap();
        assert!(matches!(&events[0], ProviderEvent::ToolCall(c) if c.id == "call_0"));
        assert!(matches!(
            run(&[
                r#"{"choices":[{"delta":{"tool_calls":[{"index":0,"id":"c","function":{"arguments":"{}"}}]}}]}"#,
                "[DONE]",
            ])
            .unwrap_err(),
            ProviderError::Malformed(_)
        ));
    }

    #[test]
    fn done_without_a_finish_reason_stops_and_only_the_first_choice_counts() {
        let events = run(&[
            r#"{"choices":[{"delta":{"content":"a"}},{"delta":{"content":"b"}}]}"#,
            "[DONE]",
        ])
        .unwrap();
        assert_eq!(
            events,
            [
                ProviderEvent::TextDelta("a".into()),
                ProviderEvent::Finished {
                    reason: "stop".into(),
                    usage: None
                },
            ]
        );
    }
}
