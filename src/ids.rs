//! Typed identifiers: defined with the entities ([`entity::ids`]), so that
//! rows, requests and the engine share them.

pub use entity::ids::{MessageId, RunId, SessionId};

/// A position in a session's event log: the first event is 1, and every
/// event is exactly one more than the one before it.
pub type Seq = i64;
