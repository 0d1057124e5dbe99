//! Every state and kind a row stores as text, as enums: the strings below
//! are the only place they are spelled. Each is stored with sea-orm's
//! `DeriveActiveEnum` (a text column holding exactly these strings, as the
//! migrations made it), sent on the wire with serde under the same name,
//! and exported to the console's TypeScript with ts-rs.

use sea_orm::entity::prelude::*;
use serde::{Deserialize, Serialize};
use ts_rs::TS;

/// Declares a text-valued state enum: its database value, its serde name
/// and [`as_str`](SessionStatus::as_str) are the one string given per
/// variant. Variants are listed in the order serde names them in errors
/// (`expected one of …`).
macro_rules! text_enum {
    ($(#[$doc:meta])* $name:ident { $($(#[$vdoc:meta])* $variant:ident = $text:tt,)+ }) => {
        $(#[$doc])*
        #[derive(
            Debug, Clone, Copy, PartialEq, Eq, Hash, EnumIter, DeriveActiveEnum, Serialize,
            Deserialize, TS,
        )]
        #[sea_orm(rs_type = "String", db_type = "Text")]
        pub enum $name {
            $(
                $(#[$vdoc])*
                #[sea_orm(string_value = $text)]
                #[serde(rename = $text)]
                $variant,
            )+
        }

        impl $name {
            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text,)+
                }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

text_enum!(
    /// A session's status (PROTOCOL §3).
    SessionStatus {
        Idle = "idle",
        Running = "running",
        AwaitingTool = "awaiting_tool",
        AwaitingApproval = "awaiting_approval",
        AwaitingInput = "awaiting_input",
    }
);

text_enum!(
    /// A run row: `queued` → `running` → `finished` (with a [`RunReason`]).
    RunStatus {
        Queued = "queued",
        Running = "running",
        Finished = "finished",
    }
);

text_enum!(
    /// Why a run ended (`run.finished { reason }`, and the run row's
    /// `reason`).
    RunReason {
        Completed = "completed",
        Stopped = "stopped",
        Interrupted = "interrupted",
        Error = "error",
    }
);

text_enum!(
    /// A tool call's row (see the engine's `calls` module for the moves).
    CallStatus {
        /// Waits for a decision on `tool:approval`.
        AwaitingApproval = "awaiting_approval",
        /// Waits for its answer: a gateway (sent to none yet) or the user.
        Pending = "pending",
        /// Emitted to a gateway (its `gateway_id`).
        Sent = "sent",
        Resolved = "resolved",
        Denied = "denied",
        Timeout = "timeout",
        Cancelled = "cancelled",
    }
);

impl CallStatus {
    /// States a call can still leave.
    pub const OPEN: [CallStatus; 3] = [
        CallStatus::AwaitingApproval,
        CallStatus::Pending,
        CallStatus::Sent,
    ];
}

text_enum!(
    /// Who answers a tool call.
    Target {
        /// A desktop gateway of the session's owner, on `/gateway`.
        Gateway = "gateway",
        /// The server itself (only to refuse a call to no known tool).
        Server = "server",
        /// The session's owner, on `/agent`.
        User = "user",
    }
);

text_enum!(
    /// Who wrote a message of a conversation.
    Role {
        User = "user",
        Assistant = "assistant",
        Tool = "tool",
    }
);

text_enum!(
    /// A message: `complete`, or `incomplete` when its run was cut short.
    MessageStatus {
        Complete = "complete",
        Incomplete = "incomplete",
    }
);
