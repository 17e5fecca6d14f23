//! Settings for what workers deliver (Web Push, outbound messages), and `pgfleet vapid`.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use pgfleet_messages::signature::WebhookSecret;
use pgfleet_push::{PushClient, VapidKeys, VapidSigner};

/// VAPID settings, shared by the gateway (public key) and workers (signing).
#[derive(Debug, Clone, Default, clap::Args)]
pub struct VapidFlags {
    /// VAPID private key: base64url of the 32-byte P-256 scalar (`pgfleet vapid generate`).
    #[arg(long, env = "PGFLEET_VAPID_PRIVATE_KEY", hide_env_values = true)]
    pub vapid_private_key: Option<String>,
    /// VAPID public key: base64url of the 65-byte point; checked against the private key.
    #[arg(long, env = "PGFLEET_VAPID_PUBLIC_KEY")]
    pub vapid_public_key: Option<String>,
    /// Contact sent to push services: `mailto:` address or `https:` URL.
    #[arg(long, env = "PGFLEET_VAPID_SUBJECT")]
    pub vapid_subject: Option<String>,
}

impl VapidFlags {
    /// The key pair, when a private key is configured.
    ///
    /// # Errors
    /// A malformed key, a public key that does not match, or a missing/invalid subject.
    pub fn keys(&self) -> anyhow::Result<Option<VapidKeys>> {
        let Some(private) = self.vapid_private_key.as_deref().filter(|k| !k.is_empty()) else {
            return Ok(None);
        };
        let subject = self.vapid_subject.as_deref().unwrap_or_default();
        if subject.is_empty() {
            anyhow::bail!(
                "PGFLEET_VAPID_SUBJECT is required with a VAPID key: a mailto: address or https: URL push services can reach you at"
            );
        }
        let public = self.vapid_public_key.as_deref().filter(|k| !k.is_empty());
        Ok(Some(VapidKeys::from_base64url(private, public, subject)?))
    }

    /// The public key to serve: configured, or derived from the private key.
    ///
    /// # Errors
    /// As [`VapidFlags::keys`].
    pub fn public_key(&self) -> anyhow::Result<Option<String>> {
        if let Some(keys) = self.keys()? {
            return Ok(Some(keys.public_key().to_owned()));
        }
        Ok(self.vapid_public_key.clone().filter(|k| !k.is_empty()))
    }
}

/// Worker delivery settings.
#[derive(Debug, Clone, clap::Args)]
pub struct DeliveryFlags {
    /// Seconds a push service has to answer.
    #[arg(long, env = "PGFLEET_PUSH_TIMEOUT_SECS", default_value_t = 10)]
    pub push_timeout_secs: u64,
    /// Where outbound messages without their own `webhook_url` are POSTed.
    #[arg(long, env = "PGFLEET_MESSAGES_WEBHOOK_URL")]
    pub messages_webhook_url: Option<String>,
    /// Standard Webhooks secret (`whsec_...`) outbound messages are signed with.
    #[arg(long, env = "PGFLEET_MESSAGES_SECRET", hide_env_values = true)]
    pub messages_secret: Option<String>,
    /// Seconds a message receiver has to answer.
    #[arg(long, env = "PGFLEET_MESSAGES_TIMEOUT_SECS", default_value_t = 10)]
    pub messages_timeout_secs: u64,
}

impl DeliveryFlags {
    /// The push client, when VAPID keys are configured.
    ///
    /// # Errors
    /// Bad keys, or an HTTP client that cannot start.
    pub fn push_client(&self, vapid: &VapidFlags) -> anyhow::Result<Option<PushClient>> {
        let Some(keys) = vapid.keys()? else {
            return Ok(None);
        };
        let signer = Arc::new(VapidSigner::new(keys));
        let timeout = Duration::from_secs(self.push_timeout_secs.max(1));
        Ok(Some(
            PushClient::new(signer, timeout).context("cannot start the push HTTP client")?,
        ))
    }

    /// The message deliverer, when a signing secret is configured.
    ///
    /// # Errors
    /// A malformed secret or URL.
    pub fn deliverer(&self) -> anyhow::Result<Option<pgfleet_messages::Deliverer>> {
        let Some(secret) = self.messages_secret.as_deref().filter(|s| !s.is_empty()) else {
            return Ok(None);
        };
        let secret = WebhookSecret::parse(secret)
            .map_err(|e| anyhow::anyhow!("PGFLEET_MESSAGES_SECRET: {e}"))?;
        let url = self.messages_webhook_url.clone().filter(|u| !u.is_empty());
        if let Some(u) = &url {
            url::Url::parse(u).map_err(|e| anyhow::anyhow!("PGFLEET_MESSAGES_WEBHOOK_URL: {e}"))?;
        }
        let timeout = Duration::from_secs(self.messages_timeout_secs.max(1));
        Ok(Some(
            pgfleet_messages::Deliverer::new(secret, url, timeout)
                .context("cannot start the messages HTTP client")?,
        ))
    }
}

/// `pgfleet vapid`.
#[derive(Debug, clap::Args)]
pub struct VapidArgs {
    #[command(subcommand)]
    command: VapidCommand,
}

#[derive(Debug, clap::Subcommand)]
enum VapidCommand {
    /// Print a new key pair as environment variables.
    Generate {
        /// Contact for push services (`mailto:` or `https:`).
        #[arg(long, default_value = "mailto:ops@example.com")]
        subject: String,
    },
}

/// Runs `pgfleet vapid`.
///
/// # Errors
/// An invalid subject.
pub fn run(args: VapidArgs) -> anyhow::Result<()> {
    match args.command {
        VapidCommand::Generate { subject } => {
            let keys = VapidKeys::generate(&subject)?;
            println!("PGFLEET_VAPID_PRIVATE_KEY={}", keys.private_key());
            println!("PGFLEET_VAPID_PUBLIC_KEY={}", keys.public_key());
            println!("PGFLEET_VAPID_SUBJECT={}", keys.subject());
            Ok(())
        }
    }
}
