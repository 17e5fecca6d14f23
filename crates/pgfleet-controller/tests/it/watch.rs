//! The controller's watch wiring, against a tower-test mock API server: it lists and
//! watches WorkerPools and, by label, only the Deployments it owns.

use std::sync::Arc;
use std::time::Duration;

use http::{Request, Response};
use kube::client::Body;
use kube::Client;
use pgfleet_controller::observe::Observer;
use pgfleet_controller::reconcile::Context;
use tokio_util::sync::CancellationToken;

type Handle = tower_test::mock::Handle<Request<Body>, Response<Body>>;

/// A reconcile context whose API server is a tower-test mock answered through the handle.
fn mock_context(queue: pgfleet_queue::Queue) -> (Arc<Context>, Handle) {
    let (service, handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let ctx = Arc::new(Context::new(
        Client::new(service, "default"),
        Arc::new(Observer::new(queue)),
        Arc::new(pgfleet_telemetry::Metrics::new("controller")),
        "test-0",
    ));
    (ctx, handle)
}

#[tokio::test]
async fn watches_pools_and_only_its_own_deployments() -> anyhow::Result<()> {
    let (_db, queue) = pgfleet_testkit::migrated().await?;
    let (ctx, mut handle) = mock_context(queue);
    let stop = CancellationToken::new();
    let task = tokio::spawn(pgfleet_controller::run::controller(
        ctx,
        Some("jobs".into()),
        stop.clone(),
    ));
    let mut seen = Vec::new();
    // The two initial LISTs (in either order), answered empty; then the two WATCHes.
    while seen.len() < 4 {
        let (req, send) = tokio::time::timeout(Duration::from_secs(10), handle.next_request())
            .await?
            .expect("a request");
        assert_eq!(req.method(), http::Method::GET);
        let uri = req.uri().to_string();
        let watch = uri.contains("watch=true");
        if watch {
            // Keep the stream open with nothing to say.
            send.send_response(Response::builder().body(Body::empty())?);
        } else {
            let list = r#"{"apiVersion":"v1","kind":"List","metadata":{"resourceVersion":"7"},"items":[]}"#;
            send.send_response(Response::builder().body(Body::from(list.as_bytes().to_vec()))?);
        }
        seen.push(uri);
    }
    stop.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(5), task).await;
    let pools: Vec<&String> = seen
        .iter()
        .filter(|u| u.starts_with("/apis/pgfleet.dev/v1alpha1/namespaces/jobs/workerpools?"))
        .collect();
    let deps: Vec<&String> = seen
        .iter()
        .filter(|u| u.starts_with("/apis/apps/v1/namespaces/jobs/deployments?"))
        .collect();
    assert_eq!((pools.len(), deps.len()), (2, 2), "{seen:#?}");
    for d in deps {
        assert!(
            d.contains("labelSelector=app.kubernetes.io%2Fmanaged-by%3Dpgfleet-controller"),
            "owned Deployments only: {d}"
        );
    }
    assert!(seen.iter().any(|u| u.contains("workerpools?")
        && u.contains("watch=true")
        && u.contains("resourceVersion=7")));
    Ok(())
}

