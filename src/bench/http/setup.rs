//! Getting ready to measure, all through the gateway's public API: the
//! services owning their partitions, the gateway's registry routing to
//! them, the administrator's products, the users with tokens and money,
//! and the read model showing every product.
//!
//! Every wait here is bounded and woken by news (readiness and registry
//! watches, the read model's read-your-writes), never a fixed sleep.

use super::client::{Call, Kept, Load, LoadClient};
use super::HttpBenchConfig;
use crate::bench::drive::progress_bar;
use crate::bench::BenchError;
use crate::gateway::admin::AdminAccount;
use crate::node::RunningService;
use crate::registry::Registry;
use ordersaga_events::topics::Service as ServiceName;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use uuid::Uuid;

/// Unit prices run from 1.00 to this, in cents.
pub(super) const MAX_PRICE: u64 = 20_00;

/// What the phases run against.
pub(super) struct Shop {
    /// The products' ids.
    pub(super) products: Vec<Uuid>,
    /// One bearer token per user.
    pub(super) tokens: Vec<Arc<str>>,
    /// Requests the setup made.
    pub(super) requests: usize,
    /// How long it took.
    pub(super) elapsed: Duration,
}

/// The unit price of product `i`.
fn price(i: usize) -> u64 {
    1_00 + (i as u64 % (MAX_PRICE / 1_00)) * 1_00
}

/// Waits until every service owns partitions of all its topics, so that
/// the first commands are not queued behind a group join.
pub(super) async fn services_ready(
    services: &[RunningService],
    bound: Duration,
) -> Result<(), BenchError> {
    for service in services {
        let mut readiness = service.readiness();
        let ready = tokio::time::timeout(bound, readiness.wait_for(|r| r.ready)).await;
        if !matches!(ready, Ok(Ok(_))) {
            return Err(format!(
                "the {} service owned no partitions within {bound:?}",
                service.name.name()
            )
            .into());
        }
    }
    Ok(())
}

/// Waits until the gateway's registry sees every service live and knows
/// which inventory instance owns each of `products`: until then a login
/// cannot be routed and a product read falls back to the read model.
pub(super) async fn routable(
    registry: &Registry,
    products: &[Uuid],
    bound: Duration,
) -> Result<(), BenchError> {
    let mut observed = registry.observed();
    let deadline = tokio::time::Instant::now() + bound;
    loop {
        observed.borrow_and_update();
        let missing = ServiceName::ALL
            .into_iter()
            .find(|s| registry.live(*s).is_empty())
            .map(|s| format!("a live {} instance", s.name()))
            .or_else(|| {
                products
                    .iter()
                    .find(|id| registry.owner(ServiceName::Inventory, **id).is_none())
                    .map(|id| format!("the inventory instance that owns product {id}"))
            });
        let Some(missing) = missing else {
            return Ok(());
        };
        match tokio::time::timeout_at(deadline, observed.changed()).await {
            Ok(Ok(())) => {}
            Ok(Err(_)) => return Err("the gateway's registry stopped".into()),
            Err(_) => {
                return Err(format!(
                    "the gateway's registry did not see {missing} within {bound:?}"
                )
                .into())
            }
        }
    }
}

/// Runs `calls` at the bench's concurrency; every one must be answered 2xx
/// and not 202 (a command without its reply in time is a failed setup).
async fn all_ok(
    client: &LoadClient,
    address: SocketAddr,
    calls: Vec<Call>,
    config: &HttpBenchConfig,
    what: &'static str,
) -> Result<Vec<Kept>, BenchError> {
    let bar = progress_bar(config.progress, calls.len(), what);
    let tally = client
        .run(Load {
            address,
            calls,
            concurrency: config.concurrency,
            keep: true,
            bar,
        })
        .await?;
    if let Some(err) = &tally.first_error {
        return Err(format!(
            "setup ({what}): {} failed, the first: {err}",
            tally.errors()
        )
        .into());
    }
    if let Some(pending) = tally.kept.iter().find(|k| k.status == 202) {
        return Err(format!(
            "setup ({what}): no reply in time (202): {}",
            String::from_utf8_lossy(&pending.body)
        )
        .into());
    }
    Ok(tally.kept)
}

