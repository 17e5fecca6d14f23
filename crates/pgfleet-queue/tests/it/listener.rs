use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use pgfleet_queue::listener::{Listener, ListenerConfig, ListenerEvent, Message, ReconnectPolicy};
use pgfleet_queue::notify::notify;
use pgfleet_testkit::{eventually, TestDb};

async fn next_notification(
    rx: &mut tokio::sync::mpsc::Receiver<Message>,
) -> anyhow::Result<(String, String)> {
    loop {
        match tokio::time::timeout(Duration::from_secs(10), rx.recv()).await? {
            Some(Message::Notification { channel, payload }) => return Ok((channel, payload)),
            Some(Message::Resync) => continue,
            None => anyhow::bail!("listener stopped"),
        }
    }
}

fn config(db: &TestDb, channels: &[&str]) -> ListenerConfig {
    let mut c = ListenerConfig::new(db.options.clone());
    c.channels = channels.iter().map(|s| s.to_string()).collect();
    c.reconnect = ReconnectPolicy {
        base: Duration::from_millis(300),
        max: Duration::from_secs(2),
        multiplier: 2.0,
        max_attempts: None,
    };
    c
}

#[tokio::test]
async fn reconnects_after_its_backend_is_killed_and_listens_again() -> anyhow::Result<()> {
    let db = TestDb::new().await?;
    let events = Arc::new(Mutex::new(Vec::new()));
    let seen = events.clone();
    let hook = Arc::new(move |e: &ListenerEvent| seen.lock().unwrap().push(e.clone()));
    let (listener, mut rx) = Listener::spawn(config(&db, &["alpha"]), Some(hook));
    assert_eq!(
        tokio::time::timeout(Duration::from_secs(10), rx.recv()).await?,
        Some(Message::Resync)
    );
    listener.subscribe("beta").await?;
    notify(&db.pool, "beta", "1").await?;
    assert_eq!(
        next_notification(&mut rx).await?,
        ("beta".into(), "1".into())
    );

    let pid = listener.stats().backend_pid.load(Ordering::Relaxed);
    assert!(pid > 0);
    let killed: bool = sqlx::query_scalar("SELECT pg_terminate_backend($1)")
        .bind(pid)
        .fetch_one(&db.pool)
        .await?;
    assert!(killed);
    // Sent during the outage: lost as a notification, so a Resync must follow the reconnect.
    notify(&db.pool, "alpha", "during").await?;
    let msg = tokio::time::timeout(Duration::from_secs(10), rx.recv()).await?;
    assert_eq!(msg, Some(Message::Resync), "a resync follows the reconnect");
    assert_eq!(listener.stats().reconnects.load(Ordering::Relaxed), 1);
    // Both channels are listened to again, including the one added at run time.
    notify(&db.pool, "alpha", "2").await?;
    notify(&db.pool, "beta", "3").await?;
    assert_eq!(
        next_notification(&mut rx).await?,
        ("alpha".into(), "2".into())
    );
    assert_eq!(
        next_notification(&mut rx).await?,
        ("beta".into(), "3".into())
    );
    listener.unsubscribe("beta").await?;
    notify(&db.pool, "beta", "ignored").await?;
    notify(&db.pool, "alpha", "4").await?;
    assert_eq!(
        next_notification(&mut rx).await?,
        ("alpha".into(), "4".into())
    );
    let kinds: Vec<String> = events
        .lock()
        .unwrap()
        .iter()
        .map(|e| format!("{e:?}"))
        .collect();
    assert!(kinds.iter().any(|k| k.starts_with("Connected")));
    assert!(kinds.iter().any(|k| k.starts_with("Disconnected")));
    assert!(kinds.iter().any(|k| k.starts_with("Reconnecting")));
    assert!(kinds.iter().any(|k| k.starts_with("Reconnected")));
    listener.shutdown().await;
    // Shut down cleanly: its connection is gone.
    eventually("listener connection closed", Duration::from_secs(5), || async {
        let n: i64 = sqlx::query_scalar("SELECT count(*) FROM pg_stat_activity WHERE application_name = 'pgfleet-listener' AND datname = current_database()")
            .fetch_one(&db.pool).await?;
        Ok((n == 0).then_some(()))
    }).await?;
    assert_eq!(rx.recv().await, None, "the stream ends at shutdown");
    Ok(())
}

#[tokio::test]
async fn oversized_payloads_are_refused_and_a_full_buffer_drops_and_counts() -> anyhow::Result<()> {
    let db = TestDb::new().await?;
    let mut c = config(&db, &["c"]);
    c.max_payload = 10;
    c.buffer = 2;
    let (listener, mut rx) = Listener::spawn(c, None);
    assert_eq!(
        tokio::time::timeout(Duration::from_secs(10), rx.recv()).await?,
        Some(Message::Resync)
    );
    notify(&db.pool, "c", "this payload is too long").await?;
    for i in 0..5 {
        notify(&db.pool, "c", &i.to_string()).await?;
    }
    eventually("drops counted", Duration::from_secs(5), || async {
        Ok((listener.stats().dropped.load(Ordering::Relaxed) == 3).then_some(()))
    })
    .await?;
    assert_eq!(
        listener.stats().errors.load(Ordering::Relaxed),
        1,
        "oversized payload is an error"
    );
    assert_eq!(next_notification(&mut rx).await?, ("c".into(), "0".into()));
    assert_eq!(next_notification(&mut rx).await?, ("c".into(), "1".into()));
    listener.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn gives_up_after_the_attempt_limit() -> anyhow::Result<()> {
    let db = TestDb::new().await?;
    let mut c = config(&db, &["c"]);
    c.connect = c.connect.port(1); // nothing listens there
    c.reconnect = ReconnectPolicy {
        base: Duration::from_millis(10),
        max: Duration::from_millis(20),
        multiplier: 2.0,
        max_attempts: Some(2),
    };
    let gave_up = Arc::new(Mutex::new(false));
    let flag = gave_up.clone();
    let hook = Arc::new(move |e: &ListenerEvent| {
        if *e == ListenerEvent::GaveUp {
            *flag.lock().unwrap() = true
        }
    });
    let (listener, mut rx) = Listener::spawn(c, Some(hook));
    assert_eq!(
        tokio::time::timeout(Duration::from_secs(20), rx.recv()).await?,
        None
    );
    assert!(*gave_up.lock().unwrap());
    assert_eq!(listener.stats().errors.load(Ordering::Relaxed), 3);
    listener.shutdown().await;
    Ok(())
}
