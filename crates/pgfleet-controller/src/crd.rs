//! The `WorkerPool` custom resource (`pgfleet.dev/v1alpha1`).
//!
//! A pool is a set of identical workers serving some queues. The controller owns one
//! Deployment per pool and sets its replicas from queue metrics (or from `spec.replicas`
//! when autoscaling is off, which is what the `scale` subresource writes, so `kubectl
//! scale` and an HPA can drive it).

// `printcolumn(...)` repeats `type_ = "integer"` by design; clippy reads it as a duplicated
// attribute.
#![allow(clippy::duplicated_attributes)]

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    Affinity, EnvVar, LocalObjectReference, ResourceRequirements, Toleration,
    TopologySpreadConstraint,
};
use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

/// The desired state of a pool.
#[derive(CustomResource, KubeSchema, Deserialize, Serialize, Clone, Debug, Default, PartialEq)]
#[kube(
    group = "pgfleet.dev",
    version = "v1alpha1",
    kind = "WorkerPool",
    namespaced,
    status = "WorkerPoolStatus",
    derive = "Default",
    shortname = "wp",
    validation = Rule::new("size(self.metadata.name) <= 63").message("the pool's name must be at most 63 characters: it is a label value of its pods"),
    category = "pgfleet",
    doc = "A pool of pgfleet workers serving some queues, scaled from queue backlog and lag.",
    scale(
        spec_replicas_path = ".spec.replicas",
        status_replicas_path = ".status.replicas",
        label_selector_path = ".status.selector"
    ),
    printcolumn(
        name = "Desired",
        type_ = "integer",
        json_path = ".status.desiredReplicas"
    ),
    printcolumn(name = "Ready", type_ = "integer", json_path = ".status.readyReplicas"),
    printcolumn(name = "Min", type_ = "integer", json_path = ".spec.minReplicas"),
    printcolumn(name = "Max", type_ = "integer", json_path = ".spec.maxReplicas"),
    printcolumn(name = "Paused", type_ = "boolean", json_path = ".spec.paused"),
    printcolumn(name = "Backlog", type_ = "integer", json_path = ".status.backlog"),
    printcolumn(
        name = "Lag",
        type_ = "number",
        json_path = ".status.oldestJobAgeSeconds",
        description = "Seconds the oldest runnable job has waited"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[x_kube(validation = Rule::new("self.minReplicas <= self.maxReplicas").message("minReplicas must not exceed maxReplicas"))]
#[x_kube(validation = Rule::new("!has(self.replicas) || self.autoscaling.enabled == false || (self.replicas >= self.minReplicas && self.replicas <= self.maxReplicas)").message("replicas must be within minReplicas..maxReplicas while autoscaling"))]
#[x_kube(validation = Rule::new("self.minReplicas > 0 || self.autoscaling.scaleToZero").message("minReplicas 0 needs autoscaling.scaleToZero"))]
#[serde(rename_all = "camelCase")]
pub struct WorkerPoolSpec {
    /// Container image with the `pgfleet` binary.
    #[schemars(length(min = 1))]
    pub image: String,
    /// Image pull policy (`IfNotPresent` by default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_pull_policy: Option<String>,
    /// Queues served, with weights (slots are shared in proportion).
    #[schemars(length(min = 1, max = 32))]
    pub queues: Vec<QueueWeight>,
    /// Job slots per replica.
    #[serde(default = "default_concurrency")]
    #[schemars(range(min = 1, max = 10000))]
    pub concurrency: i32,
    /// Database connections per replica, besides its LISTEN connection (default: 2 + one
    /// per 10 slots, so 3 for 10 slots). Claims and outcomes are batched, so few are needed;
    /// raise it for handlers that use the database heavily.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 100))]
    pub pool_size: Option<i32>,
    /// Replicas when autoscaling is off (what the scale subresource sets).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 1000))]
    pub replicas: Option<i32>,
    /// Fewest replicas (0 only with `autoscaling.scaleToZero`).
    #[serde(default = "default_min")]
    #[schemars(range(min = 0, max = 1000))]
    pub min_replicas: i32,
    /// Most replicas.
    #[serde(default = "default_max")]
    #[schemars(range(min = 1, max = 1000))]
    pub max_replicas: i32,
    /// How replicas follow the queues.
    #[serde(default)]
    pub autoscaling: Autoscaling,
    /// Worker container resources.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,
    /// Extra environment for the workers (`PGFLEET_*` settings, `OTEL_*`...).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub env: Vec<EnvVar>,
    /// The Secret key holding the database URL.
    pub database: DatabaseRef,
    /// Seconds in-flight jobs get to finish on shutdown (the pod's grace period adds 5).
    #[serde(default = "default_grace")]
    #[schemars(range(min = 1, max = 3600))]
    pub shutdown_grace_seconds: i32,
    /// Stop reconciling replicas (the Deployment keeps its current size).
    #[serde(default)]
    pub paused: bool,
    /// The workers' service account (they never call the API server; its token is not
    /// mounted).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_account_name: Option<String>,
    /// Node labels the workers' pods must match.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub node_selector: BTreeMap<String, String>,
    /// Taints the workers' pods tolerate.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tolerations: Vec<Toleration>,
    /// Pod affinity and anti-affinity.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub affinity: Option<Affinity>,
    /// How the pods spread across zones and nodes.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub topology_spread_constraints: Vec<TopologySpreadConstraint>,
    /// Secrets to pull the image with.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub image_pull_secrets: Vec<LocalObjectReference>,
    /// The pods' PriorityClass.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority_class_name: Option<String>,
}

/// A queue and its weight.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, KubeSchema)]
pub struct QueueWeight {
    /// Queue name.
    #[schemars(length(min = 1, max = 63), regex(pattern = r"^[a-zA-Z0-9_.-]+$"))]
    pub name: String,
    /// Share of slots (> 0).
    #[serde(default = "one")]
    #[schemars(range(min = 1, max = 1000))]
    pub weight: i32,
}

/// Autoscaling policy (see [`crate::scaling`]).
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct Autoscaling {
    /// Follow the queues (false: `spec.replicas`, or `minReplicas`, decides).
    #[serde(default = "yes")]
    pub enabled: bool,
    /// Backlog one replica is expected to hold.
    #[serde(default = "default_backlog")]
    #[schemars(range(min = 1))]
    pub target_backlog_per_replica: i64,
    /// Lag (oldest runnable job's age) above which the pool grows by at least one.
    #[serde(default = "default_lag")]
    #[schemars(range(min = 1))]
    pub target_lag_seconds: i64,
    /// Backlog below which an idle pool stays at zero (scale to zero only).
    #[serde(default)]
    #[schemars(range(min = 0))]
    pub activation_backlog: i64,
    /// Seconds the desired size must stay lower before the pool shrinks.
    #[serde(default = "default_stabilization")]
    #[schemars(range(min = 0, max = 3600))]
    pub scale_down_stabilization_seconds: i64,
    /// Most replicas added or removed per decision.
    #[serde(default = "default_step")]
    #[schemars(range(min = 1, max = 1000))]
    pub max_step: i32,
    /// Allow 0 replicas when there is nothing to do.
    #[serde(default)]
    pub scale_to_zero: bool,
    /// Seconds between queue-statistics polls.
    #[serde(default = "default_poll")]
    #[schemars(range(min = 1, max = 300))]
    pub poll_seconds: i64,
}

impl Default for Autoscaling {
    fn default() -> Self {
        Self {
            enabled: true,
            target_backlog_per_replica: default_backlog(),
            target_lag_seconds: default_lag(),
            activation_backlog: 0,
            scale_down_stabilization_seconds: default_stabilization(),
            max_step: default_step(),
            scale_to_zero: false,
            poll_seconds: default_poll(),
        }
    }
}

/// A key of a Secret in the pool's namespace.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct DatabaseRef {
    /// Secret name.
    #[schemars(length(min = 1))]
    pub secret_name: String,
    /// Key holding the PostgreSQL URL.
    #[serde(default = "default_key")]
    pub key: String,
}

