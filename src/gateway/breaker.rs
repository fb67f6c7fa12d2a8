//! The circuit breaker of each downstream service.
//!
//! One [`Breaker`] guards one service (users, orders, inventory). It is
//! *closed* while calls succeed; after [`BreakerConfig::failures`]
//! consecutive failures (errors or timeouts), or at once when the registry
//! knows no live instance of the service, it *opens*: every call is refused
//! with a retry-after and nothing is sent downstream, so a dead service costs
//! the gateway no sockets and its clients no waiting. After
//! [`BreakerConfig::cool_down`] it turns *half-open* and lets
//! [`BreakerConfig::probes`] concurrent calls through: the first probe that
//! succeeds closes it, a probe that fails opens it for another cool-down.
//!
//! The breaker reads time only from an injected [`Clock`], so its tests
//! drive time by hand with a [`ManualClock`] instead of sleeping.
//!
//! No crate is used because none offers both the injected clock and the
//! "no live instance" trigger.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use serde::Serialize;

/// A source of monotonic time.
pub trait Clock: Send + Sync + 'static {
    /// The current instant.
    fn now(&self) -> Instant;
}

/// The real clock: [`Instant::now`].
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Instant {
        Instant::now()
    }
}

/// A clock that moves only when told to, for deterministic tests. Clones
/// share the same time.
#[derive(Clone, Debug)]
pub struct ManualClock {
    start: Instant,
    /// Nanoseconds since `start`, shared by every clone.
    elapsed: Arc<AtomicU64>,
}

impl ManualClock {
    /// A clock standing at the moment of its creation.
    pub fn new() -> Self {
        Self {
            start: Instant::now(),
            elapsed: Arc::new(AtomicU64::new(0)),
        }
    }

    /// Moves the clock (and all its clones) forward by `by`.
    pub fn advance(&self, by: Duration) {
        // u64 nanoseconds last 584 years: saturating is only a guard.
        let by = u64::try_from(by.as_nanos()).unwrap_or(u64::MAX);
        let _ = self
            .elapsed
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |now| {
                Some(now.saturating_add(by))
            });
    }
}

impl Default for ManualClock {
    fn default() -> Self {
        Self::new()
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Instant {
        self.start + Duration::from_nanos(self.elapsed.load(Ordering::Acquire))
    }
}

/// When a breaker opens and how it recovers.
#[derive(Clone, Debug)]
pub struct BreakerConfig {
    /// Consecutive failed calls (errors or timeouts) that open the breaker.
    /// Default 5.
    pub failures: u32,
    /// How long the breaker stays open before it lets probes through.
    /// Default 5 s.
    pub cool_down: Duration,
    /// Concurrent probes admitted while half-open. Default 1.
    pub probes: u32,
}

impl Default for BreakerConfig {
    fn default() -> Self {
        Self {
            failures: 5,
            cool_down: Duration::from_secs(5),
            probes: 1,
        }
    }
}

/// The state of a breaker, as `/services` and `/metrics` show it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum State {
    /// Calls go through.
    Closed,
    /// Calls are refused without reaching the service.
    Open,
    /// The cool-down is over: a limited number of probe calls go through.
    HalfOpen,
}

impl State {
    /// The value of the state gauge: 0 closed, 1 half-open, 2 open (so a
    /// higher value is worse and `max` over instances is meaningful).
    pub fn gauge_value(self) -> i64 {
        match self {
            State::Closed => 0,
            State::HalfOpen => 1,
            State::Open => 2,
        }
    }

    /// The snake_case name, as in the JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            State::Closed => "closed",
            State::HalfOpen => "half_open",
            State::Open => "open",
        }
    }
}

/// A refused call: the breaker is open (or half-open with all its probe
/// slots taken). Nothing was sent downstream.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{reason}; retry in {retry_after:?}")]
pub struct Open {
    /// How long until a call may be admitted again.
    pub retry_after: Duration,
    /// Why the breaker refused, naming the service, for the problem detail
    /// and the logs.
    pub reason: String,
}

/// What a breaker looks like now, for `/services` (as JSON) and `/metrics`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Snapshot {
    /// The state; an open breaker whose cool-down is over reports
    /// [`State::HalfOpen`] even before the next call moves it there.
    pub state: State,
    /// Failed calls since the last success.
    pub consecutive_failures: u32,
    /// While open: milliseconds until probes are admitted.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retry_after_ms: Option<u64>,
    /// How many times the breaker has opened since it was created.
    pub opened: u64,
    /// The reason given for the most recent failure, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_failure: Option<String>,
}

