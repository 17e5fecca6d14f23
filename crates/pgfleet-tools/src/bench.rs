//! `pgfleet bench`: throughput and latency, each beside a baseline measured in the same run.
//!
//! Phases (each on its own queue in a fresh database that is dropped at the end):
//! 1. **ceiling**: a minimal raw-SQL loop (claim 100 with SKIP LOCKED, delete them) over N
//!    jobs on 4 connections — the most this PostgreSQL can do with no library around it —
//!    with the same asynchronous commit the worker's pool uses;
//! 2. **burn-down**: N `noop` jobs worked to empty by one pgfleet worker with C slots;
//! 3. **latency**: single enqueues at R jobs/s while a worker waits; enqueue → handler start;
//! 4. **enqueue**: single-job enqueues from 8 concurrent callers, beside a raw single-row
//!    INSERT loop from 8 callers as its baseline.
//!
//! Progress goes to stderr; `--json` prints one JSON object on stdout.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use pgfleet_pgembed::{EmbedConfig, Server};
use pgfleet_queue::{NewJob, Queue};
use pgfleet_worker::{Registry, Worker, WorkerConfig};
use serde_json::json;
use sqlx::postgres::PgConnectOptions;
use sqlx::{Connection, PgPool};
use tokio_util::sync::CancellationToken;

use pgfleet_app::database::connect_pool;

/// Which benchmark to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Suite {
    /// The queue: burn-down, latency, enqueue rate.
    Queue,
    /// Webhook ingest through the gateway: accepted/s, and latency at 1,000 req/s.
    Ingest,
    /// Web Push: deliveries/s to a local push sink, per core, and the crypto share.
    Push,
    /// Throughput and dead tuples while a long transaction holds back the xmin horizon.
    LongTx,
    /// Worker processes at 10 slots: jobs/s per fleet size, shares, join/leave latency.
    Fleet,
    /// Flow control: per-key limit and fairness over 1,000 keys against unlimited, and a
    /// one-job tenant's start latency beside another tenant's burst.
    Flow,
    /// Workflows: chains of 5 and fan-outs of 100 against independent jobs, and the
    /// burn-down of ready jobs beside a backlog of blocked ones.
    Workflow,
    /// The console's job list on a large history: p50/p95 per filter, EXPLAIN with
    /// `--explain`.
    Console,
}

