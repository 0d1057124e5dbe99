//! A run whose provider panics is ended like any other failure. In-process,
//! so that the test can hand the server a provider that panics.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use futures_util::StreamExt;
use serde_json::json;
use switchboard::engine::provider::{ChatRequest, Provider, ProviderEvent, ProviderStream};

use crate::helpers::{SocketBuilder, in_process_config};
use crate::runs::{types, until_idle};

/// Panics while streaming its first answer; answers "fine" afterwards.
#[derive(Default)]
struct PanicsOnce(AtomicUsize);

impl Provider for PanicsOnce {
    fn stream(&self, _: ChatRequest) -> ProviderStream {
        if self.0.fetch_add(1, Ordering::SeqCst) == 0 {
            return futures_util::stream::once(async { panic!("the provider blew up") }).boxed();
        }
        futures_util::stream::iter([
            Ok(ProviderEvent::TextDelta("fine".into())),
            Ok(ProviderEvent::Finished {
                reason: "stop".into(),
                usage: None,
            }),
        ])
        .boxed()
    }
}

#[tokio::test]
async fn a_panic_inside_a_run_ends_it_with_an_error_and_the_session_stays_usable() {
    let dir = tempfile::tempdir().unwrap();
    let config = in_process_config(dir.path());
    let app =
        switchboard::Application::build_with_provider(config, Arc::new(PanicsOnce::default()))
            .await
            .unwrap();
    let url = format!("http://{}", app.local_addr());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(app.run_until_stopped(async {
        let _ = stopped.await;
    }));

    let mut alice = SocketBuilder::new(&url, "/agent")
        .token("tok-alice")
        .connect()
        .await
        .unwrap();
    let session = alice.request("session:create", json!({})).await["session"]["id"].clone();
    alice
        .request("session:subscribe", json!({ "session_id": session }))
        .await;

    let run = json!({ "session_id": session, "content": "go" });
    assert_eq!(
        alice.request("agent:execute", run.clone()).await["ok"],
        true
    );
    let events = until_idle(&mut alice).await;
    assert_eq!(
        types(&events),
        [
            "message.user",
            "run.started",
            "status",
            "error",
            "run.finished",
            "status"
        ]
    );
    assert_eq!(events[3]["data"]["code"], "internal");
    assert!(
        !events[3]["data"]["message"]
            .as_str()
            .unwrap()
            .contains("blew up")
    );
    assert_eq!(events[4]["data"]["reason"], "error");

    assert_eq!(alice.request("agent:execute", run).await["ok"], true);
    let events = until_idle(&mut alice).await;
    assert_eq!(events[4]["data"]["content"], "fine");
    assert_eq!(events[5]["data"]["reason"], "completed");

    let _ = stop.send(());
    let _ = server.await;
}
