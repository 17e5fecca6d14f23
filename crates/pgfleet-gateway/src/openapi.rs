//! The OpenAPI document, made exact in one place: the operations declare their success
//! bodies and specific errors; [`Exact`] then adds what every operation of a kind can
//! answer (401/403/429 where a key is needed, 400/413/422 where a body is read, 404 where
//! a path names a resource, 408 and 503 everywhere), serves every error as
//! `application/problem+json` (as [`crate::problem`] does), declares the `api_key` security
//! on every operation that needs it, and names each operation uniquely (`jobsCreate`).

use utoipa::openapi::path::{Operation, PathItem};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme};
use utoipa::openapi::{Content, Ref, RefOr, ResponseBuilder};
use utoipa::OpenApi;

use crate::{
    console, jobs, messages, problem, push, queues, schedules, tasks, webhooks, workflows,
};

/// The OpenAPI document.
#[derive(OpenApi)]
#[openapi(
    info(title = "pgfleet", description = "Background jobs on PostgreSQL: webhook ingest, the jobs API, Web Push and outbound messages. \
        Every error is `application/problem+json` naming the offending `field`. Operations with the `api_key` security take \
        `Authorization: Bearer <api key>` (read, write or admin scope) or an HMAC-signed request (`X-Timestamp`, `X-Signature`)."),
    paths(
        webhooks::receive,
        jobs::create, jobs::create_batch, jobs::get, jobs::list, jobs::count, jobs::bulk, jobs::retry,
        jobs::cancel, jobs::delete, console::me, console::errors, console::queue_history, console::pools,
        queues::list, queues::pause, queues::resume, queues::limits, queues::set_limits,
        queues::workers, queues::partitions,
        schedules::list, schedules::get, schedules::put, schedules::pause, schedules::resume,
        schedules::delete,
        jobs::dependencies, workflows::create, workflows::create_batch, workflows::get,
        workflows::cancel,
        queues::start, queues::stop, tasks::create, tasks::list, crate::healthz, crate::readyz,
        push::subscribe, push::list_subscriptions, push::get_subscription, push::delete_subscription,
        push::notify, push::list_notifications, push::get_notification, push::attempts,
        push::seed_notify, push::list_notifications_alias, push::vapid_public_key,
        messages::create, messages::get, messages::list_sent,
    ),
    components(schemas(problem::Problem, JsonValue)),
    modifiers(&Exact),
)]
pub struct ApiDoc;

/// Any JSON value the API stores exactly (defined with the payloads, in the queue).
pub use pgfleet_queue::schema::JsonValue;

/// Operations that take no API key (probes, the public VAPID key, signed webhooks).
const PUBLIC: &[&str] = &[
    "/healthz",
    "/readyz",
    "/v1/vapid-public-key",
    "/webhooks/{source}",
];

/// The problem content type, as served.
pub const PROBLEM_JSON: &str = "application/problem+json";

/// What each error status means, as documented.
fn meaning(status: &str) -> &'static str {
    match status {
        "400" => "the body is not JSON",
        "401" => "missing or bad credentials",
        "403" => "the API key lacks the scope",
        "404" => "not found",
        "408" => "the request did not complete within the request timeout",
        "409" => "the resource is in a state that forbids the action",
        "413" => "the body is larger than the limit",
        "422" => "a field or parameter is invalid; `field` names it",
        "429" => "rate limited; retry after `Retry-After` seconds",
        "503" => "the database is unavailable, or the feature is not configured",
        _ => "error",
    }
}

/// The modifier that makes the document exact (see the module docs).
pub struct Exact;

impl utoipa::Modify for Exact {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "api_key",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
        for (path, item) in openapi.paths.paths.iter_mut() {
            for op in operations(item) {
                complete(path, op);
            }
        }
    }
}

fn operations(item: &mut PathItem) -> impl Iterator<Item = &mut Operation> {
    [
        item.get.as_mut(),
        item.put.as_mut(),
        item.post.as_mut(),
        item.delete.as_mut(),
        item.patch.as_mut(),
    ]
    .into_iter()
    .flatten()
}

