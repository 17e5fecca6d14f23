//! The CRD: the committed YAML is exactly `pgfleet crd`'s output, and the samples validate
//! against its schema (bad ones do not).

use std::path::Path;

use pgfleet_controller::crd::crd_yaml;
use serde_json::{json, Value};

fn root() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."))
}

#[test]
fn committed_crd_matches_the_code() {
    let committed =
        std::fs::read_to_string(root().join("crds/workerpools.pgfleet.dev.yaml")).unwrap();
    assert!(
        committed == crd_yaml().unwrap(),
        "crds/workerpools.pgfleet.dev.yaml is stale: run `pgfleet crd > crds/workerpools.pgfleet.dev.yaml` (and copy it to charts/pgfleet/crds/)"
    );
    let chart =
        std::fs::read_to_string(root().join("charts/pgfleet/crds/workerpools.pgfleet.dev.yaml"))
            .unwrap();
    assert!(chart == committed, "the chart's CRD differs from crds/");
}

fn schema() -> Value {
    let crd: Value = serde_yaml::from_str(&crd_yaml().unwrap()).unwrap();
    let mut s = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"].clone();
    // Kubernetes fills apiVersion/kind/metadata; the schema only types them.
    s["properties"]["metadata"] = json!({"type": "object"});
    s
}

fn validate(doc: &Value) -> Result<(), String> {
    let validator = jsonschema::validator_for(&schema()).map_err(|e| e.to_string())?;
    let errors: Vec<String> = validator
        .iter_errors(doc)
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .collect();
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors.join("; "))
    }
}

#[test]
fn samples_validate_against_the_schema() {
    let dir = root().join("samples");
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().and_then(|e| e.to_str()) != Some("yaml") {
            continue;
        }
        let doc: Value = serde_yaml::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        assert_eq!(doc["kind"], "WorkerPool", "{}", path.display());
        validate(&doc).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let _: pgfleet_controller::WorkerPool = serde_json::from_value(doc).unwrap();
        n += 1;
    }
    assert!(n >= 2, "samples/ holds {n} WorkerPools");
}

#[test]
fn bad_pools_are_refused_by_the_schema() {
    let good = json!({
        "apiVersion": "pgfleet.dev/v1alpha1", "kind": "WorkerPool", "metadata": {"name": "p"},
        "spec": {"image": "pgfleet:1", "queues": [{"name": "default", "weight": 1}],
                 "database": {"secretName": "db"}}
    });
    validate(&good).unwrap();
    let with = |path: &[&str], v: Value| {
        let mut d = good.clone();
        let mut cur = &mut d["spec"];
        for p in &path[..path.len() - 1] {
            cur = &mut cur[*p];
        }
        cur[path[path.len() - 1]] = v;
        d
    };
    for (doc, why) in [
        (with(&["queues"], json!([])), "no queue"),
        (
            with(&["queues"], json!([{"name": "q", "weight": 0}])),
            "weight 0",
        ),
        (
            with(&["queues"], json!([{"name": "bad name!", "weight": 1}])),
            "queue name",
        ),
        (with(&["concurrency"], json!(0)), "concurrency 0"),
        (with(&["maxReplicas"], json!(0)), "max 0"),
        (with(&["image"], json!("")), "empty image"),
        (with(&["autoscaling", "maxStep"], json!(0)), "step 0"),
        (with(&["database"], json!({})), "no secret"),
    ] {
        assert!(validate(&doc).is_err(), "{why} should be refused");
    }
    // What the schema alone cannot say is a CEL rule, enforced by the API server.
    let yaml = crd_yaml().unwrap();
    for rule in [
        "self.minReplicas <= self.maxReplicas",
        "self.autoscaling.scaleToZero",
    ] {
        assert!(yaml.contains(rule), "CEL rule {rule} in the CRD");
    }
    for column in ["Desired", "Ready", "Backlog", "Lag", "Age"] {
        assert!(
            yaml.contains(&format!("name: {column}")),
            "printer column {column}"
        );
    }
    assert!(
        yaml.contains("specReplicasPath: .spec.replicas"),
        "scale subresource"
    );
}

/// The CRD's CEL rules, evaluated by a CEL implementation (kube-cel, the Kubernetes CEL
/// library port) as the API server would on create: the samples pass, each bad pool is
/// refused by the rule meant for it.
#[test]
fn cel_rules_refuse_what_the_schema_cannot() {
    let schema = schema();
    let cel = |doc: &Value| -> Result<(), Vec<String>> {
        kube_cel::validate(&schema, doc, None)
            .map_err(|e| e.into_vec().into_iter().map(|e| e.message).collect())
    };
    let sample: Value = serde_yaml::from_str(
        &std::fs::read_to_string(root().join("samples/workerpool-default.yaml")).unwrap(),
    )
    .unwrap();
    cel(&sample).unwrap_or_else(|e| panic!("the sample passes: {e:?}"));
    let with = |f: &dyn Fn(&mut Value)| {
        let mut d = sample.clone();
        f(&mut d);
        d
    };
    for (doc, expected) in [
        (
            with(&|d| {
                d["spec"]["minReplicas"] = json!(5);
                d["spec"]["maxReplicas"] = json!(2);
            }),
            "minReplicas must not exceed maxReplicas",
        ),
        (
            with(&|d| {
                d["spec"]["minReplicas"] = json!(0);
                d["spec"]["autoscaling"]["scaleToZero"] = json!(false);
            }),
            "minReplicas 0 needs autoscaling.scaleToZero",
        ),
        (
            with(&|d| {
                d["spec"]["replicas"] = json!(1000);
                d["spec"]["autoscaling"]["enabled"] = json!(true);
            }),
            "replicas must be within minReplicas..maxReplicas",
        ),
        (
            with(&|d| d["metadata"]["name"] = json!("x".repeat(64))),
            "at most 63 characters",
        ),
    ] {
        let errors = cel(&doc).expect_err(expected);
        assert!(
            errors.iter().any(|m| m.contains(expected)),
            "{expected}: {errors:?}"
        );
    }
    // 63 characters is fine.
    cel(&with(&|d| d["metadata"]["name"] = json!("x".repeat(63)))).unwrap();
}
