//! `ordersaga gateway`: the public HTTP front, alone; and the gateway
//! settings `ordersaga run` shares.

use super::common::{cluster, shutdown_signal, KafkaArgs};
use super::CliError;
use crate::gateway::admin::AdminAccount;
use crate::gateway::breaker::BreakerConfig;
use crate::gateway::jwt::TokenKeys;
use crate::gateway::ratelimit::RateLimitConfig;
use crate::gateway::{self, GatewayOptions};
use crate::kafka::KafkaConfig;
use clap::Args;
use std::num::NonZeroU32;
use std::path::PathBuf;
use std::time::Duration;

/// The variable that may hold the token signing key.
pub const KEY_VARIABLE: &str = "ORDERSAGA_JWT_KEY";

/// The variable that may hold the first administrator's password.
pub const ADMIN_PASSWORD_VARIABLE: &str = "ORDERSAGA_ADMIN_PASSWORD";

/// Gateway settings (shared by `gateway` and `run`).
#[derive(Debug, Args)]
pub struct GatewayArgs {
    /// This gateway's name; its replies come on `NAME.replies`. Give each
    /// gateway of a cluster its own.
    #[arg(long, default_value = "gateway")]
    pub gateway_id: String,
    /// A file holding the token signing key (at least 32 bytes). Without
    /// it, the key comes from ORDERSAGA_JWT_KEY; `run` makes one for its
    /// session when neither is given.
    #[arg(long)]
    pub jwt_key_file: Option<PathBuf>,
    /// The issuer tokens carry and must carry.
    #[arg(long, default_value = "ordersaga")]
    pub jwt_issuer: String,
    /// How long a token lives, in seconds.
    #[arg(long, default_value_t = 3600)]
    pub token_ttl_secs: u64,
    /// The first administrator's email; registered at start if missing.
    /// Its password comes from --admin-password-file or
    /// ORDERSAGA_ADMIN_PASSWORD.
    #[arg(long, env = "ORDERSAGA_ADMIN_EMAIL")]
    pub admin_email: Option<String>,
    /// A file holding the first administrator's password.
    #[arg(long)]
    pub admin_password_file: Option<PathBuf>,
    /// Sustained requests per second of one user.
    #[arg(long, default_value_t = NonZeroU32::new(50).expect("non-zero"))]
    pub user_rate: NonZeroU32,
    /// Requests one user may make at once.
    #[arg(long, default_value_t = NonZeroU32::new(100).expect("non-zero"))]
    pub user_burst: NonZeroU32,
    /// Sustained requests per second from one anonymous client address.
    #[arg(long, default_value_t = NonZeroU32::new(20).expect("non-zero"))]
    pub ip_rate: NonZeroU32,
    /// Requests one anonymous client address may make at once.
    #[arg(long, default_value_t = NonZeroU32::new(40).expect("non-zero"))]
    pub ip_burst: NonZeroU32,
    /// Consecutive failures that open a service's circuit breaker.
    #[arg(long, default_value_t = 5)]
    pub breaker_failures: u32,
    /// How long an open breaker waits before it lets a probe through, in
    /// milliseconds.
    #[arg(long, default_value_t = 5_000)]
    pub breaker_cooldown_ms: u64,
    /// How long a command waits for its reply before the answer is 202, in
    /// milliseconds.
    #[arg(long, default_value_t = 10_000)]
    pub command_timeout_ms: u64,
    /// Rebuild the read models from the event topics before serving.
    #[arg(long)]
    pub rebuild: bool,
}

impl GatewayArgs {
    /// The gateway options for `kafka`, `http` and `data`; `keys` when
    /// given (run's session key), else from the file or variable.
    pub fn options(
        &self,
        kafka: KafkaConfig,
        http: &str,
        data: PathBuf,
        keys: Option<TokenKeys>,
    ) -> Result<GatewayOptions, CliError> {
        let lifetime = Duration::from_secs(self.token_ttl_secs.max(1));
        let keys = match (keys, &self.jwt_key_file) {
            (_, Some(path)) => TokenKeys::from_file(path, &self.jwt_issuer, lifetime)?,
            (Some(keys), None) => keys,
            (None, None) => match std::env::var(KEY_VARIABLE) {
                Ok(key) => {
                    TokenKeys::new(key.as_bytes(), KEY_VARIABLE, &self.jwt_issuer, lifetime)?
                }
                Err(_) => {
                    return Err(format!(
                    "the gateway needs a token signing key: --jwt-key-file PATH or {KEY_VARIABLE}"
                )
                    .into())
                }
            },
        };
        let mut options = GatewayOptions::new(kafka, http, data, keys);
        options.instance_id = self.gateway_id.clone();
        options.admin = self.admin()?;
        options.rate_limits = RateLimitConfig {
            user_per_second: self.user_rate,
            user_burst: self.user_burst,
            ip_per_second: self.ip_rate,
            ip_burst: self.ip_burst,
        };
        options.breaker = BreakerConfig {
            failures: self.breaker_failures.max(1),
            cool_down: Duration::from_millis(self.breaker_cooldown_ms),
            ..BreakerConfig::default()
        };
        options.limits.command_timeout = Duration::from_millis(self.command_timeout_ms.max(1));
        options.rebuild = self.rebuild;
        options.progress = std::io::IsTerminal::is_terminal(&std::io::stderr());
        Ok(options)
    }

    fn admin(&self) -> Result<Option<AdminAccount>, CliError> {
        let Some(email) = &self.admin_email else {
            return Ok(None);
        };
        let password = match &self.admin_password_file {
            Some(path) => std::fs::read_to_string(path)
                .map_err(|e| format!("cannot read the admin password file {}: {e}", path.display()))?
                .trim_end_matches(['\r', '\n'])
                .to_string(),
            None => std::env::var(ADMIN_PASSWORD_VARIABLE).map_err(|_| {
                format!("--admin-email needs a password: --admin-password-file PATH or {ADMIN_PASSWORD_VARIABLE}")
            })?,
        };
        Ok(Some(AdminAccount {
            email: email.clone(),
            password,
        }))
    }
}

/// Arguments of `gateway`.
#[derive(Debug, Args)]
pub struct GatewayCmdArgs {
    /// Kafka bootstrap servers (`host:port,…`). Without it, an embedded
    /// broker is started (useful only for trying the gateway alone).
    #[arg(long)]
    pub brokers: Option<String>,
    /// Where to serve HTTP.
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub http: String,
    /// Where the read-model store lives.
    #[arg(long, default_value = "data/gateway")]
    pub data: PathBuf,
    #[command(flatten)]
    kafka: KafkaArgs,
    #[command(flatten)]
    gateway: GatewayArgs,
}

/// Runs a gateway until Ctrl-C or SIGTERM.
pub fn run(args: GatewayCmdArgs) -> Result<(), CliError> {
    actix_rt::System::new().block_on(async move {
        let mut topics = crate::kafka::topics::all_topics();
        topics.extend(gateway::server::topics(&args.gateway.gateway_id));
        topics.sort();
        topics.dedup();
        let (kafka, embedded) = cluster(
            args.brokers.as_deref(),
            |brokers| args.kafka.config(brokers),
            &topics,
        )?;
        crate::kafka::reach::reach(&kafka.brokers).await?;
        let options = args
            .gateway
            .options(kafka, &args.http, args.data.clone(), None)?;
        let running = gateway::start(options).await?;
        println!("gateway http://{}", running.address);
        println!("  press Ctrl-C (or send SIGTERM) to stop");
        shutdown_signal().await;
        running.stop().await;
        drop(embedded);
        Ok(())
    })
}
