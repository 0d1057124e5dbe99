//! Any OpenAI-compatible Chat Completions endpoint (OpenAI, vLLM, llama.cpp,
//! Ollama, LM Studio, OpenRouter…): `POST {base_url}/chat/completions` with
//! `stream: true`, read as Server-Sent Events.

use std::time::Duration;

use eventsource_stream::Eventsource;
use futures_util::StreamExt;
use secrecy::{ExposeSecret, SecretString};
use serde::Serialize;

use super::assemble::Assembler;
use super::{
    ChatMessage, ChatRequest, Provider, ProviderError, ProviderEvent, ProviderStream, ToolSpec,
};

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
        Box::pin(events(http, self.idle_timeout))
    }
}

/// The request, then its events, as one stream: text deltas as they come,
/// then the assembled tool calls and the finish; the first error ends it.
/// Waiting for the response or for the next event past `idle` is an error.
fn events(
    http: reqwest::RequestBuilder,
    idle: Duration,
) -> impl futures_util::Stream<Item = Result<ProviderEvent, ProviderError>> + Send {
    async_stream::try_stream! {
        let response = tokio::time::timeout(idle, http.send())
            .await
            .map_err(|_| ProviderError::Idle(idle))?
            .map_err(|e| ProviderError::Connect(e.to_string()))?;
        let mut events = successful(response)
            .await?
            .bytes_stream()
            .eventsource();
        let mut assembler = Assembler::default();
        while let Some(event) = tokio::time::timeout(idle, events.next())
            .await
            .map_err(|_| ProviderError::Idle(idle))?
        {
            let event = event.map_err(|e| ProviderError::Malformed(e.to_string()))?;
            for delta in assembler.push(&event.data)? {
                yield delta;
            }
            if assembler.is_done() {
                break;
            }
        }
        for end in assembler.finish()? {
            yield end;
        }
    }
}

/// The response when its status is a success; otherwise the status and the
/// start of the body, as an error.
async fn successful(response: reqwest::Response) -> Result<reqwest::Response, ProviderError> {
    let status = response.status();
    if status.is_success() {
        return Ok(response);
    }
    let body = response.text().await.unwrap_or_default();
    Err(ProviderError::Http {
        status: status.as_u16(),
        body: body.chars().take(500).collect(),
    })
}
