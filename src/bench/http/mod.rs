//! `ordersaga bench http`: the gateway's order path and read path over
//! HTTP, against a trivial actix-web handler measured in the same run with
//! the same client at the same concurrency.
//!
//! The run, with the three services started from the caller's
//! [`NodeOptions`] as `ordersaga bench` does:
//! 1. The services own their partitions; a gateway (with an administrator
//!    and rate limits far above the load) and the baseline server start,
//!    each with the same number of HTTP workers.
//! 2. **Setup** through the gateway: products, users (few: registration
//!    and login hash with argon2, deliberately slow), their tokens and
//!    money; then the read model shows every product and the registry
//!    routes to every owner.
//! 3. **Phases**, each `requests` requests (`orders` for the orders
//!    phase) with `concurrency` in flight through one keep-alive client:
//!    `baseline` (`GET /ping` on the trivial handler), `baseline_proxy`
//!    (`GET /ping/proxied`: the trivial handler asked through a trivial
//!    proxy, the cheapest two-exchange read), `gateway_health` (`GET
//!    /health`: the gateway's middleware alone), `read_proxied` (`GET /products/{id}`, proxied to the
//!    inventory service), `read_list` (`GET /products?limit=20`, the read
//!    model), `orders` (`POST /orders?wait=30s`, send → settled answer),
//!    `read_my_orders` (`GET /users/me/orders?limit=20`, authenticated,
//!    the read model), and `baseline_end`, the baseline again.
//! 4. Every placed order's saga ends; the gateway and the services stop and
//!    [`verify::check`](crate::verify::check) runs on the stores with every
//!    saga required to have finished.
//!
//! The machines this runs on are shared and noisy, so the headline numbers
//! are each phase's ratios to the same-run baseline: the mean of the two
//! baseline runs that bracket the gateway's phases ([`Reference`], whose
//! drift says how steady the machine was). The read path's goal is
//! [`READ_GOAL`] of the baseline's requests/s (reported, not enforced).
//!
//! `client.rs` drives the load; `baseline.rs` serves the trivial handler;
//! `setup.rs` prepares the shop; `phases.rs` measures; `report.rs` holds
//! what was measured and checked.

mod baseline;
mod client;
mod phases;
mod report;
mod setup;

use report::PhaseKind;
pub use report::{HttpBenchReport, HttpPhase, OrderAnswers, Reference, SagaEnds, READ_GOAL};

use super::drive::watcher;
use super::BenchError;
use crate::gateway::admin::AdminAccount;
use crate::gateway::jwt::TokenKeys;
use crate::gateway::ratelimit::RateLimitConfig;
use crate::gateway::{self, GatewayOptions, RunningGateway};
use crate::kafka::clients;
use crate::node::{self, NodeOptions, RunningService};
use crate::verify;
use baseline::Baseline;
use client::LoadClient;
use ordersaga_actors::Journal;
use ordersaga_events::topics::{Service as ServiceName, ORDERS_EVENTS};
use std::num::NonZeroU32;
use std::time::Duration;

/// Most requests per phase one run accepts.
pub const MAX_REQUESTS: usize = 10_000_000;

/// The gateway's instance id in a bench run (its replies come on
/// `gateway.replies` in the run's namespace).
pub const GATEWAY_ID: &str = "gateway";

/// How long the gateway waits for a command's reply before it answers 202.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(20);

/// How long the client waits for an answer: more than [`COMMAND_TIMEOUT`]
/// plus an order's wait.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

