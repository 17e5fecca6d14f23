use std::time::Duration;

use pgfleet_gateway::signature::WebhookSecret;
use pgfleet_testkit::eventually;
use pgfleet_testkit::push::{FakePushService, Reply};
use serde_json::{json, Value};

use crate::{signal, wait_exit, Proc};

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Every PromQL expression of every dashboard, with Grafana's `$__rate_interval` resolved.
fn dashboard_queries() -> anyhow::Result<Vec<(String, String, String)>> {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../../dashboards");
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.extension().and_then(|e| e.to_str()) != Some("json") {
            continue;
        }
        let d: Value = serde_json::from_str(&std::fs::read_to_string(&path)?)?;
        let uid = d["uid"].as_str().unwrap_or("").to_owned();
        assert_eq!(
            d["templating"]["list"][0]["type"], "datasource",
            "{uid}: datasource is a variable"
        );
        for p in d["panels"].as_array().unwrap() {
            assert_eq!(
                p["datasource"]["uid"], "${datasource}",
                "{uid}: {}",
                p["title"]
            );
            for t in p["targets"].as_array().unwrap() {
                let expr = t["expr"]
                    .as_str()
                    .unwrap()
                    .replace("$__rate_interval", "1m");
                out.push((uid.clone(), p["title"].as_str().unwrap().to_owned(), expr));
            }
        }
    }
    Ok(out)
}

