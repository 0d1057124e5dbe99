//! Several nodes on one PostgreSQL database and one Redis (issue 14, the
//! event log): every subscriber, on any node, gets every event of its
//! session once and in order, whichever node committed it and whatever
//! happens to the messages between nodes. Skipped, with a notice, unless
//! `SWITCHBOARD_TEST_POSTGRES_URL` and `SWITCHBOARD_TEST_REDIS_URL` are set
//! (CI's PostgreSQL pass sets both).

use std::collections::HashSet;

use serde_json::{Value, json};

use crate::helpers::{Nodes, PrivateRedis, Socket, TestServer, WAIT, info};

const TOKEN: &str = "tok-alice";

/// Subscribes `socket` to `session` after `after_seq`; returns the ack.
async fn subscribe(socket: &Socket, session: &str, after_seq: i64) -> Value {
    let ack = socket
        .request(
            "session:subscribe",
            json!({ "session_id": session, "after_seq": after_seq }),
        )
        .await;
    assert_eq!(ack["ok"], true, "{ack}");
    ack
}

/// Appends `count` events through `node`, one request each (one in three
/// carries three events), tagged `tag`; returns the messages appended.
async fn produce(node: &TestServer, session: &str, tag: &str, count: usize) -> Vec<String> {
    let mut messages = Vec::new();
    for i in 0..count {
        let batch: Vec<String> = (0..if i % 3 == 0 { 3 } else { 1 })
            .map(|j| format!("{tag}-{i}-{j}"))
            .collect();
        let events: Vec<Value> = batch.iter().map(|m| info(m)).collect();
        let (status, body) = node
            .append(TOKEN, session, json!({ "events": events }))
            .await;
        assert_eq!(status, reqwest::StatusCode::OK, "{body}");
        messages.extend(batch);
    }
    messages
}

/// A counter of `node`'s `/metrics` (0 when it has no sample yet).
async fn counter(node: &TestServer, name: &str) -> f64 {
    let text = node
        .http
        .get(node.http("/metrics"))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("metrics text");
    text.lines()
        .filter(|l| l.starts_with(name) && !l.starts_with('#'))
        .filter_map(|l| l.rsplit_once(' ')?.1.parse::<f64>().ok())
        .sum()
}

#[tokio::test]
async fn two_producers_on_two_nodes_reach_a_subscriber_on_a_third_once_and_in_order() {
    let Some(nodes) = Nodes::spawn(3).await else {
        return;
    };
    let session = nodes[0].create_session(TOKEN).await;
    let mut subscriber = nodes[2].agent(TOKEN).await;
    subscribe(&subscriber, &session, 0).await;

    let (a, b) = tokio::join!(
        produce(&nodes[0], &session, "a", 60),
        produce(&nodes[1], &session, "b", 60)
    );
    let total = a.len() + b.len();
    let events = subscriber.events_after(0, total).await;

    let seen: Vec<String> = events
        .iter()
        .map(|e| e["data"]["message"].as_str().expect("message").to_owned())
        .collect();
    let unique: HashSet<&String> = seen.iter().collect();
    assert_eq!(unique.len(), total, "an event was delivered twice");
    for message in a.iter().chain(&b) {
        assert!(unique.contains(message), "{message} never arrived");
    }
    // Each producer's events keep their order.
    for tag in ["a-", "b-"] {
        let mine: Vec<&String> = seen.iter().filter(|m| m.starts_with(tag)).collect();
        let sent: Vec<&String> = a.iter().chain(&b).filter(|m| m.starts_with(tag)).collect();
        assert_eq!(mine, sent);
    }
    assert!(counter(&nodes[2], "switchboard_cluster_notices_received_total").await > 0.0);
    assert!(counter(&nodes[0], "switchboard_cluster_notices_sent_total").await > 0.0);
}

#[tokio::test]
async fn a_subscriber_that_moves_to_another_node_resumes_without_gap_or_duplicate() {
    let Some(nodes) = Nodes::spawn(2).await else {
        return;
    };
    let session = nodes[0].create_session(TOKEN).await;
    let mut on_a = nodes[0].agent(TOKEN).await;
    subscribe(&on_a, &session, 0).await;

    let producing = produce(&nodes[0], &session, "m", 80);
    let moving = async {
        let first = on_a.events_after(0, 40).await;
        let last_seen = first.last().expect("an event")["seq"]
            .as_i64()
            .expect("seq");
        on_a.disconnect().await;
        let mut on_b = nodes[1].agent(TOKEN).await;
        subscribe(&on_b, &session, last_seen).await;
        (on_b.events_after(last_seen, 1).await, on_b, last_seen)
    };
    let (sent, (_, mut on_b, last_seen)) = tokio::join!(producing, moving);
    // 80 requests, one in three with three events.
    let total = sent.len() as i64;
    on_b.events_after(last_seen + 1, (total - last_seen - 1) as usize)
        .await;
}

