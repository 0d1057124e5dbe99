//! The event log: contiguous seqs, replay then live with no gap or
//! duplicate, slow subscribers, resuming after a reconnect (PROTOCOL §4.3).

#[path = "../support/raw_client.rs"]
mod raw_client;

use std::collections::HashSet;

use raw_client::RawSocket;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::*;

#[tokio::test]
async fn seqs_are_contiguous_across_concurrent_producers() {
    let server = ServerBuilder::with_auth().spawn().await;
    let session = server.create_session("tok-alice").await;
    let producers = (0..8).map(|p| {
        let server = &server;
        let session = &session;
        async move {
            let mut seqs = Vec::new();
            for i in 0..25 {
                let events =
                    json!({ "events": [info(&format!("{p}-{i}")), info(&format!("{p}-{i}b"))] });
                let (status, body) = server.append("tok-alice", session, events).await;
                assert_eq!(status, StatusCode::OK, "{body}");
                let (first, last) = (
                    body["first_seq"].as_i64().unwrap(),
                    body["last_seq"].as_i64().unwrap(),
                );
                assert_eq!(last, first + 1, "a batch gets contiguous seqs");
                seqs.extend([first, last]);
            }
            seqs
        }
    });
    let mut all: Vec<i64> = futures_util::future::join_all(producers).await.concat();
    all.sort();
    assert_eq!(all, (1..=400).collect::<Vec<_>>());

    let (_, body) = server
        .get(
            "tok-alice",
            &format!("/v1/sessions/{session}/events?after_seq=0&limit=1000"),
        )
        .await;
    let seqs = seqs(&body);
    assert_eq!(seqs, (1..=400).collect::<Vec<_>>());
    assert_eq!(body["head_seq"], 400);
}

#[tokio::test]
async fn replay_from_after_seq_while_another_producer_appends_arrives_once_in_order() {
    let server = ServerBuilder::with_auth().spawn().await;
    let session = server.create_session("tok-alice").await;
    for _ in 0..13 {
        let (status, _) = server
            .append("tok-alice", &session, infos(100, "pre"))
            .await;
        assert_eq!(status, StatusCode::OK);
    }

    let mut socket = server.agent("tok-alice").await;
    let producer = {
        let server = &server;
        let session = &session;
        async move {
            for _ in 0..40 {
                let (status, _) = server.append("tok-alice", session, infos(5, "live")).await;
                assert_eq!(status, StatusCode::OK);
            }
        }
    };
    let subscriber = async {
        let ack = socket
            .request(
                "session:subscribe",
                json!({ "session_id": session, "after_seq": 100 }),
            )
            .await;
        assert_eq!(ack["ok"], true, "{ack}");
        assert!(ack["head_seq"].as_i64().unwrap() >= 1300);
        // 1,300 stored minus the first 100, plus 200 appended meanwhile.
        socket.events_after(100, 1400).await
    };
    let ((), events) = tokio::join!(producer, subscriber);
    assert_eq!(events.last().unwrap()["seq"], 1500);
    assert_eq!(
        events[0]["data"]["message"], "pre0",
        "seq 101 is the first of the second batch"
    );
    for event in &events {
        assert_eq!(event["session_id"], session.as_str());
        assert_eq!(event["type"], "info");
        assert!(event["ts"].as_str().unwrap().ends_with('Z'));
    }
}