/// A Deployment the API server refuses (here a 422 as for an invalid pod template) is
/// visible where users look: a Warning Event and the pool's Degraded condition carry the
/// API server's message, and the reconcile fails (to be retried with backoff).
#[tokio::test]
async fn a_refused_deployment_sets_degraded_and_a_warning_event() -> anyhow::Result<()> {
    use http::StatusCode;
    use pgfleet_controller::crd::{DatabaseRef, QueueWeight, WorkerPool, WorkerPoolSpec};
    use pgfleet_controller::reconcile::{reconcile, FINALIZER};

    let (_db, queue) = pgfleet_testkit::migrated().await?;
    let (ctx, mut handle) = mock_context(queue);
    let mut pool = WorkerPool::new(
        "emails",
        WorkerPoolSpec {
            image: "pgfleet:test".into(),
            queues: vec![QueueWeight {
                name: "mail".into(),
                weight: 1,
            }],
            concurrency: 10,
            min_replicas: 1,
            max_replicas: 3,
            database: DatabaseRef {
                secret_name: "db".into(),
                key: "url".into(),
            },
            ..Default::default()
        },
    );
    pool.metadata.namespace = Some("jobs".into());
    pool.metadata.uid = Some("7f1c8f5e-2a2b-4c7e-9d61-0b7d5c0e1a13".into());
    pool.metadata.finalizers = Some(vec![FINALIZER.into()]);
    let pool_json = serde_json::to_vec(&pool)?;
    const REFUSAL: &str = "Deployment.apps \"emails-workers\" is invalid: spec.template.spec.containers[0].env[1].name: Duplicate value: \"PGFLEET_LOG_FORMAT\"";

    let server = tokio::spawn(async move {
        let mut event_note = None;
        let mut status_patch = None;
        while let Ok(Some((req, send))) =
            tokio::time::timeout(Duration::from_secs(10), handle.next_request()).await
        {
            let (method, path) = (req.method().clone(), req.uri().path().to_owned());
            let body = req.into_body().collect_bytes().await.unwrap_or_default();
            let status = |code: u16, reason: &str, message: &str| {
                serde_json::json!({"kind": "Status", "apiVersion": "v1", "status": "Failure",
                    "message": message, "reason": reason, "code": code})
                .to_string()
            };
            let (code, answer) = match (method.as_str(), path.as_str()) {
                ("GET", "/apis/apps/v1/namespaces/jobs/deployments/emails-workers") => {
                    (404, status(404, "NotFound", "not found"))
                }
                ("PATCH", "/apis/apps/v1/namespaces/jobs/deployments/emails-workers") => {
                    (422, status(422, "Invalid", REFUSAL))
                }
                ("POST", p) if p.ends_with("/events") => {
                    let v: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
                    event_note = Some((v["type"].clone(), v["reason"].clone(), v["note"].clone()));
                    (201, String::from_utf8_lossy(&body).into_owned())
                }
                (
                    "PATCH",
                    "/apis/pgfleet.dev/v1alpha1/namespaces/jobs/workerpools/emails/status",
                ) => {
                    status_patch = serde_json::from_slice::<serde_json::Value>(&body).ok();
                    (200, String::from_utf8_lossy(&pool_json).into_owned())
                }
                (m, p) => panic!("unexpected request {m} {p}"),
            };
            send.send_response(
                Response::builder()
                    .status(StatusCode::from_u16(code).unwrap())
                    .body(Body::from(answer.into_bytes()))
                    .unwrap(),
            );
            if status_patch.is_some() {
                break;
            }
        }
        (event_note, status_patch)
    });
    let result = reconcile(Arc::new(pool), ctx).await;
    let err = result.expect_err("the refused apply fails the reconcile");
    assert_eq!(err.cause(), "kubernetes");
    let (event, status) = server.await?;
    let (kind, reason, note) = event.expect("a Warning Event");
    assert_eq!(
        (kind.as_str(), reason.as_str()),
        (Some("Warning"), Some("ApplyFailed"))
    );
    assert!(note.as_str().unwrap().contains("Duplicate value"), "{note}");
    let status = status.expect("the status was patched");
    let degraded = status["status"]["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == "Degraded")
        .unwrap()
        .clone();
    assert_eq!(degraded["status"], "True");
    assert_eq!(degraded["reason"], "ApplyFailed");
    assert!(
        degraded["message"]
            .as_str()
            .unwrap()
            .contains("Duplicate value"),
        "{degraded}"
    );
    Ok(())
}

/// A mock API server where the deleted pool stays (Terminating) for `terminating_lists`
/// LISTs; returns the number of LISTs served.
async fn serve_deletion(mut handle: Handle, terminating_lists: usize) -> usize {
    let pool = serde_json::json!({"apiVersion": "pgfleet.dev/v1alpha1", "kind": "WorkerPool",
        "metadata": {"name": "a", "namespace": "jobs", "uid": "u1", "finalizers": ["pgfleet.dev/release-partitions"]},
        "spec": {"image": "i", "queues": [{"name": "q"}], "database": {"secretName": "db"}}});
    let list = |items: Vec<serde_json::Value>| {
        serde_json::json!({"apiVersion": "pgfleet.dev/v1alpha1", "kind": "WorkerPoolList",
            "metadata": {"resourceVersion": "1"}, "items": items})
        .to_string()
    };
    let mut lists = 0;
    while let Ok(Some((req, send))) =
        tokio::time::timeout(Duration::from_secs(5), handle.next_request()).await
    {
        let body = match req.method().as_str() {
            "GET" => {
                lists += 1;
                // The first LIST finds the pool; it then stays while Terminating.
                if lists <= 1 + terminating_lists {
                    list(vec![pool.clone()])
                } else {
                    list(vec![])
                }
            }
            "DELETE" => pool.to_string(),
            m => panic!("unexpected {m}"),
        };
        send.send_response(
            Response::builder()
                .body(Body::from(body.into_bytes()))
                .unwrap(),
        );
    }
    lists
}

/// `pgfleet pools delete` waits while a deleted pool is Terminating (its finalizer not yet
/// released by the controller), and gives up naming it when the controller never does.
#[tokio::test]
async fn uninstall_waits_for_terminating_pools_and_times_out_without_a_controller(
) -> anyhow::Result<()> {
    use pgfleet_controller::crd::WorkerPool;
    use pgfleet_controller::uninstall::{delete_pools, UninstallError};
    let (service, handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let api: kube::Api<WorkerPool> = kube::Api::namespaced(Client::new(service, "jobs"), "jobs");
    let server = tokio::spawn(serve_deletion(handle, 3));
    let deleted = delete_pools(
        &api,
        "app.kubernetes.io/instance=r",
        Duration::from_secs(30),
    )
    .await?;
    assert_eq!(deleted, ["a"]);
    drop(api);
    assert_eq!(server.await?, 5, "listed until the pool was gone");

    let (service, handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let api: kube::Api<WorkerPool> = kube::Api::namespaced(Client::new(service, "jobs"), "jobs");
    let server = tokio::spawn(serve_deletion(handle, usize::MAX - 1));
    match delete_pools(&api, "app.kubernetes.io/instance=r", Duration::from_secs(1)).await {
        Err(UninstallError::Timeout(names)) => assert_eq!(names, ["a"]),
        other => panic!("expected a timeout, got {other:?}"),
    }
    drop(api);
    server.abort();
    Ok(())
}

/// `pgfleet crd --apply` (the chart's pre-upgrade hook) server-side applies the CRD this
/// binary was built with: one apply PATCH of the whole CRD, forced, as its own field manager.
#[tokio::test]
async fn the_crd_is_upgraded_by_server_side_apply() -> anyhow::Result<()> {
    let (service, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let server = tokio::spawn(async move {
        let (req, send) = handle.next_request().await.expect("a request");
        let (method, uri) = (req.method().clone(), req.uri().to_string());
        let ct = req.headers()["content-type"].to_str().unwrap().to_owned();
        let body = req.into_body().collect_bytes().await.unwrap();
        send.send_response(Response::builder().body(Body::from(body.to_vec())).unwrap());
        (method, uri, ct, body)
    });
    let name = pgfleet_controller::crd::apply_crd(Client::new(service, "default")).await?;
    assert_eq!(name, "workerpools.pgfleet.dev");
    let (method, uri, ct, body) = server.await?;
    assert_eq!(method, http::Method::PATCH);
    assert!(
        uri.starts_with(
            "/apis/apiextensions.k8s.io/v1/customresourcedefinitions/workerpools.pgfleet.dev?"
        ) && uri.contains("fieldManager=pgfleet-crd")
            && uri.contains("force=true"),
        "{uri}"
    );
    assert_eq!(ct, "application/apply-patch+yaml");
    let sent: serde_json::Value = serde_json::from_slice(&body)?;
    let ours: serde_json::Value =
        serde_json::to_value(<pgfleet_controller::WorkerPool as kube::CustomResourceExt>::crd())?;
    assert_eq!(sent, ours, "the whole CRD of this build");
    Ok(())
}