/// What to run.
#[derive(Clone, Debug)]
pub struct HttpBenchConfig {
    /// Requests per phase, but for the orders phase.
    pub requests: usize,
    /// Orders placed in the orders phase: a saga costs thousands of times
    /// a read, so the reads need more requests to last long enough to
    /// measure than the orders do.
    pub orders: usize,
    /// Requests in flight at once, in every phase.
    pub concurrency: usize,
    /// Users created through the gateway (each costs an argon2 hash to
    /// register and one to log in).
    pub users: usize,
    /// Products created through the gateway.
    pub products: usize,
    /// HTTP worker threads of the gateway, and of the baseline server.
    pub workers: usize,
    /// How long a wait (a service's readiness, the registry, the sagas'
    /// ends) may go without news before the run gives up.
    pub stall_timeout: Duration,
    /// Show progress bars on stderr.
    pub progress: bool,
}

impl HttpBenchConfig {
    /// Checks the numbers; every problem is an error, never a panic later.
    pub fn validate(&self) -> Result<(), BenchError> {
        if self.requests == 0 || self.requests > MAX_REQUESTS {
            return Err(format!("--requests must be between 1 and {MAX_REQUESTS}").into());
        }
        if self.orders == 0 || self.orders > MAX_REQUESTS {
            return Err(format!("--orders must be between 1 and {MAX_REQUESTS}").into());
        }
        if self.concurrency == 0 {
            return Err("--concurrency must be at least 1".into());
        }
        if self.users == 0 || self.products == 0 {
            return Err("--users and --products must be at least 1".into());
        }
        if self.workers == 0 {
            return Err("--workers must be at least 1".into());
        }
        if self.stall_timeout.is_zero() {
            return Err("the stall timeout must be more than zero".into());
        }
        Ok(())
    }
}

/// Every logical topic a run uses: the services' and the gateway's. On the
/// embedded broker, create them before [`run`].
pub fn topics() -> Vec<String> {
    let mut all = crate::kafka::topics::all_topics();
    all.extend(gateway::server::topics(GATEWAY_ID));
    all.sort();
    all.dedup();
    all
}

/// Runs the HTTP bench against the three services, which it starts from
/// `options` and stops before checking the stores. The topics must exist or
/// be creatable (on the embedded broker, create [`topics`] first).
pub async fn run(
    options: &NodeOptions,
    config: &HttpBenchConfig,
) -> Result<HttpBenchReport, BenchError> {
    config.validate()?;
    let mut running: Vec<RunningService> = Vec::new();
    for name in ServiceName::ALL {
        match node::start(name, options).await {
            Ok(service) => running.push(service),
            Err(err) => {
                for service in running {
                    service.stop().await;
                }
                return Err(err.into());
            }
        }
    }
    let measured = measure(options, config, &running).await;
    // Stop whatever happened: the stores must close before they are checked,
    // and a failed run must not leave services behind.
    for service in running {
        service.stop().await;
    }
    let mut report = measured?;

    let open = |name: ServiceName| Journal::open_path(options.data_dir.join(name.name()));
    let checked = verify::check(
        &open(ServiceName::Users)?,
        &open(ServiceName::Inventory)?,
        &open(ServiceName::Orders)?,
        true,
    )?;
    report.invariants_ok = checked.is_ok();
    report.sagas_by_phase = checked.sagas.into_iter().collect();
    report.violations = checked.violations;
    Ok(report)
}

/// Rates far above anything one client on this machine can send: the bench
/// measures the gateway's path, not its limits. (Not `u32::MAX`: governor
/// would replenish every 0 ns.)
fn unlimited() -> RateLimitConfig {
    let many = NonZeroU32::new(1_000_000).unwrap_or(NonZeroU32::MIN);
    RateLimitConfig {
        user_per_second: many,
        user_burst: many,
        ip_per_second: many,
        ip_burst: many,
    }
}

