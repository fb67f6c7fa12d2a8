//! Request rate limits per user and per client IP.
//!
//! A [`Limiter`] holds two keyed GCRA limiters from `governor`: one keyed
//! by the JWT subject of authenticated callers, one by the client IP of
//! anonymous ones, each with its own rate and burst
//! ([`RateLimitConfig`]). The [`RateLimit`] middleware asks the gateway's
//! `identify` function who is calling, asks the limiter, and answers a
//! refused request with 429, a `Retry-After` header and a problem+json
//! body — without calling the handler.
//!
//! Keys whose budget has fully replenished are forgotten (see
//! [`Limiter::evict_idle`]), so a stream of distinct callers cannot grow the
//! tables without bound.

use std::fmt;
use std::future::{ready, Future, Ready};
use std::hash::Hash;
use std::net::{IpAddr, Ipv4Addr};
use std::num::NonZeroU32;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{forward_ready, Service, ServiceRequest, ServiceResponse, Transform};
use actix_web::http::StatusCode;
use actix_web::ResponseError;
use governor::clock::{Clock, DefaultClock};
use governor::middleware::NoOpMiddleware;
use governor::state::keyed::DashMapStateStore;
use governor::{Quota, RateLimiter};

use crate::http::problem::Problem;

/// Rates and bursts of the two limits.
#[derive(Clone, Debug)]
pub struct RateLimitConfig {
    /// Sustained requests per second of one authenticated user. Default 50.
    pub user_per_second: NonZeroU32,
    /// Requests one user may make at once after being idle. Default 100.
    pub user_burst: NonZeroU32,
    /// Sustained requests per second from one anonymous client IP.
    /// Default 20.
    pub ip_per_second: NonZeroU32,
    /// Requests one client IP may make at once after being idle. Default 40.
    pub ip_burst: NonZeroU32,
}

/// `n` as a `NonZeroU32`; used only in `const` items, so a zero fails the
/// build rather than a request.
const fn nonzero(n: u32) -> NonZeroU32 {
    match NonZeroU32::new(n) {
        Some(n) => n,
        None => panic!("a rate limit must not be zero"),
    }
}

const DEFAULT_USER_PER_SECOND: NonZeroU32 = nonzero(50);
const DEFAULT_USER_BURST: NonZeroU32 = nonzero(100);
const DEFAULT_IP_PER_SECOND: NonZeroU32 = nonzero(20);
const DEFAULT_IP_BURST: NonZeroU32 = nonzero(40);

impl Default for RateLimitConfig {
    fn default() -> Self {
        Self {
            user_per_second: DEFAULT_USER_PER_SECOND,
            user_burst: DEFAULT_USER_BURST,
            ip_per_second: DEFAULT_IP_PER_SECOND,
            ip_burst: DEFAULT_IP_BURST,
        }
    }
}

/// Who a request is counted against.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Caller {
    /// An authenticated user: the JWT subject.
    User(String),
    /// An anonymous client, by IP address.
    Ip(IpAddr),
}

impl fmt::Display for Caller {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Caller::User(subject) => write!(f, "user {subject}"),
            Caller::Ip(ip) => write!(f, "{ip}"),
        }
    }
}

/// A governor limiter keyed by `K`, on a DashMap (sharded locks, so the
/// workers do not contend on one mutex).
type Keyed<K, C> = RateLimiter<K, DashMapStateStore<K>, C, NoOpMiddleware<<C as Clock>::Instant>>;

/// [`Limiter::check`] runs [`Limiter::evict_idle`] once every this many
/// checks: often enough that the tables stay near the number of callers
/// active within one replenish period, rarely enough that the O(keys)
/// sweep costs little per request.
pub const EVICT_EVERY: u64 = 1_024;

/// The rate limits of the gateway: one keyed limiter for users, one for
/// client IPs. Share it behind an `Arc`.
pub struct Limiter<C = DefaultClock>
where
    C: Clock,
{
    config: RateLimitConfig,
    users: Keyed<String, C>,
    ips: Keyed<IpAddr, C>,
    checks: AtomicU64,
    refused: AtomicU64,
}

impl<C: Clock> fmt::Debug for Limiter<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Limiter")
            .field("config", &self.config)
            .field("keys", &self.keys())
            .field("refused", &self.refused())
            .finish()
    }
}

