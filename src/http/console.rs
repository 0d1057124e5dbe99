//! The web console: `GET /` (its page), `/assets/…` and `/favicon.svg`,
//! served from the bundle in `console/dist/`, which is embedded in the
//! binary (in debug builds too). The bundle is built from `console/` with
//! `npm run build` and committed; CI checks that it is up to date.

use axum::extract::Path;
use axum::response::{IntoResponse, Response};
use http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use rust_embed::RustEmbed;

#[derive(RustEmbed)]
#[folder = "console/dist/"]
struct Bundle;

/// For files whose names stay the same from one build to the next.
const NO_CACHE: &str = "no-cache";
/// For `assets/`, whose file names carry a hash of their content.
const IMMUTABLE: &str = "public, max-age=31536000, immutable";

const SECURITY_HEADERS: [(HeaderName, &str); 4] = [
    (
        header::CONTENT_SECURITY_POLICY,
        "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; \
         img-src 'self' data:; connect-src 'self'; font-src 'self'; object-src 'none'; \
         base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
    ),
    (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
    (header::REFERRER_POLICY, "no-referrer"),
    (header::X_FRAME_OPTIONS, "DENY"),
];

/// `GET /`
pub async fn index(request: HeaderMap) -> Response {
    serve("index.html", NO_CACHE, &request).await
}

/// `GET /favicon.svg`
pub async fn favicon(request: HeaderMap) -> Response {
    serve("favicon.svg", NO_CACHE, &request).await
}

/// `GET /assets/{*path}`
pub async fn asset(Path(path): Path<String>, request: HeaderMap) -> Response {
    serve(&format!("assets/{path}"), IMMUTABLE, &request).await
}

/// The embedded file `name`, or 304 when the client's copy is current, or
/// the usual 404. Only the names in the bundle exist: nothing is read from
/// the file system, so `..` in a path leads nowhere.
async fn serve(name: &str, cache_control: &'static str, request: &HeaderMap) -> Response {
    let mut response = match Bundle::get(name) {
        None => super::not_found().await,
        Some(file) => {
            let etag: String = file
                .metadata
                .sha256_hash()
                .iter()
                .map(|byte| format!("{byte:02x}"))
                .collect();
            let etag = format!("\"{etag}\"");
            let mime = file.metadata.mimetype();
            let content_type = if is_text(mime) {
                format!("{mime}; charset=utf-8")
            } else {
                mime.to_owned()
            };
            let headers = [
                (header::ETAG, etag.clone()),
                (header::CACHE_CONTROL, cache_control.to_owned()),
            ];
            if matches(request, &etag) {
                (StatusCode::NOT_MODIFIED, headers).into_response()
            } else {
                (
                    headers,
                    [(header::CONTENT_TYPE, content_type)],
                    file.data.into_owned(),
                )
                    .into_response()
            }
        }
    };
    response.headers_mut().extend(
        SECURITY_HEADERS
            .into_iter()
            .map(|(name, value)| (name, HeaderValue::from_static(value))),
    );
    response
}

fn is_text(mime: &str) -> bool {
    mime.starts_with("text/") || mime == "application/javascript" || mime == "image/svg+xml"
}

/// Whether `If-None-Match` names `etag` (or is `*`).
fn matches(request: &HeaderMap, etag: &str) -> bool {
    request
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .map(str::trim)
        .any(|tag| tag == "*" || tag.trim_start_matches("W/") == etag)
}