/// Starts the gateway and the baseline, measures, stops them.
async fn measure(
    options: &NodeOptions,
    config: &HttpBenchConfig,
    services: &[RunningService],
) -> Result<HttpBenchReport, BenchError> {
    setup::services_ready(services, config.stall_timeout).await?;
    let admin = AdminAccount {
        email: "bench-admin@example.com".into(),
        password: format!("bench admin {}", uuid::Uuid::new_v4().simple()),
    };
    let keys = TokenKeys::generated("ordersaga-bench", Duration::from_secs(24 * 3600));
    let mut gateway_options = GatewayOptions::new(
        options.kafka.clone(),
        "127.0.0.1:0",
        options.data_dir.join("gateway"),
        keys,
    );
    gateway_options.instance_id = GATEWAY_ID.into();
    gateway_options.admin = Some(admin.clone());
    gateway_options.rate_limits = unlimited();
    gateway_options.workers = config.workers;
    // A loaded broker must not turn setup commands into 202s.
    gateway_options.limits.command_timeout = COMMAND_TIMEOUT;
    let gateway = gateway::start(gateway_options).await?;
    let baseline = match Baseline::start(config.workers) {
        Ok(baseline) => baseline,
        Err(err) => {
            gateway.stop().await;
            return Err(err);
        }
    };
    // Longer than a command's timeout plus an order's wait, so that a slow
    // order is a 202, not a transport error.
    let client = match LoadClient::start(config.concurrency, REQUEST_TIMEOUT) {
        Ok(client) => client,
        Err(err) => {
            baseline.stop().await;
            gateway.stop().await;
            return Err(err);
        }
    };
    let measured = through(options, config, &client, &baseline, &gateway, &admin).await;
    client.stop().await;
    baseline.stop().await;
    gateway.stop().await;
    measured
}

/// Setup and phases, with everything running.
async fn through(
    options: &NodeOptions,
    config: &HttpBenchConfig,
    client: &LoadClient,
    baseline: &Baseline,
    gateway: &RunningGateway,
    admin: &AdminAccount,
) -> Result<HttpBenchReport, BenchError> {
    // The administrator's login needs a routable users service.
    setup::routable(gateway.registry(), &[], config.stall_timeout).await?;
    let shop = setup::open_shop(client, gateway.address, gateway.registry(), admin, config).await?;
    // The saga watcher reads orders.events from the start of the run's
    // (fresh) namespace, so it sees every saga of the orders phase.
    let producer = clients::simple_producer(&options.kafka, "ordersaga-bench")?;
    let sagas = watcher(&options.kafka, &producer, ORDERS_EVENTS).await?;
    phases::warm_up(client, baseline.address, gateway.address, config).await?;
    let measured = phases::run(client, baseline, gateway.address, &shop, &sagas, config).await?;

    let mut phases: Vec<HttpPhase> = measured
        .phases
        .iter()
        .map(|(kind, tally)| HttpPhase::of(*kind, tally))
        .collect();
    let reference = Reference::of(
        measured
            .phases
            .iter()
            .zip(&phases)
            .filter(|((kind, _), _)| kind.is_baseline())
            .map(|(_, phase)| phase),
    );
    for ((kind, _), phase) in measured.phases.iter().zip(phases.iter_mut()) {
        phase.compare(*kind, &reference);
    }
    let read_goal_met = phases.iter().all(|p| p.meets_read_goal != Some(false));
    let mut report = HttpBenchReport {
        brokers: options.kafka.brokers.clone(),
        embedded_broker: false,
        namespace: options.kafka.namespace.clone(),
        requests: config.requests,
        orders_placed: config.orders,
        concurrency: config.concurrency,
        workers: config.workers,
        users: shop.tokens.len(),
        products: shop.products.len(),
        setup_requests: shop.requests,
        setup_seconds: shop.elapsed.as_secs_f64(),
        errors: phases.iter().map(|p| p.errors).sum(),
        phases,
        reference,
        read_goal: READ_GOAL,
        read_goal_met,
        orders: measured.orders,
        sagas: measured.sagas,
        proxied_reads_per_call: measured.proxied_reads_per_call,
        ..HttpBenchReport::default()
    };
    report.proxied_vs_trivial_proxy = report.per_sec_ratio(
        PhaseKind::ReadProxied.name(),
        PhaseKind::BaselineProxy.name(),
    );
    Ok(report)
}
