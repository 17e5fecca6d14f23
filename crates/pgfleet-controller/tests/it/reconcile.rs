use std::sync::{Arc, Mutex};

use chrono::Utc;

use k8s_openapi::api::apps::v1::{Deployment, DeploymentStatus};
use k8s_openapi::api::events::v1::Event;
use kube::api::{Api, ListParams, Patch, PatchParams};
use kube::ResourceExt;
use kube_fake_client::ClientBuilder;
use pgfleet_controller::crd::{Autoscaling, DatabaseRef, QueueWeight, WorkerPool, WorkerPoolSpec};
use pgfleet_controller::observe::Observer;
use pgfleet_controller::reconcile::{reconcile, Clock, Context, FINALIZER};
use pgfleet_queue::NewJob;
use serde_json::json;

/// A reconcile context on `client`, reading queue statistics through `queue`, whose clock
/// moves an hour at each pass: every pass is a poll later, so every pass decides.
fn context(
    client: &kube::Client,
    queue: &pgfleet_queue::Queue,
    metrics: Arc<pgfleet_telemetry::Metrics>,
) -> Arc<Context> {
    let t = Arc::new(Mutex::new(Utc::now()));
    let polls_apart: Clock = Arc::new(move || {
        let mut t = t.lock().unwrap();
        *t += chrono::Duration::hours(1);
        *t
    });
    Arc::new(
        Context::new(
            client.clone(),
            Arc::new(Observer::new(queue.clone())),
            metrics,
            "test-0",
        )
        .with_clock(polls_apart),
    )
}

const OTHER: &str = "example.com/backup";

fn pool(name: &str) -> WorkerPool {
    let mut p = WorkerPool::new(
        name,
        WorkerPoolSpec {
            image: "ghcr.io/pgfleet/pgfleet:test".into(),
            image_pull_policy: None,
            queues: vec![
                QueueWeight {
                    name: "mail".into(),
                    weight: 3,
                },
                QueueWeight {
                    name: "sms".into(),
                    weight: 1,
                },
            ],
            concurrency: 20,
            pool_size: Some(5),
            replicas: None,
            min_replicas: 1,
            max_replicas: 8,
            autoscaling: Autoscaling {
                max_step: 10,
                scale_down_stabilization_seconds: 0,
                ..Autoscaling::default()
            },
            resources: None,
            env: vec![],
            database: DatabaseRef {
                secret_name: "pgfleet-db".into(),
                key: "url".into(),
            },
            shutdown_grace_seconds: 25,
            paused: false,
            ..Default::default()
        },
    );
    p.metadata.namespace = Some("jobs".into());
    p.metadata.uid = Some("5f1c8f5e-2a2b-4c7e-9d61-0b7d5c0e1a11".into());
    p.metadata.generation = Some(3);
    // Another party's finalizer. (Also because the fake client's JSON patch cannot `test` a
    // missing `/metadata/finalizers` against null, as the real API server can.)
    p.metadata.finalizers = Some(vec![OTHER.into()]);
    p
}

