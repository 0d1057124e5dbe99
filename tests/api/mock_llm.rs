//! A mock OpenAI-compatible Chat Completions server that a test starts
//! itself: it answers each request with the next reply the test queued,
//! records what it was sent, and can hold a stream open (a stall) until the
//! test releases it or the server under test hangs up.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use futures_util::StreamExt;
use serde_json::{Value, json};
use tokio::sync::{Notify, Semaphore};

use crate::helpers::ServerBuilder;

const WAIT: Duration = Duration::from_secs(20);

pub enum Frame {
    /// `data: {json}`
    Data(Value),
    /// Raw bytes of the stream.
    Raw(String),
    /// Waits until [`Gate::open`] (or forever, if it never is).
    Wait(Gate),
}

/// Holds a stream until the test opens it.
#[derive(Clone)]
pub struct Gate(Arc<Semaphore>);

impl Gate {
    pub fn new() -> Self {
        Self(Arc::new(Semaphore::new(0)))
    }

    pub fn open(&self) {
        self.0.add_permits(1_000);
    }
}

pub enum Reply {
    Stream(Vec<Frame>),
    Status(u16, String),
}

pub fn content(piece: &str) -> Frame {
    Frame::Data(json!({ "choices": [{ "index": 0, "delta": { "content": piece } }] }))
}

pub fn finish(reason: &str) -> Frame {
    Frame::Data(json!({ "choices": [{ "index": 0, "delta": {}, "finish_reason": reason }] }))
}

pub fn usage(prompt: u64, completion: u64) -> Frame {
    Frame::Data(json!({
        "choices": [],
        "usage": { "prompt_tokens": prompt, "completion_tokens": completion,
                   "total_tokens": prompt + completion },
    }))
}

pub fn done() -> Frame {
    Frame::Raw("data: [DONE]\n\n".into())
}

impl Reply {
    /// Streams `pieces` as content deltas, then `stop`, usage and `[DONE]`.
    pub fn text(pieces: &[&str]) -> Self {
        let mut frames: Vec<Frame> = pieces.iter().map(|p| content(p)).collect();
        frames.extend([finish("stop"), usage(10, pieces.len() as u64), done()]);
        Reply::Stream(frames)
    }

    /// Streams `pieces`, then stays silent until `gate` opens, then ends.
    pub fn text_held(pieces: &[&str], gate: &Gate, rest: &[&str]) -> Self {
        let mut frames: Vec<Frame> = pieces.iter().map(|p| content(p)).collect();
        frames.push(Frame::Wait(gate.clone()));
        frames.extend(rest.iter().map(|p| content(p)));
        frames.extend([finish("stop"), done()]);
        Reply::Stream(frames)
    }

    /// Streams `pieces`, then stalls forever.
    pub fn stall_after(pieces: &[&str]) -> Self {
        let mut frames: Vec<Frame> = pieces.iter().map(|p| content(p)).collect();
        frames.push(Frame::Wait(Gate::new()));
        Reply::Stream(frames)
    }

    /// Calls tools: each `(id, name, arguments)` in two fragments joined by
    /// `index`, then `finish_reason: tool_calls`.
    pub fn tool_calls(calls: &[(&str, &str, &str)]) -> Self {
        let mut frames = Vec::new();
        for (index, (id, name, arguments)) in calls.iter().enumerate() {
            let (head, tail) = arguments.split_at(arguments.len() / 2);
            frames.push(Frame::Data(
                json!({ "choices": [{ "index": 0, "delta": { "tool_calls": [{
                "index": index, "id": id, "type": "function",
                "function": { "name": name, "arguments": head } }] } }] }),
            ));
            frames.push(Frame::Data(
                json!({ "choices": [{ "index": 0, "delta": { "tool_calls": [{
                "index": index, "function": { "arguments": tail } }] } }] }),
            ));
        }
        frames.extend([finish("tool_calls"), usage(20, 5), done()]);
        Reply::Stream(frames)
    }
}

#[derive(Default)]
struct Inner {
    replies: Mutex<VecDeque<Reply>>,
    requests: Mutex<Vec<Value>>,
    /// Streams the server under test hung up on before they ended.
    hung_up: Mutex<usize>,
    changed: Notify,
}

