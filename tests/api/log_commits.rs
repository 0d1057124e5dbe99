//! The event log's shared SQLite commits, in-process: appends of many
//! sessions share a transaction, and one that fails fails alone.

use futures_util::future::BoxFuture;
use sea_orm::{DatabaseTransaction, DbErr};
use serde_json::json;
use switchboard::auth::{Identity, Method, Role, UserId};
use switchboard::ids::{Seq, SessionId};
use switchboard::log::{Effect, NewEvent};

use crate::helpers::in_process_config;

/// An effect that always fails, as a database error inside a run would.
struct Fails;

impl Effect for Fails {
    fn apply<'a>(
        &'a self,
        _: &'a DatabaseTransaction,
        _: &'a [Seq],
    ) -> BoxFuture<'a, Result<(), DbErr>> {
        Box::pin(async { Err(DbErr::Custom("this effect always fails".into())) })
    }
}

fn info(i: usize) -> NewEvent {
    NewEvent::new("info", None, json!({ "message": format!("event {i}") }))
}

#[tokio::test]
async fn an_append_whose_effect_fails_fails_alone_and_leaves_no_trace() {
    let dir = tempfile::tempdir().unwrap();
    let config = in_process_config(dir.path());
    let app = switchboard::Application::build(config).await.unwrap();
    let state = app.state().clone();
    let alice = Identity {
        user_id: UserId::new("alice"),
        role: Role::User,
        method: Method::Token,
    };
    let mut sessions = Vec::new();
    for _ in 0..20 {
        let view = switchboard::sessions::create(&state.db, &alice, Default::default())
            .await
            .unwrap();
        sessions.push(SessionId::parse(&view.id).unwrap());
    }

    // Many sessions append at once (so their appends share transactions);
    // in the middle, one append per round carries a failing effect.
    let rounds = 20;
    let mut tasks = Vec::new();
    for (n, session) in sessions.iter().enumerate() {
        let log = state.log.clone();
        let session = session.clone();
        tasks.push(tokio::spawn(async move {
            let mut failed = 0;
            for round in 0..rounds {
                let effect: Option<Box<dyn Effect>> =
                    (n == 7 && round % 2 == 0).then(|| Box::new(Fails) as Box<dyn Effect>);
                let has_effect = effect.is_some();
                let result = log
                    .append_with(&session, vec![info(round), info(round)], effect)
                    .await;
                match result {
                    Ok(_) => assert!(!has_effect, "the failing effect was committed"),
                    Err(_) => {
                        assert!(has_effect, "an append without a failing effect failed");
                        failed += 1;
                    }
                }
            }
            failed
        }));
    }
    let mut failed = 0;
    for task in tasks {
        failed += task.await.unwrap();
    }
    assert_eq!(failed, rounds / 2);

    for (n, session) in sessions.iter().enumerate() {
        let events = state.log.read(session, Seq::ZERO, 1_000).await.unwrap();
        let expected = if n == 7 { rounds } else { 2 * rounds };
        assert_eq!(events.len(), expected, "session {n}");
        let seqs: Vec<i64> = events.iter().map(|e| e.seq.get()).collect();
        assert_eq!(
            seqs,
            (1..=expected as i64).collect::<Vec<_>>(),
            "session {n}"
        );
    }
}
