//! The test harness: the real `switchboard` binary on port 0 with a fresh
//! SQLite database, its JSON logs collected, and a Rust Socket.IO client.

use std::net::SocketAddr;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::FutureExt;
use serde_json::{Value, json};
use tempfile::TempDir;
use tf_rust_socketio::asynchronous::{Client, ClientBuilder};
use tf_rust_socketio::{Event, Payload, TransportType};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::{mpsc, watch};

pub const BIN: &str = env!("CARGO_BIN_EXE_switchboard");
pub const JWT_SECRET: &str = "test-secret-0123456789abcdef0123456789";
pub const WAIT: Duration = Duration::from_secs(15);

/// Lines a process wrote, parsed as JSON when they are JSON.
#[derive(Clone, Default)]
pub struct Lines {
    lines: Arc<Mutex<Vec<Value>>>,
    changed: Option<watch::Sender<usize>>,
}

impl Lines {
    fn new() -> (Self, watch::Receiver<usize>) {
        let (tx, rx) = watch::channel(0);
        (
            Self {
                lines: Default::default(),
                changed: Some(tx),
            },
            rx,
        )
    }

    fn push(&self, line: String) {
        let value = serde_json::from_str(&line).unwrap_or(Value::String(line));
        let len = {
            let mut lines = self.lines.lock().unwrap();
            lines.push(value);
            lines.len()
        };
        if let Some(tx) = &self.changed {
            let _ = tx.send(len);
        }
    }

    pub fn all(&self) -> Vec<Value> {
        self.lines.lock().unwrap().clone()
    }

    pub fn text(&self) -> String {
        self.all()
            .iter()
            .map(|v| v.to_string())
            .collect::<Vec<_>>()
            .join("\n")
    }
}

fn collect(stream: impl tokio::io::AsyncRead + Unpin + Send + 'static, lines: Lines) {
    tokio::spawn(async move {
        let mut reader = BufReader::new(stream).lines();
        while let Ok(Some(line)) = reader.next_line().await {
            lines.push(line);
        }
    });
}

/// A server to start: environment and flags on top of a fresh database.
/// Clones share the database (and the directory): that is how several
/// nodes of one cluster are started ([`Nodes`]).
#[derive(Clone)]
pub struct ServerBuilder {
    dir: Arc<TempDir>,
    database_url: Arc<tokio::sync::OnceCell<String>>,
    env: Vec<(String, String)>,
    args: Vec<String>,
}

impl Default for ServerBuilder {
    fn default() -> Self {
        Self::new()
    }
}

impl ServerBuilder {
    pub fn new() -> Self {
        Self {
            dir: Arc::new(tempfile::tempdir().expect("temp dir")),
            database_url: Default::default(),
            env: Vec::new(),
            args: Vec::new(),
        }
    }

    /// The usual test setup: static tokens for alice and bob, and a JWT secret.
    pub fn with_auth() -> Self {
        Self::new()
            .env("SWITCHBOARD_API_TOKENS", "alice:tok-alice,bob:tok-bob")
            .env("SWITCHBOARD_JWT_SECRET", JWT_SECRET)
    }

    pub fn env(mut self, key: &str, value: &str) -> Self {
        self.env.push((key.into(), value.into()));
        self
    }

    pub fn arg(mut self, arg: &str) -> Self {
        self.args.push(arg.into());
        self
    }

    pub fn dir(&self) -> &std::path::Path {
        self.dir.path()
    }

    /// A fresh database for this builder: a SQLite file in its directory,
    /// or, when `SWITCHBOARD_TEST_POSTGRES_URL` names a PostgreSQL server
    /// (as `.ci/run` does for its second pass), a new database there.
    pub async fn database_url(&self) -> String {
        self.database_url
            .get_or_init(|| async {
                match std::env::var("SWITCHBOARD_TEST_POSTGRES_URL") {
                    Ok(admin_url) => fresh_postgres_database(&admin_url).await,
                    Err(_) => format!("sqlite://{}/sb.db?mode=rwc", self.dir.path().display()),
                }
            })
            .await
            .clone()
    }

