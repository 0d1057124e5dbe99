//! The event log in the database. Only the session's writer
//! ([`super::writer`]) calls [`append`]; `seq` is allocated by incrementing
//! `sessions.head_seq` in the same transaction that inserts the events, so
//! the database row is the source of truth even with several nodes.

use std::collections::HashSet;
use std::sync::Arc;

use entity::{event, session};
use sea_orm::sea_query::{Expr, ExprTrait};
use sea_orm::{
    ColumnTrait, ConnectionTrait, DatabaseConnection, DbErr, EntityTrait, QueryFilter, QueryOrder,
    QuerySelect, Set,
};

use super::Effect;
use super::event::{Committed, NewEvent, Window};
use crate::ids::{Seq, SessionId};

/// SQLite allows 32,766 bound parameters; events have 7 columns.
const INSERT_CHUNK: usize = 1_000;

/// What one append request got.
#[derive(Debug, Default)]
pub struct Outcome {
    pub events: Vec<Arc<Committed>>,
    pub duplicates: usize,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("no session {0}")]
    NoSession(SessionId),
    #[error(transparent)]
    Db(#[from] DbErr),
}

/// Appends several requests in one transaction (group commit). Each request
/// gets contiguous seqs, in order; events whose idempotency key this session
/// already stored (or an earlier event of the group carried) are skipped and
/// counted as duplicates. With `max_events`, older events are pruned in the
/// same transaction so that at most that many stay stored.
pub async fn append(
    db: &DatabaseConnection,
    session_id: &SessionId,
    requests: &[Vec<NewEvent>],
    effect: Option<Box<dyn Effect>>,
    max_events: Option<u64>,
) -> Result<Vec<Outcome>, StoreError> {
    let txn = crate::db::begin_write(db).await?;

    let keys: Vec<&str> = requests
        .iter()
        .flatten()
        .filter_map(|e| e.idempotency_key.as_deref())
        .collect();
    let mut seen: HashSet<String> = HashSet::new();
    for chunk in keys.chunks(500) {
        let stored: Vec<Option<String>> = event::Entity::find()
            .select_only()
            .column(event::Column::IdempotencyKey)
            .filter(event::Column::SessionId.eq(session_id.as_str()))
            // Spelled out so both databases use the partial unique index.
            .filter(event::Column::IdempotencyKey.is_not_null())
            .filter(event::Column::IdempotencyKey.is_in(chunk.iter().copied()))
            .into_tuple()
            .all(&txn)
            .await?;
        seen.extend(stored.into_iter().flatten());
    }

    // Which events are new, per request.
    let mut keep: Vec<Vec<&NewEvent>> = Vec::with_capacity(requests.len());
    let mut duplicates = Vec::with_capacity(requests.len());
    for request in requests {
        let mut kept = Vec::with_capacity(request.len());
        let mut dups = 0;
        for event in request {
            match &event.idempotency_key {
                Some(key) if !seen.insert(key.clone()) => dups += 1,
                _ => kept.push(event),
            }
        }
        keep.push(kept);
        duplicates.push(dups);
    }
    let total: usize = keep.iter().map(Vec::len).sum();

    let mut outcomes: Vec<Outcome> = duplicates
        .into_iter()
        .map(|duplicates| Outcome {
            events: Vec::new(),
            duplicates,
        })
        .collect();
    if total == 0 {
        if let Some(effect) = effect {
            effect.apply(&txn, &[]).await?;
        }
        txn.commit().await?;
        return Ok(outcomes);
    }

    let now = crate::time::now();
    let updated = session::Entity::update_many()
        .col_expr(
            session::Column::HeadSeq,
            Expr::col(session::Column::HeadSeq).add(total as i64),
        )
        .col_expr(session::Column::UpdatedAt, Expr::value(now))
        .filter(session::Column::Id.eq(session_id.as_str()))
        .exec_with_returning(&txn)
        .await?;
    let Some(row) = updated.into_iter().next() else {
        return Err(StoreError::NoSession(session_id.clone()));
    };
    let head = row.head_seq;
    let ts = crate::time::format(&now);
    let mut seq = head - total as i64;

    let mut rows = Vec::with_capacity(total);
    for (outcome, kept) in outcomes.iter_mut().zip(&keep) {
        for event in kept {
            seq += 1;
            outcome.events.push(Committed::new(
                session_id.as_str(),
                seq,
                &event.kind,
                event.run_id.as_ref().map(|r| r.as_str()),
                &ts,
                &event.data,
            ));
            rows.push(event::ActiveModel {
                session_id: Set(session_id.as_str().to_owned()),
                seq: Set(seq),
                kind: Set(event.kind.clone()),
                run_id: Set(event.run_id.as_ref().map(|r| r.as_str().to_owned())),
                data: Set(event.data.get().to_owned()),
                idempotency_key: Set(event.idempotency_key.clone()),
                created_at: Set(now),
            });
        }
    }
    let mut rows = rows.into_iter().peekable();
    while rows.peek().is_some() {
        let chunk: Vec<_> = rows.by_ref().take(INSERT_CHUNK).collect();
        event::Entity::insert_many(chunk)
            .exec_without_returning(&txn)
            .await?;
    }

    if let Some(effect) = effect {
        let seqs: Vec<Seq> = outcomes
            .first()
            .map(|o| o.events.iter().map(|e| e.seq).collect())
            .unwrap_or_default();
        effect.apply(&txn, &seqs).await?;
    }

    if let Some(max) = max_events {
        let first_kept = head - max as i64 + 1;
        if first_kept > row.first_seq {
            event::Entity::delete_many()
                .filter(event::Column::SessionId.eq(session_id.as_str()))
                .filter(event::Column::Seq.lt(first_kept))
                .exec(&txn)
                .await?;
            session::Entity::update_many()
                .col_expr(session::Column::FirstSeq, Expr::value(first_kept))
                .filter(session::Column::Id.eq(session_id.as_str()))
                .exec(&txn)
                .await?;
        }
    }

    txn.commit().await?;
    Ok(outcomes)
}

