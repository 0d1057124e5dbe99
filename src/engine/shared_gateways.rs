//! The gateway registry across several nodes: the `gateways` table. Each
//! node keeps its own sockets in memory ([`super::gateways::Registry`]) and
//! writes a row per registration: the node, the socket, the tools, until
//! when the node vouches for it (`alive_until`, renewed every third of the
//! run lease while the node lives) and since when it is gone.
//!
//! - **Offer.** A run offers the tools of every row of its user that is
//!   connected, or gone (its socket closed, or its node stopped renewing)
//!   within the grace (the tool timeout): a gateway that drops for a blip
//!   keeps its tools offered, and the calls wait for it.
//! - **Delivery** happens on the gateway's node: the node that wants a
//!   call delivered delivers to its own gateways and asks the others to do
//!   the same (`deliver` on `{prefix}-runs`); marking a call `sent` is a
//!   compare-and-set, so one gateway gets it. A call sent to a gateway that
//!   is live on another node is left to it; one sent to a gateway whose
//!   node died goes to the next gateway with the tool, or to the same
//!   `gateway_id` when it registers again on any node.
//! - **Housekeeping.** Rows past their grace are deleted by every node
//!   (idempotent). A node starting under an id marks that id's rows gone:
//!   their sockets died with the process before it.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use entity::gateway;
use sea_orm::sea_query::{Expr, OnConflict};
use sea_orm::{ColumnTrait, Condition, DbErr, EntityTrait, QueryFilter, QueryOrder, Set};

use super::gateways::{Gateway, StoredTool, Tool};
use crate::auth::UserId;

fn after(now: DateTime<Utc>, length: Duration) -> DateTime<Utc> {
    now + chrono::Duration::from_std(length).unwrap_or(chrono::Duration::MAX)
}

fn before(now: DateTime<Utc>, length: Duration) -> DateTime<Utc> {
    now - chrono::Duration::from_std(length).unwrap_or(chrono::Duration::MAX)
}

/// Records `gateway` of `owner` as connected to `node` (replacing what
/// the same `gateway_id` had, on any node).
pub(super) async fn register(
    db: &impl sea_orm::ConnectionTrait,
    node: &str,
    owner: &UserId,
    gateway: &Gateway,
    alive_for: Duration,
) -> Result<(), DbErr> {
    let tools: Vec<StoredTool> = gateway.tools().iter().map(|t| t.stored()).collect();
    let tools = serde_json::to_string(&tools).map_err(|e| DbErr::Custom(e.to_string()))?;
    let now = crate::time::now();
    gateway::Entity::insert(gateway::ActiveModel {
        owner: Set(owner.as_str().to_owned()),
        gateway_id: Set(gateway.gateway_id.clone()),
        node: Set(node.to_owned()),
        sid: Set(gateway.sid.to_string()),
        tools: Set(tools),
        registered_at: Set(now),
        alive_until: Set(after(now, alive_for)),
        gone_at: Set(None),
    })
    .on_conflict(
        OnConflict::columns([gateway::Column::Owner, gateway::Column::GatewayId])
            .update_columns([
                gateway::Column::Node,
                gateway::Column::Sid,
                gateway::Column::Tools,
                gateway::Column::RegisteredAt,
                gateway::Column::AliveUntil,
                gateway::Column::GoneAt,
            ])
            .to_owned(),
    )
    .exec_without_returning(db)
    .await?;
    Ok(())
}

/// The socket `sid` of `node` went away: its row (if still its own) is
/// gone from now.
pub(super) async fn gone(
    db: &impl sea_orm::ConnectionTrait,
    node: &str,
    owner: &UserId,
    sid: &str,
) -> Result<(), DbErr> {
    gateway::Entity::update_many()
        .col_expr(gateway::Column::GoneAt, Expr::value(crate::time::now()))
        .filter(gateway::Column::Owner.eq(owner.as_str()))
        .filter(gateway::Column::Node.eq(node))
        .filter(gateway::Column::Sid.eq(sid))
        .filter(gateway::Column::GoneAt.is_null())
        .exec(db)
        .await?;
    Ok(())
}

