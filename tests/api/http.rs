//! HTTP: health, authentication of requests, origins, the socket-token
//! exchange (PROTOCOL §2, §5).

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::*;

fn client() -> reqwest::Client {
    reqwest::Client::new()
}

#[tokio::test]
async fn health_and_readiness_answer_without_credentials() {
    let server = ServerBuilder::with_auth().spawn().await;
    let health = client().get(server.http("/healthz")).send().await.unwrap();
    assert_eq!(health.status(), StatusCode::OK);
    let ready = client().get(server.http("/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), StatusCode::OK);
    assert_eq!(ready.json::<Value>().await.unwrap()["status"], "ready");
}

#[tokio::test]
async fn readiness_is_503_when_the_database_does_not_answer() {
    // In-process, so the test can take the database away from a running server.
    let dir = tempfile::tempdir().unwrap();
    let config = in_process_config(dir.path());
    let app = switchboard::Application::build(config).await.unwrap();
    let url = format!("http://{}/readyz", app.local_addr());
    let db = app.state().db.clone();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(app.run_until_stopped(async {
        let _ = stopped.await;
    }));

    assert_eq!(
        client().get(&url).send().await.unwrap().status(),
        StatusCode::OK
    );
    db.close().await.unwrap();
    let response = client().get(&url).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(
        response.json::<Value>().await.unwrap()["error"]["code"],
        "unavailable"
    );

    let _ = stop.send(());
    let _ = server.await;
}

#[tokio::test]
async fn requests_authenticate_with_a_bearer_token_or_the_cookie() {
    let server = ServerBuilder::with_auth().spawn().await;
    let me = |req: reqwest::RequestBuilder| async move {
        let response = req.send().await.unwrap();
        (response.status(), response.json::<Value>().await.unwrap())
    };
    let (status, body) = me(client()
        .get(server.http("/v1/whoami"))
        .bearer_auth("tok-alice"))
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        body,
        json!({ "user_id": "alice", "role": "user", "method": "token" })
    );

    let cookie = format!("sb_session={}", user_jwt("ivan"));
    let (status, body) = me(client()
        .get(server.http("/v1/whoami"))
        .header("cookie", cookie))
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["user_id"], "ivan");
    assert_eq!(body["method"], "cookie");

    let (status, body) = me(client().get(server.http("/v1/whoami"))).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        body,
        json!({ "error": { "code": "unauthorized", "message": "unauthorized: missing_credentials" } })
    );

    let expired = jwt(json!({ "sub": "ivan", "exp": now() - 3600 }));
    let (status, body) = me(client().get(server.http("/v1/whoami")).bearer_auth(expired)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(body["error"]["message"], "unauthorized: expired_token");
}

#[tokio::test]
async fn a_socket_token_is_refused_on_http() {
    let server = ServerBuilder::with_auth().spawn().await;
    let token = jwt(json!({ "sub": "jane", "exp": now() + 300, "aud": "socket" }));
    let response = client()
        .get(server.http("/v1/whoami"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        response.json::<Value>().await.unwrap()["error"]["message"],
        "unauthorized: wrong_audience"
    );
}

#[tokio::test]
async fn a_handshake_from_a_foreign_origin_is_refused_at_the_transport() {
    let server = ServerBuilder::with_auth()
        .env("SWITCHBOARD_ALLOWED_ORIGINS", "http://localhost:5173")
        .spawn()
        .await;
    let handshake = server.http("/socket.io/?EIO=4&transport=polling");

    let foreign = client()
        .get(&handshake)
        .header("origin", "http://evil.example")
        .send()
        .await
        .unwrap();
    assert_eq!(foreign.status(), StatusCode::FORBIDDEN);
    assert_eq!(
        foreign.json::<Value>().await.unwrap()["error"]["code"],
        "forbidden"
    );

    let listed = client()
        .get(&handshake)
        .header("origin", "http://localhost:5173")
        .send()
        .await
        .unwrap();
    assert_eq!(listed.status(), StatusCode::OK);
    assert_eq!(
        listed.headers()["access-control-allow-origin"],
        "http://localhost:5173"
    );
    assert_eq!(listed.headers()["access-control-allow-credentials"], "true");

    let same_origin = client()
        .get(&handshake)
        .header("origin", server.url.as_str())
        .send()
        .await
        .unwrap();
    assert_eq!(same_origin.status(), StatusCode::OK);

    let err = server
        .socket("/agent")
        .token("tok-alice")
        .header("Origin", "http://evil.example")
        .connect()
        .await
        .err()
        .expect("refused");
    assert!(err.starts_with("transport"), "{err}");
}

async fn socket_token(
    server: &TestServer,
    origin: Option<&str>,
    requested_with: bool,
    cookie: Option<&str>,
) -> reqwest::Response {
    let mut req = client().post(server.http("/v1/auth/socket-token"));
    if let Some(origin) = origin {
        req = req.header("origin", origin);
    }
    if requested_with {
        req = req.header("x-requested-with", "switchboard");
    }
    if let Some(cookie) = cookie {
        req = req.header("cookie", format!("sb_session={cookie}"));
    }
    req.send().await.unwrap()
}

#[tokio::test]
async fn the_socket_token_exchange_turns_a_cookie_into_a_short_lived_socket_token() {
    let server = ServerBuilder::with_auth().spawn().await;
    let cookie = jwt(json!({ "sub": "kim", "exp": now() + 3600, "role": "admin" }));
    let origin = server.url.clone();

    let response = socket_token(&server, Some(&origin), true, Some(&cookie)).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["cache-control"], "no-store");
    let text = response.text().await.unwrap();
    assert!(!text.contains(&cookie), "the cookie came back");
    let body: Value = serde_json::from_str(&text).unwrap();
    let token = body["token"].as_str().unwrap();
    let expires_at =
        chrono::DateTime::parse_from_rfc3339(body["expires_at"].as_str().unwrap()).unwrap();
    let ttl = expires_at.timestamp() - now();
    assert!((1..=300).contains(&ttl), "expires in {ttl} s");

    let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::HS256);
    validation.set_audience(&["socket"]);
    let claims = jsonwebtoken::decode::<Value>(
        token,
        &jsonwebtoken::DecodingKey::from_secret(JWT_SECRET.as_bytes()),
        &validation,
    )
    .unwrap()
    .claims;
    assert_eq!(claims["sub"], "kim");
    assert_eq!(claims["aud"], "socket");

    let socket = server.agent(token).await;
    let ack = socket.request("auth:whoami", json!({})).await;
    assert_eq!(ack["user_id"], "kim");
    assert_eq!(ack["role"], "admin");
}