/// Up to `limit` stored events with `seq > after`, oldest first.
pub async fn read(
    db: &impl ConnectionTrait,
    session_id: &SessionId,
    after: Seq,
    limit: u64,
) -> Result<Vec<Arc<Committed>>, DbErr> {
    let rows = event::Entity::find()
        .filter(event::Column::SessionId.eq(session_id.as_str()))
        .filter(event::Column::Seq.gt(after))
        .order_by_asc(event::Column::Seq)
        .limit(limit)
        .all(db)
        .await?;
    Ok(Committed::from_rows(rows))
}

/// The session's owner, head and oldest stored seq.
pub async fn window(
    db: &impl ConnectionTrait,
    session_id: &SessionId,
) -> Result<Option<(String, Window)>, DbErr> {
    let row: Option<(String, Seq, Seq)> = session::Entity::find_by_id(session_id.as_str())
        .select_only()
        .column(session::Column::Owner)
        .column(session::Column::HeadSeq)
        .column(session::Column::FirstSeq)
        .into_tuple()
        .one(db)
        .await?;
    Ok(row.map(|(owner, head_seq, first_seq)| {
        (
            owner,
            Window {
                head_seq,
                first_seq,
            },
        )
    }))
}

/// Deletes events older than `cutoff` and moves each affected session's
/// `first_seq` to its oldest remaining event (or past its head).
pub async fn prune_older_than(
    db: &DatabaseConnection,
    cutoff: chrono::DateTime<chrono::Utc>,
) -> Result<u64, DbErr> {
    let txn = crate::db::begin_write(db).await?;
    let sessions: Vec<String> = event::Entity::find()
        .select_only()
        .column(event::Column::SessionId)
        .distinct()
        .filter(event::Column::CreatedAt.lt(cutoff))
        .into_tuple()
        .all(&txn)
        .await?;
    let deleted = event::Entity::delete_many()
        .filter(event::Column::CreatedAt.lt(cutoff))
        .exec(&txn)
        .await?
        .rows_affected;
    for id in &sessions {
        let oldest: Option<Option<Seq>> = event::Entity::find()
            .select_only()
            .column_as(event::Column::Seq.min(), "min_seq")
            .filter(event::Column::SessionId.eq(id.as_str()))
            .into_tuple()
            .one(&txn)
            .await?;
        let first = match oldest.flatten() {
            Some(seq) => Expr::value(seq),
            None => Expr::col(session::Column::HeadSeq).add(1),
        };
        session::Entity::update_many()
            .col_expr(session::Column::FirstSeq, first)
            .filter(session::Column::Id.eq(id.as_str()))
            .exec(&txn)
            .await?;
    }
    txn.commit().await?;
    Ok(deleted)
}
