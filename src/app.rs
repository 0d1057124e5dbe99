//! Building and running the server.
//!
//! [`Application::build`] checks the configuration, binds the listener
//! (port 0 works) before it touches anything else, so that a port in use
//! costs nothing; then connects to the database and applies migrations,
//! gives `--dev` its secret once the database is known to work, and wires
//! HTTP and Socket.IO together;
//! [`Application::run_until_stopped`] serves until the shutdown future
//! resolves, then stops accepting, closes every Socket.IO transport (so
//! clients reconnect by themselves to the next process), waits for in-flight
//! requests up to the shutdown timeout and closes the database.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context as _;
use axum::Router;
use socketioxide::ParserConfig;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::auth::Authenticator;
use crate::cluster::Cluster;
use crate::cluster::adapter::{NodeAdapter, SocketIo};
use crate::config::{Config, LlmConfig, LlmProvider};
use crate::engine::Engine;
use crate::engine::provider::Provider;
use crate::engine::provider::openai::OpenAi;
use crate::engine::provider::scripted::Scripted;
use crate::http::listener::Listener;
use crate::http::origin::OriginPolicy;
use crate::log::EventLog;
use crate::state::AppState;

/// Packets socketioxide queues per socket before an emit reports it full
/// (and the event log switches that subscriber to catch-up); the bytes of
/// them are bounded by `SWITCHBOARD_MAX_SOCKET_BUFFER_BYTES`.
const SOCKET_BUFFER_PACKETS: usize = 256;
/// How much a WebSocket connection reads at once. Every connection keeps a
/// buffer this large for its lifetime; what clients send is small (acks,
/// subscribes, deltas of user input), and a larger message is still read
/// whole, in more reads. socketioxide's default is 4 KiB.
const WS_READ_BUFFER_BYTES: usize = 1024;
/// A run that sent nothing for this long sends `agent:heartbeat` (PROTOCOL §4.3).
const HEARTBEAT: std::time::Duration = std::time::Duration::from_secs(5);
/// How long connecting to the LLM provider may take.
const LLM_CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

pub struct Application {
    listener: Listener,
    router: Router,
    io: SocketIo,
    state: AppState,
}

impl Application {
    pub async fn build(config: Config) -> anyhow::Result<Self> {
        let provider = provider(&config.llm)?;
        Self::build_with_provider(config, provider).await
    }