    async fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(BIN);
        cmd.env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("RUST_LOG", "info")
            .env("DATABASE_URL", self.database_url().await)
            .current_dir(self.dir.path())
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        cmd
    }

    /// Starts `switchboard serve` and waits for its `listening` log line.
    pub async fn spawn(&self) -> TestServer {
        let mut args = vec!["serve", "--bind", "127.0.0.1:0", "--log-format", "json"];
        args.extend(self.args.iter().map(String::as_str));
        let mut child = self
            .command(&args)
            .await
            .spawn()
            .expect("spawn switchboard");
        let (logs, mut logs_changed) = Lines::new();
        let (stdout, _) = Lines::new();
        collect(child.stderr.take().unwrap(), logs.clone());
        collect(child.stdout.take().unwrap(), stdout.clone());

        let addr = tokio::time::timeout(WAIT, async {
            loop {
                if let Some(addr) = logs
                    .all()
                    .iter()
                    .find(|l| l["message"] == "listening")
                    .and_then(|l| l["addr"].as_str()?.parse::<SocketAddr>().ok())
                {
                    return addr;
                }
                tokio::select! {
                    changed = logs_changed.changed() => if changed.is_err() {
                        panic!("switchboard exited before listening:\n{}", logs.text());
                    },
                    status = child.wait() => {
                        // Let the readers drain what the process wrote.
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        panic!("switchboard exited ({status:?}) before listening:\n{}", logs.text());
                    }
                }
            }
        })
        .await
        .unwrap_or_else(|_| panic!("switchboard did not listen in time:\n{}", logs.text()));

        TestServer {
            http: reqwest::Client::new(),
            url: format!("http://{addr}"),
            child,
            logs,
            logs_changed,
            stdout,
            _dir: self.dir.clone(),
        }
    }

    /// Runs a `switchboard` command to completion: (success, stdout, stderr).
    pub async fn run(&self, args: &[&str]) -> (bool, String, String) {
        let out = self
            .command(args)
            .await
            .output()
            .await
            .expect("run switchboard");
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }
}

/// Configuration for a server run inside the test's process (to reach its
/// state or hand it a provider): port 0, SQLite in `dir`, alice's token.
pub fn in_process_config(dir: &std::path::Path) -> switchboard::Config {
    let settings = switchboard::config::Settings {
        bind: Some("127.0.0.1:0".into()),
        database_url: Some(format!("sqlite://{}/sb.db?mode=rwc", dir.display())),
        api_tokens: Some("alice:tok-alice".into()),
        ..Default::default()
    };
    switchboard::Config::load(None, &settings, false).expect("a valid configuration")
}

async fn fresh_postgres_database(admin_url: &str) -> String {
    use sea_orm::ConnectionTrait;
    let name = format!("sb_test_{}", uuid::Uuid::now_v7().simple());
    let admin = sea_orm::Database::connect(admin_url)
        .await
        .expect("connect to SWITCHBOARD_TEST_POSTGRES_URL");
    admin
        .execute_unprepared(&format!("CREATE DATABASE \"{name}\""))
        .await
        .expect("create a test database");
    admin.close().await.ok();
    let (server, _) = admin_url.rsplit_once('/').expect("a postgres:// URL");
    format!("{server}/{name}")
}

pub struct TestServer {
    pub url: String,
    /// One HTTP client per server: building one loads the TLS roots.
    pub http: reqwest::Client,
    child: Child,
    pub logs: Lines,
    logs_changed: watch::Receiver<usize>,
    pub stdout: Lines,
    /// Kept so the database outlives the process.
    _dir: Arc<TempDir>,
}

impl TestServer {
    /// Waits for a log line matching `pred`.
    pub async fn wait_for_log(&mut self, pred: impl Fn(&Value) -> bool) -> Value {
        let logs = self.logs.clone();
        tokio::time::timeout(WAIT, async {
            loop {
                if let Some(line) = logs.all().into_iter().find(&pred) {
                    return line;
                }
                if self.logs_changed.changed().await.is_err() {
                    panic!("log stream ended:\n{}", logs.text());
                }
            }
        })
        .await
        .unwrap_or_else(|_| panic!("no matching log line:\n{}", self.logs.text()))
    }

    /// The server process's id.
    pub fn pid(&self) -> u32 {
        self.child.id().expect("running")
    }

    /// The server's resident memory now, in KiB (`VmRSS`).
    pub fn rss_kib(&self) -> u64 {
        self.proc_status("VmRSS:")
    }

