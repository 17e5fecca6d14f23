//! The NOTIFY listener: one dedicated connection, many channels.
//!
//! - subscribe / unsubscribe while running (applied at once, and re-applied on reconnect);
//! - on a lost connection: exponential backoff (base, max, multiplier, optional attempt
//!   limit), reconnect, re-LISTEN every channel, then deliver [`Message::Resync`] so the
//!   consumer polls at once: notifications sent during the outage are gone, the jobs are not;
//! - a health ping (`SELECT 1` with a timeout) detects half-open connections;
//! - a bounded output buffer: when the consumer lags, further notifications are dropped and
//!   counted (a wake-up for a consumer that is already busy carries no information);
//! - payloads over the configured size are refused with an error event, never truncated;
//! - every connect, disconnect, reconnect, notification and error goes to an optional hook
//!   and to counters; [`Listener::shutdown`] stops the task and closes the connection.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicI32, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgListener, PgPoolOptions};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::error::{QueueError, Result};
use crate::notify::MAX_PAYLOAD_BYTES;

/// Reconnect backoff of the listener.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ReconnectPolicy {
    /// First delay.
    pub base: Duration,
    /// Largest delay.
    pub max: Duration,
    /// Growth factor per failed attempt.
    pub multiplier: f64,
    /// Give up after this many consecutive failed attempts (`None`: never).
    pub max_attempts: Option<u32>,
}

impl Default for ReconnectPolicy {
    fn default() -> Self {
        Self {
            base: Duration::from_millis(100),
            max: Duration::from_secs(10),
            multiplier: 2.0,
            max_attempts: None,
        }
    }
}

impl ReconnectPolicy {
    /// The delay before reconnect attempt `attempt` (1-based).
    pub fn delay(&self, attempt: u32) -> Duration {
        let factor = self
            .multiplier
            .max(1.0)
            .powi(attempt.saturating_sub(1) as i32);
        let secs = (self.base.as_secs_f64() * factor).min(self.max.as_secs_f64());
        Duration::from_secs_f64(secs)
    }
}

/// Listener settings.
#[derive(Debug, Clone)]
pub struct ListenerConfig {
    /// How to connect (the application name is set to `pgfleet-listener`).
    pub connect: PgConnectOptions,
    /// Channels to listen on from the start.
    pub channels: Vec<String>,
    /// Reconnect backoff.
    pub reconnect: ReconnectPolicy,
    /// Health ping period (default 10 s).
    pub ping_interval: Duration,
    /// A ping slower than this counts as a lost connection (default 5 s).
    pub ping_timeout: Duration,
    /// Output buffer size (default 1024).
    pub buffer: usize,
    /// Largest accepted payload in bytes (default and maximum 7999).
    pub max_payload: usize,
}

impl ListenerConfig {
    /// Defaults for everything but the connection.
    pub fn new(connect: PgConnectOptions) -> Self {
        Self {
            connect,
            channels: Vec::new(),
            reconnect: ReconnectPolicy::default(),
            ping_interval: Duration::from_secs(10),
            ping_timeout: Duration::from_secs(5),
            buffer: 1024,
            max_payload: MAX_PAYLOAD_BYTES,
        }
    }
}

/// What the listener delivers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    /// A notification.
    Notification {
        /// Channel.
        channel: String,
        /// Payload.
        payload: String,
    },
    /// The connection was (re)established and every channel is listened to again:
    /// anything sent meanwhile was missed, so poll now.
    Resync,
}

/// Lifecycle events, for hooks, logs and metrics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ListenerEvent {
    /// First connection established.
    Connected,
    /// Connection re-established after a loss.
    Reconnected,
    /// The connection was lost.
    Disconnected {
        /// Why.
        error: String,
    },
    /// Waiting before reconnect attempt `attempt`.
    Reconnecting {
        /// Attempt number (1-based).
        attempt: u32,
        /// Delay before it.
        delay: Duration,
    },
    /// A notification arrived.
    Notification {
        /// Channel.
        channel: String,
    },
    /// Something failed (connect, LISTEN, oversized payload...).
    Error {
        /// What.
        error: String,
    },
    /// The output buffer was full and a notification was dropped.
    Overflow,
    /// The attempt limit was reached; the listener stopped.
    GaveUp,
}

