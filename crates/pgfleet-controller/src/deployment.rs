//! The Deployment a pool owns: pure construction, applied by the reconciler with
//! server-side apply.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{
    Deployment, DeploymentSpec, DeploymentStrategy, RollingUpdateDeployment,
};
use k8s_openapi::api::core::v1::{
    Capabilities, Container, ContainerPort, EnvVar, EnvVarSource, HTTPGetAction,
    PodSecurityContext, PodSpec, PodTemplateSpec, Probe, SeccompProfile, SecretKeySelector,
    SecurityContext,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::{Resource, ResourceExt};

use crate::crd::WorkerPool;

/// The field manager of everything the controller applies.
pub const MANAGER: &str = "pgfleet-controller";
/// Label naming a pod's pool.
pub const POOL_LABEL: &str = "pgfleet.dev/pool";
/// The worker's health and metrics port.
pub const HEALTH_PORT: i32 = 9464;

/// The pool's identity in PostgreSQL (`namespace/name`): the workers' `--pool`, their
/// membership and partition leases, and the controller's reports. Two pools of the same name
/// in different namespaces are different pools.
pub fn identity(pool: &WorkerPool) -> String {
    format!(
        "{}/{}",
        pool.namespace().unwrap_or_default(),
        pool.name_any()
    )
}

/// The worker's command line for `pool`.
fn worker_args(pool: &WorkerPool) -> Vec<String> {
    let spec = &pool.spec;
    let mut args = vec![
        "worker".into(),
        "--pool".into(),
        identity(pool),
        "--queues".into(),
        queues_arg(pool),
        "--concurrency".into(),
        spec.concurrency.to_string(),
        "--health-addr".into(),
        format!("0.0.0.0:{HEALTH_PORT}"),
        "--shutdown-grace-secs".into(),
        spec.shutdown_grace_seconds.to_string(),
    ];
    if let Some(size) = spec.pool_size {
        args.extend(["--pool-size".into(), size.to_string()]);
    }
    args
}

/// The Deployment's name for pool `name`.
pub fn name(pool: &str) -> String {
    format!("{pool}-workers")
}

/// Labels of the pool's pods (the selector is the pool label alone).
pub fn labels(pool: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        (
            "app.kubernetes.io/name".to_owned(),
            "pgfleet-worker".to_owned(),
        ),
        ("app.kubernetes.io/instance".to_owned(), pool.to_owned()),
        (
            "app.kubernetes.io/managed-by".to_owned(),
            MANAGER.to_owned(),
        ),
        (POOL_LABEL.to_owned(), pool.to_owned()),
    ])
}

/// The pod selector as a string (for the scale subresource's status).
pub fn selector(pool: &str) -> String {
    format!("{POOL_LABEL}={pool}")
}

/// `high:6,default:3`.
pub fn queues_arg(pool: &WorkerPool) -> String {
    pool.spec
        .queues
        .iter()
        .map(|q| format!("{}:{}", q.name, q.weight))
        .collect::<Vec<_>>()
        .join(",")
}

