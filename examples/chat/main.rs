//! A terminal chat client for Switchboard: the UI side of an agent session.
//!
//! It opens (or creates) a session on `/agent`, sends each message with
//! `agent:execute`, and prints the run as it streams: the assistant's text,
//! tool calls and their results. When a tool call needs approval it asks
//! you (`tool:approval`); when the model asks questions (`ask_user_questions`)
//! it reads your answers and sends them back (`tool:result`).
//!
//! ```sh
//! cargo run --release -- serve --dev          # prints a token
//! export SWITCHBOARD_TOKEN=eyJ…                # that token (or `--token`, visible in `ps`)
//! cargo run --release --example chat -- '/tool read_file {"path": "README.md"}'
//! cargo run --release --example chat           # then type messages; Ctrl-D ends
//! ```

use std::collections::BTreeMap;
use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, bail};
use clap::Parser;
use futures_util::FutureExt;
use serde_json::{Value, json};
use tf_rust_socketio::asynchronous::{Client, ClientBuilder};
use tf_rust_socketio::{Event, Payload};
use tokio::io::{AsyncBufReadExt, BufReader, Lines, Stdin};
use tokio::sync::{mpsc, oneshot};

/// How long a request may wait for its acknowledgement.
const ACK_WAIT: Duration = Duration::from_secs(15);
/// How long a tool call may go unanswered before the chat says that it
/// waits for a gateway. The session's status is `awaiting_tool` as soon as a
/// call is made, also while a connected gateway runs it, so the status alone
/// cannot tell a missing gateway from a working one.
const GATEWAY_HINT_AFTER: Duration = Duration::from_secs(3);

#[derive(Parser)]
#[command(about = "Chat with a Switchboard agent from the terminal")]
struct Args {
    /// The server's base URL.
    #[arg(long, default_value = "http://127.0.0.1:8200")]
    url: String,
    /// An API token or JWT (`serve --dev` prints one). Prefer the
    /// environment variable: a flag's value shows in `ps`.
    #[arg(long, env = "SWITCHBOARD_TOKEN", hide_env_values = true)]
    token: String,
    /// The session to talk in; a new one is created when absent.
    #[arg(long)]
    session: Option<String>,
    /// Approve every tool call without asking.
    #[arg(long)]
    yes: bool,
    /// Messages to send, one run each; read from stdin when none are given.
    messages: Vec<String>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let (events_tx, events) = mpsc::unbounded_channel::<Value>();
    // The namespace's answer: `connect` returns once the request is sent.
    let (connected_tx, mut connected) = mpsc::unbounded_channel::<Result<(), String>>();
    let refused = connected_tx.clone();
    let client = ClientBuilder::new(args.url.trim_end_matches('/'))
        .namespace("/agent")
        .auth(json!({ "token": args.token }))
        .reconnect(false)
        .on("agent:event", move |payload, _| {
            if let Some(event) = first(payload) {
                let _ = events_tx.send(event);
            }
            async {}.boxed()
        })
        .on(Event::Connect, move |_, _| {
            let _ = connected_tx.send(Ok(()));
            async {}.boxed()
        })
        .on(Event::Error, move |payload, _| {
            let message = match first(payload).unwrap_or_default() {
                Value::String(text) => text,
                other => other.to_string(),
            };
            eprintln!("connection error: {message}");
            let _ = refused.send(Err(message));
            async {}.boxed()
        })
        .connect()
        .await
        .context("cannot connect to the server")?;
    // Requests sent before the namespace accepted the connection are lost.
    match tokio::time::timeout(ACK_WAIT, connected.recv()).await {
        Ok(Some(Ok(()))) => {}
        Ok(Some(Err(message))) => bail!("the server refused the connection: {message}"),
        Ok(None) | Err(_) => bail!("no answer from the server's /agent namespace"),
    }

    let session = match args.session.clone() {
        Some(id) => id,
        None => {
            let ack = request(&client, "session:create", json!({ "title": "chat" })).await?;
            ack["session"]["id"].as_str().unwrap_or_default().to_owned()
        }
    };
    let ack = request(&client, "session:get", json!({ "session_id": session })).await?;
    let head = ack["session"]["head_seq"].as_i64().unwrap_or(0);
    request(
        &client,
        "session:subscribe",
        json!({ "session_id": session, "after_seq": head }),
    )
    .await?;
    println!("session {session}");

    let mut events = InOrder::new(events, head);
    let mut stdin = BufReader::new(tokio::io::stdin()).lines();
    let mut queued = args.messages.clone().into_iter();
    loop {
        let message = match queued.next() {
            Some(message) => message,
            None if args.messages.is_empty() => match ask(&mut stdin, "> ").await? {
                Some(line) if line.trim().is_empty() => continue,
                Some(line) => line,
                None => break,
            },
            None => break,
        };
        let ack = request(
            &client,
            "agent:execute",
            json!({ "session_id": session, "content": message }),
        )
        .await?;
        let run_id = ack["run_id"].as_str().unwrap_or_default().to_owned();
        follow(
            &client,
            &session,
            &run_id,
            &mut events,
            &mut stdin,
            args.yes,
        )
        .await?;
    }
    let _ = client.disconnect().await;
    Ok(())
}