/// What the controller observed and decided.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct WorkerPoolStatus {
    /// The generation this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Replicas of the Deployment.
    #[serde(default)]
    pub replicas: i32,
    /// Ready replicas.
    #[serde(default)]
    pub ready_replicas: i32,
    /// Replicas the controller wants.
    #[serde(default)]
    pub desired_replicas: i32,
    /// Runnable jobs in the pool's queues.
    #[serde(default)]
    pub backlog: i64,
    /// Seconds the oldest runnable job has waited.
    #[serde(default)]
    pub oldest_job_age_seconds: f64,
    /// Completions per second (last minute).
    #[serde(default)]
    pub throughput: f64,
    /// Label selector of the pool's pods (for the scale subresource).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<String>,
    /// When the replica count last changed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_scale_time: Option<String>,
    /// Ready, Scaling, Degraded (a list-map keyed by `type`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["type".into()]))]
    pub conditions: Vec<Condition>,
}

/// A status condition (the Kubernetes convention).
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct Condition {
    /// Ready, Scaling or Degraded.
    #[serde(rename = "type")]
    pub type_: String,
    /// True, False or Unknown.
    pub status: String,
    /// CamelCase reason.
    pub reason: String,
    /// Human-readable detail.
    pub message: String,
    /// When the status last changed (RFC 3339).
    #[schemars(extend("format" = "date-time"))]
    pub last_transition_time: String,
    /// The pool's `metadata.generation` the condition was set for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
}

fn default_concurrency() -> i32 {
    10
}
fn default_min() -> i32 {
    1
}
fn default_max() -> i32 {
    10
}
fn default_grace() -> i32 {
    25
}
fn one() -> i32 {
    1
}
fn yes() -> bool {
    true
}
fn default_backlog() -> i64 {
    100
}
fn default_lag() -> i64 {
    30
}
fn default_stabilization() -> i64 {
    300
}
fn default_step() -> i32 {
    4
}
fn default_poll() -> i64 {
    5
}
fn default_key() -> String {
    "url".into()
}

/// The CRD as YAML (what `pgfleet crd` prints and `crds/` holds).
///
/// # Errors
/// Serialization failure (not expected).
pub fn crd_yaml() -> Result<String, serde_yaml::Error> {
    use kube::CustomResourceExt;
    let yaml = serde_yaml::to_string(&WorkerPool::crd())?;
    Ok(format!(
        "# Generated by `pgfleet crd`; do not edit (a test fails on drift).\n{yaml}"
    ))
}

/// The field manager of the CRD when `pgfleet crd --apply` installs or upgrades it.
pub const CRD_MANAGER: &str = "pgfleet-crd";

/// Installs or upgrades the WorkerPool CRD with server-side apply (the chart's pre-upgrade
/// hook: Helm installs `crds/` but never upgrades it). Returns the CRD's name.
///
/// # Errors
/// The API server's error.
pub async fn apply_crd(client: kube::Client) -> Result<String, kube::Error> {
    use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
    use kube::api::{Api, Patch, PatchParams};
    use kube::CustomResourceExt;
    let crd = WorkerPool::crd();
    let name = kube::ResourceExt::name_any(&crd);
    let api: Api<CustomResourceDefinition> = Api::all(client);
    api.patch(
        &name,
        &PatchParams::apply(CRD_MANAGER).force(),
        &Patch::Apply(&crd),
    )
    .await?;
    Ok(name)
}