impl Limiter {
    /// Limits with `config` on the real clock.
    pub fn new(config: RateLimitConfig) -> Self {
        Self::with_clock(config, DefaultClock::default())
    }
}

impl<C: Clock + Clone> Limiter<C> {
    /// Limits with `config` on `clock` (a `FakeRelativeClock` in tests).
    pub fn with_clock(config: RateLimitConfig, clock: C) -> Self {
        let users = Quota::per_second(config.user_per_second).allow_burst(config.user_burst);
        let ips = Quota::per_second(config.ip_per_second).allow_burst(config.ip_burst);
        Self {
            users: RateLimiter::dashmap_with_clock(users, clock.clone()),
            ips: RateLimiter::dashmap_with_clock(ips, clock),
            config,
            checks: AtomicU64::new(0),
            refused: AtomicU64::new(0),
        }
    }
}

impl<C: Clock> Limiter<C> {
    /// The limits in force.
    pub fn config(&self) -> &RateLimitConfig {
        &self.config
    }

    /// Counts one request of `caller`: `Ok` if it is within its limit, else
    /// `Err` with how long until it would be.
    ///
    /// Every [`EVICT_EVERY`]th call also evicts idle keys, so the tables
    /// stay bounded without a timer (the gateway may run one as well).
    pub fn check(&self, caller: &Caller) -> Result<(), Duration> {
        let checks = self.checks.fetch_add(1, Ordering::Relaxed).wrapping_add(1);
        if checks.is_multiple_of(EVICT_EVERY) {
            self.evict_idle();
        }
        let verdict = match caller {
            Caller::User(subject) => Self::check_in(&self.users, subject),
            Caller::Ip(ip) => Self::check_in(&self.ips, ip),
        };
        if verdict.is_err() {
            self.refused.fetch_add(1, Ordering::Relaxed);
        }
        verdict
    }

    fn check_in<K: Hash + Eq + Clone>(limiter: &Keyed<K, C>, key: &K) -> Result<(), Duration> {
        limiter
            .check_key(key)
            .map_err(|not_until| not_until.wait_time_from(limiter.clock().now()))
    }

    /// Forgets keys whose budget has fully replenished (they behave exactly
    /// like keys never seen) and releases the memory; returns how many keys
    /// remain.
    pub fn evict_idle(&self) -> usize {
        fn sweep<K: Hash + Eq + Clone, C: Clock>(limiter: &Keyed<K, C>) {
            let before = limiter.len();
            limiter.retain_recent();
            // Shrinking reallocates: only worth it when something went.
            if limiter.len() < before {
                limiter.shrink_to_fit();
            }
        }
        sweep(&self.users);
        sweep(&self.ips);
        self.keys()
    }

    /// How many users and IPs are tracked now.
    pub fn keys(&self) -> usize {
        self.users.len() + self.ips.len()
    }

    /// How many requests were refused since the start, for
    /// `ordersaga_gateway_rate_limited_total`.
    pub fn refused(&self) -> u64 {
        self.refused.load(Ordering::Relaxed)
    }

    /// The limit `caller` is held to, in words, for the problem detail.
    fn describe(&self, caller: &Caller) -> String {
        let (rate, burst) = match caller {
            Caller::User(_) => (self.config.user_per_second, self.config.user_burst),
            Caller::Ip(_) => (self.config.ip_per_second, self.config.ip_burst),
        };
        format!("more than {rate} requests/s (burst {burst}) from {caller}")
    }
}

/// The gateway's answer to "who is calling?": the verified JWT subject
/// ([`Caller::User`]) or else the client IP ([`Caller::Ip`]).
pub type Identify = Arc<dyn Fn(&ServiceRequest) -> Caller + Send + Sync>;

/// The client IP of the TCP connection (IPv4-mapped IPv6 addresses folded
/// to IPv4, so a dual-stack listener counts one client once), or 0.0.0.0
/// when actix knows no peer (which happens only off TCP).
///
/// `X-Forwarded-For` is deliberately ignored: any client can send it, so
/// trusting it would let a client pick a fresh key for every request (no
/// limit at all) or spend someone else's budget. A deployment behind a
/// known proxy should supply its own [`Identify`] that reads the address
/// that proxy appended, and only that.
pub fn peer_ip(req: &ServiceRequest) -> Caller {
    let ip = req
        .peer_addr()
        .map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |addr| {
            addr.ip().to_canonical()
        });
    Caller::Ip(ip)
}