#[tokio::test]
async fn subscribers_get_a_contiguous_log_when_redis_drops_its_pubsub_clients() {
    let Some(nodes) = Nodes::spawn(2).await else {
        return;
    };
    let session = nodes[0].create_session(TOKEN).await;
    let mut subscriber = nodes[1].agent(TOKEN).await;
    subscribe(&subscriber, &session, 0).await;

    let first = produce(&nodes[0], &session, "before", 20).await.len();
    subscriber.events_after(0, first).await;
    // Every node's Redis connection goes (those of tests running at the
    // same time too, which survive it the same way) while events go on.
    let producing = produce(&nodes[0], &session, "during", 60);
    let killing = async {
        for _ in 0..3 {
            nodes.redis(&["CLIENT", "KILL", "TYPE", "pubsub"]);
            tokio::task::yield_now().await;
        }
    };
    let (during, ()) = tokio::join!(producing, killing);
    subscriber.events_after(first as i64, during.len()).await;
    let after = produce(&nodes[0], &session, "after", 10).await.len();
    subscriber
        .events_after((first + during.len()) as i64, after)
        .await;
}

#[tokio::test]
async fn an_event_whose_notice_never_comes_is_delivered_by_the_head_check() {
    let Some(nodes) = Nodes::spawn(1).await else {
        return;
    };
    let session = nodes[0].create_session(TOKEN).await;
    let mut subscriber = nodes[0].agent(TOKEN).await;
    subscribe(&subscriber, &session, 0).await;
    // A process on the same database without Redis commits and tells no
    // one: exactly a notice lost at the tail, with nothing after it.
    let silent = nodes.builder.clone().spawn().await;
    produce(&silent, &session, "silent", 1).await;
    let event = subscriber.events_after(0, 3).await;
    assert_eq!(event[2]["data"]["message"], "silent-0-2");
    assert!(counter(&nodes[0], "switchboard_cluster_head_checks_total").await > 0.0);
    assert!(counter(&nodes[0], "switchboard_cluster_gap_events_total").await >= 3.0);
}

#[tokio::test]
async fn a_subscription_after_another_nodes_commit_is_checked_against_the_database() {
    let Some(nodes) = Nodes::spawn(2).await else {
        return;
    };
    let session = nodes[0].create_session(TOKEN).await;
    // Node 1 knows the session (and its head) before node 0 appends.
    let watcher = nodes[1].agent(TOKEN).await;
    subscribe(&watcher, &session, 0).await;
    produce(&nodes[0], &session, "x", 1).await;
    // Three events exist: after_seq 3 is valid on node 1 at once, whatever
    // it has heard; 4 is beyond the head.
    let mut late = nodes[1].agent(TOKEN).await;
    let ack = subscribe(&late, &session, 3).await;
    assert_eq!(ack["head_seq"], 3, "{ack}");
    let beyond = late
        .request(
            "session:subscribe",
            json!({ "session_id": session, "after_seq": 4 }),
        )
        .await;
    assert_eq!(beyond["error"]["code"], "conflict", "{beyond}");
    produce(&nodes[0], &session, "y", 1).await;
    late.events_after(3, 1).await;
}

#[tokio::test]
async fn idempotency_keys_hold_across_nodes_appending_at_once() {
    let Some(nodes) = Nodes::spawn(2).await else {
        return;
    };
    let session = nodes[0].create_session(TOKEN).await;
    let body = |i: usize| {
        json!({ "events": [
            { "type": "info", "data": { "message": format!("k{i}") }, "idempotency_key": format!("key-{i}") }
        ] })
    };
    let mut stored = 0;
    for i in 0..20 {
        let (one, two) = tokio::join!(
            nodes[0].append(TOKEN, &session, body(i)),
            nodes[1].append(TOKEN, &session, body(i))
        );
        assert_eq!(one.0, reqwest::StatusCode::OK, "{}", one.1);
        assert_eq!(two.0, reqwest::StatusCode::OK, "{}", two.1);
        let duplicates =
            one.1["duplicates"].as_i64().unwrap() + two.1["duplicates"].as_i64().unwrap();
        assert_eq!(duplicates, 1, "{} {}", one.1, two.1);
        stored += 1;
    }
    let (_, page) = nodes[1]
        .get(TOKEN, &format!("/v1/sessions/{session}/events?limit=1000"))
        .await;
    assert_eq!(
        crate::helpers::seqs(&page),
        (1..=stored).collect::<Vec<i64>>()
    );
}

