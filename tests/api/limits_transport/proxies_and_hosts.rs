//! Client addresses behind a reverse proxy, and the `Host` allow-list
//! (issue 12, item 13).

use reqwest::StatusCode;
use serde_json::json;

use super::*;
use crate::helpers::*;

/// `POST /v1/auth/socket-token` as a browser behind a proxy would send it,
/// with `forwarded` as extra headers: the status.
async fn socket_token(server: &TestServer, forwarded: &[(&str, &str)]) -> StatusCode {
    let mut request = server
        .http
        .post(server.http("/v1/auth/socket-token"))
        .header("origin", server.url.as_str())
        .header("x-requested-with", "switchboard")
        .header("cookie", format!("sb_session={}", user_jwt("kim")));
    for (name, value) in forwarded {
        request = request.header(*name, *value);
    }
    request.send().await.unwrap().status()
}

async fn handshake(server: &TestServer, forwarded_for: &str) -> StatusCode {
    server
        .http
        .get(server.http("/socket.io/?EIO=4&transport=polling"))
        .header("x-forwarded-for", forwarded_for)
        .send()
        .await
        .unwrap()
        .status()
}

#[tokio::test]
async fn x_forwarded_for_is_ignored_from_an_untrusted_peer() {
    let server = ServerBuilder::with_auth()
        .env("SWITCHBOARD_SOCKET_TOKEN_RATE", "2")
        .spawn()
        .await;
    let statuses = [
        socket_token(&server, &[("x-forwarded-for", "192.0.2.1")]).await,
        socket_token(&server, &[("x-forwarded-for", "192.0.2.2")]).await,
        socket_token(&server, &[("forwarded", "for=192.0.2.3")]).await,
    ];
    assert_eq!(
        statuses,
        [
            StatusCode::OK,
            StatusCode::OK,
            StatusCode::TOO_MANY_REQUESTS
        ],
        "every request counts for the peer, whatever it claims"
    );
}

#[tokio::test]
async fn a_trusted_proxy_names_the_client_that_the_limits_count_by() {
    let server = ServerBuilder::with_auth()
        .env("SWITCHBOARD_SOCKET_TOKEN_RATE", "2")
        .env("SWITCHBOARD_HANDSHAKE_RATE", "2/h")
        .env("SWITCHBOARD_TRUSTED_PROXIES", "127.0.0.1")
        .spawn()
        .await;
    let xff = |value| [("x-forwarded-for", value)];
    assert_eq!(
        socket_token(&server, &xff("192.0.2.1")).await,
        StatusCode::OK
    );
    assert_eq!(
        socket_token(&server, &xff("192.0.2.1")).await,
        StatusCode::OK
    );
    assert_eq!(
        socket_token(&server, &xff("192.0.2.1")).await,
        StatusCode::TOO_MANY_REQUESTS
    );
    // Another client behind the same proxy has its own bucket…
    assert_eq!(
        socket_token(&server, &xff("192.0.2.2")).await,
        StatusCode::OK
    );
    assert_eq!(
        socket_token(&server, &[("forwarded", "for=\"192.0.2.3:4711\"")]).await,
        StatusCode::OK
    );
    // …and prepending an address to the header gains nothing: the client is
    // the rightmost hop the proxy did not vouch for.
    assert_eq!(
        socket_token(&server, &xff("203.0.113.9, 192.0.2.1")).await,
        StatusCode::TOO_MANY_REQUESTS
    );

    // Handshakes count by the same client address.
    assert_eq!(handshake(&server, "198.51.100.1").await, StatusCode::OK);
    assert_eq!(handshake(&server, "198.51.100.1").await, StatusCode::OK);
    assert_eq!(
        handshake(&server, "198.51.100.1").await,
        StatusCode::TOO_MANY_REQUESTS
    );
    assert_eq!(handshake(&server, "198.51.100.2").await, StatusCode::OK);
    let refusal = server
        .logs
        .all()
        .into_iter()
        .find(|l| l["message"] == "refused a Socket.IO handshake")
        .expect("a log line");
    assert_eq!(refusal["client"], "198.51.100.1");
}

/// A DNS-rebinding request: `Host` and `Origin` both name the attacker.
fn rebound(path: &str) -> String {
    format!("GET {path} HTTP/1.1\r\nHost: evil.example\r\nOrigin: http://evil.example")
}

#[tokio::test]
async fn a_foreign_host_gets_421_when_the_allow_list_is_set_and_the_console_still_works() {
    let server = ServerBuilder::with_auth()
        .env("SWITCHBOARD_ALLOWED_HOSTS", "127.0.0.1, sb.example.com")
        .spawn()
        .await;
    let addr = server.addr();
    for path in [
        "/metrics",
        "/",
        "/socket.io/?EIO=4&transport=polling",
        "/v1/sessions",
    ] {
        let response = raw_request(addr, "127.0.0.1", &rebound(path))
            .await
            .expect("an answer");
        assert_eq!(response.status, 421, "{path}: {response:?}");
        assert_eq!(response.json()["error"]["code"], "forbidden", "{path}");
    }
    // Load-balancer probes answer whatever the Host.
    let probe = raw_request(addr, "127.0.0.1", &rebound("/healthz"))
        .await
        .expect("an answer");
    assert_eq!(probe.status, 200);
    // A listed name, on any port, in any case.
    let listed = raw_request(
        addr,
        "127.0.0.1",
        "GET /metrics HTTP/1.1\r\nHost: SB.example.com:8443",
    )
    .await
    .expect("an answer");
    assert_eq!(listed.status, 200);

    // The console, same-origin on a listed host: its page and its socket.
    let page = server.http.get(server.http("/")).send().await.unwrap();
    assert_eq!(page.status(), StatusCode::OK);
    let socket = server
        .socket("/agent")
        .header("Origin", &server.url)
        .token("tok-alice")
        .connect()
        .await
        .expect("a same-origin socket");
    assert_eq!(socket.request("auth:whoami", json!({})).await["ok"], true);
}

#[tokio::test]
async fn without_an_allow_list_any_host_is_answered() {
    let server = ServerBuilder::with_auth().spawn().await;
    let response = raw_request(server.addr(), "127.0.0.1", &rebound("/metrics"))
        .await
        .expect("an answer");
    assert_eq!(response.status, 200);
}