    /// The most the server's resident memory has been, in KiB (`VmHWM`).
    pub fn peak_rss_kib(&self) -> u64 {
        self.proc_status("VmHWM:")
    }

    fn proc_status(&self, field: &str) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid()))
            .expect("read /proc/PID/status");
        status
            .lines()
            .find_map(|line| line.strip_prefix(field))
            .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or_else(|| panic!("no {field} in /proc status"))
    }

    /// Sends `signal` (SIGSTOP, SIGCONT…) without waiting for anything.
    pub fn signal(&self, signal: nix::sys::signal::Signal) {
        let pid = nix::unistd::Pid::from_raw(self.child.id().expect("running") as i32);
        nix::sys::signal::kill(pid, signal).expect("signal");
    }

    /// Sends `signal` and waits for the process to exit.
    pub async fn stop_with(
        &mut self,
        signal: nix::sys::signal::Signal,
    ) -> std::process::ExitStatus {
        let pid = nix::unistd::Pid::from_raw(self.child.id().expect("running") as i32);
        nix::sys::signal::kill(pid, signal).expect("signal");
        tokio::time::timeout(WAIT, self.child.wait())
            .await
            .unwrap_or_else(|_| panic!("no exit in {WAIT:?} after {signal}:\n{}", self.logs.text()))
            .expect("wait")
    }

    pub fn socket(&self, ns: &str) -> SocketBuilder {
        SocketBuilder::new(&self.url, ns)
    }

    /// A WebSocket connection to /agent with `auth.token`.
    pub async fn agent(&self, token: &str) -> Socket {
        self.socket("/agent")
            .token(token)
            .connect()
            .await
            .expect("connected to /agent")
    }

    pub fn http(&self, path: &str) -> String {
        format!("{}{path}", self.url)
    }

    pub fn addr(&self) -> SocketAddr {
        self.url
            .trim_start_matches("http://")
            .parse()
            .expect("an address")
    }

    /// Creates a session for the holder of `token`; returns its id.
    pub async fn create_session(&self, token: &str) -> String {
        let response = self
            .http
            .post(self.http("/v1/sessions"))
            .bearer_auth(token)
            .json(&json!({ "title": "test" }))
            .send()
            .await
            .expect("create session");
        assert_eq!(response.status(), reqwest::StatusCode::CREATED);
        let body: Value = response.json().await.expect("json");
        body["session"]["id"].as_str().expect("id").to_owned()
    }

    /// `POST /v1/sessions/{id}/events`: (status, body).
    pub async fn append(
        &self,
        token: &str,
        session: &str,
        body: Value,
    ) -> (reqwest::StatusCode, Value) {
        let response = self
            .http
            .post(self.http(&format!("/v1/sessions/{session}/events")))
            .bearer_auth(token)
            .json(&body)
            .send()
            .await
            .expect("append");
        let status = response.status();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    /// Appends `count` `info` events one request each; returns the last seq.
    pub async fn append_infos(&self, token: &str, session: &str, count: usize) -> i64 {
        let mut last = 0;
        for i in 0..count {
            let (status, body) = self
                .append(
                    token,
                    session,
                    json!({ "events": [info(&format!("m{i}"))] }),
                )
                .await;
            assert_eq!(status, reqwest::StatusCode::OK, "{body}");
            last = body["last_seq"].as_i64().expect("last_seq");
        }
        last
    }

    /// `POST` of a JSON body with a bearer token: (status, body).
    pub async fn post(
        &self,
        token: &str,
        path: &str,
        body: &Value,
    ) -> (reqwest::StatusCode, Value) {
        let response = self
            .http
            .post(self.http(path))
            .bearer_auth(token)
            .json(body)
            .send()
            .await
            .expect("post");
        let status = response.status();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    /// `GET` with a bearer token: (status, body).
    pub async fn get(&self, token: &str, path: &str) -> (reqwest::StatusCode, Value) {
        let response = self
            .http
            .get(self.http(path))
            .bearer_auth(token)
            .send()
            .await
            .expect("get");
        let status = response.status();
        (status, response.json().await.unwrap_or(Value::Null))
    }
}

/// An `info` event for ingest.
pub fn info(message: &str) -> Value {
    json!({ "type": "info", "data": { "message": message } })
}

/// An ingest body of `count` `info` events, messages `{tag}0`, `{tag}1`, …
pub fn infos(count: usize, tag: &str) -> Value {
    let events: Vec<Value> = (0..count).map(|i| info(&format!("{tag}{i}"))).collect();
    json!({ "events": events })
}

/// The seqs of the events of a `GET …/events` page.
pub fn seqs(page: &Value) -> Vec<i64> {
    page["events"]
        .as_array()
        .expect("events")
        .iter()
        .map(|e| e["seq"].as_i64().expect("seq"))
        .collect()
}

/// Both transports of the official client, by name.
pub fn transports() -> [(&'static str, TransportType); 2] {
    [
        ("websocket", TransportType::Websocket),
        ("polling", TransportType::Polling),
    ]
}

/// Signs an HS256 JWT with the test secret.
pub fn jwt(claims: Value) -> String {
    jwt_with(JWT_SECRET, claims)
}

pub fn jwt_with(secret: &str, claims: Value) -> String {
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()),
    )
    .expect("sign")
}

