//! The database connection: SQLite (WAL, busy timeout; the file created
//! when missing unless the URL sets `mode=`) or PostgreSQL, with migrations
//! applied by [`connect_and_migrate`].

use std::time::Duration;

use migration::{Migrator, MigratorTrait};
use sea_orm::sqlx::sqlite::{SqliteJournalMode, SqliteSynchronous};
use sea_orm::{
    ConnectOptions, Database, DatabaseConnection, DatabaseTransaction, DbErr,
    SqliteTransactionMode, TransactionOptions, TransactionTrait,
};
use secrecy::ExposeSecret;

use crate::config::Config;

/// How long a SQLite writer waits for the lock before failing.
const SQLITE_BUSY_TIMEOUT: Duration = Duration::from_secs(10);

pub async fn connect(config: &Config) -> Result<DatabaseConnection, DbErr> {
    Database::connect(options(config, false)).await
}

/// SQLite only: the one connection the event log commits through
/// ([`crate::log`]). Foreign keys are not checked on it: every row it writes
/// names a session whose row the same transaction has just updated, and the
/// check costs a lookup per event on the hottest path.
pub async fn connect_log_writer(config: &Config) -> Result<Option<DatabaseConnection>, DbErr> {
    let url = config.database_url.expose_secret();
    if !url.starts_with("sqlite:") {
        return Ok(None);
    }
    let mut options = options(config, true);
    options.min_connections(1).max_connections(1);
    Database::connect(options).await.map(Some)
}

fn options(config: &Config, log_writer: bool) -> ConnectOptions {
    let url = config.database_url.expose_secret();
    // An embedded database is created when missing, unless the URL says
    // otherwise (`?mode=ro`, `?mode=rw`).
    let create = !url
        .split_once('?')
        .is_some_and(|(_, query)| query.split('&').any(|p| p.starts_with("mode=")));
    let mut options = ConnectOptions::new(url.to_owned());
    options
        .connect_timeout(Duration::from_secs(10))
        .acquire_timeout(Duration::from_secs(10))
        .sqlx_logging(false)
        // A ping before every acquire doubles the round trips of short
        // statements; only check connections that sat idle.
        .test_before_acquire_if_idle_for(Duration::from_secs(30))
        .map_sqlx_sqlite_opts(move |opts| {
            let opts = if create {
                opts.create_if_missing(true)
            } else {
                opts
            };
            opts.journal_mode(SqliteJournalMode::Wal)
                .synchronous(SqliteSynchronous::Normal)
                .busy_timeout(SQLITE_BUSY_TIMEOUT)
                .foreign_keys(!log_writer)
                // KiB: the log writer touches every active session's pages.
                .pragma("cache_size", if log_writer { "-65536" } else { "-16384" })
        });
    options
}

/// What could not be opened, for an error message: the database, and why a
/// SQLite file cannot be where the URL puts it.
pub fn cannot_open(config: &Config) -> String {
    let mut message = format!("cannot open the database {}", config.database_display());
    if let Some(dir) = config
        .sqlite_path()
        .and_then(|path| path.parent().map(std::path::Path::to_owned))
        .filter(|dir| !dir.as_os_str().is_empty() && !dir.is_dir())
    {
        message.push_str(&format!(
            " (the directory {} does not exist)",
            dir.display()
        ));
    }
    message
}

pub async fn connect_and_migrate(config: &Config) -> Result<DatabaseConnection, DbErr> {
    let db = connect(config).await?;
    migrate(&db).await?;
    Ok(db)
}

#[tracing::instrument(skip_all)]
pub async fn migrate(db: &DatabaseConnection) -> Result<(), DbErr> {
    let pending = Migrator::get_pending_migrations(db).await?.len();
    Migrator::up(db, None).await?;
    if pending > 0 {
        tracing::info!(applied = pending, "database migrations applied");
    }
    Ok(())
}

/// Begins a transaction that will write. On SQLite it takes the write lock
/// at once (`BEGIN IMMEDIATE`, waiting up to the busy timeout), so it can
/// never fail halfway when another writer committed after its first read.
pub async fn begin_write(db: &DatabaseConnection) -> Result<DatabaseTransaction, DbErr> {
    db.begin_with_options(TransactionOptions {
        sqlite_transaction_mode: Some(SqliteTransactionMode::Immediate),
        ..Default::default()
    })
    .await
}
