//! The console at `/ui/`: jobs (filtered list, job page, bulk actions by filter), queues
//! (counts and charts, pause and resume, limits, schedules), fleet (workers, pools and the
//! autoscaler's decisions), errors grouped, workflows, and the Web Push page. Static files compiled
//! into the binary, ES modules with no build step, served with a strict CSP; the page calls
//! the `/v1` API with the API key the operator enters (kept in the tab's session storage).

use axum::http::header::{CACHE_CONTROL, CONTENT_SECURITY_POLICY, CONTENT_TYPE};
use axum::response::{IntoResponse, Redirect, Response};

use crate::extract::Path;
use crate::problem::ApiError;

/// Only this origin's scripts, styles and API; nothing inline.
const CSP: &str = "default-src 'self'; img-src 'self' https: data:; object-src 'none'; base-uri 'none'; frame-ancestors 'none'";

const JS: &str = "text/javascript; charset=utf-8";

/// Every file of the console: name, content type, content.
const FILES: &[(&str, &str, &str)] = &[
    ("app.js", JS, include_str!("../ui/app.js")),
    ("api.js", JS, include_str!("../ui/api.js")),
    ("dom.js", JS, include_str!("../ui/dom.js")),
    ("chart.js", JS, include_str!("../ui/chart.js")),
    ("jobs.js", JS, include_str!("../ui/jobs.js")),
    ("queues.js", JS, include_str!("../ui/queues.js")),
    ("fleet.js", JS, include_str!("../ui/fleet.js")),
    ("errors.js", JS, include_str!("../ui/errors.js")),
    ("push.js", JS, include_str!("../ui/push.js")),
    ("workflows.js", JS, include_str!("../ui/workflows.js")),
    ("sw.js", JS, include_str!("../ui/sw.js")),
    (
        "style.css",
        "text/css; charset=utf-8",
        include_str!("../ui/style.css"),
    ),
];

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
    file("text/html; charset=utf-8", include_str!("../ui/index.html"))
}

/// `/ui/{file}`: the console's scripts and style sheet, the service worker (scope `/ui/`).
pub async fn asset(Path(name): Path<String>) -> Result<Response, ApiError> {
    FILES
        .iter()
        .find(|(n, _, _)| *n == name)
        .map(|(_, ct, body)| file(ct, body))
        .ok_or_else(|| ApiError::NotFound(format!("no console file {name:?}")))
}

/// `/` and `/ui` go to `/ui/`.
pub async fn to_index() -> Redirect {
    Redirect::temporary("/ui/")
}
