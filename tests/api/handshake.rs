//! Socket.IO handshakes on /agent and /gateway (PROTOCOL §2).

use serde_json::{Value, json};

use crate::helpers::*;

async fn whoami(
    server: &TestServer,
    ns: &str,
    configure: impl FnOnce(SocketBuilder) -> SocketBuilder,
) -> Value {
    let socket = configure(server.socket(ns))
        .connect()
        .await
        .expect("connected");
    let ack = socket.request("auth:whoami", json!({})).await;
    socket.disconnect().await;
    ack
}

#[tokio::test]
async fn a_static_token_in_auth_token_identifies_its_user_on_both_transports_and_namespaces() {
    let server = ServerBuilder::with_auth().spawn().await;
    for ns in ["/agent", "/gateway"] {
        for (name, transport) in transports() {
            let ack = whoami(&server, ns, |s| s.transport(transport).token("tok-bob")).await;
            assert_eq!(
                ack,
                json!({ "ok": true, "user_id": "bob", "role": "user", "method": "token" }),
                "{ns} {name}"
            );
        }
    }
}

#[tokio::test]
async fn a_jwt_in_a_bearer_header_identifies_its_subject_and_role() {
    let server = ServerBuilder::with_auth().spawn().await;
    let token = jwt(json!({ "sub": "carol", "exp": now() + 600, "role": "admin" }));
    for (_, transport) in transports() {
        let ack = whoami(&server, "/agent", |s| {
            s.transport(transport)
                .header("Authorization", &format!("Bearer {token}"))
        })
        .await;
        assert_eq!(
            ack,
            json!({ "ok": true, "user_id": "carol", "role": "admin", "method": "jwt" })
        );
    }
}

#[tokio::test]
async fn a_jwt_in_the_configured_cookie_identifies_its_subject() {
    let server = ServerBuilder::with_auth()
        .env("SWITCHBOARD_COOKIE_NAME", "my_cookie")
        .spawn()
        .await;
    let cookie = format!("other=1; my_cookie={}", user_jwt("dave"));
    let ack = whoami(&server, "/gateway", |s| s.header("Cookie", &cookie)).await;
    assert_eq!(
        ack,
        json!({ "ok": true, "user_id": "dave", "role": "user", "method": "cookie" })
    );
}

#[tokio::test]
async fn every_failure_reaches_the_client_as_unauthorized_with_its_reason() {
    let server = ServerBuilder::with_auth()
        .env("SWITCHBOARD_JWT_ISSUER", "https://issuer.test")
        .env("SWITCHBOARD_JWT_AUDIENCE", "switchboard")
        .spawn()
        .await;
    let valid = |extra: Value| {
        let mut claims = json!({
            "sub": "erin", "exp": now() + 600,
            "iss": "https://issuer.test", "aud": "switchboard",
        });
        for (k, v) in extra.as_object().unwrap() {
            if v.is_null() {
                claims.as_object_mut().unwrap().remove(k);
            } else {
                claims[k] = v.clone();
            }
        }
        jwt(claims)
    };
    let unsigned = {
        let header = "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0"; // {"alg":"none","typ":"JWT"}
        let claims = serde_json::to_vec(&json!({ "sub": "mallory", "exp": now() + 600 })).unwrap();
        use base64::Engine;
        let claims = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(claims);
        format!("{header}.{claims}.")
    };
    let cases: Vec<(&str, Value, &str)> = vec![
        ("no credential", json!({}), "missing_credentials"),
        (
            "unknown static token",
            json!({ "token": "nope" }),
            "invalid_token",
        ),
        (
            "a token that is not a string",
            json!({ "token": 42 }),
            "invalid_token",
        ),
        (
            "a JWT signed with another secret",
            json!({ "token": jwt_with("other-secret-other-secret", json!({"sub": "x", "exp": now() + 600})) }),
            "invalid_token",
        ),
        (
            "a JWT with alg none",
            json!({ "token": unsigned }),
            "invalid_token",
        ),
        (
            "a JWT without exp",
            json!({ "token": valid(json!({ "exp": null })) }),
            "invalid_token",
        ),
        (
            "an expired JWT",
            json!({ "token": valid(json!({ "exp": now() - 3600 })) }),
            "expired_token",
        ),
        (
            "a JWT that is not valid yet",
            json!({ "token": valid(json!({ "nbf": now() + 3600 })) }),
            "invalid_token",
        ),
        (
            "a JWT for another audience",
            json!({ "token": valid(json!({ "aud": "elsewhere" })) }),
            "wrong_audience",
        ),
        (
            "a JWT without audience",
            json!({ "token": valid(json!({ "aud": null })) }),
            "wrong_audience",
        ),
        (
            "a JWT from another issuer",
            json!({ "token": valid(json!({ "iss": "https://evil.test" })) }),
            "wrong_issuer",
        ),
    ];
    for (case, auth, reason) in cases {
        for (name, transport) in transports() {
            let err = server
                .socket("/agent")
                .transport(transport)
                .auth(auth.clone())
                .connect()
                .await
                .err()
                .unwrap_or_else(|| panic!("{case} was accepted"));
            assert_eq!(err, format!("unauthorized: {reason}"), "{case} over {name}");
        }
    }
    // The same tokens, correct, are accepted.
    let ack = whoami(&server, "/agent", |s| s.token(&valid(json!({})))).await;
    assert_eq!(ack["user_id"], "erin");
}