#[tokio::test]
async fn subscribing_beyond_the_head_is_a_conflict() {
    let server = ServerBuilder::with_auth().spawn().await;
    let session = server.create_session("tok-alice").await;
    server.append_infos("tok-alice", &session, 3).await;
    let socket = server.agent("tok-alice").await;
    let ack = socket
        .request(
            "session:subscribe",
            json!({ "session_id": session, "after_seq": 4 }),
        )
        .await;
    assert_eq!(ack["error"]["code"], "conflict");
    let (status, body) = server
        .get(
            "tok-alice",
            &format!("/v1/sessions/{session}/events?after_seq=4"),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
}

#[tokio::test]
async fn without_after_seq_replay_starts_at_the_beginning_and_live_events_follow() {
    let server = ServerBuilder::with_auth().spawn().await;
    let session = server.create_session("tok-alice").await;
    server.append_infos("tok-alice", &session, 3).await;
    let mut socket = server
        .socket("/agent")
        .polling()
        .token("tok-alice")
        .connect()
        .await
        .unwrap();
    let ack = socket
        .request("session:subscribe", json!({ "session_id": session }))
        .await;
    assert_eq!(ack["head_seq"], 3);
    assert_eq!(ack["session"]["head_seq"], 3);
    socket.events_after(0, 3).await;
    server.append_infos("tok-alice", &session, 2).await;
    socket.events_after(3, 2).await;
}

#[tokio::test]
async fn after_unsubscribing_a_socket_gets_no_more_events_of_that_session() {
    let server = ServerBuilder::with_auth().spawn().await;
    let left = server.create_session("tok-alice").await;
    let kept = server.create_session("tok-alice").await;
    let mut socket = server.agent("tok-alice").await;
    for session in [&left, &kept] {
        let ack = socket
            .request("session:subscribe", json!({ "session_id": session }))
            .await;
        assert_eq!(ack["ok"], true);
    }
    let ack = socket
        .request("session:unsubscribe", json!({ "session_id": left }))
        .await;
    assert_eq!(ack, json!({ "ok": true }));
    server.append_infos("tok-alice", &left, 1).await;
    server.append_infos("tok-alice", &kept, 1).await;
    // Events of one socket arrive in the order they were published: had the
    // first append been delivered, it would come before this one.
    let event = socket.next("agent:event").await;
    assert_eq!(event["session_id"], kept.as_str());
}

#[tokio::test]
async fn resubscribing_after_a_reconnect_over_polling_loses_nothing() {
    let server = ServerBuilder::with_auth().spawn().await;
    let session = server.create_session("tok-alice").await;
    server.append_infos("tok-alice", &session, 5).await;

    let mut socket = server
        .socket("/agent")
        .polling()
        .token("tok-alice")
        .connect()
        .await
        .unwrap();
    socket
        .request("session:subscribe", json!({ "session_id": session }))
        .await;
    let seen = socket.events_after(0, 5).await;
    let last_seen = seen.last().unwrap()["seq"].as_i64().unwrap();
    socket.disconnect().await;

    server.append_infos("tok-alice", &session, 7).await;

    let mut socket = server
        .socket("/agent")
        .polling()
        .token("tok-alice")
        .connect()
        .await
        .unwrap();
    let ack = socket
        .request(
            "session:subscribe",
            json!({ "session_id": session, "after_seq": last_seen }),
        )
        .await;
    assert_eq!(ack["head_seq"], 12);
    socket.events_after(5, 7).await;
    server.append_infos("tok-alice", &session, 1).await;
    socket.events_after(12, 1).await;
}

/// 64 KiB per event, so a few hundred overflow every buffer between the
/// server and a client that stopped reading.
fn bulky(i: usize) -> Value {
    json!({ "type": "x.blob", "data": { "i": i, "blob": "x".repeat(64 * 1024) } })
}

#[tokio::test]
async fn a_subscriber_that_stops_reading_delays_no_one_and_gets_everything_once_it_reads_again() {
    let mut server = ServerBuilder::with_auth()
        .env("RUST_LOG", "info,switchboard::log=debug")
        .spawn()
        .await;
    let session = server.create_session("tok-alice").await;

    let mut stalled = RawSocket::connect(server.addr(), "/agent", "tok-alice", Some(4096))
        .await
        .unwrap();
    let ack = stalled
        .request(
            "session:subscribe",
            json!({ "session_id": session, "after_seq": 0 }),
        )
        .await
        .unwrap();
    assert_eq!(ack["ok"], true);
    let mut reader = server.agent("tok-alice").await;
    reader
        .request("session:subscribe", json!({ "session_id": session }))
        .await;

    // `stalled` reads nothing from here on. The producer and the other
    // subscriber go on at their own pace.
    const EVENTS: usize = 400;
    for chunk in 0..(EVENTS / 20) {
        let events: Vec<Value> = (0..20).map(|i| bulky(chunk * 20 + i)).collect();
        let (status, body) = server
            .append("tok-alice", &session, json!({ "events": events }))
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }
    reader.events_after(0, EVENTS).await;
    server
        .wait_for_log(|l| l["message"] == "subscriber fell behind; catching up from the log")
        .await;

    // Reading again, it gets every event, in order, once.
    for seq in 1..=EVENTS as i64 {
        let (name, event) = stalled.next_event().await.unwrap();
        assert_eq!(name, "agent:event");
        assert_eq!(event["seq"], seq);
    }
    server
        .append("tok-alice", &session, json!({ "events": [info("after")] }))
        .await;
    let (_, event) = stalled.next_event().await.unwrap();
    assert_eq!(
        event["seq"],
        EVENTS as i64 + 1,
        "live delivery resumed at the exact seq"
    );
    stalled.close().await;
}

#[tokio::test]
async fn a_subscriber_that_stays_behind_past_the_lag_timeout_is_told_and_dropped() {
    let server = ServerBuilder::with_auth()
        .env("SWITCHBOARD_LAG_TIMEOUT", "300ms")
        .spawn()
        .await;
    let session = server.create_session("tok-alice").await;
    let mut stalled = RawSocket::connect(server.addr(), "/agent", "tok-alice", Some(4096))
        .await
        .unwrap();
    stalled
        .request("session:subscribe", json!({ "session_id": session }))
        .await
        .unwrap();
    let mut reader = server.agent("tok-alice").await;
    reader
        .request("session:subscribe", json!({ "session_id": session }))
        .await;
    for chunk in 0..20 {
        let events: Vec<Value> = (0..20).map(|i| bulky(chunk * 20 + i)).collect();
        server
            .append("tok-alice", &session, json!({ "events": events }))
            .await;
    }
    reader.events_after(0, 400).await;

    // When it reads again: a prefix of the log, in order, then `session:lagged`
    // naming the last seq it was given, then nothing more.
    let mut expected = 1;
    let last_seq = loop {
        let (name, payload) = stalled.next_event().await.unwrap();
        match name.as_str() {
            "agent:event" => {
                assert_eq!(payload["seq"], expected);
                expected += 1;
            }
            "session:lagged" => {
                assert_eq!(payload["session_id"], session.as_str());
                break payload["last_seq"].as_i64().unwrap();
            }
            other => panic!("unexpected {other}"),
        }
    };
    assert_eq!(last_seq, expected - 1);
    assert!(last_seq < 400);

    // Resubscribing from there gets the rest.
    stalled
        .request(
            "session:subscribe",
            json!({ "session_id": session, "after_seq": last_seq }),
        )
        .await
        .unwrap();
    let mut seen = HashSet::new();
    for seq in last_seq + 1..=400 {
        let (_, event) = stalled.next_event().await.unwrap();
        assert_eq!(event["seq"], seq);
        assert!(seen.insert(seq));
    }
}
