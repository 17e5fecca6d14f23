//! Web Push under `/v1`: subscriptions, notifications (fan-out) and their delivery attempts,
//! the VAPID public key; and the seed aliases `/subscriptions` and `/notifications`.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use chrono::{DateTime, Utc};
use pgfleet_push::store::{self, NewNotification, Priority, StoreError};
use pgfleet_push::subscription::{NewSubscription, SubscriptionKeys};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};

use crate::auth::{Authed, READ, WRITE};
use crate::extract::{Path, Query};
use crate::problem::{parse_json, ApiError, Problem};
use crate::AppState;

impl From<pgfleet_push::InvalidField> for ApiError {
    fn from(e: pgfleet_push::InvalidField) -> Self {
        ApiError::invalid(e.field, e.reason)
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Invalid(i) => i.into(),
            StoreError::Queue(q) => q.into(),
            StoreError::Database(d) => d.into(),
        }
    }
}

/// A browser subscription: `PushSubscription.toJSON()` plus `user_id`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SubscribeRequest {
    /// The user to notify (1 to 255 characters, not blank).
    #[schema(min_length = 1, max_length = 255, pattern = "\\S")]
    pub user_id: String,
    /// Push service URL (https).
    pub endpoint: String,
    /// Keys from the browser.
    pub keys: KeysDto,
    /// Sent by browsers (usually null); not used.
    #[serde(default, rename = "expirationTime")]
    #[schema(value_type = Option<i64>)]
    pub expiration_time: Option<Value>,
}

/// A user id in a request: 1 to 255 characters, not blank (documentation type).
pub struct UserId;

impl utoipa::PartialSchema for UserId {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::openapi::schema::{ObjectBuilder, Type};
        ObjectBuilder::new()
            .schema_type(Type::String)
            .min_length(Some(1))
            .max_length(Some(255))
            .pattern(Some("\\S"))
            .into()
    }
}

impl ToSchema for UserId {}

/// The browser's keys, base64url.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct KeysDto {
    /// 65-byte uncompressed P-256 public key.
    pub p256dh: String,
    /// 16-byte auth secret.
    pub auth: String,
}

/// A stored subscription (keys are not returned).
#[derive(Debug, Serialize, ToSchema)]
pub struct SubscriptionDto {
    /// Id.
    pub id: i64,
    /// User.
    pub user_id: String,
    /// Push service URL.
    pub endpoint: String,
    /// False once the push service said it is gone.
    pub active: bool,
    /// Registered.
    pub created_at: DateTime<Utc>,
    /// Last changed.
    pub updated_at: DateTime<Utc>,
    /// When deactivated.
    pub deactivated_at: Option<DateTime<Utc>>,
    /// Why.
    pub deactivated_reason: Option<String>,
}

impl From<store::Subscription> for SubscriptionDto {
    fn from(s: store::Subscription) -> Self {
        Self {
            id: s.id,
            user_id: s.user_id,
            endpoint: s.endpoint,
            active: s.active,
            created_at: s.created_at,
            updated_at: s.updated_at,
            deactivated_at: s.deactivated_at,
            deactivated_reason: s.deactivated_reason,
        }
    }
}

/// Registers (or refreshes, by endpoint) a subscription: 201 when new, 200 when updated.
#[utoipa::path(post, path = "/v1/subscriptions", tag = "push", request_body = SubscribeRequest,
    responses((status = 201, body = SubscriptionDto), (status = 200, body = SubscriptionDto),
              (status = 422, body = Problem)), security(("api_key" = [])))]
pub async fn subscribe(
    State(state): State<AppState>,
    Authed(body): Authed<WRITE>,
) -> Result<(StatusCode, Json<SubscriptionDto>), ApiError> {
    let r: SubscribeRequest = parse_json(&body)?;
    let s = NewSubscription {
        user_id: r.user_id,
        endpoint: r.endpoint,
        keys: SubscriptionKeys {
            p256dh: r.keys.p256dh,
            auth: r.keys.auth,
        },
    };
    pgfleet_push::subscription::validate(&s, state.config.push_allow_http_loopback)?;
    let (sub, created) = store::upsert_subscription(state.queue.pool(), &s).await?;
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(sub.into())))
}

/// Subscription list filter.
#[derive(Debug, Deserialize, IntoParams)]
pub struct SubscriptionParams {
    /// The user.
    #[param(min_length = 1, pattern = "\\S")]
    pub user_id: String,
    /// Include deactivated ones (default false).
    #[serde(default)]
    pub include_inactive: bool,
}

/// A user's subscriptions, newest first.
#[utoipa::path(get, path = "/v1/subscriptions", tag = "push", params(SubscriptionParams),
    responses((status = 200, body = Vec<SubscriptionDto>), (status = 422, body = Problem)),
    security(("api_key" = [])))]