pub fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

/// A valid token for `sub`, one hour long.
pub fn user_jwt(sub: &str) -> String {
    jwt(json!({ "sub": sub, "exp": now() + 3600 }))
}

/// A connection to make with the Rust Socket.IO client.
pub struct SocketBuilder {
    builder: ClientBuilder,
}

/// A connected socket; `events` receives every server event as
/// `(name, first argument)`.
pub struct Socket {
    pub client: Client,
    pub events: mpsc::UnboundedReceiver<(String, Value)>,
}

impl SocketBuilder {
    /// A WebSocket connection to namespace `ns` of the server at `url`.
    pub fn new(url: &str, ns: &str) -> Self {
        Self {
            builder: ClientBuilder::new(url)
                .namespace(ns)
                .transport_type(TransportType::Websocket)
                .reconnect(false),
        }
    }

    pub fn polling(mut self) -> Self {
        self.builder = self.builder.transport_type(TransportType::Polling);
        self
    }

    pub fn transport(mut self, transport: TransportType) -> Self {
        self.builder = self.builder.transport_type(transport);
        self
    }

    pub fn auth(mut self, auth: Value) -> Self {
        self.builder = self.builder.auth(auth);
        self
    }

    pub fn token(self, token: &str) -> Self {
        self.auth(json!({ "token": token }))
    }

    pub fn header(mut self, key: &str, value: &str) -> Self {
        self.builder = self.builder.opening_header(key, value);
        self
    }

    /// Connects and waits for the namespace's answer: `Err` carries the
    /// `connect_error` message.
    pub async fn connect(self) -> Result<Socket, String> {
        let (status_tx, mut status_rx) = mpsc::unbounded_channel::<Result<(), String>>();
        let on_error = status_tx.clone();
        let (events_tx, events) = mpsc::unbounded_channel();
        let builder = self
            .builder
            .on(Event::Connect, move |_, _| {
                let _ = status_tx.send(Ok(()));
                async {}.boxed()
            })
            .on(Event::Error, move |payload, _| {
                let _ = on_error.send(Err(connect_error_message(&payload)));
                async {}.boxed()
            })
            .on_any(move |event, payload, _| {
                if let (Event::Custom(name), Payload::Text(args, _)) = (event, payload) {
                    let first = args.into_iter().next().unwrap_or(Value::Null);
                    let _ = events_tx.send((name, first));
                }
                async {}.boxed()
            });
        let client = builder
            .connect()
            .await
            .map_err(|e| format!("transport: {e}"))?;
        match tokio::time::timeout(WAIT, status_rx.recv()).await {
            Ok(Some(Ok(()))) => Ok(Socket { client, events }),
            Ok(Some(Err(message))) => {
                let _ = client.disconnect().await;
                Err(message)
            }
            Ok(None) | Err(_) => panic!("no answer to the namespace connect"),
        }
    }
}