#[tokio::test]
async fn reconcile_applies_the_deployment_patches_status_and_scales_with_events(
) -> anyhow::Result<()> {
    let (db, queue) = pgfleet_testkit::migrated().await?;
    let jobs: Vec<NewJob> = (0..450).map(|_| NewJob::new("mail", "noop")).collect();
    queue.enqueue_many(&jobs).await?;
    queue.enqueue(NewJob::new("unrelated", "noop")).await?;

    let client = ClientBuilder::new()
        .with_resource::<WorkerPool>()
        .with_status_subresource::<WorkerPool>()
        .with_status_subresource::<Deployment>()
        .with_object(pool("emails"))
        .build()
        .await?;
    let metrics = Arc::new(pgfleet_telemetry::Metrics::new("controller"));
    let ctx = context(&client, &queue, metrics.clone());
    let pools: Api<WorkerPool> = Api::namespaced(client.clone(), "jobs");
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), "jobs");

    // First pass adds the finalizer; the next one does the work.
    reconcile(Arc::new(pools.get("emails").await?), ctx.clone()).await?;
    let p = pools.get("emails").await?;
    assert_eq!(p.finalizers(), [OTHER.to_owned(), FINALIZER.to_owned()]);
    reconcile(Arc::new(p), ctx.clone()).await?;

    let d = deployments.get("emails-workers").await?;
    let spec = d.spec.clone().unwrap();
    assert_eq!(spec.replicas, Some(5), "ceil(450 / 100)");
    let owner = &d.owner_references()[0];
    assert_eq!(
        (owner.kind.as_str(), owner.name.as_str(), owner.controller),
        ("WorkerPool", "emails", Some(true))
    );
    let pod = spec.template.spec.unwrap();
    assert_eq!(pod.termination_grace_period_seconds, Some(30));
    let c = &pod.containers[0];
    assert_eq!(c.image.as_deref(), Some("ghcr.io/pgfleet/pgfleet:test"));
    let args = c.args.clone().unwrap().join(" ");
    assert!(
        args.starts_with("worker --pool jobs/emails --queues mail:3,sms:1 --concurrency 20"),
        "{args}"
    );
    assert!(
        args.ends_with("--pool-size 5"),
        "spec.poolSize is passed: {args}"
    );
    let env = c.env.clone().unwrap();
    let db_env = env
        .iter()
        .find(|e| e.name == "PGFLEET_DATABASE_URL")
        .unwrap();
    let secret = db_env
        .value_from
        .as_ref()
        .unwrap()
        .secret_key_ref
        .as_ref()
        .unwrap();
    assert_eq!(
        (secret.name.as_str(), secret.key.as_str()),
        ("pgfleet-db", "url")
    );
    assert_eq!(
        c.readiness_probe
            .as_ref()
            .unwrap()
            .http_get
            .as_ref()
            .unwrap()
            .path
            .as_deref(),
        Some("/readyz")
    );
    assert_eq!(
        d.managed_fields()
            .first()
            .and_then(|m| m.manager.as_deref()),
        Some("pgfleet-controller"),
        "server-side apply"
    );

    let p = pools.get("emails").await?;
    let status = p.status.clone().unwrap();
    assert_eq!(
        (
            status.desired_replicas,
            status.replicas,
            status.ready_replicas
        ),
        (5, 0, 0),
        "status.replicas counts the pods that exist, not the desired"
    );
    assert_eq!(status.backlog, 450, "only the pool's queues count");
    assert_eq!(status.observed_generation, p.metadata.generation);
    assert_eq!(status.selector.as_deref(), Some("pgfleet.dev/pool=emails"));
    let cond = |t: &str| {
        status
            .conditions
            .iter()
            .find(|c| c.type_ == t)
            .unwrap()
            .status
            .clone()
    };
    assert_eq!(
        (cond("Ready"), cond("Scaling"), cond("Degraded")),
        ("False".into(), "True".into(), "False".into())
    );

    // The pods come up and the backlog drains: the pool shrinks to its minimum, with an Event.
    deployments
        .patch_status(
            "emails-workers",
            &PatchParams::default(),
            &Patch::Merge(json!({"status": DeploymentStatus { ready_replicas: Some(5), replicas: Some(5), ..Default::default() }})),
        )
        .await?;
    sqlx::query("DELETE FROM pgfleet.jobs WHERE queue = 'mail'")
        .execute(&db.pool)
        .await?;
    reconcile(Arc::new(pools.get("emails").await?), ctx.clone()).await?;
    assert_eq!(
        deployments
            .get("emails-workers")
            .await?
            .spec
            .unwrap()
            .replicas,
        Some(1)
    );
    let status = pools.get("emails").await?.status.unwrap();
    assert_eq!(
        (
            status.desired_replicas,
            status.ready_replicas,
            status.backlog
        ),
        (1, 5, 0)
    );
    assert!(status.last_scale_time.is_some());
    let events: Api<Event> = Api::namespaced(client.clone(), "jobs");
    let events = events.list(&ListParams::default()).await?.items;
    let down = events
        .iter()
        .find(|e| e.reason.as_deref() == Some("ScaledDown"))
        .expect("a ScaledDown event");
    assert!(
        down.note.as_deref().unwrap().contains("5 → 1"),
        "{:?}",
        down.note
    );
    assert_eq!(
        down.regarding.as_ref().unwrap().name.as_deref(),
        Some("emails")
    );
    let text = metrics.render();
    assert!(
        text.contains(
            "pgfleet_controller_desired_replicas{pool=\"jobs/emails\",component=\"controller\"} 1"
        ),
        "{text}"
    );

    Ok(())
}