impl Snapshot {
    /// [`Snapshot::retry_after_ms`] as a duration.
    pub fn retry_after(&self) -> Option<Duration> {
        self.retry_after_ms.map(Duration::from_millis)
    }
}

/// The phase a breaker is in. `Open` past its deadline is half-open in
/// effect; it is moved there lazily, on the next call or snapshot.
#[derive(Clone, Copy, Debug)]
enum Phase {
    Closed,
    Open { until: Instant },
    HalfOpen { admitted: u32 },
}

#[derive(Debug)]
struct Inner {
    phase: Phase,
    /// Bumped on every phase change. A permit remembers the epoch it was
    /// issued in; a verdict from an older epoch (a slow call that finishes
    /// after the breaker already opened or closed) must not move the
    /// breaker again, or one late success would close a breaker that
    /// newer failures opened.
    epoch: u64,
    consecutive_failures: u32,
    opened: u64,
    last_failure: Option<String>,
    /// Why it last opened, repeated in every refusal.
    open_reason: String,
}

/// The circuit breaker of one downstream service. Cheap to clone: clones
/// share the same state.
#[derive(Clone)]
pub struct Breaker {
    name: Arc<str>,
    config: BreakerConfig,
    clock: Arc<dyn Clock>,
    inner: Arc<Mutex<Inner>>,
}

impl fmt::Debug for Breaker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Breaker")
            .field("name", &self.name)
            .field("config", &self.config)
            .field("snapshot", &self.snapshot())
            .finish()
    }
}

/// How long a caller refused because every probe slot is taken should
/// wait: the probes' verdicts arrive within one call, whose timeout the
/// breaker does not know, and one second is the smallest `Retry-After`.
const PROBES_BUSY_RETRY: Duration = Duration::from_secs(1);

impl Breaker {
    /// A closed breaker for the service `name`.
    pub fn new(name: &str, config: BreakerConfig, clock: Arc<dyn Clock>) -> Self {
        Self {
            name: Arc::from(name),
            config,
            clock,
            inner: Arc::new(Mutex::new(Inner {
                phase: Phase::Closed,
                epoch: 0,
                consecutive_failures: 0,
                opened: 0,
                last_failure: None,
                open_reason: String::new(),
            })),
        }
    }

    /// The service this breaker guards.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The configuration it was built with.
    pub fn config(&self) -> &BreakerConfig {
        &self.config
    }

    /// The state, recovering from a poisoned lock: every update below
    /// leaves `Inner` consistent before anything can panic, so the data
    /// behind a poisoned lock is still sound.
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Moves an open breaker whose cool-down is over to half-open.
    fn settle(&self, inner: &mut Inner, now: Instant) {
        if let Phase::Open { until } = inner.phase {
            if now >= until {
                inner.phase = Phase::HalfOpen { admitted: 0 };
                inner.epoch += 1;
                tracing::info!(service = %self.name, "breaker half-open: admitting probes");
            }
        }
    }

    /// Asks to make one call. `Ok` carries the [`Permit`] whose verdict the
    /// caller must report; `Err` means the breaker is open (or its probe
    /// slots are taken) and no call may be made.
    pub fn acquire(&self) -> Result<Permit, Open> {
        let now = self.clock.now();
        let mut inner = self.lock();
        self.settle(&mut inner, now);
        match inner.phase {
            Phase::Closed => Ok(self.permit(inner.epoch, false)),
            Phase::Open { until } => Err(Open {
                retry_after: until.saturating_duration_since(now),
                reason: inner.open_reason.clone(),
            }),
            Phase::HalfOpen { admitted } if admitted < self.config.probes => {
                inner.phase = Phase::HalfOpen {
                    admitted: admitted + 1,
                };
                Ok(self.permit(inner.epoch, true))
            }
            Phase::HalfOpen { .. } => Err(Open {
                retry_after: PROBES_BUSY_RETRY,
                reason: format!(
                    "{} is half-open and its probe calls are in flight",
                    self.name
                ),
            }),
        }
    }

    fn permit(&self, epoch: u64, probe: bool) -> Permit {
        Permit {
            breaker: Some(self.clone()),
            epoch,
            probe,
        }
    }

