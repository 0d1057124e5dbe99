//! Typed identifiers, the same in rows, requests and the engine. Sessions,
//! runs and messages are UUID v7 strings (time-ordered, so ordering by id
//! is ordering by creation); a tool call keeps the id the model gave it
//! (made unique when it is not). Each is stored as text
//! (`DeriveValueType`) and sent as a string.

use std::fmt;

use sea_orm::entity::prelude::*;
use serde::{Deserialize, Serialize};
use ts_rs::TS;

macro_rules! text_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(
            Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize,
            DeriveValueType, TS,
        )]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            /// Wraps an id read back from storage (a row, a stored event).
            pub fn from_db(text: String) -> Self {
                Self(text)
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }

            pub fn into_string(self) -> String {
                self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

macro_rules! uuid_id {
    ($(#[$doc:meta])* $name:ident) => {
        text_id!($(#[$doc])* $name);

        impl $name {
            /// A new, time-ordered id.
            pub fn generate() -> Self {
                Self(uuid::Uuid::now_v7().to_string())
            }

            /// Parses a client-supplied id; `None` unless it is a UUID.
            pub fn parse(text: &str) -> Option<Self> {
                uuid::Uuid::parse_str(text)
                    .ok()
                    .map(|u| Self(u.hyphenated().to_string()))
            }
        }
    };
}

uuid_id!(
    /// A session: one conversation and its event log.
    SessionId
);
uuid_id!(
    /// An agent run.
    RunId
);
uuid_id!(
    /// A message of a conversation.
    MessageId
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_parse_only_uuids_and_normalize_them() {
        assert!(SessionId::parse("nope").is_none());
        let id = SessionId::parse("0192F4C3-5B7A-7CC0-8F00-000000000001").unwrap();
        assert_eq!(id.as_str(), "0192f4c3-5b7a-7cc0-8f00-000000000001");
    }
}
