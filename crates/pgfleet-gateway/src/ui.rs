//! The browser page at `/ui/`: queue stats, push subscription, recent notifications and a
//! test send. Static files compiled into the binary; the page calls the `/v1` API with the
//! API key the user enters (kept in the browser's local storage).

use axum::http::header::{CACHE_CONTROL, CONTENT_SECURITY_POLICY, CONTENT_TYPE};
use axum::response::{IntoResponse, Redirect, Response};

const INDEX: &str = include_str!("../ui/index.html");
const APP: &str = include_str!("../ui/app.js");
const SW: &str = include_str!("../ui/sw.js");
const STYLE: &str = include_str!("../ui/style.css");

/// Only this origin's scripts, styles and API; nothing inline.
const CSP: &str = "default-src 'self'; img-src 'self' https: data:; object-src 'none'; base-uri 'none'; frame-ancestors 'none'";

fn file(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (CONTENT_TYPE, content_type),
            (CONTENT_SECURITY_POLICY, CSP),
            (CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
        .into_response()
}

/// `/ui/`.
pub async fn index() -> Response {
    file("text/html; charset=utf-8", INDEX)
}

/// `/ui/app.js`.
pub async fn app() -> Response {
    file("text/javascript; charset=utf-8", APP)
}

/// `/ui/sw.js`, the service worker (scope `/ui/`).
pub async fn service_worker() -> Response {
    file("text/javascript; charset=utf-8", SW)
}

/// `/ui/style.css`.
pub async fn style() -> Response {
    file("text/css; charset=utf-8", STYLE)
}

/// `/` and `/ui` go to `/ui/`.
pub async fn to_index() -> Redirect {
    Redirect::temporary("/ui/")
}