/// Prints the run's events until its `run.finished`, answering approvals
/// and questions on the way.
async fn follow(
    client: &Client,
    session: &str,
    run_id: &str,
    events: &mut InOrder,
    stdin: &mut Lines<BufReader<Stdin>>,
    approve_all: bool,
) -> anyhow::Result<()> {
    // Whether a tool call waits for a gateway's answer.
    let mut awaiting_tool = false;
    loop {
        let next = if awaiting_tool {
            match tokio::time::timeout(GATEWAY_HINT_AFTER, events.recv()).await {
                Ok(next) => next,
                Err(_) => {
                    println!(
                        "[no tool result after {}s: the call waits for a gateway, which may \
                         still be working on it; is one running?]",
                        GATEWAY_HINT_AFTER.as_secs()
                    );
                    awaiting_tool = false;
                    continue;
                }
            }
        } else {
            events.recv().await
        };
        let Some(event) = next else { break };
        if event["run_id"] != run_id {
            continue;
        }
        let data = &event["data"];
        match event["type"].as_str().unwrap_or_default() {
            "text.delta" => {
                print!("{}", data["delta"].as_str().unwrap_or_default());
                std::io::stdout().flush()?;
            }
            "message.completed" => println!(),
            "tool.call" => {
                let (call, name) = (text(&data["call_id"]), text(&data["name"]));
                println!("[call {call}] {name} {}", data["arguments"]);
                if data["target"] == "user" {
                    let output = answer_questions(stdin, &data["arguments"]["questions"]).await?;
                    let answer = json!({
                        "session_id": session, "call_id": data["call_id"], "output": output,
                    });
                    request(client, "tool:result", answer).await?;
                }
            }
            "tool.approval_requested" => {
                let approved = approve_all || {
                    let prompt =
                        format!("Run {} {}? [y/N] ", text(&data["name"]), data["arguments"]);
                    let line = ask(stdin, &prompt).await?.unwrap_or_default();
                    matches!(line.trim(), "y" | "Y" | "yes")
                };
                let mut decision = json!({
                    "session_id": session, "call_id": data["call_id"],
                    "decision": if approved { "approve" } else { "deny" },
                });
                if !approved {
                    decision["reason"] = json!("the user said no in the chat client");
                }
                request(client, "tool:approval", decision).await?;
            }
            "tool.result" => {
                let output = match &data["output"] {
                    Value::String(text) => text.clone(),
                    other => other.to_string(),
                };
                let short: String = output.chars().take(300).collect();
                let more = if short.len() < output.len() {
                    "…"
                } else {
                    ""
                };
                let (status, call) = (text(&data["status"]), text(&data["call_id"]));
                println!("[{status} {call}] {short}{more}");
            }
            // Approvals and questions are asked above; a call that stays
            // unanswered is reported by the timeout above.
            "status" => awaiting_tool = data["status"] == "awaiting_tool",
            "error" => println!("[error {}] {}", text(&data["code"]), text(&data["message"])),
            "run.finished" => {
                println!("[run {}]", data["reason"].as_str().unwrap_or_default());
                return Ok(());
            }
            _ => {}
        }
    }
    bail!("the connection closed during the run")
}

/// Session events in `seq` order: the client library may hand them over
/// out of order (it dispatches each packet in a task of its own).
struct InOrder {
    events: mpsc::UnboundedReceiver<Value>,
    next: i64,
    early: BTreeMap<i64, Value>,
}

impl InOrder {
    fn new(events: mpsc::UnboundedReceiver<Value>, after: i64) -> Self {
        Self {
            events,
            next: after + 1,
            early: BTreeMap::new(),
        }
    }

    async fn recv(&mut self) -> Option<Value> {
        loop {
            if let Some(event) = self.early.remove(&self.next) {
                self.next += 1;
                return Some(event);
            }
            let event = self.events.recv().await?;
            let seq = event["seq"].as_i64().unwrap_or(0);
            if seq >= self.next {
                self.early.insert(seq, event);
            }
        }
    }
}

fn text(value: &Value) -> &str {
    value.as_str().unwrap_or_default()
}

/// Asks each question on the terminal; the answers, one per line.
async fn answer_questions(
    stdin: &mut Lines<BufReader<Stdin>>,
    questions: &Value,
) -> anyhow::Result<String> {
    let mut answers = Vec::new();
    for question in questions.as_array().into_iter().flatten() {
        let question = question.as_str().unwrap_or_default();
        let answer = ask(stdin, &format!("{question} "))
            .await?
            .unwrap_or_default();
        answers.push(format!("{question} {answer}"));
    }
    Ok(answers.join("\n"))
}

async fn ask(stdin: &mut Lines<BufReader<Stdin>>, prompt: &str) -> anyhow::Result<Option<String>> {
    print!("{prompt}");
    std::io::stdout().flush()?;
    Ok(stdin.next_line().await?)
}

/// Sends a request and waits for its acknowledgement; an `ok: false`
/// answer becomes an error naming its code.
async fn request(client: &Client, event: &str, payload: Value) -> anyhow::Result<Value> {
    let (tx, rx) = oneshot::channel::<Value>();
    let tx = Arc::new(Mutex::new(Some(tx)));
    client
        .emit_with_ack(event, payload, ACK_WAIT, move |answer, _| {
            if let Some(tx) = tx.lock().expect("ack").take() {
                let _ = tx.send(first(answer).unwrap_or_default());
            }
            async {}.boxed()
        })
        .await
        .with_context(|| format!("cannot send {event}"))?;
    let ack = tokio::time::timeout(ACK_WAIT, rx)
        .await
        .with_context(|| format!("no answer to {event}"))?
        .context("the connection closed")?;
    if ack["ok"] != true {
        bail!(
            "{event} refused: {} ({})",
            ack["error"]["message"].as_str().unwrap_or_default(),
            ack["error"]["code"].as_str().unwrap_or_default()
        );
    }
    Ok(ack)
}

/// The first argument of an event or acknowledgement.
fn first(payload: Payload) -> Option<Value> {
    match payload {
        Payload::Text(args, _) => match args.into_iter().next()? {
            // Acknowledgements arrive as one array of their arguments.
            Value::Array(inner) => inner.into_iter().next(),
            other => Some(other),
        },
        _ => None,
    }
}