#[tokio::test]
async fn manual_replicas_and_paused_pools() -> anyhow::Result<()> {
    let (_db, queue) = pgfleet_testkit::migrated().await?;
    let mut manual = pool("manual");
    manual.spec.autoscaling.enabled = false;
    manual.spec.replicas = Some(3);
    manual.metadata.finalizers = Some(vec![OTHER.into(), FINALIZER.into()]);
    let mut paused = pool("paused");
    paused.metadata.uid = Some("6f1c8f5e-2a2b-4c7e-9d61-0b7d5c0e1a12".into());
    paused.spec.paused = true;
    paused.metadata.finalizers = Some(vec![OTHER.into(), FINALIZER.into()]);
    let client = ClientBuilder::new()
        .with_resource::<WorkerPool>()
        .with_status_subresource::<WorkerPool>()
        .with_object(manual)
        .with_object(paused)
        .build()
        .await?;
    let ctx = context(
        &client,
        &queue,
        Arc::new(pgfleet_telemetry::Metrics::new("controller")),
    );
    let pools: Api<WorkerPool> = Api::namespaced(client.clone(), "jobs");
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), "jobs");
    reconcile(Arc::new(pools.get("manual").await?), ctx.clone()).await?;
    assert_eq!(
        deployments
            .get("manual-workers")
            .await?
            .spec
            .unwrap()
            .replicas,
        Some(3)
    );
    // `kubectl scale` writes spec.replicas through the scale subresource.
    pools
        .patch(
            "manual",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"replicas": 6}})),
        )
        .await?;
    reconcile(Arc::new(pools.get("manual").await?), ctx.clone()).await?;
    assert_eq!(
        deployments
            .get("manual-workers")
            .await?
            .spec
            .unwrap()
            .replicas,
        Some(6)
    );

    let jobs: Vec<NewJob> = (0..900).map(|_| NewJob::new("mail", "noop")).collect();
    queue.enqueue_many(&jobs).await?;
    reconcile(Arc::new(pools.get("paused").await?), ctx.clone()).await?;
    assert_eq!(
        deployments
            .get("paused-workers")
            .await?
            .spec
            .unwrap()
            .replicas,
        Some(1),
        "paused: created at min, not scaled"
    );
    reconcile(Arc::new(pools.get("paused").await?), ctx.clone()).await?;
    assert_eq!(
        deployments
            .get("paused-workers")
            .await?
            .spec
            .unwrap()
            .replicas,
        Some(1)
    );
    Ok(())
}

#[tokio::test]
async fn deleting_a_pool_releases_its_partition_leases() -> anyhow::Result<()> {
    let (db, queue) = pgfleet_testkit::migrated().await?;
    sqlx::query(
        "INSERT INTO pgfleet.partition_leases (pool, partition, worker_id, expires_at) \
         VALUES ('jobs/emails', 0, 'w1', now() + interval '1 hour'), \
                ('jobs/emails', 1, 'w1', now() + interval '1 hour'), \
                ('other', 0, 'w2', now() + interval '1 hour'), \
                ('staging/emails', 0, 'w3', now() + interval '1 hour')",
    )
    .execute(&db.pool)
    .await?;
    // A pool being deleted: the API server has set deletionTimestamp and waits for our
    // finalizer (the fake client takes the object in that state).
    let mut p = pool("emails");
    p.metadata.finalizers = Some(vec![OTHER.into(), FINALIZER.into()]);
    p.metadata.deletion_timestamp = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
        "2026-11-22T12:00:00Z".parse()?,
    ));
    let client = ClientBuilder::new()
        .with_resource::<WorkerPool>()
        .with_status_subresource::<WorkerPool>()
        .with_object(p)
        .build()
        .await?;
    let ctx = context(
        &client,
        &queue,
        Arc::new(pgfleet_telemetry::Metrics::new("controller")),
    );
    let pools: Api<WorkerPool> = Api::namespaced(client.clone(), "jobs");
    reconcile(Arc::new(pools.get("emails").await?), ctx.clone()).await?;
    let left: Vec<String> =
        sqlx::query_scalar("SELECT pool FROM pgfleet.partition_leases ORDER BY pool")
            .fetch_all(&db.pool)
            .await?;
    assert_eq!(
        left,
        ["other", "staging/emails"],
        "only this namespace's pool is released, not a namesake in another"
    );
    let p = pools.get("emails").await?;
    assert_eq!(
        p.finalizers(),
        [OTHER.to_owned()],
        "ours removed, the other party's kept"
    );
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), "jobs");
    assert!(
        deployments.get_opt("emails-workers").await?.is_none(),
        "nothing applied while deleting"
    );
    Ok(())
}