/// `pgfleet bench`.
#[derive(Debug, Clone, clap::Args)]
pub struct BenchArgs {
    /// The suite to run.
    #[arg(value_enum, default_value = "queue")]
    suite: Suite,
    /// Seconds the long-tx suite holds its snapshot.
    #[arg(long, default_value_t = 60)]
    pub long_tx_secs: u64,
    /// Jobs per second offered in the long-tx suite.
    #[arg(long, default_value_t = 2000)]
    pub long_tx_rate: u64,
    /// Subscriptions in the push suite's end-to-end phase.
    #[arg(long, default_value_t = 5000)]
    pub push_subscriptions: usize,
    /// Seconds of each ingest (and push) phase.
    #[arg(long, default_value_t = 10)]
    pub ingest_secs: u64,
    /// PostgreSQL server URL (default: DATABASE_URL, else a private cluster from the local
    /// install). A fresh database is created on it and dropped afterwards.
    #[arg(
        long = "database-url",
        env = "PGFLEET_DATABASE_URL",
        hide_env_values = true
    )]
    url: Option<String>,
    /// Jobs for the burn-down and ceiling phases.
    #[arg(long, default_value_t = 100_000)]
    pub jobs: usize,
    /// Worker slots for the burn-down.
    #[arg(long, default_value_t = 1000)]
    concurrency: usize,
    /// Enqueue rate of the latency phase (jobs/s).
    #[arg(long, default_value_t = 200)]
    pub latency_rate: u32,
    /// Seconds of the latency phase.
    #[arg(long, default_value_t = 10)]
    latency_secs: u64,
    /// Seconds of the enqueue phase.
    #[arg(long, default_value_t = 5)]
    enqueue_secs: u64,
    /// Concurrent callers in the enqueue phase.
    #[arg(long, default_value_t = 8)]
    enqueue_callers: usize,
    /// Fleet sizes (worker processes) of the fleet suite.
    #[arg(long, value_delimiter = ',', default_value = "1,2,4,8,24")]
    pub processes: Vec<usize>,
    /// Slots per worker process (fleet suite, and the queue suite's multi-process burn-down).
    #[arg(long, default_value_t = 10)]
    pub slots: usize,
    /// Seconds of the fleet suite's join/leave phase.
    #[arg(long, default_value_t = 10)]
    pub join_leave_secs: u64,
    /// Worker processes of the flow suite.
    #[arg(long, default_value_t = 2)]
    pub flow_processes: usize,
    /// Tenant A's burst in the flow suite's fairness phases.
    #[arg(long, default_value_t = 20_000)]
    pub tenant_jobs: usize,
    /// Runs of the flow suite's fairness phase (the median is reported).
    #[arg(long, default_value_t = 5)]
    pub fair_runs: usize,
    /// Runs of each workflow-suite phase (the median is reported).
    #[arg(long, default_value_t = 3)]
    pub workflow_runs: usize,
    /// Blocked jobs beside the workflow suite's last burn-down.
    #[arg(long, default_value_t = 100_000)]
    pub blocked: usize,
    /// Finished jobs in the console suite's history.
    #[arg(long, default_value_t = 1_000_000)]
    pub finished: usize,
    /// Runs of each console-suite question (p50 and p95 are reported).
    #[arg(long, default_value_t = 40)]
    pub console_runs: usize,
    /// Print the console suite's query plans.
    #[arg(long)]
    pub explain: bool,
    /// Print one JSON object on stdout.
    #[arg(long)]
    json: bool,
}

/// Runs the benchmark.
///
/// # Errors
/// When the server cannot be reached or started.
pub async fn run(args: BenchArgs) -> anyhow::Result<()> {
    let url = args
        .url
        .clone()
        .or_else(|| std::env::var("DATABASE_URL").ok());
    let pg = Server::url_or_start(url, || {
        progress("starting a private PostgreSQL cluster (durable settings) ...");
        EmbedConfig {
            dir: std::env::temp_dir().join(format!("pgfleet-bench-{}", std::process::id())),
            temporary: true,
            fast_unsafe: false,
            port: None,
            settings: Vec::new(),
        }
    })?;
    let server = match pg {
        Server::External(_) => "DATABASE_URL",
        Server::Private(_) => "private cluster",
    };
    let name = format!("pgfleet_bench_{:08x}", rand::random::<u32>());
    let db_url = pg.create_database(&name).await?;
    let admin_opts: PgConnectOptions = pg.admin_url().parse().context("invalid database URL")?;
    let mut conn = sqlx::PgConnection::connect_with(&admin_opts).await?;
    let version: String = sqlx::query_scalar("SHOW server_version")
        .fetch_one(&mut conn)
        .await?;
    let options = admin_opts.clone().database(&name);
    let result = match args.suite {
        Suite::Queue => bench(&args, options, &db_url).await,
        Suite::Fleet => crate::bench_fleet::bench_fleet(&args, options, &db_url).await,
        Suite::Flow => crate::bench_flow::bench_flow(&args, options, &db_url).await,
        Suite::Workflow => crate::bench_workflow::bench_workflow(&args, options, &db_url).await,
        Suite::Console => crate::bench_console::bench_console(&args, options).await,
        Suite::Ingest => bench_ingest(&args, options).await,
        Suite::Push => crate::bench_push::bench_push(&args, options).await,
        Suite::LongTx => crate::bench_long_tx::bench_long_tx(&args, options).await,
    };
    sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        .execute(&mut conn)
        .await?;
    conn.close().await?;
    let mut report = result?;
    report["server"] = json!(server);
    report["postgres_version"] = json!(version);
    if args.json {
        println!("{report}");
    } else if args.suite == Suite::Ingest {
        print_ingest(&report);
    } else if args.suite == Suite::Push {
        crate::bench_push::print_push(&report);
    } else if args.suite == Suite::LongTx {
        crate::bench_long_tx::print_long_tx(&report);
    } else if args.suite == Suite::Fleet {
        crate::bench_fleet::print_fleet(&report);
    } else if args.suite == Suite::Flow {
        crate::bench_flow::print_flow(&report);
    } else if args.suite == Suite::Workflow {
        crate::bench_workflow::print_workflow(&report);
    } else if args.suite == Suite::Console {
        crate::bench_console::print_console(&report);
    } else {
        print_table(&report);
    }
    Ok(())
}

