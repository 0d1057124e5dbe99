//! Database failures as the log and its callers see them: classified once,
//! here, from sea-orm's `DbErr` and the driver's error codes.

use sea_orm::DbErr;

use crate::ids::SessionId;

/// A failed database operation, classified once ([`StoreError::from`]) so
/// that callers can tell a failure worth retrying — a busy database, no
/// free connection, a lost connection — from a fault. The messages say
/// nothing about the database; the cause is the `DbErr` (the error's
/// source).
#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    #[error("no session {0}")]
    NoSession(SessionId),
    /// Taking a session's run lease found another node's lease running.
    #[error("another node runs session {0}")]
    LeaseHeld(SessionId),
    /// A run's node lost the session's lease (another node took it over):
    /// nothing of that run commits any more.
    #[error("this node lost the lease of session {0}")]
    Fenced(SessionId),
    /// A unique key already stored (a race the code did not expect).
    #[error("a unique key is already stored")]
    Duplicate(#[source] DbErr),
    /// SQLite's lock held past the busy timeout, or a PostgreSQL lock or
    /// serialization conflict.
    #[error("the database is busy")]
    Busy(#[source] DbErr),
    /// No connection of the pool became free in time.
    #[error("no database connection was free in time")]
    PoolTimeout(#[source] DbErr),
    /// The connection to the database broke, or the pool is closed.
    #[error("the connection to the database was lost")]
    ConnectionLost(#[source] DbErr),
    #[error("a database operation failed")]
    Other(#[source] DbErr),
}

impl StoreError {
    /// The same operation may succeed later: the database is busy or
    /// unreachable, not wrong.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            StoreError::Busy(_) | StoreError::PoolTimeout(_) | StoreError::ConnectionLost(_)
        )
    }
}

impl From<DbErr> for StoreError {
    fn from(error: DbErr) -> Self {
        use sea_orm::{ConnAcquireErr, RuntimeErr, sqlx};
        let failure = match &error {
            DbErr::ConnectionAcquire(ConnAcquireErr::Timeout) => Failure::PoolTimeout,
            DbErr::ConnectionAcquire(ConnAcquireErr::ConnectionClosed) => Failure::ConnectionLost,
            DbErr::Conn(RuntimeErr::SqlxError(e))
            | DbErr::Exec(RuntimeErr::SqlxError(e))
            | DbErr::Query(RuntimeErr::SqlxError(e)) => match &**e {
                sqlx::Error::PoolTimedOut => Failure::PoolTimeout,
                sqlx::Error::PoolClosed | sqlx::Error::Io(_) | sqlx::Error::Tls(_) => {
                    Failure::ConnectionLost
                }
                sqlx::Error::Database(e) => database_failure(&**e),
                _ => Failure::Other,
            },
            // Sea-orm reports a connection it could not open this way.
            DbErr::Conn(RuntimeErr::Internal(_)) => Failure::ConnectionLost,
            _ => Failure::Other,
        };
        match failure {
            Failure::Duplicate => StoreError::Duplicate(error),
            Failure::Busy => StoreError::Busy(error),
            Failure::PoolTimeout => StoreError::PoolTimeout(error),
            Failure::ConnectionLost => StoreError::ConnectionLost(error),
            Failure::Other => StoreError::Other(error),
        }
    }
}

enum Failure {
    Duplicate,
    Busy,
    PoolTimeout,
    ConnectionLost,
    Other,
}

/// An error the database answered with: SQLite's result codes, or
/// PostgreSQL's SQLSTATE classes.
fn database_failure(error: &dyn sea_orm::sqlx::error::DatabaseError) -> Failure {
    use sea_orm::sqlx::error::ErrorKind;
    use sea_orm::sqlx::postgres::PgDatabaseError;
    use sea_orm::sqlx::sqlite::SqliteError;
    if error.kind() == ErrorKind::UniqueViolation {
        return Failure::Duplicate;
    }
    if error.try_downcast_ref::<SqliteError>().is_some() {
        // The primary result code is the extended code's low byte.
        let primary = error
            .code()
            .and_then(|code| code.parse::<i32>().ok())
            .map(|code| code & 0xff);
        return match primary {
            Some(SQLITE_BUSY | SQLITE_LOCKED) => Failure::Busy,
            _ => Failure::Other,
        };
    }
    if let Some(error) = error.try_downcast_ref::<PgDatabaseError>() {
        let code = error.code();
        return match code {
            // serialization_failure, deadlock_detected, lock_not_available,
            // too_many_connections.
            "40001" | "40P01" | "55P03" | "53300" => Failure::Busy,
            // connection_exception, admin_shutdown, crash_shutdown,
            // cannot_connect_now.
            _ if code.starts_with("08") => Failure::ConnectionLost,
            "57P01" | "57P02" | "57P03" => Failure::ConnectionLost,
            _ => Failure::Other,
        };
    }
    Failure::Other
}

const SQLITE_BUSY: i32 = 5;
const SQLITE_LOCKED: i32 = 6;