/// A callback for [`ListenerEvent`]s. Keep it cheap: it runs on the listener task.
pub type Hook = Arc<dyn Fn(&ListenerEvent) + Send + Sync>;

/// Counters of the listener's life.
#[derive(Debug, Default)]
pub struct ListenerStats {
    /// Successful connections (first one included).
    pub connects: AtomicU64,
    /// Reconnections.
    pub reconnects: AtomicU64,
    /// Lost connections.
    pub disconnects: AtomicU64,
    /// Notifications delivered.
    pub notifications: AtomicU64,
    /// Notifications dropped because the buffer was full.
    pub dropped: AtomicU64,
    /// Errors (failed connects, oversized payloads, failed LISTEN...).
    pub errors: AtomicU64,
    /// Backend pid of the current connection (0 when disconnected).
    pub backend_pid: AtomicI32,
}

enum Command {
    Subscribe(String, oneshot::Sender<()>),
    Unsubscribe(String, oneshot::Sender<()>),
}

/// Handle on a running listener.
pub struct Listener {
    commands: mpsc::Sender<Command>,
    stats: Arc<ListenerStats>,
    cancel: CancellationToken,
    task: JoinHandle<()>,
}

struct Ctx {
    config: ListenerConfig,
    channels: BTreeSet<String>,
    out: mpsc::Sender<Message>,
    stats: Arc<ListenerStats>,
    hook: Option<Hook>,
    cancel: CancellationToken,
}

impl Ctx {
    fn emit(&self, event: ListenerEvent) {
        match &event {
            ListenerEvent::Disconnected { error } => {
                tracing::warn!(%error, "listener: connection lost")
            }
            ListenerEvent::Error { error } => tracing::warn!(%error, "listener: error"),
            ListenerEvent::GaveUp => tracing::error!("listener: gave up reconnecting"),
            _ => {}
        }
        if let Some(hook) = &self.hook {
            hook(&event);
        }
    }
}

enum SessionEnd {
    Shutdown,
    Lost(String),
}

impl Listener {
    /// Starts the listener task; returns its handle and the message stream. The stream
    /// ends when the listener stops (shutdown, or the attempt limit was reached).
    pub fn spawn(config: ListenerConfig, hook: Option<Hook>) -> (Self, mpsc::Receiver<Message>) {
        let (out, rx) = mpsc::channel(config.buffer.max(1));
        let (commands, command_rx) = mpsc::channel(64);
        let stats = Arc::new(ListenerStats::default());
        let cancel = CancellationToken::new();
        let ctx = Ctx {
            channels: config.channels.iter().cloned().collect(),
            config,
            out,
            stats: stats.clone(),
            hook,
            cancel: cancel.clone(),
        };
        let task = tokio::spawn(run(ctx, command_rx));
        (
            Self {
                commands,
                stats,
                cancel,
                task,
            },
            rx,
        )
    }

    /// Listens on one more channel; returns once it is in effect (or recorded, while
    /// disconnected, to be applied on reconnect).
    ///
    /// # Errors
    /// [`QueueError::Shutdown`] when the listener has stopped.
    pub async fn subscribe(&self, channel: &str) -> Result<()> {
        let (tx, rx) = oneshot::channel();
        self.commands
            .send(Command::Subscribe(channel.to_owned(), tx))
            .await
            .map_err(|_| QueueError::Shutdown)?;
        rx.await.map_err(|_| QueueError::Shutdown)
    }