/// `pgfleet dev` under load, a real Prometheus scraping it, and every dashboard expression
/// evaluated through Prometheus's HTTP API: none may fail, and every panel of the overview
/// must return series.
#[tokio::test]
async fn every_dashboard_query_works_against_a_real_prometheus() -> anyhow::Result<()> {
    if std::process::Command::new("prometheus")
        .arg("--version")
        .output()
        .is_err()
    {
        eprintln!("prometheus is not installed: skipped (CI installs Debian's prometheus package)");
        return Ok(());
    }
    let crate::Dev {
        proc: mut dev,
        base,
        data,
        dir,
    } = crate::start_dev_with("0", |_| {
        // The sample WorkerPools as local pools: the replica panels get series too.
        // The sample schedules and limits: the flow-control and schedule panels too.
        vec![
            "--pools".into(),
            concat!(env!("CARGO_MANIFEST_DIR"), "/../../samples").into(),
            "--schedules".into(),
            concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/../../samples/schedules/dev.yaml"
            )
            .into(),
        ]
    })
    .await?;
    let key = std::fs::read_to_string(data.join("dev-api-key"))?
        .trim()
        .to_owned();
    let secret = std::fs::read_to_string(data.join("dev-webhook-secret"))?
        .trim()
        .to_owned();
    let http = reqwest::Client::new();
    // Load: successes, retries, discards, webhooks, a bad signature.
    let mut jobs: Vec<Value> = (0..60).map(|_| json!({"kind": "noop"})).collect();
    jobs.extend((0..10).map(|_| json!({"kind": "fail", "payload": {"times": 1}})));
    jobs.extend((0..5).map(|_| json!({"kind": "fail", "payload": {"permanent": true}})));
    // A job in the sample's flow-controlled queue (no worker serves it: it waits).
    jobs.push(json!({"kind": "noop", "queue": "reports", "partition_key": "customer-1"}));
    let r = http
        .post(format!("{base}/v1/jobs/batch"))
        .bearer_auth(&key)
        .json(&json!({"jobs": jobs}))
        .send()
        .await?;
    assert_eq!(r.status(), 201);
    // A schedule that ticks during the test (the sample's ticks once a minute).
    let r = http
        .put(format!("{base}/v1/schedules/dashboard-tick"))
        .bearer_auth(&key)
        .json(&json!({"cron": "@every 1s", "kind": "noop"}))
        .send()
        .await?;
    assert_eq!(r.status(), 200);
    let s = WebhookSecret::parse(&secret).map_err(anyhow::Error::msg)?;
    for i in 0..5 {
        let body = format!(
            r#"{{"event_id":"evt_{i}","type":"payment.succeeded","amount":100,"currency":"EUR"}}"#
        );
        let ts = chrono::Utc::now().timestamp();
        let r = http
            .post(format!("{base}/webhooks/payments"))
            .header("webhook-id", format!("m{i}"))
            .header("webhook-timestamp", ts.to_string())
            .header(
                "webhook-signature",
                s.sign(&format!("m{i}"), ts, body.as_bytes()),
            )
            .body(body)
            .send()
            .await?;
        assert_eq!(r.status(), 202);
    }
    http.post(format!("{base}/webhooks/payments"))
        .body("{}")
        .send()
        .await?;
    // Web Push: a delivered push, a pruned subscription; and an outbound message that fails
    // for good (dev has no default receiver).
    let fake = FakePushService::start().await?;
    let (ok, gone) = (fake.subscribe(), fake.subscribe());
    fake.reply(&gone, [Reply::status(410)]);
    for (sub, user) in [(&ok, "dash-ok"), (&gone, "dash-gone")] {
        let r = http
            .post(format!("{base}/v1/subscriptions"))
            .bearer_auth(&key)
            .json(&sub.to_json(user))
            .send()
            .await?;
        assert_eq!(r.status(), 201);
    }
    let r = http
        .post(format!("{base}/v1/notifications"))
        .bearer_auth(&key)
        .json(&json!({"type": "test", "user_ids": ["dash-ok", "dash-gone"], "title": "t", "body": "b"}))
        .send()
        .await?;
    assert_eq!(r.status(), 201);
    let r = http
        .post(format!("{base}/v1/messages"))
        .bearer_auth(&key)
        .json(&json!({"recipient": "r", "content": "c"}))
        .send()
        .await?;
    assert_eq!(r.status(), 201);
    // A real Prometheus scraping pgfleet dev every second.
    let target = base.trim_start_matches("http://").to_owned();
    let port = free_port();
    std::fs::write(
        dir.join("prometheus.yml"),
        format!("global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nscrape_configs:\n  - job_name: pgfleet\n    static_configs:\n      - targets: ['{target}']\n"),
    )?;
    let prom_log = std::fs::File::create(dir.join("prometheus.log"))?;
    let _prometheus = Proc(
        std::process::Command::new("prometheus")
            .arg(format!(
                "--config.file={}",
                dir.join("prometheus.yml").display()
            ))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("tsdb").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(std::process::Stdio::null())
            .stderr(prom_log)
            .spawn()?,
    );
    let prom = format!("http://127.0.0.1:{port}");
    let query = |q: String| {
        let (http, prom) = (http.clone(), prom.clone());
        async move {
            let v: Value = http
                .get(format!("{prom}/api/v1/query"))
                .query(&[("query", q)])
                .send()
                .await?
                .json()
                .await?;
            anyhow::Ok(v)
        }
    };
    // Enough scrapes for rates over a 1m window, and the retried jobs done.
    eventually(
        "six scrapes of pgfleet dev",
        Duration::from_secs(60),
        || async {
            let v = query("count_over_time(up{job=\"pgfleet\"}[1m])".into())
                .await
                .unwrap_or(Value::Null);
            let n = v["data"]["result"][0]["value"][1]
                .as_str()
                .and_then(|s| s.parse::<f64>().ok())
                .unwrap_or(0.0);
            Ok((n >= 6.0).then_some(()))
        },
    )
    .await?;
    let queries = dashboard_queries()?;
    assert!(
        queries.len() >= 15,
        "dashboards hold {} queries",
        queries.len()
    );
    for (uid, title, expr) in queries {
        let v = query(expr.clone()).await?;
        assert_eq!(v["status"], "success", "{uid} / {title}: {expr} → {v}");
        if uid == "pgfleet-overview" || uid == "pgfleet-push" {
            let n = v["data"]["result"].as_array().map(Vec::len).unwrap_or(0);
            assert!(n > 0, "{uid} / {title}: no series for {expr}");
        }
    }
    // The alert rules: promtool accepts them and each expression evaluates.
    let rules = concat!(env!("CARGO_MANIFEST_DIR"), "/../../dashboards/alerts.yaml");
    let check = std::process::Command::new("promtool")
        .args(["check", "rules", rules])
        .output()?;
    assert!(
        check.status.success(),
        "promtool check rules: {}",
        String::from_utf8_lossy(&check.stdout)
    );
    let text = std::fs::read_to_string(rules)?;
    let exprs: Vec<&str> = text
        .lines()
        .filter_map(|l| l.trim().strip_prefix("expr: "))
        .collect();
    assert_eq!(exprs.len(), 5);
    for expr in exprs {
        let v = query(expr.to_owned()).await?;
        assert_eq!(v["status"], "success", "alert expression {expr} → {v}");
    }
    signal(&dev, "INT");
    assert!(wait_exit(&mut dev, Duration::from_secs(40)).await.success());
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