/// `Received an ConnectError frame: {"message":"unauthorized: x"}` → `unauthorized: x`.
fn connect_error_message(payload: &Payload) -> String {
    let text = match payload {
        Payload::Text(values, _) => values
            .first()
            .map(|v| {
                v.as_str()
                    .map(str::to_owned)
                    .unwrap_or_else(|| v.to_string())
            })
            .unwrap_or_default(),
        #[allow(deprecated)]
        Payload::String(s, _) => s.clone(),
        Payload::Binary(..) => String::new(),
    };
    let data = text
        .strip_prefix("Received an ConnectError frame: ")
        .unwrap_or(&text);
    match serde_json::from_str::<Value>(data) {
        Ok(Value::Object(map)) => map
            .get("message")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned(),
        Ok(Value::String(s)) => s,
        _ => data.to_owned(),
    }
}

impl Socket {
    /// Emits `event` with `payload` and waits for the acknowledgement.
    pub async fn request(&self, event: &str, payload: Value) -> Value {
        self.request_within(event, payload, WAIT).await
    }

    /// [`Socket::request`], waiting up to `wait` (payloads of megabytes
    /// sent many at once, on a loaded machine).
    pub async fn request_within(&self, event: &str, payload: Value, wait: Duration) -> Value {
        let (tx, rx) = tokio::sync::oneshot::channel::<Value>();
        let tx = Arc::new(Mutex::new(Some(tx)));
        self.client
            .emit_with_ack(event, payload, WAIT, move |payload: Payload, _| {
                // The client hands over the ack's argument list as one array.
                let first = match payload {
                    Payload::Text(args, _) => match args.into_iter().next() {
                        Some(Value::Array(inner)) => {
                            inner.into_iter().next().unwrap_or(Value::Null)
                        }
                        Some(other) => other,
                        None => Value::Null,
                    },
                    _ => Value::Null,
                };
                if let Some(tx) = tx.lock().unwrap().take() {
                    let _ = tx.send(first);
                }
                async {}.boxed()
            })
            .await
            .expect("emit");
        tokio::time::timeout(wait, rx)
            .await
            .expect("ack in time")
            .expect("ack")
    }

    /// The next server event named `name` (others are skipped).
    pub async fn next(&mut self, name: &str) -> Value {
        loop {
            let (event, payload) = tokio::time::timeout(WAIT, self.events.recv())
                .await
                .unwrap_or_else(|_| panic!("no {name} event in time"))
                .expect("socket open");
            if event == name {
                return payload;
            }
        }
    }

    /// The next `count` session events, checking they continue from `after`
    /// with no gap and no duplicate.
    pub async fn events_after(&mut self, after: i64, count: usize) -> Vec<Value> {
        let mut out = Vec::with_capacity(count);
        for i in 0..count {
            let event = self.next("agent:event").await;
            assert_eq!(
                event["seq"],
                after + 1 + i as i64,
                "gap or duplicate: {event}"
            );
            out.push(event);
        }
        out
    }

    pub async fn disconnect(self) {
        let _ = self.client.disconnect().await;
    }
}

/// Several `switchboard serve` processes on one fresh PostgreSQL database
/// and one Redis, with Redis channels of their own (a prefix unique to the
/// test, so that tests running at once never hear each other).
pub struct Nodes {
    pub nodes: Vec<TestServer>,
    pub redis_url: String,
    /// The cluster's Redis prefix (unique to the test).
    prefix: String,
    /// Starts one more server on the same database (with Redis or without).
    pub builder: ServerBuilder,
}

impl Nodes {
    /// `count` nodes named `node-0`, `node-1`, …; `None`, after printing
    /// why, when `SWITCHBOARD_TEST_POSTGRES_URL` or
    /// `SWITCHBOARD_TEST_REDIS_URL` is unset (CI's PostgreSQL pass sets
    /// both).
    pub async fn spawn(count: usize) -> Option<Self> {
        let (Ok(_), Ok(redis_url)) = (
            std::env::var("SWITCHBOARD_TEST_POSTGRES_URL"),
            std::env::var("SWITCHBOARD_TEST_REDIS_URL"),
        ) else {
            eprintln!(
                "skipped: a multi-node test needs SWITCHBOARD_TEST_POSTGRES_URL and \
                 SWITCHBOARD_TEST_REDIS_URL"
            );
            return None;
        };
        Self::spawn_on(count, &redis_url).await
    }