/// The median of some measurements (the upper one of an even count).
pub fn median(v: &[f64]) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
}

/// `a / b` rounded to three decimals: how the suites report a number against its baseline.
pub fn ratio(a: f64, b: f64) -> f64 {
    (a / b * 1000.0).round() / 1000.0
}

/// Measurements rounded to whole numbers, for the report.
pub fn rounded(v: &[f64]) -> Vec<f64> {
    v.iter().map(|x| x.round()).collect()
}

/// Progress on stderr.
pub fn progress(msg: &str) {
    eprintln!("[bench] {msg}");
}

async fn bench(
    args: &BenchArgs,
    options: PgConnectOptions,
    url: &str,
) -> anyhow::Result<serde_json::Value> {
    let pool = connect_pool(options.clone(), 20).await?;
    pgfleet_queue::migrate::migrate(&pool, None).await?;
    let queue = Queue::new(pool.clone()).await?;

    progress(&format!(
        "ceiling: raw claim+delete of {} jobs on 4 connections",
        args.jobs
    ));
    fill(&queue, "ceiling", args.jobs).await?;
    // Same commit mode as the worker's own pool, so the ratio compares like with like.
    let raw_pool = connect_pool(pgfleet_worker::worker_connect_options(options.clone()), 4).await?;
    let ceiling = raw_ceiling(&raw_pool, args.jobs).await?;
    raw_pool.close().await;
    progress(&format!("  {ceiling:.0} jobs/s"));

    progress(&format!(
        "burn-down: {} noop jobs, {} slots",
        args.jobs, args.concurrency
    ));
    fill(&queue, "burn", args.jobs).await?;
    vacuum(&pool).await?;
    let burn = burn_down(&queue, &options, args).await?;
    progress(&format!(
        "  {burn:.0} jobs/s ({:.0} % of the ceiling)",
        100.0 * burn / ceiling
    ));
    progress(&format!(
        "burn-down: {} noop jobs, 2 worker processes x {} slots",
        args.jobs, args.slots
    ));
    let logs = std::env::temp_dir().join(format!("pgfleet-bench-logs-{}", std::process::id()));
    std::fs::create_dir_all(&logs)?;
    let fleet2 =
        crate::bench_fleet::drain_with_processes(&queue, url, 2, args.slots, args.jobs, &logs)
            .await?;
    let _ = std::fs::remove_dir_all(&logs);
    let burn2 = fleet2.jobs_per_sec;
    progress(&format!(
        "  {burn2:.0} jobs/s ({:.0} % of the {}-slot burn-down)",
        100.0 * burn2 / burn,
        args.concurrency
    ));

    // Let the burn-down's dead rows be vacuumed first: the latency phase measures a steady
    // state, not autovacuum catching up.
    sqlx::query("VACUUM pgfleet.jobs").execute(&pool).await?;
    sqlx::query("VACUUM pgfleet.jobs_finished")
        .execute(&pool)
        .await?;
    progress(&format!(
        "latency: {} jobs/s for {} s",
        args.latency_rate, args.latency_secs
    ));
    let lat = latency(&queue, &options, args).await?;
    progress(&format!(
        "  p50 {:.2} ms, p95 {:.2} ms, p99 {:.2} ms",
        lat[0], lat[1], lat[2]
    ));

    progress(&format!(
        "enqueue: {} callers for {} s",
        args.enqueue_callers, args.enqueue_secs
    ));
    let raw_insert = raw_inserts(&pool, args).await?;
    let enq = enqueue_rate(&queue, args).await?;
    progress(&format!(
        "  {enq:.0} jobs/s (raw single-row INSERT: {raw_insert:.0}/s)"
    ));

    let sent = queue
        .notifier()
        .stats()
        .notifications_sent
        .load(Ordering::Relaxed);
    queue.close().await;
    pool.close().await;
    Ok(json!({
        "jobs": args.jobs,
        "concurrency": args.concurrency,
        "ceiling_jobs_per_sec": ceiling.round(),
        "burn_down_jobs_per_sec": burn.round(),
        "burn_down_vs_ceiling": (burn / ceiling * 1000.0).round() / 1000.0,
        "burn_down_2_processes_jobs_per_sec": burn2.round(),
        "burn_down_2_processes_slots": args.slots,
        "burn_down_2_processes_vs_one": (burn2 / burn * 1000.0).round() / 1000.0,
        "latency_ms": {"p50": round2(lat[0]), "p95": round2(lat[1]), "p99": round2(lat[2]),
                       "rate": args.latency_rate, "samples": lat[3] as u64},
        "enqueue_jobs_per_sec": enq.round(),
        "raw_insert_per_sec": raw_insert.round(),
        "enqueue_vs_raw_insert": (enq / raw_insert * 1000.0).round() / 1000.0,
        "notifications_sent": sent,
    }))
}