    /// Stops listening on a channel.
    ///
    /// # Errors
    /// [`QueueError::Shutdown`] when the listener has stopped.
    pub async fn unsubscribe(&self, channel: &str) -> Result<()> {
        let (tx, rx) = oneshot::channel();
        self.commands
            .send(Command::Unsubscribe(channel.to_owned(), tx))
            .await
            .map_err(|_| QueueError::Shutdown)?;
        rx.await.map_err(|_| QueueError::Shutdown)
    }

    /// The listener's counters.
    pub fn stats(&self) -> &Arc<ListenerStats> {
        &self.stats
    }

    /// Stops the task and closes the connection; returns when both are done.
    pub async fn shutdown(self) {
        self.cancel.cancel();
        let _ = self.task.await;
    }
}

async fn run(mut ctx: Ctx, mut commands: mpsc::Receiver<Command>) {
    let mut failures: u32 = 0;
    let mut ever_connected = false;
    while !ctx.cancel.is_cancelled() {
        match connect(&ctx).await {
            Ok((pool, mut listener)) => {
                failures = 0;
                ctx.stats.connects.fetch_add(1, Ordering::Relaxed);
                if ever_connected {
                    ctx.stats.reconnects.fetch_add(1, Ordering::Relaxed);
                    ctx.emit(ListenerEvent::Reconnected);
                } else {
                    ctx.emit(ListenerEvent::Connected);
                }
                ever_connected = true;
                if let Ok(pid) = sqlx::query_scalar::<_, i32>("SELECT pg_backend_pid()")
                    .fetch_one(&mut listener)
                    .await
                {
                    ctx.stats.backend_pid.store(pid, Ordering::Relaxed);
                }
                let _ = ctx.out.try_send(Message::Resync);
                let end = session(&mut ctx, &mut listener, &mut commands).await;
                ctx.stats.backend_pid.store(0, Ordering::Relaxed);
                drop(listener);
                pool.close().await;
                match end {
                    SessionEnd::Shutdown => return,
                    SessionEnd::Lost(error) => {
                        ctx.stats.disconnects.fetch_add(1, Ordering::Relaxed);
                        ctx.emit(ListenerEvent::Disconnected { error });
                    }
                }
            }
            Err(e) => {
                ctx.stats.errors.fetch_add(1, Ordering::Relaxed);
                ctx.emit(ListenerEvent::Error {
                    error: format!("connect: {e}"),
                });
            }
        }
        failures += 1;
        if ctx
            .config
            .reconnect
            .max_attempts
            .is_some_and(|m| failures > m)
        {
            ctx.emit(ListenerEvent::GaveUp);
            return;
        }
        let delay = ctx.config.reconnect.delay(failures);
        ctx.emit(ListenerEvent::Reconnecting {
            attempt: failures,
            delay,
        });
        if !wait_disconnected(&mut ctx, &mut commands, delay).await {
            return;
        }
    }
}

/// Sleeps `delay` while disconnected, recording subscription changes so they are applied on
/// reconnect. Returns false when the listener must stop.
async fn wait_disconnected(
    ctx: &mut Ctx,
    commands: &mut mpsc::Receiver<Command>,
    delay: Duration,
) -> bool {
    let sleep = tokio::time::sleep(delay);
    tokio::pin!(sleep);
    loop {
        tokio::select! {
            _ = &mut sleep => return true,
            _ = ctx.cancel.cancelled() => return false,
            cmd = commands.recv() => match cmd {
                Some(Command::Subscribe(c, ack)) => {
                    ctx.channels.insert(c);
                    let _ = ack.send(());
                }
                Some(Command::Unsubscribe(c, ack)) => {
                    ctx.channels.remove(&c);
                    let _ = ack.send(());
                }
                None => return false,
            },
        }
    }
}

