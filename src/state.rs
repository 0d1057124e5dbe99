//! The handles every request and socket handler shares. Cheap to clone.

use std::sync::Arc;

use sea_orm::DatabaseConnection;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::auth::Authenticator;
use crate::config::Config;
use crate::engine::Engine;
use crate::http::origin::OriginPolicy;
use crate::log::EventLog;

#[derive(Clone)]
pub struct AppState {
    pub db: DatabaseConnection,
    pub config: Arc<Config>,
    pub auth: Arc<Authenticator>,
    pub origins: Arc<OriginPolicy>,
    pub log: EventLog,
    /// Per-user session and ingest quotas.
    pub quotas: Arc<crate::quotas::Quotas>,
    /// Agent runs.
    pub engine: Engine,
    /// Background work (writers, catch-ups); waited for at shutdown.
    pub tasks: TaskTracker,
    /// Cancelled when the server begins to shut down.
    pub shutdown: CancellationToken,
    /// The other nodes, when this server is one of several.
    pub cluster: Option<crate::cluster::Cluster>,
}