pub async fn list_subscriptions(
    State(state): State<AppState>,
    Query(p): Query<SubscriptionParams>,
    _a: Authed<READ>,
) -> Result<Json<Vec<SubscriptionDto>>, ApiError> {
    let user = p.user_id;
    if user.trim().is_empty() {
        return Err(ApiError::invalid("user_id", "is required"));
    }
    let subs = store::list_subscriptions(state.queue.pool(), &user, p.include_inactive).await?;
    Ok(Json(subs.into_iter().map(Into::into).collect()))
}

/// One subscription.
#[utoipa::path(get, path = "/v1/subscriptions/{id}", tag = "push",
    responses((status = 200, body = SubscriptionDto), (status = 404, body = Problem)),
    security(("api_key" = [])))]
pub async fn get_subscription(
    State(state): State<AppState>,
    Path(id): Path<i64>,
    _a: Authed<READ>,
) -> Result<Json<SubscriptionDto>, ApiError> {
    store::get_subscription(state.queue.pool(), id)
        .await?
        .map(|s| Json(s.into()))
        .ok_or_else(|| ApiError::NotFound(format!("subscription {id} not found")))
}

/// Deletes a subscription (its attempts stay).
#[utoipa::path(delete, path = "/v1/subscriptions/{id}", tag = "push",
    responses((status = 204), (status = 404, body = Problem)), security(("api_key" = [])))]
pub async fn delete_subscription(
    State(state): State<AppState>,
    Path(id): Path<i64>,
    _a: Authed<WRITE>,
) -> Result<StatusCode, ApiError> {
    if store::delete_subscription(state.queue.pool(), id).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::NotFound(format!("subscription {id} not found")))
    }
}

/// A notification to send.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NotifyRequest {
    /// Type (`payment.received`, `test`...), 1 to 100 characters.
    #[serde(rename = "type")]
    #[schema(min_length = 1, max_length = 100, pattern = "\\S")]
    pub kind: String,
    /// Recipients (1 to 1,000 user ids of 1 to 255 characters).
    #[schema(min_items = 1, max_items = 1000, value_type = Vec<UserId>)]
    pub user_ids: Vec<String>,
    /// Title (1 to 255 characters).
    #[schema(min_length = 1, max_length = 255, pattern = "\\S")]
    pub title: String,
    /// Body.
    #[serde(default)]
    pub body: String,
    /// Icon URL.
    #[serde(default)]
    pub icon: Option<String>,
    /// URL to open on click.
    #[serde(default)]
    pub url: Option<String>,
    /// Locale.
    #[serde(default)]
    pub locale: Option<String>,
    /// Free-form data for the service worker.
    #[serde(default)]
    #[schema(value_type = crate::openapi::JsonValue)]
    pub data: Option<Value>,
    /// high, normal (default) or low: the queue.
    #[serde(default)]
    #[schema(value_type = Option<String>, pattern = "^(high|normal|low)$")]
    pub priority: Option<Priority>,
    /// Seconds the push service may hold it (default 86400, at most 28 days).
    #[serde(default, deserialize_with = "crate::problem::opt_integer")]
    #[schema(minimum = 0, maximum = 2419200)]
    pub ttl: Option<u32>,
    /// very-low, low, normal (default) or high.
    #[serde(default)]
    #[schema(pattern = "^(very-low|low|normal|high)$")]
    pub urgency: Option<String>,
    /// Replacement topic (1 to 32 URL-safe base64 characters).
    #[serde(default)]
    #[schema(pattern = "^[A-Za-z0-9_-]{1,32}$")]
    pub topic: Option<String>,
}

impl NotifyRequest {
    fn into_new(self) -> NewNotification {
        let mut n = NewNotification::new(&self.kind, self.user_ids, &self.title, &self.body);
        n.content.icon = self.icon;
        n.content.url = self.url;
        n.content.locale = self.locale;
        if let Some(d) = self.data {
            n.content.data = d;
        }
        n.priority = self.priority.unwrap_or_default();
        if let Some(t) = self.ttl {
            n.ttl = t;
        }
        if let Some(u) = self.urgency {
            n.urgency = u;
        }
        n.topic = self.topic;
        n
    }
}

async fn create(state: &AppState, n: NewNotification) -> Result<store::Notification, ApiError> {
    let note =
        store::create_notification(&state.queue, &n, pgfleet_telemetry::trace_metadata()).await?;
    state.recorded.count_notification(n.priority.as_str());
    Ok(note)
}

/// Creates a notification and one delivery job per active subscription of its users, in
/// one transaction. A message that would not fit a push record (3,993 bytes) is refused.
#[utoipa::path(post, path = "/v1/notifications", tag = "push", request_body = NotifyRequest,
    responses((status = 201, body = store::Notification), (status = 422, body = Problem)),
    security(("api_key" = [])))]
pub async fn notify(
    State(state): State<AppState>,
    Authed(body): Authed<WRITE>,
) -> Result<(StatusCode, Json<store::Notification>), ApiError> {
    let r: NotifyRequest = parse_json(&body)?;
    Ok((
        StatusCode::CREATED,
        Json(create(&state, r.into_new()).await?),
    ))
}