#[derive(Clone)]
pub struct MockLlm {
    pub base_url: String,
    inner: Arc<Inner>,
}

/// Counts a stream as hung up on when the body is dropped unfinished.
struct HangUp(Arc<Inner>, bool);

impl HangUp {
    fn finished(mut self) {
        self.1 = true;
    }
}

impl Drop for HangUp {
    fn drop(&mut self) {
        if !self.1 {
            *self.0.hung_up.lock().unwrap() += 1;
            self.0.changed.notify_waiters();
        }
    }
}

async fn completions(State(inner): State<Arc<Inner>>, body: Bytes) -> Response {
    let request: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    inner.requests.lock().unwrap().push(request);
    inner.changed.notify_waiters();
    let reply = inner.replies.lock().unwrap().pop_front();
    let frames = match reply {
        None => {
            return (
                StatusCode::INTERNAL_SERVER_ERROR,
                "the test queued no reply",
            )
                .into_response();
        }
        Some(Reply::Status(code, body)) => {
            return (StatusCode::from_u16(code).unwrap(), body).into_response();
        }
        Some(Reply::Stream(frames)) => frames,
    };
    let guard = HangUp(inner.clone(), false);
    let stream = futures_util::stream::unfold(
        (frames.into_iter(), guard),
        |(mut frames, guard)| async move {
            loop {
                match frames.next() {
                    None => {
                        guard.finished();
                        return None;
                    }
                    Some(Frame::Data(value)) => {
                        let bytes = Bytes::from(format!("data: {value}\n\n"));
                        return Some((Ok::<_, Infallible>(bytes), (frames, guard)));
                    }
                    Some(Frame::Raw(text)) => {
                        return Some((Ok(Bytes::from(text)), (frames, guard)));
                    }
                    Some(Frame::Wait(gate)) => {
                        let _ = gate.0.acquire().await;
                    }
                }
            }
        },
    );
    (
        [("content-type", "text/event-stream")],
        Body::from_stream(stream.boxed()),
    )
        .into_response()
}

impl MockLlm {
    pub async fn start() -> Self {
        let inner = Arc::new(Inner::default());
        let app = axum::Router::new()
            .route("/v1/chat/completions", axum::routing::post(completions))
            .with_state(inner.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Self {
            base_url: format!("http://{addr}/v1"),
            inner,
        }
    }

    /// A server whose provider is this mock.
    pub fn server(&self) -> ServerBuilder {
        ServerBuilder::with_auth()
            .env("SWITCHBOARD_LLM_PROVIDER", "openai")
            .env("SWITCHBOARD_LLM_BASE_URL", &self.base_url)
            .env("SWITCHBOARD_LLM_MODEL", "mock-model")
            .env("SWITCHBOARD_LLM_API_KEY", "sk-mock")
    }

    /// Queues the answer to the next request.
    pub fn reply(&self, reply: Reply) -> &Self {
        self.inner.replies.lock().unwrap().push_back(reply);
        self
    }

    /// Every request body received so far.
    pub fn requests(&self) -> Vec<Value> {
        self.inner.requests.lock().unwrap().clone()
    }

    /// Waits until `pred` holds for (requests, hung-up streams).
    async fn wait(&self, what: &str, pred: impl Fn(usize, usize) -> bool) {
        tokio::time::timeout(WAIT, async {
            loop {
                let changed = self.inner.changed.notified();
                let requests = self.inner.requests.lock().unwrap().len();
                let hung_up = *self.inner.hung_up.lock().unwrap();
                if pred(requests, hung_up) {
                    return;
                }
                changed.await;
            }
        })
        .await
        .unwrap_or_else(|_| panic!("the mock provider never saw {what}"));
    }

    /// Waits until `count` requests have arrived.
    pub async fn received(&self, count: usize) {
        self.wait("the request", |r, _| r >= count).await;
    }

    /// Waits for the server to hang up on `count` streams.
    pub async fn hung_up(&self, count: usize) {
        self.wait("the stream dropped", |_, h| h >= count).await;
    }
}
