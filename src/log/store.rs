//! The event log in the database. Only the log's writers (the session's
//! writer task, or on SQLite the committer) call [`append`] and
//! [`append_groups`]; `seq` is allocated by incrementing
//! `sessions.head_seq` in the same transaction that inserts the events, so
//! the database row is the source of truth even with several nodes.

mod error;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use chrono::{DateTime, Utc};
use entity::{event, session};
use sea_orm::sea_query::{Expr, ExprTrait, Func};
use sea_orm::{
    ColumnTrait, ConnectionTrait, DatabaseConnection, DatabaseTransaction, DbBackend, DbErr,
    EntityTrait, FromQueryResult, QueryFilter, QueryOrder, QuerySelect, Set, Statement,
};

use super::Effect;
use super::event::{Committed, NewEvent, Stored, Window};
use super::fence::Fence;
use crate::ids::{Seq, SessionId};
pub use error::StoreError;

/// Rows per INSERT (and sessions per seq allocation): SQLite allows 32,766
/// bound parameters, events have 7 columns.
const CHUNK_SIZES: [usize; 5] = [256, 64, 16, 4, 1];

/// What one append request got.
#[derive(Debug, Default)]
pub struct Outcome {
    pub events: Vec<Arc<Committed>>,
    pub duplicates: usize,
}

/// One session's requests to append, and what must commit with them.
pub struct Group<'a> {
    pub session_id: &'a SessionId,
    pub requests: &'a [Vec<NewEvent>],
    /// Only with a single request: its events' seqs are handed to it.
    pub effect: Option<&'a dyn Effect>,
    /// The run lease its requests need ([`super::fence`]).
    pub fence: Option<&'a Fence>,
    /// Other nodes append to this session too (PostgreSQL, several nodes).
    pub shared: bool,
}

/// Appends one session's requests in one transaction (group commit).
pub async fn append(
    db: &DatabaseConnection,
    group: Group<'_>,
    max_events: Option<u64>,
) -> Result<Vec<Outcome>, StoreError> {
    let txn = crate::db::begin_write(db).await?;
    let mut outcomes = append_groups(&txn, std::slice::from_ref(&group), max_events).await?;
    txn.commit().await?;
    Ok(outcomes.pop().unwrap_or_default())
}

/// Appends the groups of several sessions inside the caller's transaction,
/// with one statement to allocate every session's seqs and as few inserts
/// as the rows need. Each request gets contiguous seqs, in order; events
/// whose idempotency key the session already stored (or an earlier event of
/// the same transaction carried) are skipped and counted as duplicates.
/// With `max_events`, older events are pruned so that at most that many
/// stay stored per session.
pub async fn append_groups(
    txn: &DatabaseTransaction,
    groups: &[Group<'_>],
    max_events: Option<u64>,
) -> Result<Vec<Vec<Outcome>>, StoreError> {
    let now = crate::time::now();
    for group in groups {
        if let Some(fence) = group.fence {
            super::fence::check(txn, group.session_id, fence, now).await?;
        }
    }
    lock_keyed_sessions(txn, groups).await?;
    let mut seen = stored_keys(txn, groups).await?;
    let mut new = new_events(groups, &mut seen);
    let heads = allocate_seqs(txn, &new.totals, now).await?;
    insert_events(txn, groups, &mut new, &heads, now).await?;
    apply_effects(txn, groups, &new.outcomes).await?;
    if let Some(max) = max_events {
        prune_to(txn, &heads, max).await?;
    }
    Ok(new.outcomes)
}

/// With several nodes, two of them may append events with the same
/// idempotency key to one session at once: both would find the key unused,
/// and the second insert would break the unique index. So a shared group
/// that carries keys first locks its session's row (the lock the seq
/// allocation takes anyway, taken earlier), and reads the stored keys
/// after the other node's commit (READ COMMITTED reads the latest commit
/// in each statement). Seqs need no such lock: the allocation's `UPDATE`
/// already serialises appends to one session across nodes.
async fn lock_keyed_sessions(txn: &DatabaseTransaction, groups: &[Group<'_>]) -> Result<(), DbErr> {
    let mut keyed: Vec<&str> = groups
        .iter()
        .filter(|g| {
            g.shared
                && g.requests
                    .iter()
                    .flatten()
                    .any(|e| e.idempotency_key.is_some())
        })
        .map(|g| g.session_id.as_str())
        .collect();
    if keyed.is_empty() {
        return Ok(());
    }
    keyed.sort_unstable();
    keyed.dedup();
    session::Entity::find()
        .select_only()
        .column(session::Column::Id)
        .filter(session::Column::Id.is_in(keyed))
        .order_by_asc(session::Column::Id)
        .lock_exclusive()
        .into_tuple::<String>()
        .all(txn)
        .await?;
    Ok(())
}

/// The idempotency keys of the groups' events that each session already
/// stored.
async fn stored_keys<'g>(
    txn: &DatabaseTransaction,
    groups: &[Group<'g>],
) -> Result<HashMap<&'g str, HashSet<String>>, DbErr> {
    let mut seen: HashMap<&str, HashSet<String>> = HashMap::new();
    for group in groups {
        let keys: Vec<&str> = group
            .requests
            .iter()
            .flatten()
            .filter_map(|e| e.idempotency_key.as_deref())
            .collect();
        let seen = seen.entry(group.session_id.as_str()).or_default();
        for chunk in keys.chunks(500) {
            let stored: Vec<Option<String>> = event::Entity::find()
                .select_only()
                .column(event::Column::IdempotencyKey)
                .filter(event::Column::SessionId.eq(group.session_id.as_str()))
                // Spelled out so both databases use the partial unique index.
                .filter(event::Column::IdempotencyKey.is_not_null())
                .filter(event::Column::IdempotencyKey.is_in(chunk.iter().copied()))
                .into_tuple()
                .all(txn)
                .await?;
            seen.extend(stored.into_iter().flatten());
        }
    }
    Ok(seen)
}

/// The events of an append that are new, and what each request got so far.
struct NewEvents<'g> {
    /// Per group, per request: the events to insert.
    kept: Vec<Vec<Vec<&'g NewEvent>>>,
    /// Per group, per request: its outcome (duplicates counted, events
    /// added as they are inserted).
    outcomes: Vec<Vec<Outcome>>,
    /// New events per session, for the sessions that have any.
    totals: HashMap<&'g str, i64>,
}