/// `node` vouches for its connected gateways for `alive_for` more.
pub(super) async fn renew(
    db: &impl sea_orm::ConnectionTrait,
    node: &str,
    alive_for: Duration,
) -> Result<(), DbErr> {
    gateway::Entity::update_many()
        .col_expr(
            gateway::Column::AliveUntil,
            Expr::value(after(crate::time::now(), alive_for)),
        )
        .filter(gateway::Column::Node.eq(node))
        .filter(gateway::Column::GoneAt.is_null())
        .exec(db)
        .await?;
    Ok(())
}

/// A node starts under `node`: the gateways a process before it had under
/// that id are gone.
pub(super) async fn forget_node(
    db: &impl sea_orm::ConnectionTrait,
    node: &str,
) -> Result<(), DbErr> {
    gateway::Entity::update_many()
        .col_expr(gateway::Column::GoneAt, Expr::value(crate::time::now()))
        .filter(gateway::Column::Node.eq(node))
        .filter(gateway::Column::GoneAt.is_null())
        .exec(db)
        .await?;
    Ok(())
}

/// Whether a row is offered: connected, or gone within `grace`.
fn offered(now: DateTime<Utc>, grace: Duration) -> Condition {
    let since = before(now, grace);
    Condition::any()
        .add(
            Condition::all()
                .add(gateway::Column::GoneAt.is_null())
                .add(gateway::Column::AliveUntil.gt(since)),
        )
        .add(gateway::Column::GoneAt.gt(since))
}

/// The tools `owner`'s gateways offer, on every node, oldest registration
/// first.
pub(super) async fn tools(
    db: &impl sea_orm::ConnectionTrait,
    owner: &UserId,
    grace: Duration,
) -> Result<Vec<Arc<Tool>>, DbErr> {
    let rows = gateway::Entity::find()
        .filter(gateway::Column::Owner.eq(owner.as_str()))
        .filter(offered(crate::time::now(), grace))
        .order_by_asc(gateway::Column::RegisteredAt)
        .all(db)
        .await?;
    let mut tools = Vec::new();
    for row in rows {
        match serde_json::from_str::<Vec<StoredTool>>(&row.tools) {
            Ok(stored) => tools.extend(stored.into_iter().map(|t| Arc::new(Tool::from_stored(t)))),
            Err(error) => {
                tracing::warn!(%error, gateway_id = row.gateway_id, "a stored gateway's tools do not read back")
            }
        }
    }
    Ok(tools)
}

/// The `gateway_id`s of `owner` connected to live nodes other than `node`.
pub(super) async fn live_elsewhere(
    db: &impl sea_orm::ConnectionTrait,
    owner: &UserId,
    node: &str,
) -> Result<HashSet<String>, DbErr> {
    let rows = gateway::Entity::find()
        .filter(gateway::Column::Owner.eq(owner.as_str()))
        .filter(gateway::Column::Node.ne(node))
        .filter(gateway::Column::GoneAt.is_null())
        .filter(gateway::Column::AliveUntil.gt(crate::time::now()))
        .all(db)
        .await?;
    Ok(rows.into_iter().map(|r| r.gateway_id).collect())
}

/// Deletes the rows past their grace.
pub(super) async fn sweep(
    db: &impl sea_orm::ConnectionTrait,
    grace: Duration,
) -> Result<u64, DbErr> {
    let since = before(crate::time::now(), grace);
    let result = gateway::Entity::delete_many()
        .filter(
            Condition::any().add(gateway::Column::GoneAt.lt(since)).add(
                Condition::all()
                    .add(gateway::Column::GoneAt.is_null())
                    .add(gateway::Column::AliveUntil.lt(since)),
            ),
        )
        .exec(db)
        .await?;
    Ok(result.rows_affected)
}