    /// Like [`Application::build`], with a provider of the caller's making
    /// instead of the configured one (embedding, tests).
    pub async fn build_with_provider(
        mut config: Config,
        provider: Arc<dyn Provider>,
    ) -> anyhow::Result<Self> {
        if !config.auth.any_method() && !config.auth.disabled && !config.dev {
            anyhow::bail!(
                "no authentication is configured: set --api-tokens, --jwt-secret or \
                 --jwt-public-key (or SWITCHBOARD_API_TOKENS, SWITCHBOARD_JWT_SECRET, \
                 SWITCHBOARD_JWT_PUBLIC_KEY), or --auth-disabled \
                 (SWITCHBOARD_AUTH_DISABLED=1) for local development only \
                 (or run `switchboard serve --dev`)"
            );
        }
        if config.auth.disabled {
            tracing::warn!(
                "AUTHENTICATION IS DISABLED (--auth-disabled or SWITCHBOARD_AUTH_DISABLED): every \
                 connection is \
                 user `anonymous` and anyone who can reach {} can read and drive every session. \
                 Never use this outside local development.",
                config.bind
            );
        }
        // Known to be valid before anything else happens, unless it waits
        // for the development secret.
        let auth = if crate::dev::needs_secret(&config) {
            None
        } else {
            Some(Authenticator::from_config(&config.auth)?)
        };
        let listener = TcpListener::bind(config.bind)
            .await
            .with_context(|| format!("cannot listen on {}", config.bind))?;
        let listener = Listener::new(listener, &config.limits);

        let db = crate::db::connect_and_migrate(&config)
            .await
            .with_context(|| crate::db::cannot_open(&config))?;
        tracing::info!(database = %config.database_display(), "database ready");
        let auth = match auth {
            Some(auth) => auth,
            None => {
                crate::dev::ensure_secret(&mut config)?;
                Authenticator::from_config(&config.auth)?
            }
        };

        let cluster = match &config.cluster {
            None => None,
            Some(cluster) => {
                let connected = Cluster::connect(cluster, &config.node_id).await?;
                tracing::info!(
                    node_id = %config.node_id, redis = %cluster.redis_display(),
                    "Redis ready: one node of several"
                );
                tracing::warn!(
                    node_id = %config.node_id,
                    "several nodes: limits per user count per node, and housekeeping runs \
                     on every node (docs/deploy.md, \"Not yet cluster-wide\")"
                );
                Some(connected)
            }
        };
        crate::metrics::install(cluster.as_ref().map(Cluster::node_id));
        let tasks = TaskTracker::new();
        let shutdown = CancellationToken::new();
        let writer = crate::db::connect_log_writer(&config)
            .await
            .with_context(|| crate::db::cannot_open(&config))?;
        let log = EventLog::new(
            db.clone(),
            writer,
            config.log.clone(),
            tasks.clone(),
            shutdown.clone(),
        );
        if let Some(cluster) = &cluster {
            cluster.start(&log, db.clone(), &tasks, &shutdown).await?;
        }
        let engine = Engine::new(
            db.clone(),
            log.clone(),
            provider,
            crate::engine::Settings {
                max_steps: config.llm.max_steps,
                heartbeat: HEARTBEAT,
                tool_timeout: config.tool_timeout,
                limits: config.limits.clone(),
                nodes: config
                    .cluster
                    .as_ref()
                    .map(|c| crate::engine::NodeSettings {
                        node: config.node_id.as_str().into(),
                        lease: c.run_lease,
                    }),
            },
            tasks.clone(),
            shutdown.clone(),
        );
        if let Some(cluster) = &cluster {
            engine.join_cluster(cluster.clone()).await?;
        }
        let recovered = engine
            .recover()
            .await
            .context("cannot finish the runs the last process left active")?;
        if recovered > 0 {
            tracing::info!(
                runs = recovered,
                "finished runs left active by the last process"
            );
        }
        let state = AppState {
            log,
            quotas: Arc::new(crate::quotas::Quotas::new(&config.limits)),
            engine,
            db,
            origins: Arc::new(OriginPolicy::new(config.allowed_origins.clone())),
            config: Arc::new(config),
            auth: Arc::new(auth),
            tasks,
            shutdown,
            cluster,
        };
        // One limit for a Socket.IO message on every transport: a polling
        // request body, a WebSocket message or frame, and the binary
        // attachments of one packet. Past it the connection is closed.
        let max_message = state.config.max_message_bytes;
        let max_message_usize = usize::try_from(max_message).unwrap_or(usize::MAX);
        let (socketio_layer, io) = socketioxide::SocketIo::builder()
            .max_payload(max_message)
            .ws_max_message_size(max_message_usize)
            .ws_max_frame_size(max_message_usize)
            .ws_read_buffer_size(WS_READ_BUFFER_BYTES)
            .with_parser(ParserConfig::common().max_incoming_binary_buf_size(max_message_usize))
            .connect_timeout(state.config.limits.connect_timeout)
            .max_buffer_size(SOCKET_BUFFER_PACKETS)
            .max_buffer_bytes(state.config.limits.max_socket_buffer_bytes)
            .with_state(state.clone())
            .with_adapter::<NodeAdapter>(state.cluster.as_ref().map(Cluster::adapter))
            .build_layer();
        crate::realtime::register(&io, &state)
            .await
            .map_err(|error| anyhow::anyhow!("cannot start the Redis adapter: {error}"))?;
        state.engine.reach_gateways_through(&io);
        let router = crate::http::router(state.clone(), socketio_layer);
        Ok(Self {
            listener,
            router,
            io,
            state,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.listener.local_addr().unwrap_or(self.state.config.bind)
    }

    pub fn state(&self) -> &AppState {
        &self.state
    }

    pub async fn run_until_stopped(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let Self {
            listener,
            router,
            io,
            state,
        } = self;
        let addr = listener.local_addr()?;
        tracing::info!(%addr, node_id = %state.config.node_id, "listening");

        let stop_accepting = CancellationToken::new();
        let server = listener.serve(router, stop_accepting.clone());
        let mut server = std::pin::pin!(server);

        tokio::select! {
            // It only returns once told to stop, which happens below.
            () = &mut server => anyhow::bail!("the HTTP server stopped by itself"),
            () = shutdown => {
                tracing::info!("shutting down: no new connections");
                stop_accepting.cancel();
                state.engine.shutdown(state.config.shutdown_timeout).await;
                state.shutdown.cancel();
                tokio::task::yield_now().await;
                // A client that reads nothing never lets its close frame out:
                // closing waits for each socket, so it is bounded too.
                if tokio::time::timeout(state.config.shutdown_timeout, io.close())
                    .await
                    .is_ok()
                {
                    tracing::info!("all Socket.IO connections closed");
                } else {
                    tracing::warn!(
                        timeout = ?state.config.shutdown_timeout,
                        "Socket.IO connections still closing at the shutdown timeout were dropped"
                    );
                }
                if tokio::time::timeout(state.config.shutdown_timeout, &mut server)
                    .await
                    .is_err()
                {
                    tracing::warn!(
                        timeout = ?state.config.shutdown_timeout,
                        "requests still in flight at the shutdown timeout were dropped"
                    );
                }
            }
        }
        state.shutdown.cancel();
        state.tasks.close();
        if tokio::time::timeout(state.config.shutdown_timeout, state.tasks.wait())
            .await
            .is_err()
        {
            tracing::warn!("background work still running at the shutdown timeout was dropped");
        }
        if let Some(cluster) = &state.cluster {
            cluster.close().await;
        }
        state.log.close().await.context("closing the database")?;
        state.db.close().await.context("closing the database")?;
        tracing::info!("stopped");
        Ok(())
    }
}

/// Builds the configured LLM provider.
fn provider(config: &LlmConfig) -> anyhow::Result<Arc<dyn Provider>> {
    Ok(match config.provider {
        LlmProvider::Scripted => Arc::new(Scripted::new(config.scripted_delay)),
        LlmProvider::OpenAi => {
            let (Some(base_url), Some(model)) = (&config.base_url, &config.model) else {
                anyhow::bail!(
                    "SWITCHBOARD_LLM_PROVIDER=openai needs SWITCHBOARD_LLM_BASE_URL \
                     (e.g. http://127.0.0.1:11434/v1) and SWITCHBOARD_LLM_MODEL"
                );
            };
            reqwest::Url::parse(base_url)
                .with_context(|| format!("SWITCHBOARD_LLM_BASE_URL {base_url:?} is not a URL"))?;
            Arc::new(OpenAi::new(
                base_url,
                config.api_key.clone(),
                model,
                LLM_CONNECT_TIMEOUT,
                config.idle_timeout,
            )?)
        }
    })
}

/// Resolves on SIGINT (Ctrl-C) or SIGTERM. The handlers are installed when
/// this is called, before the future is first polled, so a signal that
/// arrives as soon as the server listens is not lost.
#[cfg(unix)]
pub fn shutdown_signal() -> anyhow::Result<impl Future<Output = ()> + Send + 'static> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut interrupt = signal(SignalKind::interrupt()).context("cannot listen for SIGINT")?;
    let mut terminate = signal(SignalKind::terminate()).context("cannot listen for SIGTERM")?;
    Ok(async move {
        tokio::select! {
            _ = interrupt.recv() => tracing::info!("received SIGINT"),
            _ = terminate.recv() => tracing::info!("received SIGTERM"),
        }
    })
}

#[cfg(not(unix))]
pub fn shutdown_signal() -> anyhow::Result<impl Future<Output = ()> + Send + 'static> {
    Ok(async {
        if tokio::signal::ctrl_c().await.is_ok() {
            tracing::info!("received Ctrl-C");
        }
    })
}