#[tokio::test]
async fn the_socket_token_exchange_requires_an_allowed_origin_the_header_and_a_cookie() {
    let server = ServerBuilder::with_auth().spawn().await;
    let cookie = user_jwt("lee");
    let origin = server.url.clone();
    let cases = [
        (
            socket_token(&server, Some(&origin), false, Some(&cookie)).await,
            StatusCode::FORBIDDEN,
        ),
        (
            socket_token(&server, None, true, Some(&cookie)).await,
            StatusCode::FORBIDDEN,
        ),
        (
            socket_token(&server, Some("http://evil.example"), true, Some(&cookie)).await,
            StatusCode::FORBIDDEN,
        ),
        (
            socket_token(&server, Some(&origin), true, None).await,
            StatusCode::UNAUTHORIZED,
        ),
        (
            socket_token(&server, Some(&origin), true, Some("garbage")).await,
            StatusCode::UNAUTHORIZED,
        ),
    ];
    for (i, (response, expected)) in cases.into_iter().enumerate() {
        assert_eq!(response.status(), expected, "case {i}");
        let body: Value = response.json().await.unwrap();
        assert!(body["error"]["message"].is_string(), "case {i}: {body}");
    }
}

#[tokio::test]
async fn the_socket_token_exchange_is_rate_limited_per_client_address() {
    let server = ServerBuilder::with_auth()
        .env("SWITCHBOARD_SOCKET_TOKEN_RATE", "3")
        .spawn()
        .await;
    let cookie = user_jwt("max");
    let origin = server.url.clone();
    for _ in 0..3 {
        let response = socket_token(&server, Some(&origin), true, Some(&cookie)).await;
        assert_eq!(response.status(), StatusCode::OK);
    }
    let limited = socket_token(&server, Some(&origin), true, Some(&cookie)).await;
    assert_eq!(limited.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(
        limited.json::<Value>().await.unwrap()["error"]["code"],
        "rate_limited"
    );
}

#[tokio::test]
async fn an_oversized_request_body_is_refused_with_413() {
    let server = ServerBuilder::with_auth()
        .env("SWITCHBOARD_MAX_BODY_BYTES", "1024")
        .spawn()
        .await;
    let response = client()
        .post(server.http("/v1/auth/socket-token"))
        .header("origin", server.url.as_str())
        .header("x-requested-with", "switchboard")
        .body(vec![b'x'; 4096])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);
}

#[tokio::test]
async fn unknown_routes_answer_a_json_404() {
    let server = ServerBuilder::with_auth().spawn().await;
    let response = client().get(server.http("/nope")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    assert_eq!(
        response.json::<Value>().await.unwrap()["error"]["code"],
        "not_found"
    );
}

#[tokio::test]
async fn metrics_are_served_in_the_prometheus_text_format() {
    let server = ServerBuilder::with_auth().spawn().await;
    let session = server.create_session("tok-alice").await;
    let mut socket = server.agent("tok-alice").await;
    socket
        .request("session:subscribe", json!({ "session_id": session }))
        .await;
    let _ = server.socket("/gateway").token("nope").connect().await;
    server
        .append(
            "tok-alice",
            &session,
            json!({ "events": [info("a"), info("b")] }),
        )
        .await;
    socket.events_after(0, 2).await;

    let response = client().get(server.http("/metrics")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert!(
        response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain")
    );
    let text = response.text().await.unwrap();
    for line in [
        r#"switchboard_handshakes_total{namespace="/agent",outcome="accepted"} 1"#,
        r#"switchboard_handshakes_total{namespace="/gateway",outcome="refused"} 1"#,
        "switchboard_events_appended_total 2",
        "switchboard_event_deliveries_total 2",
    ] {
        assert!(
            text.lines().any(|l| l == line),
            "{line:?} missing from:\n{text}"
        );
    }
}