/// A string field of a kept answer, or why not.
fn field(kept: &Kept, name: &str, what: &str) -> Result<String, BenchError> {
    kept.json()
        .get(name)
        .and_then(|v| v.as_str())
        .map(str::to_string)
        .ok_or_else(|| {
            format!(
                "setup ({what}): the answer has no {name}: {}",
                String::from_utf8_lossy(&kept.body)
            )
            .into()
        })
}

/// Logs in, adds the products, registers the users, logs them in, gives
/// them money, and waits for the read model to show every product and the
/// registry to route to their owners.
pub(super) async fn open_shop(
    client: &LoadClient,
    address: SocketAddr,
    registry: &Registry,
    admin: &AdminAccount,
    config: &HttpBenchConfig,
) -> Result<Shop, BenchError> {
    let started = Instant::now();
    let mut requests = 0;
    let tag = &Uuid::new_v4().simple().to_string()[..8];
    let login = |email: &str, password: &str| {
        Call::post(
            "/auth/token",
            None,
            &serde_json::json!({"email": email, "password": password}),
        )
    };

    let kept = all_ok(
        client,
        address,
        vec![login(&admin.email, &admin.password)],
        config,
        "admin",
    )
    .await?;
    requests += kept.len();
    let admin_token: Arc<str> = match kept.first() {
        Some(answer) => field(answer, "access_token", "admin login")?.into(),
        None => return Err("setup (admin): no answer".into()),
    };

    // Enough stock for every order to land on any one product.
    let stock = config.orders as u64;
    let products: Vec<Call> = (0..config.products)
        .map(|i| {
            Call::post(
                "/products",
                Some(admin_token.clone()),
                &serde_json::json!({
                    "sku": format!("HTTP-{tag}-{i}"),
                    "name": format!("bench product {i}"),
                    "unit_price": price(i),
                    "stock": stock,
                }),
            )
        })
        .collect();
    let added = all_ok(client, address, products, config, "products").await?;
    requests += added.len();
    let mut product_ids = Vec::with_capacity(added.len());
    let mut positions = Vec::with_capacity(added.len());
    for answer in &added {
        let id = field(answer, "product_id", "products")?;
        product_ids.push(Uuid::parse_str(&id)?);
        positions.push(
            answer
                .position
                .clone()
                .ok_or("setup (products): an answer without its position")?,
        );
    }

    let password = format!("bench password {tag}");
    let emails: Vec<String> = (0..config.users)
        .map(|i| format!("bench-{tag}-{i}@example.com"))
        .collect();
    let registrations: Vec<Call> = emails
        .iter()
        .enumerate()
        .map(|(i, email)| {
            Call::post(
                "/users",
                None,
                &serde_json::json!({"email": email, "username": format!("bench user {i}"), "password": password}),
            )
        })
        .collect();
    requests += all_ok(client, address, registrations, config, "users")
        .await?
        .len();
    let logins: Vec<Call> = emails.iter().map(|email| login(email, &password)).collect();
    let logged_in = all_ok(client, address, logins, config, "logins").await?;
    requests += logged_in.len();
    let tokens = logged_in
        .iter()
        .map(|answer| field(answer, "access_token", "logins").map(Arc::from))
        .collect::<Result<Vec<Arc<str>>, _>>()?;

    // Every user can pay for each of its orders at the highest price, twice
    // over: the orders phase is meant to confirm.
    let per_user = config.orders.div_ceil(config.users) as u64;
    let funds = per_user.saturating_mul(MAX_PRICE).saturating_mul(2);
    let deposits: Vec<Call> = tokens
        .iter()
        .map(|token| {
            Call::post(
                "/users/me/deposits",
                Some(token.clone()),
                &serde_json::json!({"amount": funds}),
            )
        })
        .collect();
    requests += all_ok(client, address, deposits, config, "funds")
        .await?
        .len();

    // The list phase must list every product: read-your-writes on each.
    let caught_up: Vec<Call> = positions
        .iter()
        .map(|position| Call::get(format!("/products?limit=1&min_position={position}"), None))
        .collect();
    requests += all_ok(client, address, caught_up, config, "catch-up")
        .await?
        .len();
    routable(registry, &product_ids, config.stall_timeout).await?;

    Ok(Shop {
        products: product_ids,
        tokens,
        requests,
        elapsed: started.elapsed(),
    })
}
