//! `pgfleet gateway`: the HTTP API and webhook ingest.

use std::time::Duration;

use anyhow::Context;
use pgfleet_app::{App, AppConfig};
use pgfleet_gateway::GatewayConfig;

use crate::database::DbArgs;
use crate::delivery::VapidFlags;

/// Gateway flags (shared with `pgfleet dev`).
#[derive(Debug, Clone, clap::Args)]
pub struct GatewayFlags {
    /// API keys, `key:scope` entries (scope: read, write, admin), comma separated.
    #[arg(
        long,
        env = "PGFLEET_API_KEYS",
        hide_env_values = true,
        default_value = ""
    )]
    pub api_keys: String,
    /// Webhook secrets, `source=whsec_...` entries; repeat a source to rotate.
    #[arg(
        long,
        env = "PGFLEET_WEBHOOK_SECRETS",
        hide_env_values = true,
        default_value = ""
    )]
    pub webhook_secrets: String,
    /// Secret for HMAC-signed API requests (X-Timestamp, X-Signature).
    #[arg(long, env = "PGFLEET_HMAC_SECRET", hide_env_values = true)]
    pub hmac_secret: Option<String>,
    /// Signature timestamp tolerance, seconds.
    #[arg(long, env = "PGFLEET_SIGNATURE_TOLERANCE_SECS", default_value_t = 300)]
    pub tolerance_secs: u64,
    /// Largest request body, bytes.
    #[arg(long, env = "PGFLEET_BODY_LIMIT", default_value_t = 1024 * 1024)]
    pub body_limit: usize,
    /// Requests per second allowed per API key (or for signed requests); 0: unlimited.
    #[arg(long, env = "PGFLEET_RATE_LIMIT", default_value_t = 0)]
    pub rate_limit: u32,
    /// Queue that webhook processing jobs go to.
    #[arg(long, env = "PGFLEET_WEBHOOK_QUEUE", default_value = "default")]
    pub webhook_queue: String,
    /// Queue that outbound message jobs go to.
    #[arg(long, env = "PGFLEET_MESSAGES_QUEUE", default_value = "default")]
    pub messages_queue: String,
    /// Seconds a client may take to send a request's headers before it is disconnected.
    #[arg(long, env = "PGFLEET_HEADER_READ_TIMEOUT_SECS", default_value_t = 10)]
    pub header_read_timeout_secs: u64,
    /// Seconds a whole request may take (body included) before it is answered 408.
    #[arg(long, env = "PGFLEET_REQUEST_TIMEOUT_SECS", default_value_t = 10)]
    pub request_timeout_secs: u64,
    /// Accept plain-http push endpoints on loopback hosts (development and tests only).
    #[arg(long, env = "PGFLEET_PUSH_ALLOW_HTTP_LOOPBACK")]
    pub push_allow_http_loopback: bool,
    /// Link template for a job's trace in the console: `{trace_id}` is replaced (for
    /// example `http://localhost:16686/trace/{trace_id}` for Jaeger).
    #[arg(long, env = "PGFLEET_TRACE_URL")]
    pub trace_url: Option<String>,
}

impl GatewayFlags {
    /// The gateway configuration.
    ///
    /// # Errors
    /// Malformed keys or secrets (the message names the variable).
    pub fn config(&self, vapid: &VapidFlags) -> anyhow::Result<GatewayConfig> {
        Ok(GatewayConfig {
            api_keys: GatewayConfig::parse_api_keys(&self.api_keys).map_err(anyhow::Error::msg)?,
            webhook_secrets: GatewayConfig::parse_webhook_secrets(&self.webhook_secrets)
                .map_err(anyhow::Error::msg)?,
            hmac_secret: self
                .hmac_secret
                .clone()
                .filter(|s| !s.is_empty())
                .map(String::into_bytes),
            tolerance: Duration::from_secs(self.tolerance_secs),
            body_limit: self.body_limit,
            webhook_queue: self.webhook_queue.clone(),
            rate_limit: (self.rate_limit > 0).then_some(self.rate_limit),
            vapid_public_key: vapid.public_key()?,
            push_allow_http_loopback: self.push_allow_http_loopback,
            messages_queue: self.messages_queue.clone(),
            header_read_timeout: Duration::from_secs(self.header_read_timeout_secs.max(1)),
            timeout: Duration::from_secs(self.request_timeout_secs.max(1)),
            trace_url: self.trace_url.clone().filter(|u| !u.is_empty()),
        })
    }
}

/// `pgfleet gateway`.
#[derive(Debug, clap::Args)]
pub struct GatewayArgs {
    #[command(flatten)]
    db: DbArgs,
    /// Address to listen on.
    #[arg(long, env = "PGFLEET_LISTEN", default_value = "127.0.0.1:8080")]
    listen: String,
    #[command(flatten)]
    gateway: GatewayFlags,
    #[command(flatten)]
    vapid: VapidFlags,
}

/// Runs the gateway until SIGINT/SIGTERM.
///
/// # Errors
/// Bad configuration, an unreachable database, or a port in use.
pub async fn run(args: GatewayArgs) -> anyhow::Result<()> {
    let mut config = AppConfig::new(args.db.options()?, "gateway");
    config.pool_size = args.db.pool_size;
    config.gateway = Some(args.gateway.config(&args.vapid)?);
    let app = App::build(config).await?;
    let listener = tokio::net::TcpListener::bind(&args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    tracing::info!(addr = %listener.local_addr()?, "gateway listening");
    app.run(Some(listener), crate::shutdown_on_signal()).await?;
    Ok(())
}