#[tokio::test]
async fn a_node_names_itself_in_its_logs_and_metrics_and_is_ready_with_redis() {
    let Some(mut nodes) = Nodes::spawn(1).await else {
        return;
    };
    let (status, body) = nodes[0].get(TOKEN, "/readyz").await;
    assert_eq!(status, reqwest::StatusCode::OK, "{body}");
    let listening = nodes.nodes[0]
        .wait_for_log(|l| l["message"] == "listening")
        .await;
    assert_eq!(listening["node_id"], "node-0", "{listening}");
    nodes.nodes[0]
        .wait_for_log(|l| {
            l["level"] == "WARN"
                && l["message"]
                    .as_str()
                    .is_some_and(|m| m.contains("limits per user count per node"))
        })
        .await;
    let session = nodes[0].create_session(TOKEN).await;
    produce(&nodes[0], &session, "m", 1).await;
    let metrics = nodes[0]
        .http
        .get(nodes[0].http("/metrics"))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("metrics text");
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("switchboard_events_appended_total{node=\"node-0\"}")),
        "{metrics}"
    );
}

/// `GET /readyz` of `node`: its status code.
async fn readiness(node: &TestServer) -> reqwest::StatusCode {
    node.http
        .get(node.http("/readyz"))
        .send()
        .await
        .expect("readyz")
        .status()
}

/// Waits until `/readyz` of `node` answers `status` (Redis reconnects with
/// a backoff of its own).
async fn await_readiness(node: &TestServer, status: reqwest::StatusCode) {
    tokio::time::timeout(WAIT, async {
        while readiness(node).await != status {
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("/readyz never answered {status}"));
}

#[tokio::test]
async fn a_redis_restart_mid_stream_loses_nothing_and_readiness_follows_it() {
    let Some(mut redis) = PrivateRedis::start().await else {
        return;
    };
    let Some(nodes) = Nodes::spawn_on(2, &redis.url()).await else {
        return;
    };
    let session = nodes[0].create_session(TOKEN).await;
    let mut subscriber = nodes[1].agent(TOKEN).await;
    subscribe(&subscriber, &session, 0).await;
    let mut seen = 0;
    let before = produce(&nodes[0], &session, "before", 10).await.len();
    subscriber.events_after(seen, before).await;
    seen += before as i64;

    // Redis dies: producers and subscribers go on (the head check carries
    // the events), and readiness says Redis is gone.
    redis.stop().await;
    let during = produce(&nodes[0], &session, "during", 10).await.len();
    subscriber.events_after(seen, during).await;
    seen += during as i64;
    assert_eq!(
        readiness(&nodes[0]).await,
        reqwest::StatusCode::SERVICE_UNAVAILABLE
    );

    // Redis comes back empty: both nodes reconnect and resubscribe, and
    // notices flow again.
    redis.restart().await;
    await_readiness(&nodes[0], reqwest::StatusCode::OK).await;
    await_readiness(&nodes[1], reqwest::StatusCode::OK).await;
    let received = counter(&nodes[1], "switchboard_cluster_notices_received_total").await;
    let after = produce(&nodes[0], &session, "after", 10).await.len();
    subscriber.events_after(seen, after).await;
    tokio::time::timeout(WAIT, async {
        while counter(&nodes[1], "switchboard_cluster_notices_received_total").await <= received {
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    })
    .await
    .expect("notices reach node 1 again after the restart");
}

#[tokio::test]
async fn the_last_events_right_after_redis_drops_its_clients_still_arrive() {
    let Some(nodes) = Nodes::spawn(2).await else {
        return;
    };
    let session = nodes[0].create_session(TOKEN).await;
    let mut subscriber = nodes[1].agent(TOKEN).await;
    subscribe(&subscriber, &session, 0).await;
    let first = produce(&nodes[0], &session, "first", 1).await.len();
    subscriber.events_after(0, first).await;
    // The notice of the last append is lost, or comes after a reconnect,
    // with nothing after it to reveal a gap: the head check delivers it.
    nodes.redis(&["CLIENT", "KILL", "TYPE", "pubsub"]);
    let last = produce(&nodes[0], &session, "last", 1).await.len();
    subscriber.events_after(first as i64, last).await;
}
