//! Any OpenAI-compatible Chat Completions endpoint (OpenAI, vLLM, llama.cpp,
//! Ollama, LM Studio, OpenRouter…): `POST {base_url}/chat/completions` with
//! `stream: true`, read as Server-Sent Events.

use std::time::Duration;

use eventsource_stream::Eventsource;
use futures_util::StreamExt;
use secrecy::{ExposeSecret, SecretString};
use serde::Serialize;

use super::assemble::Assembler;
use super::{ChatMessage, ChatRequest, Provider, ProviderError, ProviderStream, ToolSpec};

pub struct OpenAi {
    http: reqwest::Client,
    base_url: String,
    api_key: Option<SecretString>,
    model: String,
    idle_timeout: Duration,
}

impl OpenAi {
    pub fn new(
        base_url: &str,
        api_key: Option<SecretString>,
        model: &str,
        connect_timeout: Duration,
        idle_timeout: Duration,
    ) -> Result<Self, ProviderError> {
        let http = reqwest::Client::builder()
            .connect_timeout(connect_timeout)
            .build()
            .map_err(|e| ProviderError::NotConfigured(e.to_string()))?;
        Ok(Self {
            http,
            base_url: base_url.trim_end_matches('/').to_owned(),
            api_key,
            model: model.to_owned(),
            idle_timeout,
        })
    }

    /// The request body, serialized straight from the request: the tools'
    /// schemas are not copied into a second JSON tree first.
    fn body<'a>(&'a self, request: &'a ChatRequest) -> Body<'a> {
        Body {
            model: &self.model,
            messages: &request.messages,
            stream: true,
            stream_options: StreamOptions {
                include_usage: true,
            },
            tools: request
                .tools
                .iter()
                .map(|function| FunctionTool {
                    kind: "function",
                    function,
                })
                .collect(),
        }
    }
}

/// `POST /chat/completions`.
#[derive(Serialize)]
struct Body<'a> {
    model: &'a str,
    messages: &'a [ChatMessage],
    stream: bool,
    stream_options: StreamOptions,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    tools: Vec<FunctionTool<'a>>,
}

#[derive(Serialize)]
struct StreamOptions {
    include_usage: bool,
}

/// `{ "type": "function", "function": { name, description, parameters } }`.
#[derive(Serialize)]
struct FunctionTool<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    function: &'a ToolSpec,
}

impl Provider for OpenAi {
    fn stream(&self, request: ChatRequest) -> ProviderStream {
        let mut http = self
            .http
            .post(format!("{}/chat/completions", self.base_url))
            .header("accept", "text/event-stream")
            .json(&self.body(&request));
        if let Some(key) = &self.api_key {
            http = http.bearer_auth(key.expose_secret());
        }
        let idle = self.idle_timeout;
        let stream = async_stream(http, idle);
        Box::pin(stream)
    }
}

/// The request, then its events, as one stream.
fn async_stream(
    http: reqwest::RequestBuilder,
    idle: Duration,
) -> impl futures_util::Stream<Item = Result<super::ProviderEvent, ProviderError>> + Send {
    enum State {
        Start(reqwest::RequestBuilder),
        Reading(
            Box<
                dyn futures_util::Stream<Item = Result<eventsource_stream::Event, String>>
                    + Send
                    + Unpin,
            >,
            Assembler,
        ),
        Done,
    }
    futures_util::stream::unfold(State::Start(http), move |state| async move {
        let (mut events, mut assembler) = match state {
            State::Done => return None,
            State::Start(http) => {
                let response = match tokio::time::timeout(idle, http.send()).await {
                    Err(_) => return Some((vec![Err(ProviderError::Idle(idle))], State::Done)),
                    Ok(Err(e)) => {
                        return Some((
                            vec![Err(ProviderError::Connect(e.to_string()))],
                            State::Done,
                        ));
                    }
                    Ok(Ok(response)) => response,
                };
                let status = response.status();
                if !status.is_success() {
                    let body = response.text().await.unwrap_or_default();
                    let body: String = body.chars().take(500).collect();
                    return Some((
                        vec![Err(ProviderError::Http {
                            status: status.as_u16(),
                            body,
                        })],
                        State::Done,
                    ));
                }
                let events = response
                    .bytes_stream()
                    .eventsource()
                    .map(|r| r.map_err(|e| e.to_string()));
                (
                    Box::new(events)
                        as Box<
                            dyn futures_util::Stream<
                                    Item = Result<eventsource_stream::Event, String>,
                                > + Send
                                + Unpin,
                        >,
                    Assembler::default(),
                )
            }
            State::Reading(events, assembler) => (events, assembler),
        };
        loop {
            match tokio::time::timeout(idle, events.next()).await {
                Err(_) => return Some((vec![Err(ProviderError::Idle(idle))], State::Done)),
                Ok(Some(Err(e))) => {
                    return Some((vec![Err(ProviderError::Malformed(e))], State::Done));
                }
                Ok(Some(Ok(event))) => match assembler.push(&event.data) {
                    Err(e) => return Some((vec![Err(e)], State::Done)),
                    Ok(_) if assembler.is_done() => {
                        let out = match assembler.finish() {
                            Ok(out) => out.into_iter().map(Ok).collect(),
                            Err(e) => vec![Err(e)],
                        };
                        return Some((out, State::Done));
                    }
                    Ok(out) if out.is_empty() => continue,
                    Ok(out) => {
                        return Some((
                            out.into_iter().map(Ok).collect(),
                            State::Reading(events, assembler),
                        ));
                    }
                },
                Ok(None) => {
                    let out = match assembler.finish() {
                        Ok(out) => out.into_iter().map(Ok).collect(),
                        Err(e) => vec![Err(e)],
                    };
                    return Some((out, State::Done));
                }
            }
        }
    })
    .flat_map(futures_util::stream::iter)
}