/// Webhook ingest: the raw single-row commit rate of this database, then signed webhooks
/// accepted per second by an in-process gateway (every one durable before its 202), then
/// latency at a fixed 1,000 requests/s.
async fn bench_ingest(
    args: &BenchArgs,
    options: PgConnectOptions,
) -> anyhow::Result<serde_json::Value> {
    use base64::Engine;
    let pool = connect_pool(options.clone(), 40).await?;
    pgfleet_queue::migrate::migrate(&pool, None).await?;
    progress(&format!(
        "raw single-row INSERT commits, 32 connections, {} s",
        args.ingest_secs
    ));
    let raw = {
        let raw_args = BenchArgs {
            enqueue_callers: 32,
            enqueue_secs: args.ingest_secs,
            ..args.clone()
        };
        raw_inserts(&pool, &raw_args).await?
    };
    progress(&format!("  {raw:.0} commits/s"));
    let queue = Queue::new(pool.clone()).await?;
    let key: Vec<u8> = (0..24).map(|_| rand::random::<u8>()).collect();
    let secret = format!(
        "whsec_{}",
        base64::engine::general_purpose::STANDARD.encode(key)
    );
    let webhook_secrets =
        pgfleet_gateway::GatewayConfig::parse_webhook_secrets(&format!("payments={secret}"))
            .map_err(anyhow::Error::msg)?;
    let config = pgfleet_gateway::GatewayConfig {
        webhook_secrets,
        ..Default::default()
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}", listener.local_addr()?);
    let stop = CancellationToken::new();
    let server = tokio::spawn(pgfleet_gateway::serve(
        listener,
        pgfleet_gateway::AppState::new(queue.clone(), config),
        stop.clone(),
    ));
    let load = |rate: u32, concurrency: usize| crate::loadsim::LoadsimArgs {
        url: url.clone(),
        secret: secret.clone(),
        source: "payments".into(),
        rate,
        duration: args.ingest_secs,
        duplicates: 0,
        concurrency,
        json: false,
    };
    progress(&format!(
        "ingest: 64 clients as fast as they go, {} s",
        args.ingest_secs
    ));
    let max = crate::loadsim::run_load(&load(0, 64), false).await?;
    progress(&format!(
        "  {:.0} webhooks/s (p99 {:.1} ms)",
        max.ok_per_sec, max.p99_ms
    ));
    progress(&format!(
        "ingest latency at 1,000 req/s, {} s",
        args.ingest_secs
    ));
    let fixed = crate::loadsim::run_load(&load(1000, 256), false).await?;
    progress(&format!(
        "  p50 {:.2} ms, p99 {:.2} ms",
        fixed.p50_ms, fixed.p99_ms
    ));
    stop.cancel();
    server.await??;
    queue.close().await;
    pool.close().await;
    Ok(json!({
        "suite": "ingest",
        "ingest_webhooks_per_sec": max.ok_per_sec.round(),
        "raw_commits_per_sec": raw.round(),
        "ingest_vs_raw_commits": (max.ok_per_sec / raw * 1000.0).round() / 1000.0,
        "ingest_p99_ms_at_max": round2(max.p99_ms),
        "latency_ms_at_1000": {"p50": round2(fixed.p50_ms), "p99": round2(fixed.p99_ms), "max": round2(fixed.max_ms)},
        "errors": max.errors + fixed.errors,
        "sent": max.sent + fixed.sent,
    }))
}