/// Which events are new, per request, and how many per session: an event
/// whose key is in `seen` (stored, or carried by an earlier event) is a
/// duplicate.
fn new_events<'g>(
    groups: &[Group<'g>],
    seen: &mut HashMap<&'g str, HashSet<String>>,
) -> NewEvents<'g> {
    let mut kept: Vec<Vec<Vec<&NewEvent>>> = Vec::with_capacity(groups.len());
    let mut outcomes: Vec<Vec<Outcome>> = Vec::with_capacity(groups.len());
    let mut totals: HashMap<&str, i64> = HashMap::new();
    for group in groups {
        let seen = seen.entry(group.session_id.as_str()).or_default();
        let mut group_kept = Vec::with_capacity(group.requests.len());
        let mut group_outcomes = Vec::with_capacity(group.requests.len());
        for request in group.requests {
            let mut keep = Vec::with_capacity(request.len());
            let mut duplicates = 0;
            for event in request {
                match &event.idempotency_key {
                    Some(key) if !seen.insert(key.clone()) => duplicates += 1,
                    _ => keep.push(event),
                }
            }
            *totals.entry(group.session_id.as_str()).or_default() += keep.len() as i64;
            group_kept.push(keep);
            group_outcomes.push(Outcome {
                events: Vec::new(),
                duplicates,
            });
        }
        kept.push(group_kept);
        outcomes.push(group_outcomes);
    }
    totals.retain(|_, n| *n > 0);
    NewEvents {
        kept,
        outcomes,
        totals,
    }
}

/// Each session's seqs, allocated by moving its head.
struct Heads<'g> {
    /// The next seq to give, per session with new events.
    next_seq: HashMap<&'g str, Seq>,
    /// `(id, head_seq, first_seq)` per session, after the allocation.
    rows: Vec<(String, Seq, Seq)>,
}