/// The Deployment for `pool` at `replicas`, owned by the pool.
pub fn build(pool: &WorkerPool, replicas: i32) -> Deployment {
    let name = pool.name_any();
    let spec = &pool.spec;
    let mut env = vec![
        EnvVar {
            name: "PGFLEET_DATABASE_URL".into(),
            value_from: Some(EnvVarSource {
                secret_key_ref: Some(SecretKeySelector {
                    name: spec.database.secret_name.clone(),
                    key: spec.database.key.clone(),
                    optional: Some(false),
                }),
                ..Default::default()
            }),
            ..Default::default()
        },
        EnvVar {
            name: "PGFLEET_LOG_FORMAT".into(),
            value: Some("json".into()),
            ..Default::default()
        },
    ];
    // The user's entries win over ours, and a name listed twice keeps its last value: the
    // API server refuses a container whose env repeats a name.
    for e in &spec.env {
        match env.iter_mut().find(|x| x.name == e.name) {
            Some(x) => *x = e.clone(),
            None => env.push(e.clone()),
        }
    }
    let probe = |path: &str, period: i32| Probe {
        http_get: Some(HTTPGetAction {
            path: Some(path.into()),
            port: IntOrString::String("health".into()),
            ..Default::default()
        }),
        period_seconds: Some(period),
        failure_threshold: Some(3),
        ..Default::default()
    };
    let container = Container {
        name: "worker".into(),
        image: Some(spec.image.clone()),
        image_pull_policy: Some(
            spec.image_pull_policy
                .clone()
                .unwrap_or_else(|| "IfNotPresent".into()),
        ),
        args: Some(worker_args(pool)),
        env: Some(env),
        ports: Some(vec![ContainerPort {
            name: Some("health".into()),
            container_port: HEALTH_PORT,
            ..Default::default()
        }]),
        liveness_probe: Some(probe("/healthz", 10)),
        readiness_probe: Some(probe("/readyz", 5)),
        resources: spec.resources.clone(),
        security_context: Some(SecurityContext {
            allow_privilege_escalation: Some(false),
            read_only_root_filesystem: Some(true),
            run_as_non_root: Some(true),
            capabilities: Some(Capabilities {
                drop: Some(vec!["ALL".into()]),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    };
    let labels = labels(&name);
    Deployment {
        metadata: ObjectMeta {
            name: Some(self::name(&name)),
            namespace: pool.namespace(),
            labels: Some(labels.clone()),
            owner_references: pool.controller_owner_ref(&()).map(|o| vec![o]),
            ..Default::default()
        },
        spec: Some(DeploymentSpec {
            replicas: Some(replicas),
            selector: LabelSelector {
                match_labels: Some(BTreeMap::from([(POOL_LABEL.to_owned(), name.clone())])),
                ..Default::default()
            },
            strategy: Some(DeploymentStrategy {
                type_: Some("RollingUpdate".into()),
                rolling_update: Some(RollingUpdateDeployment {
                    max_surge: Some(IntOrString::String("25%".into())),
                    max_unavailable: Some(IntOrString::Int(0)),
                }),
            }),
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(labels),
                    annotations: Some(BTreeMap::from([
                        ("prometheus.io/scrape".to_owned(), "true".to_owned()),
                        ("prometheus.io/port".to_owned(), HEALTH_PORT.to_string()),
                    ])),
                    ..Default::default()
                }),
                spec: Some(PodSpec {
                    containers: vec![container],
                    termination_grace_period_seconds: Some(
                        i64::from(spec.shutdown_grace_seconds) + 5,
                    ),
                    // The `restricted` Pod Security level: non-root, no privilege
                    // escalation, all capabilities dropped, RuntimeDefault seccomp; and no
                    // service-account token, since workers never call the API server.
                    security_context: Some(PodSecurityContext {
                        run_as_non_root: Some(true),
                        run_as_user: Some(10001),
                        seccomp_profile: Some(SeccompProfile {
                            type_: "RuntimeDefault".into(),
                            localhost_profile: None,
                        }),
                        ..Default::default()
                    }),
                    automount_service_account_token: Some(false),
                    service_account_name: spec.service_account_name.clone(),
                    node_selector: (!spec.node_selector.is_empty())
                        .then(|| spec.node_selector.clone()),
                    tolerations: (!spec.tolerations.is_empty()).then(|| spec.tolerations.clone()),
                    affinity: spec.affinity.clone(),
                    topology_spread_constraints: (!spec.topology_spread_constraints.is_empty())
                        .then(|| spec.topology_spread_constraints.clone()),
                    image_pull_secrets: (!spec.image_pull_secrets.is_empty())
                        .then(|| spec.image_pull_secrets.clone()),
                    priority_class_name: spec.priority_class_name.clone(),
                    ..Default::default()
                }),
            },
            ..Default::default()
        }),
        status: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::{QueueWeight, WorkerPoolSpec};
    use k8s_openapi::api::core::v1::{LocalObjectReference, Toleration};

    fn pool(spec: WorkerPoolSpec) -> WorkerPool {
        let mut p = WorkerPool::new("emails", spec);
        p.metadata.namespace = Some("jobs".into());
        p
    }

    fn spec() -> WorkerPoolSpec {
        WorkerPoolSpec {
            image: "pgfleet:test".into(),
            queues: vec![QueueWeight {
                name: "mail".into(),
                weight: 1,
            }],
            concurrency: 10,
            max_replicas: 3,
            min_replicas: 1,
            ..Default::default()
        }
    }

    fn env(d: &Deployment) -> Vec<EnvVar> {
        let pod = d.spec.clone().unwrap().template.spec.unwrap();
        pod.containers[0].env.clone().unwrap()
    }

    #[test]
    fn the_users_env_wins_and_no_name_repeats() {
        let mut s = spec();
        s.env = vec![
            EnvVar {
                name: "PGFLEET_LOG_FORMAT".into(),
                value: Some("text".into()),
                ..Default::default()
            },
            EnvVar {
                name: "OTEL_SERVICE_NAME".into(),
                value: Some("a".into()),
                ..Default::default()
            },
            EnvVar {
                name: "OTEL_SERVICE_NAME".into(),
                value: Some("b".into()),
                ..Default::default()
            },
        ];
        let env = env(&build(&pool(s), 1));
        let mut names: Vec<&str> = env.iter().map(|e| e.name.as_str()).collect();
        names.sort_unstable();
        let n = names.len();
        names.dedup();
        assert_eq!(names.len(), n, "no name repeats: {names:?}");
        let value = |n: &str| env.iter().find(|e| e.name == n).unwrap().value.clone();
        assert_eq!(value("PGFLEET_LOG_FORMAT").as_deref(), Some("text"));
        assert_eq!(value("OTEL_SERVICE_NAME").as_deref(), Some("b"));
        assert!(env.iter().any(|e| e.name == "PGFLEET_DATABASE_URL"));
    }

    #[test]
    fn the_pod_passes_the_restricted_level_and_takes_the_scheduling_fields() {
        let d = build(&pool(spec()), 1);
        let pod = d.spec.unwrap().template.spec.unwrap();
        let sc = pod.security_context.unwrap();
        assert_eq!(sc.run_as_non_root, Some(true));
        assert_eq!(sc.seccomp_profile.unwrap().type_, "RuntimeDefault");
        assert_eq!(pod.automount_service_account_token, Some(false));
        let c = pod.containers[0].security_context.clone().unwrap();
        assert_eq!(c.allow_privilege_escalation, Some(false));
        assert_eq!(c.capabilities.unwrap().drop, Some(vec!["ALL".to_owned()]));
        assert!(pod.node_selector.is_none() && pod.tolerations.is_none());

        let mut s = spec();
        s.service_account_name = Some("workers".into());
        s.node_selector = BTreeMap::from([("pool".to_owned(), "jobs".to_owned())]);
        s.tolerations = vec![Toleration {
            key: Some("dedicated".into()),
            operator: Some("Exists".into()),
            ..Default::default()
        }];
        s.image_pull_secrets = vec![LocalObjectReference {
            name: "registry".into(),
        }];
        s.priority_class_name = Some("batch".into());
        let pod = build(&pool(s), 1).spec.unwrap().template.spec.unwrap();
        assert_eq!(pod.service_account_name.as_deref(), Some("workers"));
        assert_eq!(pod.node_selector.unwrap()["pool"], "jobs");
        assert_eq!(
            pod.tolerations.unwrap()[0].key.as_deref(),
            Some("dedicated")
        );
        assert_eq!(pod.image_pull_secrets.unwrap()[0].name, "registry");
        assert_eq!(pod.priority_class_name.as_deref(), Some("batch"));
    }
}