/// Rounds to two decimals.
pub fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

/// Enqueues `n` no-op jobs into queue `name`, 10,000 per statement.
pub(crate) async fn fill(queue: &Queue, name: &str, n: usize) -> anyhow::Result<()> {
    let job = NewJob::new(name, "noop");
    let mut done = 0;
    while done < n {
        let k = (n - done).min(10_000);
        queue.enqueue_many(&vec![job.clone(); k]).await?;
        done += k;
    }
    Ok(())
}

async fn vacuum(pool: &PgPool) -> anyhow::Result<()> {
    sqlx::query("VACUUM ANALYZE pgfleet.jobs")
        .execute(pool)
        .await?;
    Ok(())
}

const RAW_CLAIM: &str = "UPDATE pgfleet.jobs SET state = 'running', attempt = attempt + 1 \
    WHERE id = ANY(ARRAY(SELECT id FROM pgfleet.jobs WHERE queue = 'ceiling' \
    AND state = 'available' ORDER BY priority, run_at, id LIMIT 100 FOR UPDATE SKIP LOCKED)) \
    RETURNING id";

async fn raw_ceiling(pool: &PgPool, n: usize) -> anyhow::Result<f64> {
    vacuum(pool).await?;
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..4 {
        let pool = pool.clone();
        tasks.push(tokio::spawn(async move {
            loop {
                let ids: Vec<i64> = sqlx::query_scalar(RAW_CLAIM).fetch_all(&pool).await?;
                if ids.is_empty() {
                    return anyhow::Ok(());
                }
                sqlx::query("DELETE FROM pgfleet.jobs WHERE id = ANY($1)")
                    .bind(&ids)
                    .execute(&pool)
                    .await?;
            }
        }));
    }
    for t in tasks {
        t.await??;
    }
    Ok(n as f64 / start.elapsed().as_secs_f64())
}

/// A worker on its own pool with asynchronous commit, as `pgfleet worker` runs.
async fn bench_worker(
    options: &PgConnectOptions,
    queue_name: &str,
    slots: usize,
    registry: Registry,
) -> anyhow::Result<(Worker, Queue)> {
    let pool = connect_pool(pgfleet_worker::worker_connect_options(options.clone()), 10).await?;
    let queue = Queue::new(pool).await?;
    let mut config = WorkerConfig::new("bench", vec![queue_name.to_string()]);
    config.concurrency = slots;
    config.max_claim = slots.min(1000);
    config.maintenance = false;
    let worker = Worker::new(queue.clone(), options.clone(), config, registry)?;
    Ok((worker, queue))
}