#[tokio::test]
async fn an_invalid_credential_does_not_fall_through_to_a_valid_one() {
    let server = ServerBuilder::with_auth().spawn().await;
    let good = user_jwt("frank");
    let err = server
        .socket("/agent")
        .token("wrong")
        .header("Authorization", &format!("Bearer {good}"))
        .header("Cookie", &format!("sb_session={good}"))
        .connect()
        .await
        .err()
        .expect("refused");
    assert_eq!(err, "unauthorized: invalid_token");

    let err = server
        .socket("/gateway")
        .header("Authorization", "Bearer wrong")
        .header("Cookie", &format!("sb_session={good}"))
        .connect()
        .await
        .err()
        .expect("refused");
    assert_eq!(err, "unauthorized: invalid_token");
}

#[tokio::test]
async fn a_socket_token_is_accepted_at_handshakes_whatever_audience_is_configured() {
    let server = ServerBuilder::with_auth()
        .env("SWITCHBOARD_JWT_AUDIENCE", "api")
        .spawn()
        .await;
    let token = jwt(json!({ "sub": "gina", "exp": now() + 300, "aud": "socket" }));
    let ack = whoami(&server, "/agent", |s| s.token(&token)).await;
    assert_eq!(ack["user_id"], "gina");
}

#[tokio::test]
async fn every_handshake_logs_one_line_without_the_credential() {
    let mut server = ServerBuilder::with_auth().spawn().await;
    let token = user_jwt("henry");
    let socket = server
        .socket("/gateway")
        .token(&token)
        .connect()
        .await
        .unwrap();
    let accepted = server
        .wait_for_log(|l| l["message"] == "handshake" && l["outcome"] == "accepted")
        .await;
    assert_eq!(accepted["namespace"], "/gateway");
    assert_eq!(accepted["method"], "jwt");
    assert_eq!(accepted["user"], "henry");
    socket.disconnect().await;

    let _ = server.socket("/agent").token("tok-wrong").connect().await;
    let refused = server
        .wait_for_log(|l| l["message"] == "handshake" && l["outcome"] == "refused")
        .await;
    assert_eq!(refused["namespace"], "/agent");
    assert_eq!(refused["method"], "token");
    assert_eq!(refused["reason"], "invalid_token");

    let logs = server.logs.text();
    let handshakes = server
        .logs
        .all()
        .iter()
        .filter(|l| l["message"] == "handshake")
        .count();
    assert_eq!(handshakes, 2, "{logs}");
    for secret in [token.as_str(), "tok-wrong", "tok-alice", JWT_SECRET] {
        assert!(!logs.contains(secret), "a credential reached the logs");
    }
}

#[tokio::test]
async fn with_authentication_disabled_everyone_is_anonymous_and_a_warning_is_logged() {
    let mut server = ServerBuilder::new()
        .env("SWITCHBOARD_AUTH_DISABLED", "1")
        .spawn()
        .await;
    let warning = server
        .wait_for_log(|l| {
            l["level"] == "WARN"
                && l["message"]
                    .as_str()
                    .is_some_and(|m| m.contains("AUTHENTICATION IS DISABLED"))
        })
        .await;
    assert!(warning["message"].as_str().unwrap().contains("anonymous"));
    let ack = whoami(&server, "/agent", |s| s).await;
    assert_eq!(
        ack,
        json!({ "ok": true, "user_id": "anonymous", "role": "user", "method": "disabled" })
    );
}

#[tokio::test]
async fn an_unknown_event_is_answered_not_found_and_the_socket_stays_connected() {
    let server = ServerBuilder::with_auth().spawn().await;
    let socket = server.agent("tok-alice").await;
    let ack = socket.request("no:such", json!({ "x": 1 })).await;
    assert_eq!(ack["ok"], false);
    assert_eq!(ack["error"]["code"], "not_found");
    assert!(
        ack["error"]["message"]
            .as_str()
            .unwrap()
            .contains("no:such")
    );
    let ack = socket.request("auth:whoami", json!({})).await;
    assert_eq!(ack["user_id"], "alice");
}
