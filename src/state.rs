//! The handles every request and socket handler shares. Cheap to clone.

use std::sync::Arc;

use sea_orm::DatabaseConnection;

use crate::auth::Authenticator;
use crate::config::Config;
use crate::http::origin::OriginPolicy;

#[derive(Clone)]
pub struct AppState {
    pub db: DatabaseConnection,
    pub config: Arc<Config>,
    pub auth: Arc<Authenticator>,
    pub origins: Arc<OriginPolicy>,
}
