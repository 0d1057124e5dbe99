//! The Socket.IO message limit on the WebSocket transport (issue 12,
//! item 1): a message over `SWITCHBOARD_MAX_MESSAGE_BYTES` closes the
//! connection before the server buffers it, as polling does; one under it
//! is still answered.

use futures_util::SinkExt;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::frame::Frame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};

use super::*;
use crate::helpers::*;

const MAX_MESSAGE: usize = 4 * 1024 * 1024;
const MIB: usize = 1024 * 1024;

/// `42/agent,{id}["session:create",{"metadata":{"n":[0,0,…]}}]`, `len`
/// bytes long: many small values, which cost far more parsed than sent.
fn create_request(id: u64, len: usize) -> String {
    let head = format!("42/agent,{id}[\"session:create\",{{\"metadata\":{{\"n\":[0");
    let tail = "]}}]";
    let zeros = (len - head.len() - tail.len()) / 2;
    let mut request = String::with_capacity(len);
    request.push_str(&head);
    request.push_str(&",0".repeat(zeros));
    request.push_str(&" ".repeat(len - head.len() - tail.len() - 2 * zeros));
    request.push_str(tail);
    request
}

#[tokio::test]
async fn one_oversized_websocket_frame_closes_the_connection_before_it_is_buffered() {
    let server = ServerBuilder::with_auth().spawn().await;
    let mut ws = signed_in_websocket(server.addr(), "tok-alice").await;
    let before = server.peak_rss_kib();

    // One 15 MiB frame: the server refuses it from its header.
    let _ = ws.send(text(create_request(0, 15 * MIB))).await;
    let closed = websocket_closed(&mut ws).await;
    let grew = server.peak_rss_kib().saturating_sub(before);
    eprintln!(
        "one 15 MiB frame: closed {closed}, peak RSS +{:.1} MiB",
        mib(grew)
    );
    assert!(
        closed,
        "a connection that sent a 15 MiB message is still open"
    );
    assert!(
        mib(grew) < 48.0,
        "peak RSS grew by {:.0} MiB for one refused message",
        mib(grew)
    );

    // Just under the limit, the request reaches its handler and is answered.
    let mut ws = signed_in_websocket(server.addr(), "tok-alice").await;
    ws.send(text(create_request(1, MAX_MESSAGE - 1024)))
        .await
        .expect("send");
    let ack = loop {
        let packet = next_text(&mut ws).await.expect("an answer, not a close");
        if let Some(ack) = packet.strip_prefix("43/agent,1") {
            break ack.to_owned();
        }
    };
    let ack: Value = serde_json::from_str(&ack).expect("an ack");
    assert!(ack[0]["ok"].is_boolean(), "{ack}");
}

/// Three clients send 40 MiB messages in fragments, each under the frame
/// limit or not, signed in or never opening a namespace.
#[tokio::test]
async fn a_message_fragmented_past_the_limit_closes_the_connection_signed_in_or_not() {
    let server = ServerBuilder::with_auth().spawn().await;
    let before = server.peak_rss_kib();
    let clients = [
        ("signed in, 1 MiB fragments", true, MIB),
        ("no namespace, 1 MiB fragments", false, MIB),
        ("no namespace, 8 MiB fragments", false, 8 * MIB),
    ];
    let senders = clients.map(|(what, sign_in, fragment)| {
        let addr = server.addr();
        async move {
            let mut ws = if sign_in {
                signed_in_websocket(addr, "tok-alice").await
            } else {
                engine_io_websocket(addr).await
            };
            let message = create_request(0, 40 * MIB);
            let chunks: Vec<&[u8]> = message.as_bytes().chunks(fragment).collect();
            for (i, chunk) in chunks.iter().enumerate() {
                let opcode = OpCode::Data(if i == 0 { Data::Text } else { Data::Continue });
                let frame = Frame::message(chunk.to_vec(), opcode, i + 1 == chunks.len());
                if ws.send(Message::Frame(frame)).await.is_err() {
                    break;
                }
            }
            (what, websocket_closed(&mut ws).await)
        }
    });
    let closed = futures_util::future::join_all(senders).await;
    let grew = server.peak_rss_kib().saturating_sub(before);
    eprintln!(
        "three fragmented 40 MiB messages: {closed:?}, peak RSS +{:.1} MiB",
        mib(grew)
    );
    for (what, closed) in closed {
        assert!(closed, "{what}: still open");
    }
    assert!(
        mib(grew) < 64.0,
        "peak RSS grew by {:.0} MiB for three refused messages",
        mib(grew)
    );
    // The server still serves others.
    let ws = signed_in_websocket(server.addr(), "tok-bob").await;
    drop(ws);
}
