//! The page at `/ui/` in headless Chromium: it shows queue stats, subscribes this browser
//! (the subscription is the fake push service's, so the real worker's encrypted push is
//! decrypted there), sends a test notification and lists its delivered attempt; the
//! service worker then shows the decrypted push as a notification.
//!
//! Needs Debian's `chromium` and `npm ci` in `tests/browser` (CI and `scripts/test` do
//! both); skipped, saying so, where Chromium is not installed.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use pgfleet_push::{PushClient, VapidKeys, VapidSigner};
use pgfleet_queue::NewJob;
use pgfleet_testkit::push::FakePushService;
use serde_json::Value;

use crate::{spawn_gateway_with, start_worker_with, ADMIN_KEY};

/// Chromium and the browser scripts' directory (with playwright-core installed); `None`,
/// after saying the test is skipped, where Chromium is not installed.
pub(crate) fn chromium_and_scripts(test: &str) -> anyhow::Result<Option<(PathBuf, PathBuf)>> {
    let chromium =
        PathBuf::from(std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into()));
    if !chromium.exists() {
        eprintln!(
            "SKIPPED: Chromium is not installed (apt-get install chromium); {test} did not run"
        );
        return Ok(None);
    }
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser");
    for package in ["playwright-core", "axe-core"] {
        anyhow::ensure!(
            dir.join("node_modules").join(package).exists(),
            "{package} is missing: run `npm ci --prefix {}` (scripts/test does)",
            dir.display()
        );
    }
    Ok(Some((chromium, dir)))
}

#[tokio::test]
async fn the_page_subscribes_sends_and_the_service_worker_shows_the_push() -> anyhow::Result<()> {
    let Some((chromium, dir)) = chromium_and_scripts("the browser test")? else {
        return Ok(());
    };
    let keys = VapidKeys::generate("mailto:browser-test@pgfleet.dev")?;
    let public = keys.public_key().to_owned();
    let g = {
        let public = public.clone();
        spawn_gateway_with(move |c| {
            c.vapid_public_key = Some(public);
            c.push_allow_http_loopback = true;
        })
        .await?
    };
    let fake = FakePushService::start().await?;
    let client = PushClient::new(Arc::new(VapidSigner::new(keys)), Duration::from_secs(5))?;
    let (_stop, _task) = start_worker_with(&g, &["high", "default", "low"], move |k| {
        k.push = Some(client);
    })
    .await?;
    // A queue with some history for the stats table.
    g.queue.enqueue(NewJob::new("default", "noop")).await?;

    let sub = fake.subscribe();
    let sub_json = serde_json::json!({
        "endpoint": sub.endpoint, "expirationTime": null,
        "keys": {"p256dh": sub.p256dh, "auth": sub.auth},
    });
    let push_file = std::env::temp_dir().join(format!("pgfleet-ui-push-{}.json", sub.id));
    let node = tokio::process::Command::new("node")
        .arg(dir.join("ui.mjs"))
        .current_dir(&dir)
        .env("CHROMIUM", &chromium)
        .env("PGFLEET_UI_BASE", &g.base)
        .env("PGFLEET_UI_API_KEY", ADMIN_KEY)
        .env("PGFLEET_UI_USER", "browser-user")
        .env("PGFLEET_UI_SUBSCRIPTION", sub_json.to_string())
        .env("PGFLEET_UI_PUSH_FILE", &push_file)
        .kill_on_drop(true)
        .output();
    // What the fake push service decrypts is what the service worker gets.
    let relay = async {
        let got = pgfleet_testkit::eventually("the push", Duration::from_secs(60), || async {
            Ok(fake.received_by(&sub).into_iter().find_map(|r| r.plaintext))
        })
        .await?;
        // Written whole, then renamed into place: the page polls for the file and must never
        // read it half-written (an empty push shows no notification).
        let partial = push_file.with_extension("partial");
        std::fs::write(&partial, &got)?;
        std::fs::rename(&partial, &push_file)?;
        anyhow::Ok(got)
    };
    let (out, plaintext) = tokio::time::timeout(Duration::from_secs(120), async {
        tokio::join!(node, relay)
    })
    .await?;
    let _ = std::fs::remove_file(&push_file);
    let out = out?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    anyhow::ensure!(
        out.status.success(),
        "browser script failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let f: Value = serde_json::from_str(stdout.lines().last().unwrap_or_default())?;
    let pushed: Value = serde_json::from_slice(&plaintext?)?;

    assert!(f["url"].as_str().unwrap().ends_with("/ui/"), "{f}");
    assert!(
        f["queues"]
            .as_array()
            .unwrap()
            .iter()
            .any(|q| q == "default"),
        "{f}"
    );
    assert_eq!(
        f["applicationServerKey"],
        public.as_str(),
        "subscribed with the VAPID key"
    );
    assert!(
        f["pushStatus"].as_str().unwrap().starts_with("subscribed"),
        "{f}"
    );
    let stored: Vec<(String, String)> =
        sqlx::query_as("SELECT user_id, endpoint FROM pgfleet.push_subscriptions")
            .fetch_all(&g.db.pool)
            .await?;
    assert_eq!(
        stored,
        vec![("browser-user".to_owned(), sub.endpoint.clone())]
    );
    let text = f["notificationText"].as_str().unwrap();
    assert!(
        text.contains("Test notification") && text.contains("delivered"),
        "{text}"
    );
    assert_eq!(pushed["title"], "Test notification");
    let shown = f["shown"].as_array().unwrap();
    assert_eq!(shown.len(), 1, "{f}");
    assert_eq!(shown[0]["title"], "Test notification");
    assert_eq!(shown[0]["body"], pushed["body"]);
    assert_eq!(
        shown[0]["tag"],
        format!("pgfleet-{}", pushed["notification_id"])
    );
    assert_eq!(f["consoleErrors"], serde_json::json!([]), "{f}");
    Ok(())
}