/// Paths never limited: orchestrator probes and the Prometheus scraper
/// poll them on a fixed schedule, and a 429 there would read as "down".
pub const DEFAULT_EXEMPT: &[&str] = &["/health", "/ready", "/metrics"];

/// The rate-limit middleware:
/// `App::new().wrap(RateLimit::new(limiter, identify))`.
pub struct RateLimit<C = DefaultClock>
where
    C: Clock,
{
    limiter: Arc<Limiter<C>>,
    identify: Identify,
    exempt: Arc<[String]>,
}

impl<C: Clock> Clone for RateLimit<C> {
    fn clone(&self) -> Self {
        Self {
            limiter: Arc::clone(&self.limiter),
            identify: Arc::clone(&self.identify),
            exempt: Arc::clone(&self.exempt),
        }
    }
}

impl<C: Clock> RateLimit<C> {
    /// Limits every request but those to [`DEFAULT_EXEMPT`], counting it
    /// against whoever `identify` names.
    pub fn new(limiter: Arc<Limiter<C>>, identify: Identify) -> Self {
        Self {
            limiter,
            identify,
            exempt: DEFAULT_EXEMPT.iter().map(|p| p.to_string()).collect(),
        }
    }

    /// Replaces the exempt paths. They match the request path exactly (no
    /// prefixes: `/health` must not exempt `/healthy-orders`).
    pub fn exempt<I, P>(mut self, paths: I) -> Self
    where
        I: IntoIterator<Item = P>,
        P: Into<String>,
    {
        self.exempt = paths.into_iter().map(Into::into).collect();
        self
    }

    /// The limiter, for `/metrics` (refusals, tracked keys).
    pub fn limiter(&self) -> &Arc<Limiter<C>> {
        &self.limiter
    }

    /// How many requests were refused since the start.
    pub fn refused(&self) -> u64 {
        self.limiter.refused()
    }
}

impl<S, B, C> Transform<S, ServiceRequest> for RateLimit<C>
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = actix_web::Error> + 'static,
    B: MessageBody + 'static,
    C: Clock + 'static,
{
    type Response = ServiceResponse<EitherBody<B>>;
    type Error = actix_web::Error;
    type Transform = RateLimitService<S, C>;
    type InitError = ();
    type Future = Ready<Result<Self::Transform, Self::InitError>>;

    fn new_transform(&self, service: S) -> Self::Future {
        ready(Ok(RateLimitService {
            service: Rc::new(service),
            config: self.clone(),
        }))
    }
}

/// The service [`RateLimit`] wraps around the app's.
pub struct RateLimitService<S, C = DefaultClock>
where
    C: Clock,
{
    service: Rc<S>,
    config: RateLimit<C>,
}

impl<S, B, C> Service<ServiceRequest> for RateLimitService<S, C>
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = actix_web::Error> + 'static,
    B: MessageBody + 'static,
    C: Clock + 'static,
{
    type Response = ServiceResponse<EitherBody<B>>;
    type Error = actix_web::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>>>>;

    forward_ready!(service);

    fn call(&self, req: ServiceRequest) -> Self::Future {
        let exempt = self.config.exempt.iter().any(|p| p == req.path());
        if !exempt {
            let caller = (self.config.identify)(&req);
            if let Err(wait) = self.config.limiter.check(&caller) {
                let seconds = (wait.as_secs() + u64::from(wait.subsec_nanos() > 0)).max(1);
                // Names the limit and the caller (a subject or an IP),
                // never a credential: `identify` reduced it to a Caller.
                let detail = format!(
                    "{}; retry in {seconds} s",
                    self.config.limiter.describe(&caller)
                );
                tracing::debug!(%caller, path = req.path(), "rate limited");
                let problem = Problem::new(StatusCode::TOO_MANY_REQUESTS, "rate_limited", detail)
                    .retry_after(wait);
                let response = req
                    .into_response(problem.error_response())
                    .map_into_right_body();
                return Box::pin(ready(Ok(response)));
            }
        }
        let service = Rc::clone(&self.service);
        Box::pin(async move { Ok(service.call(req).await?.map_into_left_body()) })
    }
}

#[cfg(test)]
#[path = "ratelimit_tests.rs"]
mod tests;