fn complete(path: &str, op: &mut Operation) {
    let public = PUBLIC.contains(&path);
    let mut statuses: Vec<&str> = vec!["408"];
    if path != "/healthz" {
        statuses.push("503");
    }
    if !public {
        op.security = Some(vec![SecurityRequirement::new(
            "api_key",
            Vec::<String>::new(),
        )]);
        statuses.extend(["401", "403", "429"]);
    }
    if path.starts_with("/webhooks/") {
        statuses.push("401");
    }
    if op.request_body.is_some() {
        statuses.extend(["400", "413", "422"]);
    }
    if op.parameters.as_ref().is_some_and(|p| !p.is_empty()) {
        statuses.push("422");
    }
    if path.contains('{') {
        statuses.push("404");
    }
    for status in statuses {
        op.responses
            .responses
            .entry(status.to_owned())
            .or_insert_with(|| problem_response(status));
    }
    for (status, response) in op.responses.responses.iter_mut() {
        if let RefOr::T(r) = response {
            if status.starts_with(['4', '5']) {
                if let Some(content) = r.content.shift_remove("application/json") {
                    if is_problem(&content) {
                        r.content.insert(PROBLEM_JSON.to_owned(), content);
                    } else {
                        r.content.insert("application/json".to_owned(), content);
                    }
                }
            }
        }
    }
    let tag = op
        .tags
        .as_ref()
        .and_then(|t| t.first())
        .cloned()
        .unwrap_or_default();
    let name = op.operation_id.clone().unwrap_or_default();
    op.operation_id = Some(operation_id(&tag, &name));
}

fn is_problem(content: &Content) -> bool {
    matches!(&content.schema, Some(RefOr::Ref(r)) if r.ref_location.ends_with("/Problem"))
}

fn problem_response(status: &str) -> RefOr<utoipa::openapi::Response> {
    RefOr::T(
        ResponseBuilder::new()
            .description(meaning(status))
            .content(
                PROBLEM_JSON,
                Content::new(Some(Ref::from_schema_name("Problem"))),
            )
            .build(),
    )
}

/// `jobs` + `create_batch` → `jobsCreateBatch`: unique across the document because the
/// handler names are unique within their tag's module.
fn operation_id(tag: &str, name: &str) -> String {
    let mut out = String::new();
    for (i, word) in tag.split(['_', '-']).chain(name.split('_')).enumerate() {
        let mut chars = word.chars();
        if let Some(first) = chars.next() {
            if i == 0 {
                out.extend(first.to_lowercase());
            } else {
                out.extend(first.to_uppercase());
            }
            out.push_str(chars.as_str());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc() -> serde_json::Value {
        serde_json::to_value(ApiDoc::openapi()).expect("serializable")
    }

    fn ops(doc: &serde_json::Value) -> Vec<(String, String, serde_json::Value)> {
        let mut out = Vec::new();
        for (path, item) in doc["paths"].as_object().expect("paths") {
            for (method, op) in item.as_object().expect("item") {
                out.push((path.clone(), method.clone(), op.clone()));
            }
        }
        out
    }

    #[test]
    fn operation_ids_are_unique_and_camel_case() {
        let doc = doc();
        let mut ids: Vec<String> = ops(&doc)
            .iter()
            .map(|(_, _, op)| op["operationId"].as_str().expect("id").to_owned())
            .collect();
        assert!(ids.contains(&"jobsCreateBatch".to_owned()), "{ids:?}");
        let n = ids.len();
        ids.sort();
        ids.dedup();
        assert_eq!(ids.len(), n, "duplicate operationIds: {ids:?}");
    }

    #[test]
    fn errors_are_problem_json_and_keys_are_declared() {
        let doc = doc();
        for (path, method, op) in ops(&doc) {
            let responses = op["responses"].as_object().expect("responses");
            for (status, r) in responses {
                if status.starts_with(['4', '5']) && !(path == "/readyz" && status == "503") {
                    assert!(
                        r["content"].get(PROBLEM_JSON).is_some()
                            && r["content"].get("application/json").is_none(),
                        "{method} {path} {status}: {r}"
                    );
                }
            }
            let secured = op.get("security").is_some();
            assert_eq!(secured, !PUBLIC.contains(&path.as_str()), "{method} {path}");
            if secured {
                for s in ["401", "403", "429", "503"] {
                    assert!(responses.contains_key(s), "{method} {path} lacks {s}");
                }
            }
            if op.get("requestBody").is_some() {
                for s in ["400", "413", "422"] {
                    assert!(responses.contains_key(s), "{method} {path} lacks {s}");
                }
            }
        }
    }
}
