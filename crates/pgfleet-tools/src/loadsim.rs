//! `pgfleet loadsim`: signed random payment webhooks at a fixed rate (seed 001's simulator),
//! with a live progress line on stderr and a summary: sent, accepted, duplicates, errors,
//! latency percentiles. Also the load generator of `pgfleet bench ingest`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use pgfleet_gateway::signature::WebhookSecret;
use rand::Rng;
use serde::Serialize;

/// `pgfleet loadsim`.
#[derive(Debug, Clone, clap::Args)]
pub struct LoadsimArgs {
    /// Gateway base URL, e.g. http://127.0.0.1:8080.
    #[arg(long)]
    pub url: String,
    /// Webhook secret (`whsec_...`) of the source.
    #[arg(long, env = "PGFLEET_LOADSIM_SECRET", hide_env_values = true)]
    pub secret: String,
    /// Webhook source.
    #[arg(long, default_value = "payments")]
    pub source: String,
    /// Requests per second (0: as fast as `--concurrency` clients can go).
    #[arg(long, default_value_t = 100)]
    pub rate: u32,
    /// Seconds to run.
    #[arg(long, default_value_t = 10)]
    pub duration: u64,
    /// Percentage of requests that redeliver an earlier event.
    #[arg(long, default_value_t = 0)]
    pub duplicates: u8,
    /// Most requests in flight.
    #[arg(long, default_value_t = 256)]
    pub concurrency: usize,
    /// Print the summary as JSON.
    #[arg(long)]
    pub json: bool,
}

/// What a load run saw.
#[derive(Debug, Clone, Serialize)]
pub struct LoadReport {
    /// Requests sent.
    pub sent: u64,
    /// 202 answers.
    pub accepted: u64,
    /// 200 answers (redeliveries).
    pub duplicates: u64,
    /// Anything else, transport errors included.
    pub errors: u64,
    /// Wall time, seconds.
    pub seconds: f64,
    /// Successful answers per second.
    pub ok_per_sec: f64,
    /// Latency percentiles, ms.
    pub p50_ms: f64,
    /// 99th percentile, ms.
    pub p99_ms: f64,
    /// Largest latency, ms.
    pub max_ms: f64,
}

#[derive(Default)]
struct Counters {
    sent: AtomicU64,
    accepted: AtomicU64,
    duplicates: AtomicU64,
    errors: AtomicU64,
}

/// Runs the load; `progress` prints a live line on stderr.
///
/// # Errors
/// A bad secret.
pub async fn run_load(args: &LoadsimArgs, progress: bool) -> anyhow::Result<LoadReport> {
    let secret = WebhookSecret::parse(&args.secret).map_err(anyhow::Error::msg)?;
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .pool_max_idle_per_host(args.concurrency)
        .build()?;
    let endpoint = format!(
        "{}/webhooks/{}",
        args.url.trim_end_matches('/'),
        args.source
    );
    let counters = Arc::new(Counters::default());
    let latencies = Arc::new(Mutex::new(Vec::<f64>::new()));
    let sent_ids = Arc::new(Mutex::new(Vec::<String>::new()));
    let slots = Arc::new(tokio::sync::Semaphore::new(args.concurrency.max(1)));
    let start = Instant::now();
    let until = start + Duration::from_secs(args.duration);
    let ticker = tokio::spawn(report_progress(counters.clone(), start, until, progress));
    let mut tick = (args.rate > 0).then(|| {
        let mut t = tokio::time::interval(Duration::from_secs_f64(1.0 / f64::from(args.rate)));
        t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
        t
    });
    let mut tasks = tokio::task::JoinSet::new();
    while Instant::now() < until {
        if let Some(t) = tick.as_mut() {
            t.tick().await;
        }
        let Ok(permit) = slots.clone().acquire_owned().await else {
            break;
        };
        let event_id = pick_event(&sent_ids, args.duplicates);
        let body = event_body(&event_id);
        let (client, endpoint, secret) = (client.clone(), endpoint.clone(), secret.clone());
        let (counters, latencies) = (counters.clone(), latencies.clone());
        counters.sent.fetch_add(1, Ordering::Relaxed);
        tasks.spawn(async move {
            let ts = chrono::Utc::now().timestamp();
            let msg_id = format!("msg_{:016x}", rand::random::<u64>());
            let sig = secret.sign(&msg_id, ts, body.as_bytes());
            let began = Instant::now();
            let res = client
                .post(&endpoint)
                .header("webhook-id", &msg_id)
                .header("webhook-timestamp", ts.to_string())
                .header("webhook-signature", sig)
                .header("content-type", "application/json")
                .body(body)
                .send()
                .await;
            let ms = began.elapsed().as_secs_f64() * 1000.0;
            let counter = match res.map(|r| r.status().as_u16()) {
                Ok(202) => &counters.accepted,
                Ok(200) => &counters.duplicates,
                _ => &counters.errors,
            };
            counter.fetch_add(1, Ordering::Relaxed);
            if let Ok(mut l) = latencies.lock() {
                l.push(ms);
            }
            drop(permit);
        });
        while tasks.try_join_next().is_some() {}
    }
    while tasks.join_next().await.is_some() {}
    let seconds = start.elapsed().as_secs_f64();
    ticker.abort();
    let mut l = latencies.lock().map(|l| l.clone()).unwrap_or_default();
    l.sort_by(|a, b| a.total_cmp(b));
    let pct = |p: f64| {
        l.get(((l.len() as f64 * p) as usize).min(l.len().saturating_sub(1)))
            .copied()
            .unwrap_or(0.0)
    };
    let c = &counters;
    let ok = c.accepted.load(Ordering::Relaxed) + c.duplicates.load(Ordering::Relaxed);
    Ok(LoadReport {
        sent: c.sent.load(Ordering::Relaxed),
        accepted: c.accepted.load(Ordering::Relaxed),
        duplicates: c.duplicates.load(Ordering::Relaxed),
        errors: c.errors.load(Ordering::Relaxed),
        seconds,
        ok_per_sec: ok as f64 / seconds,
        p50_ms: pct(0.50),
        p99_ms: pct(0.99),
        max_ms: l.last().copied().unwrap_or(0.0),
    })
}