/// The event loop reconciles a pool again at every watch event its own writes cause. Driven
/// that way — back to back, 250 ms of clock apart, with the backlog growing between passes
/// — the pool still decides once per `pollSeconds` (5 s), and writes its status and
/// Deployment only when they change.
#[tokio::test]
async fn back_to_back_reconciles_decide_once_per_poll_and_write_only_changes() -> anyhow::Result<()>
{
    let (_db, queue) = pgfleet_testkit::migrated().await?;
    let client = ClientBuilder::new()
        .with_resource::<WorkerPool>()
        .with_status_subresource::<WorkerPool>()
        .with_status_subresource::<Deployment>()
        .with_object(pool("storm"))
        .build()
        .await?;
    let metrics = Arc::new(pgfleet_telemetry::Metrics::new("controller"));
    let now = Arc::new(Mutex::new(Utc::now()));
    let clock: Clock = {
        let now = now.clone();
        Arc::new(move || *now.lock().unwrap())
    };
    let ctx = Arc::new(
        Context::new(
            client.clone(),
            Arc::new(Observer::new(queue.clone())),
            metrics.clone(),
            "test-0",
        )
        .with_clock(clock),
    );
    let pools: Api<WorkerPool> = Api::namespaced(client.clone(), "jobs");
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), "jobs");
    // The finalizer pass.
    reconcile(Arc::new(pools.get("storm").await?), ctx.clone()).await?;

    let version = |o: &Option<String>| o.clone().unwrap_or_default();
    let (mut pool_writes, mut deployment_writes) = (0, 0);
    let (mut last_pool, mut last_dep) = (String::new(), String::new());
    let mut requeues = Vec::new();
    for pass in 0..40 {
        let jobs: Vec<NewJob> = (0..30).map(|_| NewJob::new("mail", "noop")).collect();
        queue.enqueue_many(&jobs).await?;
        let action = reconcile(Arc::new(pools.get("storm").await?), ctx.clone()).await?;
        requeues.push(format!("{action:?}"));
        let p = version(&pools.get("storm").await?.metadata.resource_version);
        let d = version(
            &deployments
                .get("storm-workers")
                .await?
                .metadata
                .resource_version,
        );
        if pass > 0 {
            pool_writes += usize::from(p != last_pool);
            deployment_writes += usize::from(d != last_dep);
        }
        (last_pool, last_dep) = (p, d);
        *now.lock().unwrap() += chrono::Duration::milliseconds(250);
    }
    // 40 passes over 10 s of clock: decisions at 0, 5 s (and not again until 10 s).
    let text = metrics.render();
    assert!(
        text.contains(
            "pgfleet_controller_decisions_total{pool=\"jobs/storm\",component=\"controller\"} 2"
        ),
        "{text}"
    );
    // Only the second decision changes anything after the first pass: one status write and
    // at most one Deployment write (it scales when the grown backlog asks for more).
    assert_eq!(pool_writes, 1, "status writes after the first pass");
    assert!(
        deployment_writes <= 1,
        "Deployment writes: {deployment_writes}"
    );
    // Between decisions the pool asks to come back when the next one is due.
    assert!(requeues[1].contains("4.75"), "{:?}", &requeues[..3]);
    Ok(())
}