/// Notification list filter.
#[derive(Debug, Deserialize, IntoParams)]
pub struct NotificationParams {
    /// Only those sent to this user.
    pub user_id: Option<String>,
    /// Page size, 1 to 1000 (default 50).
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<i64>,
}

/// Recent notifications, newest first.
#[utoipa::path(get, path = "/v1/notifications", tag = "push", params(NotificationParams),
    responses((status = 200, body = Vec<store::Notification>)), security(("api_key" = [])))]
pub async fn list_notifications(
    State(state): State<AppState>,
    Query(p): Query<NotificationParams>,
    _a: Authed<READ>,
) -> Result<Json<Vec<store::Notification>>, ApiError> {
    let notes = store::list_notifications(
        state.queue.pool(),
        p.user_id.as_deref().filter(|u| !u.is_empty()),
        crate::problem::page_limit(p.limit, 50)?,
    )
    .await?;
    Ok(Json(notes))
}

/// Seed alias of `GET /v1/notifications`.
#[utoipa::path(get, path = "/notifications", tag = "aliases", params(NotificationParams),
    responses((status = 200, body = Vec<store::Notification>)))]
pub async fn list_notifications_alias(
    state: State<AppState>,
    params: Query<NotificationParams>,
    auth: Authed<READ>,
) -> Result<Json<Vec<store::Notification>>, ApiError> {
    list_notifications(state, params, auth).await
}

/// One notification.
#[utoipa::path(get, path = "/v1/notifications/{id}", tag = "push",
    responses((status = 200, body = store::Notification), (status = 404, body = Problem)),
    security(("api_key" = [])))]
pub async fn get_notification(
    State(state): State<AppState>,
    Path(id): Path<i64>,
    _a: Authed<READ>,
) -> Result<Json<store::Notification>, ApiError> {
    store::get_notification(state.queue.pool(), id)
        .await?
        .map(Json)
        .ok_or_else(|| ApiError::NotFound(format!("notification {id} not found")))
}

/// A notification's delivery attempts, oldest first.
#[utoipa::path(get, path = "/v1/notifications/{id}/attempts", tag = "push",
    responses((status = 200, body = Vec<store::Attempt>), (status = 404, body = Problem)),
    security(("api_key" = [])))]
pub async fn attempts(
    State(state): State<AppState>,
    Path(id): Path<i64>,
    _a: Authed<READ>,
) -> Result<Json<Vec<store::Attempt>>, ApiError> {
    let pool = state.queue.pool();
    if store::get_notification(pool, id).await?.is_none() {
        return Err(ApiError::NotFound(format!("notification {id} not found")));
    }
    Ok(Json(store::attempts(pool, id).await?))
}

/// The seed's notification: only `body` is required; without `user_ids` it goes to every
/// active subscription.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SeedNotification {
    /// Body text.
    pub body: String,
    /// Title (default `pgfleet`), 1 to 255 characters.
    #[serde(default)]
    #[schema(min_length = 1, max_length = 255, pattern = "\\S")]
    pub title: Option<String>,
    /// Recipients, 1 to 1,000 (default: everyone subscribed).
    #[serde(default)]
    #[schema(min_items = 1, max_items = 1000, value_type = Option<Vec<UserId>>)]
    pub user_ids: Option<Vec<String>>,
}

/// Seed alias: `{"body": ...}` notifies everyone subscribed.
#[utoipa::path(post, path = "/notifications", tag = "aliases", request_body = SeedNotification,
    responses((status = 201, body = store::Notification), (status = 422, body = Problem)),
    security(("api_key" = [])))]
pub async fn seed_notify(
    State(state): State<AppState>,
    Authed(body): Authed<WRITE>,
) -> Result<(StatusCode, Json<store::Notification>), ApiError> {
    let r: SeedNotification = parse_json(&body)?;
    let title = r.title.unwrap_or_else(|| "pgfleet".into());
    let mut n = NewNotification::new(
        "message",
        r.user_ids.clone().unwrap_or_default(),
        &title,
        &r.body,
    );
    n.broadcast = r.user_ids.is_none();
    Ok((StatusCode::CREATED, Json(create(&state, n).await?)))
}

/// The VAPID public key.
#[derive(Debug, Serialize, ToSchema)]
pub struct VapidKey {
    /// base64url uncompressed P-256 point, for `PushManager.subscribe`'s
    /// `applicationServerKey`.
    #[serde(rename = "publicKey")]
    pub public_key: String,
}

/// The key browsers subscribe with (public: no credentials needed).
#[utoipa::path(get, path = "/v1/vapid-public-key", tag = "push",
    responses((status = 200, body = VapidKey), (status = 503, body = Problem)))]
pub async fn vapid_public_key(State(state): State<AppState>) -> Result<Json<VapidKey>, ApiError> {
    state
        .config
        .vapid_public_key
        .clone()
        .map(|k| Json(VapidKey { public_key: k }))
        .ok_or_else(|| {
            ApiError::NotConfigured(
                "web push is not configured: set PGFLEET_VAPID_PUBLIC_KEY (pgfleet vapid generate)"
                    .into(),
            )
        })
}
