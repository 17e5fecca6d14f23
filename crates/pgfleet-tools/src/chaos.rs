//! `pgfleet chaos`: nothing acknowledged is lost, whatever breaks.
//!
//! On a private PostgreSQL cluster it starts itself, it runs a gateway and N worker
//! processes (this binary), sends signed payment webhooks (re-sending unacknowledged ones, as
//! a provider does), and meanwhile: SIGKILLs a random worker every few seconds and starts a
//! new one, terminates the workers' NOTIFY listener connections, restarts PostgreSQL once, and
//! restarts the gateway once; with `--churn-every-secs`, a worker also joins and the oldest
//! leaves gracefully at that period. Then it waits for the backlog to drain and checks every
//! acknowledged event against the ledger. Exits non-zero when anything was lost or
//! duplicated, or a job is left running.

use std::collections::HashSet;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use pgfleet_messages::signature::WebhookSecret;
use pgfleet_pgembed::{Cluster, EmbedConfig};
use rand::Rng;
use serde_json::json;

/// `pgfleet chaos`.
#[derive(Debug, clap::Args)]
pub struct ChaosArgs {
    /// Webhooks to send.
    #[arg(long, default_value_t = 20_000)]
    webhooks: usize,
    /// Worker processes.
    #[arg(long, default_value_t = 3)]
    workers: usize,
    /// Concurrent senders.
    #[arg(long, default_value_t = 32)]
    concurrency: usize,
    /// Seconds between worker kills.
    #[arg(long, default_value_t = 3)]
    kill_every_secs: u64,
    /// Seconds between churn steps, in which a new worker joins and the oldest leaves
    /// gracefully (SIGTERM), as a scaling fleet does; 0 turns churn off.
    #[arg(long, default_value_t = 0)]
    churn_every_secs: u64,
    /// Longest wait for the backlog to drain after sending, seconds.
    #[arg(long, default_value_t = 180)]
    drain_timeout_secs: u64,
    /// Print the summary as JSON too.
    #[arg(long)]
    json: bool,
}

/// A child process killed when dropped.
struct Proc {
    child: Child,
    name: String,
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

struct Env {
    bin: PathBuf,
    dir: PathBuf,
    url: String,
    api_key: String,
    secret: String,
    gateway_port: u16,
    spawned: AtomicUsize,
}

impl Env {
    fn spawn(&self, name: &str, args: &[&str]) -> anyhow::Result<Proc> {
        let n = self.spawned.fetch_add(1, Ordering::Relaxed);
        let log = std::fs::File::create(self.dir.join(format!("{name}-{n}.log")))?;
        let child = Command::new(&self.bin)
            .args(args)
            .env("PGFLEET_DATABASE_URL", &self.url)
            .env("PGFLEET_API_KEYS", format!("{}:admin", self.api_key))
            .env(
                "PGFLEET_WEBHOOK_SECRETS",
                format!("payments={}", self.secret),
            )
            .env("RUST_LOG", "warn")
            .env_remove("DATABASE_URL")
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("spawn {name}"))?;
        Ok(Proc {
            child,
            name: name.to_owned(),
        })
    }

    fn worker(&self) -> anyhow::Result<Proc> {
        self.spawn(
            "worker",
            &[
                "worker",
                "--queues",
                "default",
                "--health-addr",
                "",
                "--lease-secs",
                "4",
                "--ownership-ttl-secs",
                "4",
                "--shutdown-grace-secs",
                "5",
                "--concurrency",
                "20",
            ],
        )
    }

    fn gateway(&self) -> anyhow::Result<Proc> {
        let listen = format!("127.0.0.1:{}", self.gateway_port);
        self.spawn("gateway", &["gateway", "--listen", &listen])
    }

    fn base(&self) -> String {
        format!("http://127.0.0.1:{}", self.gateway_port)
    }
}

async fn wait_ready(http: &reqwest::Client, base: &str) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(r) = http.get(format!("{base}/readyz")).send().await {
            if r.status().is_success() {
                return Ok(());
            }
        }
        anyhow::ensure!(Instant::now() < deadline, "gateway not ready after 60 s");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn terminate(p: &mut Proc) {
    sigterm_and_wait(&mut p.child, Duration::from_secs(20));
}

/// Sends SIGTERM to `child`.
pub fn sigterm(child: &Child) {
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
}