fn pick_event(sent: &Mutex<Vec<String>>, duplicates: u8) -> String {
    let mut rng = rand::thread_rng();
    let Ok(mut sent) = sent.lock() else {
        return "evt_fallback".into();
    };
    if !sent.is_empty() && rng.gen_range(0..100u8) < duplicates {
        let i = rng.gen_range(0..sent.len());
        return sent[i].clone();
    }
    let id = format!("evt_{:016x}", rng.gen::<u64>());
    if sent.len() < 100_000 {
        sent.push(id.clone());
    }
    id
}

fn event_body(event_id: &str) -> String {
    let mut rng = rand::thread_rng();
    let currency = ["USD", "EUR", "GBP", "JPY"][rng.gen_range(0..4)];
    serde_json::json!({
        "event_id": event_id,
        "type": "payment.succeeded",
        "amount": rng.gen_range(100..100_000).to_string(),
        "currency": currency,
        "occurred_at": chrono::Utc::now().to_rfc3339(),
        "customer_id": format!("user-{}", rng.gen_range(1..1000)),
    })
    .to_string()
}

async fn report_progress(c: Arc<Counters>, start: Instant, until: Instant, on: bool) {
    if !on {
        return;
    }
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tick.tick().await;
        let left = until.saturating_duration_since(Instant::now()).as_secs();
        eprint!(
            "\r[loadsim] {:>4.0}s  sent {}  accepted {}  duplicates {}  errors {}  ({left}s left)   ",
            start.elapsed().as_secs_f64(),
            c.sent.load(Ordering::Relaxed),
            c.accepted.load(Ordering::Relaxed),
            c.duplicates.load(Ordering::Relaxed),
            c.errors.load(Ordering::Relaxed),
        );
    }
}

/// Runs `pgfleet loadsim`.
///
/// # Errors
/// A bad secret; errors answered by the gateway are counted, not raised.
pub async fn run(args: LoadsimArgs) -> anyhow::Result<()> {
    let r = run_load(&args, true).await?;
    eprintln!();
    if args.json {
        println!("{}", serde_json::to_string(&r)?);
    } else {
        println!(
            "loadsim: sent {} in {:.1}s — accepted {}, duplicates {}, errors {} — {:.0} ok/s, \
             latency p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
            r.sent,
            r.seconds,
            r.accepted,
            r.duplicates,
            r.errors,
            r.ok_per_sec,
            r.p50_ms,
            r.p99_ms,
            r.max_ms
        );
    }
    if r.errors > 0 {
        anyhow::bail!("{} requests failed", r.errors);
    }
    Ok(())
}
