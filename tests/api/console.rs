//! The web console, embedded in the binary: `/`, `/assets/…`, `/favicon.svg`,
//! served without credentials.

use reqwest::StatusCode;
use reqwest::header::{CACHE_CONTROL, CONTENT_TYPE, ETAG, IF_NONE_MATCH};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::helpers::*;

const IMMUTABLE: &str = "public, max-age=31536000, immutable";

fn header<'a>(response: &'a reqwest::Response, name: &str) -> &'a str {
    response
        .headers()
        .get(name)
        .unwrap_or_else(|| panic!("no {name} header"))
        .to_str()
        .unwrap()
}

/// The values of `attribute="…"` in `html`, in order.
fn attribute_values<'a>(html: &'a str, attribute: &str) -> Vec<&'a str> {
    let needle = format!(" {attribute}=\"");
    html.match_indices(&needle)
        .filter_map(|(at, _)| {
            let rest = &html[at + needle.len()..];
            rest.find('"').map(|end| &rest[..end])
        })
        .collect()
}

#[tokio::test]
async fn the_page_and_every_asset_it_names_are_served() {
    let server = ServerBuilder::with_auth().spawn().await;
    let client = reqwest::Client::new();

    let page = client.get(server.http("/")).send().await.unwrap();
    assert_eq!(page.status(), StatusCode::OK);
    assert_eq!(header(&page, "content-type"), "text/html; charset=utf-8");
    assert_eq!(header(&page, "cache-control"), "no-cache");
    assert!(header(&page, "content-security-policy").contains("default-src 'self'"));
    assert!(header(&page, "content-security-policy").contains("frame-ancestors 'none'"));
    assert_eq!(header(&page, "x-content-type-options"), "nosniff");
    assert_eq!(header(&page, "referrer-policy"), "no-referrer");
    assert_eq!(header(&page, "x-frame-options"), "DENY");
    let html = page.text().await.unwrap();
    assert!(html.contains(r#"<div id="app">"#), "{html}");

    let assets: Vec<&str> = attribute_values(&html, "src")
        .into_iter()
        .chain(attribute_values(&html, "href"))
        .filter(|url| url.starts_with("/assets/"))
        .collect();
    assert!(
        assets.iter().any(|url| url.ends_with(".js")),
        "no script in {html}"
    );
    for url in assets {
        let asset = client.get(server.http(url)).send().await.unwrap();
        assert_eq!(asset.status(), StatusCode::OK, "{url}");
        let content_type = header(&asset, "content-type");
        assert!(
            ["text/javascript", "application/javascript", "text/css"]
                .iter()
                .any(|t| content_type.starts_with(t)),
            "{url}: {content_type}"
        );
        assert_eq!(header(&asset, "cache-control"), IMMUTABLE, "{url}");
        assert_eq!(header(&asset, "x-content-type-options"), "nosniff");
        assert!(!asset.bytes().await.unwrap().is_empty(), "{url}");
    }

    let head = client.head(server.http("/")).send().await.unwrap();
    assert_eq!(head.status(), StatusCode::OK);
    assert!(head.bytes().await.unwrap().is_empty());
}

#[tokio::test]
async fn a_current_copy_is_answered_with_304() {
    let server = ServerBuilder::with_auth().spawn().await;
    let client = reqwest::Client::new();
    for path in ["/", "/favicon.svg"] {
        let first = client.get(server.http(path)).send().await.unwrap();
        assert_eq!(first.status(), StatusCode::OK);
        let etag = first.headers()[ETAG].clone();
        assert!(etag.to_str().unwrap().starts_with('"'), "{etag:?}");

        let again = client
            .get(server.http(path))
            .header(IF_NONE_MATCH, etag.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(again.status(), StatusCode::NOT_MODIFIED, "{path}");
        assert_eq!(again.headers()[ETAG], etag);
        assert!(again.headers().contains_key(CACHE_CONTROL));
        assert!(again.bytes().await.unwrap().is_empty());

        let stale = client
            .get(server.http(path))
            .header(IF_NONE_MATCH, "\"something-else\"")
            .send()
            .await
            .unwrap();
        assert_eq!(stale.status(), StatusCode::OK, "{path}");
    }
}

#[tokio::test]
async fn missing_files_are_the_json_404() {
    let server = ServerBuilder::with_auth().spawn().await;
    let client = reqwest::Client::new();
    // `..%2F` reaches the handler as `../`; a plain `..` would be resolved
    // by the client, so that one is sent over a bare connection below.
    for path in ["/assets/nope.js", "/assets/..%2FCargo.toml", "/assets/"] {
        let response = client.get(server.http(path)).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::NOT_FOUND, "{path}");
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["error"]["code"], "not_found", "{path}");
    }

    let mut stream = tokio::net::TcpStream::connect(server.addr()).await.unwrap();
    stream
        .write_all(
            b"GET /assets/../Cargo.toml HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
        )
        .await
        .unwrap();
    let mut raw = String::new();
    stream.read_to_string(&mut raw).await.unwrap();
    assert!(raw.starts_with("HTTP/1.1 404"), "{raw}");
    assert!(raw.contains(r#""not_found""#), "{raw}");
    assert!(!raw.contains("[package]"), "{raw}");
}

#[tokio::test]
async fn the_favicon_is_svg() {
    let server = ServerBuilder::with_auth().spawn().await;
    let response = reqwest::get(server.http("/favicon.svg")).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert!(
        response.headers()[CONTENT_TYPE]
            .to_str()
            .unwrap()
            .starts_with("image/svg+xml"),
        "{:?}",
        response.headers()[CONTENT_TYPE]
    );
    assert_eq!(response.headers()[CACHE_CONTROL], "no-cache");
    assert!(response.text().await.unwrap().contains("<svg"));
}
