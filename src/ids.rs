//! Typed identifiers: defined with the entities ([`entity::ids`]), so that
//! rows, requests and the engine share them.

pub use entity::ids::{CallId, MessageId, RunId, Seq, SessionId};
