//! What a node does with the heads other nodes announce, in-process on
//! SQLite: a second log on the same database commits without telling the
//! first (another node), and the first learns heads in any order — late,
//! repeated, reordered, or never. Its subscriber gets every event once, in
//! order, whatever the notices do.

use serde_json::json;
use switchboard::auth::{Identity, Method, Role, UserId};
use switchboard::ids::{Seq, SessionId};
use switchboard::log::sink::Queued;
use switchboard::log::{EventLog, NewEvent, Sink, Window};
use tokio::sync::mpsc;

use crate::helpers::{WAIT, in_process_config};

fn info(tag: &str) -> NewEvent {
    NewEvent::new("info", None, json!({ "message": tag }))
}

/// The next `count` events, which must follow `after` without a gap.
async fn expect(rx: &mut mpsc::Receiver<Queued>, after: i64, count: i64) {
    for i in 0..count {
        let queued = tokio::time::timeout(WAIT, rx.recv())
            .await
            .expect("an event in time")
            .expect("the subscription is open");
        assert_eq!(queued.event.seq.get(), after + 1 + i, "gap or duplicate");
    }
}

/// Nothing is queued: checked by appending one more event through `log`
/// and finding it next.
async fn nothing_else(log: &EventLog, session: &SessionId, rx: &mut mpsc::Receiver<Queued>) {
    let appended = log.append(session, vec![info("probe")]).await.unwrap();
    let seq = appended.last_seq().unwrap();
    expect(rx, seq.prev().get(), 1).await;
}

#[tokio::test]
async fn late_repeated_reordered_and_lost_heads_never_lose_repeat_or_reorder_an_event() {
    let dir = tempfile::tempdir().unwrap();
    let app = switchboard::Application::build(in_process_config(dir.path()))
        .await
        .unwrap();
    let state = app.state().clone();
    let alice = Identity {
        user_id: UserId::new("alice"),
        role: Role::User,
        method: Method::Token,
    };
    let view = switchboard::sessions::create(&state.db, &alice, Default::default())
        .await
        .unwrap();
    let session = SessionId::parse(&view.id).unwrap();
    let this = state.log.clone();
    // Another node: its own log on the same database, telling no one.
    let other = EventLog::new(
        state.db.clone(),
        None,
        Default::default(),
        state.tasks.clone(),
        state.shutdown.clone(),
    );

    let (sink, mut rx) = Sink::channel(64, 1 << 20);
    let stored = Window {
        head_seq: Seq::ZERO,
        first_seq: Seq::new(1),
    };
    this.prepare_subscription(&session, sink, Seq::ZERO, stored)
        .await
        .unwrap()
        .start();
    this.append(&session, vec![info("a"), info("b")])
        .await
        .unwrap();
    expect(&mut rx, 0, 2).await;

    // The other node commits 3..=5, then 6..=7; the notice of the second
    // arrives first, the first one late, then the second again.
    other
        .append(&session, vec![info("c"), info("d"), info("e")])
        .await
        .unwrap();
    this.learn_head(&session, Seq::new(2)); // stale: nothing
    other
        .append(&session, vec![info("f"), info("g")])
        .await
        .unwrap();
    this.learn_head(&session, Seq::new(7));
    expect(&mut rx, 2, 5).await;
    this.learn_head(&session, Seq::new(5));
    this.learn_head(&session, Seq::new(7));
    nothing_else(&this, &session, &mut rx).await; // seq 8

    // A notice that never comes: the other node commits 9, and this node
    // only learns of it when it appends 10 itself (or from the head check).
    other.append(&session, vec![info("h")]).await.unwrap();
    this.append(&session, vec![info("i")]).await.unwrap();
    expect(&mut rx, 8, 2).await;

    // And once more through a notice: 11 from the other node.
    let late = other.append(&session, vec![info("j")]).await.unwrap();
    this.learn_head(&session, late.last_seq().unwrap());
    expect(&mut rx, 10, 1).await;
    nothing_else(&this, &session, &mut rx).await;
}