/// SIGTERM, then waits up to `timeout` for the exit before a SIGKILL (blocking).
pub fn sigterm_and_wait(child: &mut Child, timeout: Duration) {
    sigterm(child);
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
}

#[derive(Default)]
struct Counters {
    sent: AtomicU64,
    attempts: AtomicU64,
    acked: AtomicU64,
    refused: AtomicU64,
    transport_errors: AtomicU64,
}

/// Runs `pgfleet chaos`.
///
/// # Errors
/// Setup failures, or a failed check (lost, duplicated, left running).
pub async fn run(args: ChaosArgs) -> anyhow::Result<()> {
    let dir = std::env::temp_dir().join(format!("pgfleet-chaos-{}", std::process::id()));
    eprintln!("[chaos] private PostgreSQL in {}", dir.display());
    let cluster = Cluster::start(&EmbedConfig {
        dir: dir.join("pg"),
        temporary: true,
        fast_unsafe: false,
        port: None,
        settings: Vec::new(),
    })?;
    let cluster = Arc::new(cluster);
    let url = cluster.url("postgres");
    let db = sqlx::postgres::PgPoolOptions::new()
        .max_connections(4)
        .connect(&url)
        .await?;
    pgfleet_queue::migrate::migrate(&db, None).await?;
    let key: Vec<u8> = (0..24).map(|_| rand::random::<u8>()).collect();
    use base64::Engine;
    let env = Arc::new(Env {
        bin: crate::pgfleet_bin()?,
        dir: dir.clone(),
        url: url.clone(),
        api_key: format!("chaos-{:016x}", rand::random::<u64>()),
        secret: format!(
            "whsec_{}",
            base64::engine::general_purpose::STANDARD.encode(key)
        ),
        gateway_port: std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port(),
        spawned: AtomicUsize::new(0),
    });
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()?;
    let gateway = Arc::new(Mutex::new(env.gateway()?));
    wait_ready(&http, &env.base()).await?;
    let workers: Arc<Mutex<Vec<Proc>>> = Arc::new(Mutex::new(
        (0..args.workers.max(1))
            .map(|_| env.worker())
            .collect::<anyhow::Result<_>>()?,
    ));
    eprintln!(
        "[chaos] gateway on {} and {} workers; sending {} webhooks",
        env.base(),
        args.workers,
        args.webhooks
    );

    let counters = Arc::new(Counters::default());
    let acked: Arc<Mutex<HashSet<usize>>> = Arc::new(Mutex::new(HashSet::new()));
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let mut senders = Vec::new();
    for _ in 0..args.concurrency.max(1) {
        let (http, env, counters, acked, next) = (
            http.clone(),
            env.clone(),
            counters.clone(),
            acked.clone(),
            next.clone(),
        );
        let total = args.webhooks;
        senders.push(tokio::spawn(async move {
            let secret = WebhookSecret::parse(&env.secret).map_err(anyhow::Error::msg)?;
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= total {
                    return anyhow::Ok(());
                }
                counters.sent.fetch_add(1, Ordering::Relaxed);
                let amount = rand::thread_rng().gen_range(100..100_000);
                let body =
                    json!({"event_id": format!("evt_chaos_{i}"), "type": "payment.succeeded",
                                  "amount": amount, "currency": "EUR"})
                    .to_string();
                // Re-send until acknowledged, as a payment provider does.
                for attempt in 0..120u32 {
                    counters.attempts.fetch_add(1, Ordering::Relaxed);
                    let ts = chrono::Utc::now().timestamp();
                    let id = format!("msg_chaos_{i}");
                    let res = http
                        .post(format!("{}/webhooks/payments", env.base()))
                        .header("webhook-id", &id)
                        .header("webhook-timestamp", ts.to_string())
                        .header("webhook-signature", secret.sign(&id, ts, body.as_bytes()))
                        .header("content-type", "application/json")
                        .body(body.clone())
                        .send()
                        .await;
                    match res {
                        Ok(r) if r.status().is_success() => {
                            counters.acked.fetch_add(1, Ordering::Relaxed);
                            if let Ok(mut a) = acked.lock() {
                                a.insert(i);
                            }
                            break;
                        }
                        Ok(_) => {
                            counters.refused.fetch_add(1, Ordering::Relaxed);
                        }
                        Err(_) => {
                            counters.transport_errors.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    tokio::time::sleep(Duration::from_millis(100 * u64::from(attempt.min(10) + 1)))
                        .await;
                }
            }
        }));
    }

    // The chaos, while sending.
    let done_sending = tokio_util::sync::CancellationToken::new();
    let chaos = {
        let (env, workers, gateway, db, done, next) = (
            env.clone(),
            workers.clone(),
            gateway.clone(),
            db.clone(),
            done_sending.clone(),
            next.clone(),
        );
        let total = args.webhooks.max(1);
        let every = Duration::from_secs(args.kill_every_secs.max(1));
        let churn = (args.churn_every_secs > 0).then(|| Duration::from_secs(args.churn_every_secs));
        let cluster = cluster.clone();
        tokio::spawn(async move {
            let mut log: Vec<String> = Vec::new();
            let (mut listeners_cut, mut pg_restarted, mut gateway_restarted) =
                (false, false, false);
            let mut last_kill = Instant::now();
            let mut last_churn = Instant::now();
            let mut leaving: Vec<tokio::task::JoinHandle<()>> = Vec::new();
            while !done.is_cancelled() {
                let progress = next.load(Ordering::Relaxed) * 100 / total;
                if churn.is_some_and(|c| last_churn.elapsed() >= c) {
                    last_churn = Instant::now();
                    let old = workers.lock().ok().and_then(|mut w| {
                        let fresh = env.worker().ok()?;
                        w.push(fresh);
                        (w.len() > 1).then(|| w.remove(0))
                    });
                    if let Some(mut old) = old {
                        log.push(format!(
                            "{progress:>3}% a worker joined; {} {} leaves (SIGTERM)",
                            old.name,
                            old.child.id()
                        ));
                        leaving.push(tokio::task::spawn_blocking(move || terminate(&mut old)));
                    }
                }
                if last_kill.elapsed() >= every {
                    last_kill = Instant::now();
                    let killed = workers.lock().ok().and_then(|mut w| {
                        if w.is_empty() {
                            return None;
                        }
                        let i = rand::thread_rng().gen_range(0..w.len());
                        let mut p = w.remove(i);
                        let pid = p.child.id();
                        let _ = p.child.kill(); // SIGKILL
                        let _ = p.child.wait();
                        let fresh = env.worker().ok()?;
                        w.push(fresh);
                        Some(format!("{} {pid}", p.name))
                    });
                    if let Some(k) = killed {
                        log.push(format!("{:>3}% SIGKILL {k}, started a new one", progress));
                    }
                }
                if !listeners_cut && progress >= 25 {
                    listeners_cut = true;
                    let n: i64 = sqlx::query_scalar(
                        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity \
                         WHERE application_name = 'pgfleet-listener'",
                    )
                    .fetch_one(&db)
                    .await
                    .unwrap_or(-1);
                    log.push(format!(
                        "{progress:>3}% terminated {n} listener connections"
                    ));
                }
                if !pg_restarted && progress >= 50 {
                    pg_restarted = true;
                    let t = Instant::now();
                    let c = cluster.clone();
                    let r = tokio::task::spawn_blocking(move || c.restart()).await;
                    log.push(format!(
                        "{progress:>3}% restarted PostgreSQL ({:.1} s): {}",
                        t.elapsed().as_secs_f64(),
                        match r {
                            Ok(Ok(())) => "ok".to_owned(),
                            Ok(Err(e)) => e.to_string(),
                            Err(e) => e.to_string(),
                        }
                    ));
                }
                if !gateway_restarted && progress >= 75 {
                    gateway_restarted = true;
                    let t = Instant::now();
                    if let Ok(mut g) = gateway.lock() {
                        terminate(&mut g);
                        if let Ok(fresh) = env.gateway() {
                            *g = fresh;
                        }
                    }
                    log.push(format!(
                        "{progress:>3}% restarted the gateway (SIGTERM, {:.1} s)",
                        t.elapsed().as_secs_f64()
                    ));
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            for l in leaving {
                let _ = l.await;
            }
            log
        })
    };
    for s in senders {
        s.await??;
    }
    let send_secs = started.elapsed().as_secs_f64();
    done_sending.cancel();
    let events = chaos.await?;
    for e in &events {
        eprintln!("[chaos] {e}");
    }
    // Every worker alive again for the drain.
    eprintln!("[chaos] sent in {send_secs:.1} s; waiting for the backlog to drain");
    let drain_started = Instant::now();
    let acked: Vec<String> = acked
        .lock()
        .map(|a| a.iter().map(|i| format!("evt_chaos_{i}")).collect())
        .unwrap_or_default();
    let deadline = Instant::now() + Duration::from_secs(args.drain_timeout_secs);
    loop {
        let (pending, recorded): (i64, i64) = sqlx::query_as(
            "SELECT (SELECT count(*) FROM pgfleet.jobs WHERE kind = 'payments.process'), \
                    (SELECT count(*) FROM pgfleet.payments WHERE event_id = ANY($1))",
        )
        .bind(&acked)
        .fetch_one(&db)
        .await?;
        if pending == 0 && recorded as usize >= acked.len() {
            break;
        }
        if Instant::now() > deadline {
            eprintln!(
                "[chaos] drain timed out: {pending} jobs pending, {recorded}/{} recorded",
                acked.len()
            );
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let drain_secs = drain_started.elapsed().as_secs_f64();
    let row: (i64, i64, i64, i64, i64, i64, i64) = sqlx::query_as(
        "SELECT \
           (SELECT count(*) FROM unnest($1::text[]) e WHERE NOT EXISTS \
              (SELECT 1 FROM pgfleet.payments p WHERE p.event_id = e)), \
           (SELECT count(*) FROM (SELECT event_id FROM pgfleet.webhook_events GROUP BY source, event_id HAVING count(*) > 1) d) \
             + (SELECT count(*) FROM (SELECT unique_key FROM ( \
                  SELECT unique_key FROM pgfleet.jobs WHERE kind = 'payments.process' \
                  UNION ALL SELECT unique_key FROM pgfleet.jobs_finished WHERE kind = 'payments.process') j \
                GROUP BY unique_key HAVING count(*) > 1) d), \
           (SELECT count(*) FROM pgfleet.payments), \
           (SELECT count(*) FROM pgfleet.jobs_finished WHERE kind = 'payments.process' AND attempt > 1), \
           (SELECT count(*) FROM pgfleet.jobs_finished WHERE kind = 'payments.process' \
              AND errors::text LIKE '%\"rescued\"%'), \
           (SELECT count(*) FROM pgfleet.jobs WHERE state = 'running'), \
           (SELECT count(*) FROM pgfleet.webhook_events WHERE status <> 'done')",
    )
    .bind(&acked)
    .fetch_one(&db)
    .await?;
    let (lost, duplicated, processed, retried, rescued, running, not_done) = row;
    let c = &counters;
    let summary = json!({
        "webhooks": args.webhooks,
        "sent_attempts": c.attempts.load(Ordering::Relaxed),
        "acknowledged": acked.len(),
        "refused_or_5xx": c.refused.load(Ordering::Relaxed),
        "transport_errors": c.transport_errors.load(Ordering::Relaxed),
        "processed": processed,
        "retried": retried,
        "rescued": rescued,
        "lost": lost,
        "duplicated": duplicated,
        "left_running": running,
        "events_not_done": not_done,
        "send_seconds": (send_secs * 10.0).round() / 10.0,
        "drain_seconds": (drain_secs * 10.0).round() / 10.0,
        "chaos": events,
    });
    println!(
        "pgfleet chaos: {} webhooks, {} workers{}",
        args.webhooks,
        args.workers,
        if args.churn_every_secs > 0 {
            format!(
                ", one joining and one leaving every {} s",
                args.churn_every_secs
            )
        } else {
            String::new()
        }
    );
    for (label, key) in [
        ("sent (requests)", "sent_attempts"),
        ("acknowledged", "acknowledged"),
        ("refused / 5xx", "refused_or_5xx"),
        ("transport errors", "transport_errors"),
        ("processed", "processed"),
        ("retried", "retried"),
        ("rescued", "rescued"),
        ("lost", "lost"),
        ("duplicated", "duplicated"),
        ("left running", "left_running"),
        ("time to drain (s)", "drain_seconds"),
    ] {
        println!("  {label:<20} {:>10}", summary[key]);
    }
    if args.json {
        println!("{summary}");
    }
    drop(workers);
    drop(gateway);
    db.close().await;
    drop(cluster);
    anyhow::ensure!(
        lost == 0 && duplicated == 0 && running == 0 && acked.len() == args.webhooks,
        "chaos check failed: lost {lost}, duplicated {duplicated}, left running {running}, acknowledged {}/{}",
        acked.len(),
        args.webhooks
    );
    Ok(())
}
