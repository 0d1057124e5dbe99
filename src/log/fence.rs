//! Run leases (several nodes): the writes of a session's run commit only
//! while its node holds the session's lease, checked in the append's own
//! transaction on the session's row ([`check`]).
//!
//! The row holds the lease's node, its end (`lease_until`) and its epoch,
//! which every taking raises by one. A node takes the lease with the epoch
//! it read plus one ([`Fence::Take`]: a compare-and-set, refused when
//! another node's lease is still running), then writes with that epoch
//! ([`Fence::Hold`]), each commit pushing the lease's end further. A node
//! that lost the lease — it paused past its end and another node took the
//! session over — finds the epoch changed at its next commit, which fails
//! ([`StoreError::Fenced`]) and changes nothing.
//!
//! Lease times are the nodes' clocks: keep them synchronised (NTP) to well
//! under the lease's length.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use entity::session;
use sea_orm::sea_query::Expr;
use sea_orm::{ColumnTrait, Condition, ConnectionTrait, EntityTrait, QueryFilter};

use super::store::StoreError;
use crate::ids::SessionId;

/// A node's lease on a session, numbered `epoch`, renewed for `length`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    pub node: Arc<str>,
    pub epoch: i64,
    pub length: Duration,
}

/// What an append must do with the session's lease to commit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fence {
    /// Takes it: the epoch must still be `epoch - 1`, and the lease free,
    /// ended, or `node`'s own.
    Take(Lease),
    /// Holds it: the session must still have `node` and `epoch`.
    Hold(Lease),
}

impl Fence {
    /// The lease it takes or holds.
    pub fn lease(&self) -> &Lease {
        match self {
            Fence::Take(lease) | Fence::Hold(lease) => lease,
        }
    }
}

/// When a lease taken or renewed at `now` ends.
fn until(now: DateTime<Utc>, length: Duration) -> DateTime<Utc> {
    now + chrono::Duration::from_std(length).unwrap_or(chrono::Duration::MAX)
}

/// Takes or renews the lease `fence` names on `session`'s row; `LeaseHeld`
/// when a `Take` finds it held, `Fenced` when a `Hold` finds it lost.
pub async fn check(
    db: &impl ConnectionTrait,
    session: &SessionId,
    fence: &Fence,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    let update = session::Entity::update_many().filter(session::Column::Id.eq(session.as_str()));
    let update = match fence {
        Fence::Take(Lease {
            node,
            epoch,
            length,
        }) => update
            .col_expr(session::Column::LeaseNode, Expr::value(node.as_ref()))
            .col_expr(session::Column::LeaseEpoch, Expr::value(*epoch))
            .col_expr(
                session::Column::LeaseUntil,
                Expr::value(until(now, *length)),
            )
            .filter(session::Column::LeaseEpoch.eq(epoch - 1))
            .filter(
                Condition::any()
                    .add(session::Column::LeaseNode.is_null())
                    .add(session::Column::LeaseNode.eq(node.as_ref()))
                    .add(session::Column::LeaseUntil.lt(now)),
            ),
        Fence::Hold(Lease {
            node,
            epoch,
            length,
        }) => update
            .col_expr(
                session::Column::LeaseUntil,
                Expr::value(until(now, *length)),
            )
            .filter(session::Column::LeaseEpoch.eq(*epoch))
            .filter(session::Column::LeaseNode.eq(node.as_ref())),
    };
    let result = update.exec(db).await?;
    match (result.rows_affected, fence) {
        (0, Fence::Take(_)) => Err(StoreError::LeaseHeld(session.clone())),
        (0, Fence::Hold(_)) => Err(StoreError::Fenced(session.clone())),
        _ => Ok(()),
    }
}

/// Gives `lease` up, if the session still has it (the node's last run of
/// the session ended). Nothing when it was lost meanwhile.
pub async fn release(
    db: &impl ConnectionTrait,
    session: &SessionId,
    lease: &Lease,
) -> Result<(), StoreError> {
    let Lease { node, epoch, .. } = lease;
    session::Entity::update_many()
        .col_expr(
            session::Column::LeaseNode,
            Expr::value(Option::<String>::None),
        )
        .col_expr(
            session::Column::LeaseUntil,
            Expr::value(Option::<DateTime<Utc>>::None),
        )
        .filter(session::Column::Id.eq(session.as_str()))
        .filter(session::Column::LeaseEpoch.eq(*epoch))
        .filter(session::Column::LeaseNode.eq(node.as_ref()))
        .exec(db)
        .await?;
    Ok(())
}