async fn burn_down(
    queue: &Queue,
    options: &PgConnectOptions,
    args: &BenchArgs,
) -> anyhow::Result<f64> {
    let (worker, worker_queue) =
        bench_worker(options, "burn", args.concurrency, Registry::builtin()).await?;
    let stop = CancellationToken::new();
    let start = Instant::now();
    let task = tokio::spawn(worker.run(stop.clone()));
    loop {
        tokio::time::sleep(Duration::from_millis(20)).await;
        let left: bool =
            sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pgfleet.jobs WHERE queue = 'burn')")
                .fetch_one(queue.pool())
                .await?;
        if !left {
            break;
        }
    }
    let elapsed = start.elapsed();
    stop.cancel();
    task.await??;
    worker_queue.close().await;
    worker_queue.pool().close().await;
    Ok(args.jobs as f64 / elapsed.as_secs_f64())
}

fn micros_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

/// Returns [p50, p95, p99, samples].
async fn latency(
    queue: &Queue,
    options: &PgConnectOptions,
    args: &BenchArgs,
) -> anyhow::Result<[f64; 4]> {
    let samples = Arc::new(Mutex::new(Vec::<f64>::new()));
    let mut registry = Registry::new();
    let sink = samples.clone();
    registry.register("stamp", move |job, _ctx| {
        let sink = sink.clone();
        async move {
            let sent = job.payload.get("t").and_then(|v| v.as_u64()).unwrap_or(0);
            let ms = micros_now().saturating_sub(sent) as f64 / 1000.0;
            if let Ok(mut s) = sink.lock() {
                s.push(ms);
            }
            Ok(())
        }
    });
    let (worker, worker_queue) = bench_worker(options, "latency", 50, registry).await?;
    let stop = CancellationToken::new();
    let task = tokio::spawn(worker.run(stop.clone()));
    tokio::time::sleep(Duration::from_millis(500)).await;
    let total = u64::from(args.latency_rate) * args.latency_secs;
    let mut tick = tokio::time::interval(Duration::from_secs_f64(
        1.0 / f64::from(args.latency_rate.max(1)),
    ));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    for _ in 0..total {
        tick.tick().await;
        queue
            .enqueue(NewJob::new("latency", "stamp").payload(json!({"t": micros_now()})))
            .await?;
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    while samples.lock().map(|s| s.len() as u64).unwrap_or(0) < total && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    stop.cancel();
    task.await??;
    worker_queue.close().await;
    worker_queue.pool().close().await;
    let mut s = samples.lock().map(|s| s.clone()).unwrap_or_default();
    s.sort_by(|a, b| a.total_cmp(b));
    let pct = |p: f64| percentile(&s, p);
    Ok([pct(0.50), pct(0.95), pct(0.99), s.len() as f64])
}

/// The `p` quantile (0..=1) of `sorted` (ascending) by nearest rank (the `ceil(n p)`-th
/// value); NaN when empty.
pub(crate) fn percentile(sorted: &[f64], p: f64) -> f64 {
    let rank = (sorted.len() as f64 * p).ceil() as usize;
    sorted
        .get(rank.clamp(1, sorted.len().max(1)) - 1)
        .copied()
        .unwrap_or(f64::NAN)
}

/// Runs `call` in a loop on `callers` concurrent tasks for `secs` seconds; returns calls/s.
pub async fn calls_per_sec<F, Fut>(callers: usize, secs: u64, call: F) -> anyhow::Result<f64>
where
    F: Fn() -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = anyhow::Result<()>> + Send,
{
    let count = Arc::new(AtomicU64::new(0));
    let until = Instant::now() + Duration::from_secs(secs);
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..callers {
        let (call, count) = (call.clone(), count.clone());
        tasks.push(tokio::spawn(async move {
            while Instant::now() < until {
                call().await?;
                count.fetch_add(1, Ordering::Relaxed);
            }
            anyhow::Ok(())
        }));
    }
    for t in tasks {
        t.await??;
    }
    Ok(count.load(Ordering::Relaxed) as f64 / start.elapsed().as_secs_f64())
}

async fn enqueue_rate(queue: &Queue, args: &BenchArgs) -> anyhow::Result<f64> {
    let queue = queue.clone();
    calls_per_sec(args.enqueue_callers, args.enqueue_secs, move || {
        let queue = queue.clone();
        async move {
            queue.enqueue(NewJob::new("enqueue", "noop")).await?;
            Ok(())
        }
    })
    .await
}

async fn raw_inserts(pool: &PgPool, args: &BenchArgs) -> anyhow::Result<f64> {
    sqlx::query(
        "CREATE TABLE IF NOT EXISTS public.bench_raw (id bigserial PRIMARY KEY, payload jsonb NOT NULL)",
    )
    .execute(pool)
    .await?;
    let pool = pool.clone();
    calls_per_sec(args.enqueue_callers, args.enqueue_secs, move || {
        let pool = pool.clone();
        async move {
            sqlx::query("INSERT INTO public.bench_raw (payload) VALUES ('{}')")
                .execute(&pool)
                .await?;
            Ok(())
        }
    })
    .await
}

fn print_table(r: &serde_json::Value) {
    println!(
        "pgfleet bench ({} jobs, {} slots, PostgreSQL {} via {})",
        r["jobs"],
        r["concurrency"],
        r["postgres_version"].as_str().unwrap_or("?"),
        r["server"].as_str().unwrap_or("?")
    );
    println!(
        "  burn-down        {:>10} jobs/s   ({:.0} % of raw ceiling {} jobs/s)",
        r["burn_down_jobs_per_sec"],
        r["burn_down_vs_ceiling"].as_f64().unwrap_or(0.0) * 100.0,
        r["ceiling_jobs_per_sec"]
    );
    println!(
        "  burn-down 2x{:<3}  {:>10} jobs/s   ({:.0} % of the {}-slot burn-down)",
        r["burn_down_2_processes_slots"],
        r["burn_down_2_processes_jobs_per_sec"],
        r["burn_down_2_processes_vs_one"].as_f64().unwrap_or(0.0) * 100.0,
        r["concurrency"]
    );
    let l = &r["latency_ms"];
    println!(
        "  latency @{}/s    p50 {} ms, p95 {} ms, p99 {} ms ({} samples)",
        l["rate"], l["p50"], l["p95"], l["p99"], l["samples"]
    );
    println!(
        "  enqueue (single) {:>10} jobs/s   ({:.0} % of raw single-row INSERT {} /s)",
        r["enqueue_jobs_per_sec"],
        r["enqueue_vs_raw_insert"].as_f64().unwrap_or(0.0) * 100.0,
        r["raw_insert_per_sec"]
    );
    println!("  NOTIFY sent      {:>10}", r["notifications_sent"]);
}

fn print_ingest(r: &serde_json::Value) {
    println!(
        "pgfleet bench ingest (PostgreSQL {} via {})",
        r["postgres_version"].as_str().unwrap_or("?"),
        r["server"].as_str().unwrap_or("?")
    );
    println!(
        "  webhooks accepted  {:>8} /s   ({:.2}x the raw single-row commit rate {} /s), p99 {} ms",
        r["ingest_webhooks_per_sec"],
        r["ingest_vs_raw_commits"].as_f64().unwrap_or(0.0),
        r["raw_commits_per_sec"],
        r["ingest_p99_ms_at_max"]
    );
    let l = &r["latency_ms_at_1000"];
    println!(
        "  at 1,000 req/s     p50 {} ms, p99 {} ms, max {} ms",
        l["p50"], l["p99"], l["max"]
    );
    println!("  errors             {:>8}", r["errors"]);
}

#[cfg(test)]
mod tests {
    use super::percentile;

    #[test]
    fn percentile_is_the_nearest_rank() {
        let twenty: Vec<f64> = (1..=20).map(f64::from).collect();
        assert_eq!(percentile(&twenty, 0.5), 10.0);
        assert_eq!(percentile(&twenty, 0.95), 19.0);
        assert_eq!(percentile(&twenty, 1.0), 20.0);
        assert_eq!(percentile(&twenty, 0.0), 1.0);
        assert_eq!(percentile(&[7.0], 0.99), 7.0);
        assert!(percentile(&[], 0.5).is_nan());
    }
}