    /// Like [`Nodes::spawn`], each node started from `builder` (a mock
    /// provider's, with settings of the test's own).
    pub async fn spawn_from(count: usize, builder: ServerBuilder) -> Option<Self> {
        let Ok(redis_url) = std::env::var("SWITCHBOARD_TEST_REDIS_URL") else {
            eprintln!("skipped: a multi-node test needs SWITCHBOARD_TEST_REDIS_URL");
            return None;
        };
        Self::spawn_with(count, &redis_url, builder).await
    }

    /// Like [`Nodes::spawn`], on the Redis at `redis_url` (a [`PrivateRedis`]).
    pub async fn spawn_on(count: usize, redis_url: &str) -> Option<Self> {
        Self::spawn_with(count, redis_url, ServerBuilder::with_auth()).await
    }

    async fn spawn_with(count: usize, redis_url: &str, builder: ServerBuilder) -> Option<Self> {
        if std::env::var("SWITCHBOARD_TEST_POSTGRES_URL").is_err() {
            eprintln!("skipped: a multi-node test needs SWITCHBOARD_TEST_POSTGRES_URL");
            return None;
        }
        let mut nodes = Self {
            nodes: Vec::with_capacity(count),
            redis_url: redis_url.to_owned(),
            prefix: format!("t{}", uuid::Uuid::now_v7().simple()),
            builder,
        };
        for _ in 0..count {
            nodes.add().await;
        }
        Some(nodes)
    }

    /// Starts one more node of the cluster, `node-N`; returns its index.
    pub async fn add(&mut self) -> usize {
        let i = self.nodes.len();
        let node = self
            .builder
            .clone()
            .env("SWITCHBOARD_REDIS_URL", &self.redis_url)
            .env("SWITCHBOARD_REDIS_PREFIX", &self.prefix)
            .env("SWITCHBOARD_NODE_ID", &format!("node-{i}"))
            .spawn()
            .await;
        self.nodes.push(node);
        i
    }

    /// Runs `redis-cli` against the test Redis; panics when it fails.
    pub fn redis(&self, args: &[&str]) -> String {
        let out = std::process::Command::new("redis-cli")
            .arg("-u")
            .arg(&self.redis_url)
            .args(args)
            .output()
            .expect("run redis-cli");
        assert!(out.status.success(), "redis-cli {args:?}: {out:?}");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

impl std::ops::Index<usize> for Nodes {
    type Output = TestServer;
    fn index(&self, i: usize) -> &TestServer {
        &self.nodes[i]
    }
}

impl std::ops::IndexMut<usize> for Nodes {
    fn index_mut(&mut self, i: usize) -> &mut TestServer {
        &mut self.nodes[i]
    }
}

/// A `redis-server` of the test's own on a free loopback port, to stop and
/// start again (the shared one must stay up for the other tests).
pub struct PrivateRedis {
    port: u16,
    dir: TempDir,
    child: Option<Child>,
}

impl PrivateRedis {
    /// `None`, after printing why, without `SWITCHBOARD_TEST_REDIS_URL`
    /// (where it is set, `redis-server` is installed) or PostgreSQL.
    pub async fn start() -> Option<Self> {
        if std::env::var("SWITCHBOARD_TEST_REDIS_URL").is_err()
            || std::env::var("SWITCHBOARD_TEST_POSTGRES_URL").is_err()
        {
            eprintln!(
                "skipped: a multi-node test needs SWITCHBOARD_TEST_POSTGRES_URL and \
                 SWITCHBOARD_TEST_REDIS_URL"
            );
            return None;
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let mut redis = Self {
            port,
            dir: tempfile::tempdir().expect("temp dir"),
            child: None,
        };
        redis.restart().await;
        Some(redis)
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Kills the server (as a crash would) and waits for it to exit.
    pub async fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().await.expect("kill redis-server");
        }
    }

    /// Starts the server on its port and waits until it accepts connections.
    pub async fn restart(&mut self) {
        let mut child = Command::new("redis-server")
            .args(["--bind", "127.0.0.1", "--port", &self.port.to_string()])
            .args(["--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(self.dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("spawn redis-server");
        let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
        tokio::time::timeout(WAIT, async {
            while let Some(line) = lines.next_line().await.expect("redis-server output") {
                if line.contains("Ready to accept connections") {
                    return;
                }
            }
            panic!("redis-server exited before it was ready");
        })
        .await
        .expect("redis-server ready in time");
        // Keep reading, so that its output never blocks it.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        self.child = Some(child);
    }
}
