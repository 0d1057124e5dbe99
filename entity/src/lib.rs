//! sea-orm entities: one module per table, mirroring the `migration` crate.
//!
//! Identifiers are UUID v7 strings (time-ordered, readable in both SQLite and
//! PostgreSQL); JSON payloads are text columns holding serialized JSON.

pub mod event;
pub mod gateway;
pub mod ids;
pub mod message;
pub mod run;
pub mod session;
pub mod states;
pub mod tool_call;
