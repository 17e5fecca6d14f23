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

#[tokio::test]
async fn watches_pools_and_only_its_own_deployments() -> anyhow::Result<()> {
    let (_db, queue) = pgfleet_testkit::migrated().await?;
    let (service, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let client = Client::new(service, "default");
    let ctx = Arc::new(Context::new(
        client,
        Arc::new(Observer::new(queue)),
        Arc::new(pgfleet_telemetry::Metrics::new("controller")),
        "test-0",
    ));
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