    /// The registry knows no live instance of the service: open now, for a
    /// fresh cool-down, without waiting for calls to fail. An open breaker
    /// gets its cool-down restarted (the service is still gone).
    pub fn no_live_instance(&self) {
        let now = self.clock.now();
        let mut inner = self.lock();
        self.settle(&mut inner, now);
        let reason = format!("no live instance of {}", self.name);
        inner.last_failure = Some(reason.clone());
        self.trip(&mut inner, now, reason);
    }

    /// Opens (or keeps open) for a fresh cool-down from `now`.
    fn trip(&self, inner: &mut Inner, now: Instant, reason: String) {
        if !matches!(inner.phase, Phase::Open { .. }) {
            inner.opened += 1;
            tracing::warn!(service = %self.name, %reason, "breaker opened");
        }
        inner.phase = Phase::Open {
            until: now + self.config.cool_down,
        };
        inner.epoch += 1;
        inner.open_reason = reason;
    }

    /// Records the verdict of a permit issued in `epoch`.
    fn record(&self, epoch: u64, probe: bool, failure: Option<&str>) {
        let now = self.clock.now();
        let mut inner = self.lock();
        if epoch != inner.epoch {
            // A call admitted before the last phase change: its outcome
            // says nothing about the service as the breaker now sees it.
            return;
        }
        match failure {
            None => {
                inner.consecutive_failures = 0;
                if probe {
                    inner.phase = Phase::Closed;
                    inner.epoch += 1;
                    tracing::info!(service = %self.name, "breaker closed: probe succeeded");
                }
            }
            Some(reason) => {
                inner.consecutive_failures = inner.consecutive_failures.saturating_add(1);
                inner.last_failure = Some(reason.to_string());
                if probe {
                    let why = format!("{} failed its probe: {reason}", self.name);
                    self.trip(&mut inner, now, why);
                } else if inner.consecutive_failures >= self.config.failures {
                    let why = format!(
                        "{} failed {} consecutive calls (last: {reason})",
                        self.name, inner.consecutive_failures
                    );
                    self.trip(&mut inner, now, why);
                }
            }
        }
    }

    /// The breaker's state now, for `/services` and `/metrics`.
    pub fn snapshot(&self) -> Snapshot {
        let now = self.clock.now();
        let inner = self.lock();
        // Reported lazily rather than through `settle`, so reading the
        // state never changes it (nor logs a transition).
        let (state, retry_after) = match inner.phase {
            Phase::Closed => (State::Closed, None),
            Phase::Open { until } if now >= until => (State::HalfOpen, None),
            Phase::Open { until } => (State::Open, Some(until.saturating_duration_since(now))),
            Phase::HalfOpen { .. } => (State::HalfOpen, None),
        };
        Snapshot {
            state,
            consecutive_failures: inner.consecutive_failures,
            // Rounded up so an open breaker never reports 0 ms.
            retry_after_ms: retry_after
                .map(|d| u64::try_from(d.as_nanos().div_ceil(1_000_000)).unwrap_or(u64::MAX)),
            opened: inner.opened,
            last_failure: inner.last_failure.clone(),
        }
    }
}

/// Leave to make one call through a [`Breaker`]. Report how it went with
/// [`Permit::success`] or [`Permit::failure`]; a permit dropped without a
/// verdict (the call was cancelled or panicked) counts as a failure, so a
/// half-open probe slot is never held forever.
#[must_use = "report the call's outcome with success() or failure()"]
#[derive(Debug)]
pub struct Permit {
    /// `None` once a verdict was given.
    breaker: Option<Breaker>,
    epoch: u64,
    probe: bool,
}

impl Permit {
    /// Whether this call is a half-open probe.
    pub fn is_probe(&self) -> bool {
        self.probe
    }

    /// The call succeeded: the failure count resets, a probe closes the
    /// breaker.
    pub fn success(mut self) {
        self.verdict(None);
    }

    /// The call failed or timed out (`reason` says how, for `/services`):
    /// it counts toward opening, a probe reopens the breaker.
    pub fn failure(mut self, reason: &str) {
        self.verdict(Some(reason));
    }

    /// Records the first verdict given; later ones (the drop after a
    /// `success`) find the breaker taken and do nothing.
    fn verdict(&mut self, failure: Option<&str>) {
        if let Some(breaker) = self.breaker.take() {
            breaker.record(self.epoch, self.probe, failure);
        }
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        self.verdict(Some(
            "call abandoned without a verdict (cancelled or panicked)",
        ));
    }
}

#[cfg(test)]
#[path = "breaker_tests.rs"]
mod tests;