/// PostgreSQL down when the controller starts: a pool is still reconciled — a new one at
/// its minimum, an existing one held at its size — and reports Degraded with the reason,
/// with one MetricsUnavailable Warning; once connected, it scales from the queues again.
#[tokio::test]
async fn before_postgresql_is_reachable_pools_are_held_and_degraded() -> anyhow::Result<()> {
    let (_db, queue) = pgfleet_testkit::migrated().await?;
    let jobs: Vec<NewJob> = (0..450).map(|_| NewJob::new("mail", "noop")).collect();
    queue.enqueue_many(&jobs).await?;
    let client = ClientBuilder::new()
        .with_resource::<WorkerPool>()
        .with_status_subresource::<WorkerPool>()
        .with_status_subresource::<Deployment>()
        .with_object(pool("blind"))
        .build()
        .await?;
    let observer = Arc::new(Observer::connecting());
    observer.unreachable("connection refused (127.0.0.1:5432)");
    let t = Arc::new(Mutex::new(Utc::now()));
    let polls_apart: Clock = Arc::new(move || {
        let mut t = t.lock().unwrap();
        *t += chrono::Duration::hours(1);
        *t
    });
    let metrics = Arc::new(pgfleet_telemetry::Metrics::new("controller"));
    let ctx = Arc::new(
        Context::new(client.clone(), observer.clone(), metrics, "test-0").with_clock(polls_apart),
    );
    let pools: Api<WorkerPool> = Api::namespaced(client.clone(), "jobs");
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), "jobs");
    for _ in 0..4 {
        reconcile(Arc::new(pools.get("blind").await?), ctx.clone()).await?;
    }
    let replicas = || async {
        anyhow::Ok(
            deployments
                .get("blind-workers")
                .await?
                .spec
                .unwrap()
                .replicas,
        )
    };
    assert_eq!(
        replicas().await?,
        Some(1),
        "a new pool starts at its minimum"
    );
    let p = pools.get("blind").await?;
    let status = p.status.clone().unwrap();
    let degraded = status
        .conditions
        .iter()
        .find(|c| c.type_ == "Degraded")
        .unwrap();
    assert_eq!(degraded.status, "True");
    assert!(
        degraded.message.contains("not reachable yet") && degraded.message.contains("refused"),
        "{degraded:?}"
    );
    assert_eq!(degraded.observed_generation, p.metadata.generation);
    let events: Api<Event> = Api::namespaced(client.clone(), "jobs");
    let warnings = events
        .list(&ListParams::default())
        .await?
        .items
        .into_iter()
        .filter(|e| e.reason.as_deref() == Some("MetricsUnavailable"))
        .count();
    assert_eq!(
        warnings, 1,
        "published when it became unavailable, not every poll"
    );

    // Connected: the same pool now follows its backlog.
    observer.connected(queue.clone());
    reconcile(Arc::new(pools.get("blind").await?), ctx.clone()).await?;
    assert_eq!(replicas().await?, Some(5), "ceil(450 / 100)");
    let status = pools.get("blind").await?.status.unwrap();
    assert!(status
        .conditions
        .iter()
        .any(|c| c.type_ == "Degraded" && c.status == "False"));
    Ok(())
}

/// The chart's pre-delete hook: `delete_pools` deletes the release's pools by label and
/// leaves the neighbours' alone (the waiting is tested against a mock API server in
/// watch.rs, since the fake client deletes at once despite finalizers).
#[tokio::test]
async fn uninstall_deletes_only_the_releases_pools() -> anyhow::Result<()> {
    use pgfleet_controller::uninstall::delete_pools;
    let labelled = |name: &str, instance: &str| {
        let mut p = pool(name);
        p.metadata.uid = Some(format!("00000000-0000-0000-0000-{:0>12}", name.len()));
        p.metadata.labels =
            Some([("app.kubernetes.io/instance".to_owned(), instance.to_owned())].into());
        p
    };
    let client = ClientBuilder::new()
        .with_resource::<WorkerPool>()
        .with_object(labelled("a", "r"))
        .with_object(labelled("bb", "r"))
        .with_object(labelled("ccc", "other"))
        .build()
        .await?;
    let pools: Api<WorkerPool> = Api::namespaced(client.clone(), "jobs");
    let mut deleted = delete_pools(
        &pools,
        "app.kubernetes.io/instance=r",
        std::time::Duration::from_secs(10),
    )
    .await?;
    deleted.sort();
    assert_eq!(deleted, ["a", "bb"]);
    let left: Vec<String> = pools
        .list(&ListParams::default())
        .await?
        .items
        .iter()
        .map(|p| p.name_any())
        .collect();
    assert_eq!(left, ["ccc"], "the other release's pool stays");
    Ok(())
}