/// Allocates the new events' seqs, all sessions at once (see
/// [`allocate`]); `NoSession` when a session's row is gone.
async fn allocate_seqs<'g>(
    txn: &DatabaseTransaction,
    totals: &HashMap<&'g str, i64>,
    now: DateTime<Utc>,
) -> Result<Heads<'g>, StoreError> {
    let mut heads = Heads {
        next_seq: HashMap::new(),
        rows: Vec::new(),
    };
    if totals.is_empty() {
        return Ok(heads);
    }
    let mut totals_list: Vec<(&str, i64)> = totals.iter().map(|(id, n)| (*id, *n)).collect();
    totals_list.sort_unstable();
    for (id, head, first) in allocate(txn, &totals_list, now).await? {
        if let Some((id, n)) = totals.get_key_value(id.as_str()) {
            heads.next_seq.insert(id, head.first_of_last(*n));
        }
        heads.rows.push((id, head, first));
    }
    if let Some(missing) = totals.keys().find(|id| !heads.next_seq.contains_key(*id)) {
        return Err(StoreError::NoSession(SessionId::from_db(
            (*missing).to_owned(),
        )));
    }
    Ok(heads)
}

/// Builds the new events' envelopes (into their requests' outcomes) and
/// rows, and inserts the rows.
async fn insert_events(
    txn: &DatabaseTransaction,
    groups: &[Group<'_>],
    new: &mut NewEvents<'_>,
    heads: &Heads<'_>,
    now: DateTime<Utc>,
) -> Result<(), DbErr> {
    let ts = crate::time::format(&now);
    let mut next_seq = heads.next_seq.clone();
    let mut rows = Vec::new();
    for ((group, group_kept), group_outcomes) in groups.iter().zip(&new.kept).zip(&mut new.outcomes)
    {
        let session_id = group.session_id.as_str();
        for (keep, outcome) in group_kept.iter().zip(group_outcomes.iter_mut()) {
            for event in keep {
                let seq = next_seq.get_mut(session_id).expect("allocated");
                outcome.events.push(Committed::new(
                    session_id,
                    *seq,
                    &event.kind,
                    event.run_id.as_ref().map(|r| r.as_str()),
                    &ts,
                    &event.data,
                ));
                rows.push(event::ActiveModel {
                    session_id: Set(group.session_id.clone()),
                    seq: Set(*seq),
                    kind: Set(event.kind.clone()),
                    run_id: Set(event.run_id.clone()),
                    data: Set(event.data.get().to_owned()),
                    idempotency_key: Set(event.idempotency_key.clone()),
                    created_at: Set(now),
                });
                *seq = seq.next();
            }
        }
    }
    let mut rows = rows.into_iter();
    for size in fixed_chunks(rows.len()) {
        let chunk: Vec<_> = rows.by_ref().take(size).collect();
        event::Entity::insert_many(chunk)
            .exec_without_returning(txn)
            .await?;
    }
    Ok(())
}

/// Applies each group's effect, handing it its events' seqs.
async fn apply_effects(
    txn: &DatabaseTransaction,
    groups: &[Group<'_>],
    outcomes: &[Vec<Outcome>],
) -> Result<(), DbErr> {
    for (group, group_outcomes) in groups.iter().zip(outcomes) {
        if let Some(effect) = group.effect {
            let seqs: Vec<Seq> = group_outcomes
                .first()
                .map(|o| o.events.iter().map(|e| e.seq).collect())
                .unwrap_or_default();
            effect.apply(txn, &seqs).await?;
        }
    }
    Ok(())
}

/// Prunes the oldest events of each session that now holds more than
/// `max`, and moves its `first_seq`.
async fn prune_to(txn: &DatabaseTransaction, heads: &Heads<'_>, max: u64) -> Result<(), DbErr> {
    for (id, head, first_seq) in &heads.rows {
        let first_kept = head.first_of_last(max as i64);
        if first_kept > *first_seq {
            event::Entity::delete_many()
                .filter(event::Column::SessionId.eq(id.as_str()))
                .filter(event::Column::Seq.lt(first_kept))
                .exec(txn)
                .await?;
            session::Entity::update_many()
                .col_expr(session::Column::FirstSeq, Expr::value(first_kept))
                .filter(session::Column::Id.eq(id.as_str()))
                .exec(txn)
                .await?;
        }
    }
    Ok(())
}

/// Splits `n` rows into statements of a few fixed sizes (largest first), so
/// that the database sees a handful of distinct statements, each prepared
/// once and cached, instead of a new one for every row count.
fn fixed_chunks(mut n: usize) -> impl Iterator<Item = usize> {
    std::iter::from_fn(move || {
        let size = CHUNK_SIZES.iter().copied().find(|size| *size <= n)?;
        n -= size;
        Some(size)
    })
}

/// Adds each session's count to its `head_seq`, returning `(id, head_seq,
/// first_seq)` per session.
async fn allocate(
    txn: &DatabaseTransaction,
    totals: &[(&str, i64)],
    now: DateTime<Utc>,
) -> Result<Vec<(String, Seq, Seq)>, DbErr> {
    let mut heads = Vec::with_capacity(totals.len());
    if txn.get_database_backend() != DbBackend::Sqlite || totals.len() == 1 {
        for (id, n) in totals {
            let updated = session::Entity::update_many()
                .col_expr(
                    session::Column::HeadSeq,
                    Expr::col(session::Column::HeadSeq).add(*n),
                )
                .col_expr(session::Column::UpdatedAt, Expr::value(now))
                .filter(session::Column::Id.eq(*id))
                .exec_with_returning(txn)
                .await?;
            heads.extend(
                updated
                    .into_iter()
                    .map(|row| (row.id.into_string(), row.head_seq, row.first_seq)),
            );
        }
        return Ok(heads);
    }
    // SQLite, several sessions: one UPDATE … FROM per fixed-size chunk (a
    // CASE over many sessions costs a comparison per session and row).
    let mut rest = totals;
    for size in fixed_chunks(totals.len()) {
        let (chunk, tail) = rest.split_at(size);
        rest = tail;
        let values = vec!["(?, ?)"; size].join(", ");
        let sql = format!(
            "WITH v(id, n) AS (VALUES {values}) \
             UPDATE sessions SET head_seq = sessions.head_seq + v.n, updated_at = ? \
             FROM v WHERE sessions.id = v.id \
             RETURNING id, head_seq, first_seq"
        );
        let mut params: Vec<sea_orm::Value> = Vec::with_capacity(size * 2 + 1);
        for (id, n) in chunk {
            params.push((*id).into());
            params.push((*n).into());
        }
        params.push(now.into());
        let rows = txn
            .query_all_raw(Statement::from_sql_and_values(
                DbBackend::Sqlite,
                sql,
                params,
            ))
            .await?;
        for row in rows {
            heads.push((
                row.try_get("", "id")?,
                row.try_get("", "head_seq")?,
                row.try_get("", "first_seq")?,
            ));
        }
    }
    Ok(heads)
}

/// Envelope bytes besides the data, the type and the run id: the keys, the
/// session id, the seq and the timestamp (see [`Committed::new`]).
const ENVELOPE_OVERHEAD: i64 = 128;

/// A page of stored events, oldest first.
#[derive(Debug, Default)]
pub struct Page {
    pub events: Vec<Arc<Committed>>,
    /// The page stopped at its byte bound: more events are stored after it.
    pub cut: bool,
}

/// A row of [`read_page`]'s query: the event's size, and its data and
/// commit time when it is small enough to load before knowing whether it
/// fits.
#[derive(Debug, FromQueryResult)]
struct SizedRow {
    seq: Seq,
    kind: String,
    run_id: Option<String>,
    size: i64,
    created_at: Option<DateTime<Utc>>,
    data: Option<String>,
}

/// Up to `limit` stored events with `seq > after`, oldest first, holding at
/// most `max_bytes` of envelopes but always at least one event, so that a
/// reader never gets stuck.
///
/// Nothing is loaded that the page does not keep, beyond `max_bytes`: one
/// query reads every candidate's size, from the stored lengths (which
/// neither SQLite, 3.43 or later and bundled, nor PostgreSQL reads the data
/// to answer), and the data of those of at most `max_bytes / limit` bytes
/// (`limit` of them fit in a page); a second query, only when needed, loads
/// the larger ones that fit. The commit time is loaded with the data: on
/// SQLite it is stored after it, and reaching it walks the data's overflow
/// pages.
pub async fn read_page(
    db: &impl ConnectionTrait,
    session_id: &SessionId,
    after: Seq,
    limit: u64,
    max_bytes: usize,
) -> Result<Page, DbErr> {
    let per_event = max_bytes as u64 / Ord::max(limit, 1);
    let small = i64::try_from(per_event).unwrap_or(i64::MAX);
    let if_small = |column: event::Column| -> Expr {
        Expr::case(octets(event::Column::Data).lte(small), Expr::col(column))
            .finally(Expr::null())
            .into()
    };
    let mut rows: Vec<SizedRow> = event::Entity::find()
        .select_only()
        .column(event::Column::Seq)
        .column_as(Expr::col(event::Column::Kind), "kind")
        .column(event::Column::RunId)
        .column_as(stored_size(), "size")
        .column_as(if_small(event::Column::CreatedAt), "created_at")
        .column_as(if_small(event::Column::Data), "data")
        .filter(event::Column::SessionId.eq(session_id.as_str()))
        .filter(event::Column::Seq.gt(after))
        .order_by_asc(event::Column::Seq)
        .limit(limit)
        .into_model()
        .all(db)
        .await?;
    let kept = fitting(rows.iter().map(|row| row.size), max_bytes);
    let cut = kept < rows.len();
    rows.truncate(kept);

    let large: Vec<Seq> = rows
        .iter()
        .filter(|row| row.data.is_none())
        .map(|row| row.seq)
        .collect();
    if !large.is_empty() {
        // Data first: SQLite then reaches the commit time through the
        // overflow pages it has just read, instead of walking them twice.
        let mut loaded: HashMap<Seq, (String, DateTime<Utc>)> = event::Entity::find()
            .select_only()
            .column(event::Column::Seq)
            .column(event::Column::Data)
            .column(event::Column::CreatedAt)
            .filter(event::Column::SessionId.eq(session_id.as_str()))
            .filter(event::Column::Seq.is_in(large))
            .into_tuple::<(Seq, String, DateTime<Utc>)>()
            .all(db)
            .await?
            .into_iter()
            .map(|(seq, data, created_at)| (seq, (data, created_at)))
            .collect();
        for row in &mut rows {
            if let Some((data, created_at)) = loaded.remove(&row.seq) {
                row.created_at = Some(created_at);
                row.data = Some(data);
            }
        }
    }
    // A row gone in between (pruned) ends the page there.
    let stored = rows.into_iter().map_while(|row| {
        Some(Stored {
            created_at: row.created_at?,
            data: row.data?,
            seq: row.seq,
            kind: row.kind,
            run_id: row.run_id,
        })
    });
    Ok(Page {
        events: Committed::from_rows(session_id.as_str(), stored),
        cut,
    })
}

/// `octet_length(column)`: answered from the stored length, not the data.
fn octets(column: event::Column) -> Expr {
    Func::cust("octet_length").arg(Expr::col(column)).into()
}

/// An event's envelope size from its stored columns, without reading them.
fn stored_size() -> Expr {
    let run_id = Func::coalesce([octets(event::Column::RunId), Expr::val(0)]);
    let sum = octets(event::Column::Data)
        .add(octets(event::Column::Kind))
        .add(run_id)
        .add(ENVELOPE_OVERHEAD);
    Func::cast_as(sum, "BIGINT").into()
}

/// How many of the leading `sizes` fit in `max_bytes`: at least one.
pub fn fitting(sizes: impl IntoIterator<Item = i64>, max_bytes: usize) -> usize {
    let max = i64::try_from(max_bytes).unwrap_or(i64::MAX);
    let mut total: i64 = 0;
    let mut count = 0;
    for size in sizes {
        total = total.saturating_add(Ord::max(size, 0));
        if count > 0 && total > max {
            break;
        }
        count += 1;
    }
    count
}

/// The session's owner, head and oldest stored seq.
pub async fn window(
    db: &impl ConnectionTrait,
    session_id: &SessionId,
) -> Result<Option<(String, Window)>, DbErr> {
    let row: Option<(String, Seq, Seq)> = session::Entity::find_by_id(session_id.clone())
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
    cutoff: DateTime<Utc>,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_are_split_into_the_fixed_sizes_largest_first() {
        assert_eq!(fixed_chunks(0).count(), 0);
        assert_eq!(fixed_chunks(1).collect::<Vec<_>>(), [1]);
        assert_eq!(fixed_chunks(257).collect::<Vec<_>>(), [256, 1]);
        assert_eq!(
            fixed_chunks(600).collect::<Vec<_>>(),
            [256, 256, 64, 16, 4, 4]
        );
        for n in 0..1000 {
            assert_eq!(fixed_chunks(n).sum::<usize>(), n);
        }
    }

    #[test]
    fn a_page_keeps_what_fits_in_its_bytes_but_at_least_one() {
        assert_eq!(fitting([10, 10, 10], 25), 2);
        assert_eq!(fitting([10, 10, 10], 30), 3);
        assert_eq!(fitting([100, 1], 10), 1, "the first always fits");
        assert_eq!(fitting([], 10), 0);
        assert_eq!(fitting([-5, 10], 10), 2, "a negative size counts as none");
    }
}