async fn connect(ctx: &Ctx) -> std::result::Result<(sqlx::PgPool, PgListener), sqlx::Error> {
    let options = ctx
        .config
        .connect
        .clone()
        .application_name("pgfleet-listener");
    let pool = PgPoolOptions::new()
        .max_connections(1)
        .min_connections(0)
        .acquire_timeout(Duration::from_secs(5))
        .max_lifetime(None)
        .idle_timeout(None)
        .connect_with(options)
        .await?;
    let mut listener = PgListener::connect_with(&pool).await?;
    listener.ignore_pool_close_event(true);
    listener.eager_reconnect(false);
    let channels: Vec<&str> = ctx.channels.iter().map(String::as_str).collect();
    if !channels.is_empty() {
        listener.listen_all(channels).await?;
    }
    Ok((pool, listener))
}

async fn session(
    ctx: &mut Ctx,
    listener: &mut PgListener,
    commands: &mut mpsc::Receiver<Command>,
) -> SessionEnd {
    let mut ping = tokio::time::interval(ctx.config.ping_interval);
    ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ping.tick().await;
    loop {
        tokio::select! {
            _ = ctx.cancel.cancelled() => {
                let _ = listener.unlisten_all().await;
                return SessionEnd::Shutdown;
            }
            cmd = commands.recv() => match cmd {
                Some(Command::Subscribe(c, ack)) => {
                    let res = listener.listen(&c).await;
                    ctx.channels.insert(c);
                    let _ = ack.send(());
                    if let Err(e) = res {
                        return SessionEnd::Lost(format!("LISTEN: {e}"));
                    }
                }
                Some(Command::Unsubscribe(c, ack)) => {
                    let res = listener.unlisten(&c).await;
                    ctx.channels.remove(&c);
                    let _ = ack.send(());
                    if let Err(e) = res {
                        return SessionEnd::Lost(format!("UNLISTEN: {e}"));
                    }
                }
                None => return SessionEnd::Shutdown,
            },
            received = listener.try_recv() => match received {
                Ok(Some(n)) => deliver(ctx, n.channel(), n.payload()),
                Ok(None) => return SessionEnd::Lost("connection closed".into()),
                Err(e) => return SessionEnd::Lost(e.to_string()),
            },
            _ = ping.tick() => {
                let ping = sqlx::query("SELECT 1").execute(&mut *listener);
                match tokio::time::timeout(ctx.config.ping_timeout, ping).await {
                    Ok(Ok(_)) => {}
                    Ok(Err(e)) => return SessionEnd::Lost(format!("ping: {e}")),
                    Err(_) => return SessionEnd::Lost("ping timed out".into()),
                }
            }
        }
    }
}

fn deliver(ctx: &Ctx, channel: &str, payload: &str) {
    if payload.len() > ctx.config.max_payload {
        ctx.stats.errors.fetch_add(1, Ordering::Relaxed);
        ctx.emit(ListenerEvent::Error {
            error: format!(
                "payload of {} bytes on {channel} exceeds the {}-byte limit; dropped",
                payload.len(),
                ctx.config.max_payload
            ),
        });
        return;
    }
    ctx.emit(ListenerEvent::Notification {
        channel: channel.to_owned(),
    });
    let msg = Message::Notification {
        channel: channel.to_owned(),
        payload: payload.to_owned(),
    };
    match ctx.out.try_send(msg) {
        Ok(()) => {
            ctx.stats.notifications.fetch_add(1, Ordering::Relaxed);
        }
        Err(mpsc::error::TrySendError::Full(_)) => {
            ctx.stats.dropped.fetch_add(1, Ordering::Relaxed);
            ctx.emit(ListenerEvent::Overflow);
        }
        Err(mpsc::error::TrySendError::Closed(_)) => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reconnect_delay_grows_and_caps() {
        let p = ReconnectPolicy {
            base: Duration::from_millis(100),
            max: Duration::from_secs(1),
            multiplier: 2.0,
            max_attempts: None,
        };
        let ms: Vec<u128> = (1..=6).map(|a| p.delay(a).as_millis()).collect();
        assert_eq!(ms, vec![100, 200, 400, 800, 1000, 1000]);
    }
}
