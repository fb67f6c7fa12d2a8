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
mod tests {
    use super::*;

    const COOL: Duration = Duration::from_secs(5);

    fn breaker(failures: u32, probes: u32) -> (Breaker, ManualClock) {
        let clock = ManualClock::new();
        let config = BreakerConfig {
            failures,
            cool_down: COOL,
            probes,
        };
        let breaker = Breaker::new("orders", config, Arc::new(clock.clone()));
        (breaker, clock)
    }

    fn fail(b: &Breaker, n: u32) {
        for _ in 0..n {
            b.acquire().expect("admitted").failure("boom");
        }
    }

    #[test]
    fn closed_passes_calls_and_a_success_resets_the_failure_count() {
        // Given a breaker that opens after 3 failures
        let (b, _) = breaker(3, 1);
        // When calls succeed, they pass as ordinary calls
        for _ in 0..10 {
            let permit = b.acquire().expect("closed admits");
            assert!(!permit.is_probe());
            permit.success();
        }
        // When 2 fail, then 1 succeeds, then 2 fail again
        fail(&b, 2);
        assert_eq!(b.snapshot().consecutive_failures, 2);
        b.acquire().expect("closed").success();
        fail(&b, 2);
        // Then the count restarted at the success: still closed, never opened
        let s = b.snapshot();
        assert_eq!(
            (s.state, s.consecutive_failures, s.opened),
            (State::Closed, 2, 0)
        );
    }

    #[test]
    fn n_consecutive_failures_open_it_and_it_rejects_with_the_remaining_cool_down() {
        // Given a breaker that opens after 3 failures
        let (b, clock) = breaker(3, 1);
        // When 3 calls fail
        fail(&b, 3);
        // Then it is open and refuses for the whole cool-down
        let s = b.snapshot();
        assert_eq!((s.state, s.opened), (State::Open, 1));
        assert_eq!(s.retry_after(), Some(COOL));
        assert_eq!(s.last_failure.as_deref(), Some("boom"));
        let refused = b.acquire().expect_err("open refuses");
        assert_eq!(refused.retry_after, COOL);
        assert!(refused.reason.contains("orders"), "{}", refused.reason);
        // When 2 s pass, the retry-after is what remains of the cool-down
        clock.advance(Duration::from_secs(2));
        let refused = b.acquire().expect_err("still open");
        assert_eq!(refused.retry_after, Duration::from_secs(3));
        assert_eq!(b.snapshot().retry_after_ms, Some(3_000));
    }

    #[test]
    fn after_cool_down_it_admits_exactly_the_configured_probes() {
        // Given an open breaker allowing 2 probes
        let (b, clock) = breaker(1, 2);
        fail(&b, 1);
        // When the cool-down passes, it reports half-open even before a call
        clock.advance(COOL);
        assert_eq!(b.snapshot().state, State::HalfOpen);
        assert_eq!(b.snapshot().retry_after_ms, None);
        // Then it admits 2 concurrent probes and refuses a third
        let p1 = b.acquire().expect("probe 1");
        let p2 = b.acquire().expect("probe 2");
        assert!(p1.is_probe() && p2.is_probe());
        assert!(b.acquire().expect_err("slots taken").retry_after > Duration::ZERO);
        p1.success();
        p2.success();
    }

    #[test]
    fn a_probe_success_closes_it_and_a_probe_failure_reopens_it() {
        // Given a half-open breaker whose probe fails late in the spell
        let (b, clock) = breaker(2, 1);
        fail(&b, 2);
        clock.advance(COOL + Duration::from_secs(7));
        b.acquire().expect("probe").failure("timeout");
        // Then it is open again for a whole cool-down from now
        let s = b.snapshot();
        assert_eq!((s.state, s.opened), (State::Open, 2));
        assert_eq!(s.last_failure.as_deref(), Some("timeout"));
        assert_eq!(b.acquire().expect_err("reopened").retry_after, COOL);
        // When the next probe succeeds
        clock.advance(COOL);
        b.acquire().expect("probe").success();
        // Then it is closed with a clean count and admits ordinary calls
        let s = b.snapshot();
        assert_eq!((s.state, s.consecutive_failures), (State::Closed, 0));
        assert!(!b.acquire().expect("closed").is_probe());
    }

    #[test]
    fn no_live_instance_opens_at_once_even_without_failures() {
        // Given a closed breaker with no failures
        let (b, clock) = breaker(5, 1);
        // When the registry has no live instance
        b.no_live_instance();
        // Then it is open with a full cool-down and says why
        let s = b.snapshot();
        assert_eq!(
            (s.state, s.consecutive_failures, s.opened),
            (State::Open, 0, 1)
        );
        let refused = b.acquire().expect_err("open");
        assert_eq!(refused.retry_after, COOL);
        assert_eq!(refused.reason, "no live instance of orders");
        // When it is reported again mid cool-down, the cool-down restarts
        // but the breaker did not open "again"
        clock.advance(Duration::from_secs(4));
        b.no_live_instance();
        assert_eq!(b.acquire().expect_err("open").retry_after, COOL);
        assert_eq!(b.snapshot().opened, 1);
    }

    #[test]
    fn a_dropped_permit_counts_as_a_failure() {
        // Given a breaker that opens after 2 failures
        let (b, clock) = breaker(2, 1);
        // When two permits are dropped without a verdict, it opens
        drop(b.acquire().expect("closed"));
        assert_eq!(b.snapshot().consecutive_failures, 1);
        drop(b.acquire().expect("closed"));
        assert_eq!(b.snapshot().state, State::Open);
        // And a dropped probe frees its slot by reopening, not by leaking it
        clock.advance(COOL);
        drop(b.acquire().expect("probe"));
        assert_eq!(b.snapshot().state, State::Open);
        clock.advance(COOL);
        b.acquire().expect("a new probe is admitted").success();
        assert_eq!(b.snapshot().state, State::Closed);
    }

    #[test]
    fn a_late_verdict_from_before_a_phase_change_does_not_move_it() {
        // Given a slow call admitted while closed, then the breaker opens
        let (b, clock) = breaker(1, 1);
        let slow = b.acquire().expect("closed");
        fail(&b, 1);
        // When the slow call succeeds late, the breaker stays open
        slow.success();
        assert_eq!(b.snapshot().state, State::Open);
        // And a stale success does not close a half-open breaker either
        clock.advance(COOL);
        b.acquire().expect("probe").success();
        let slow = b.acquire().expect("closed");
        fail(&b, 1);
        clock.advance(COOL);
        slow.success();
        assert_eq!(b.snapshot().state, State::HalfOpen);
    }

    #[test]
    fn snapshot_serializes_as_the_services_json() {
        // Given a breaker opened by 3 failures, 1.2 s before probing
        let (b, clock) = breaker(3, 1);
        fail(&b, 3);
        clock.advance(Duration::from_millis(3_800));
        // Then its snapshot is the /services shape
        let json = serde_json::to_value(b.snapshot()).expect("serializes");
        let expected = serde_json::json!({
            "state": "open", "consecutive_failures": 3, "retry_after_ms": 1200,
            "opened": 1, "last_failure": "boom",
        });
        assert_eq!(json, expected);
        let closed = serde_json::to_value(breaker(1, 1).0.snapshot()).expect("serializes");
        assert_eq!(
            closed,
            serde_json::json!({"state": "closed", "consecutive_failures": 0, "opened": 0})
        );
        let gauges = [State::Closed, State::HalfOpen, State::Open].map(State::gauge_value);
        assert_eq!(gauges, [0, 1, 2]);
    }

    /// Random operation sequences (from a fixed seed, so a failure
    /// reproduces) must keep the breaker's promises.
    #[test]
    fn random_operations_keep_the_invariants() {
        let mut seed: u64 = 0x9E37_79B9_7F4A_7C15;
        let mut next = move |n: u64| {
            // xorshift64*: cheap, and enough to shuffle operations.
            seed ^= seed >> 12;
            seed ^= seed << 25;
            seed ^= seed >> 27;
            seed.wrapping_mul(0x2545_F491_4F6C_DD1D) % n
        };
        for run in 0..50 {
            let (b, clock) = breaker(1 + run % 4, 1 + run % 3);
            let mut held: Vec<Permit> = Vec::new();
            let mut opened = 0;
            for _ in 0..400 {
                let before = b.snapshot().state;
                match next(6) {
                    0 | 1 => match b.acquire() {
                        Ok(p) => {
                            assert_ne!(before, State::Open, "admitted while open");
                            held.push(p);
                        }
                        Err(e) => {
                            assert_ne!(before, State::Closed, "refused while closed");
                            assert!(e.retry_after > Duration::ZERO && e.retry_after <= COOL);
                        }
                    },
                    2 if !held.is_empty() => {
                        held.swap_remove(next(held.len() as u64) as usize).success()
                    }
                    3 if !held.is_empty() => held
                        .swap_remove(next(held.len() as u64) as usize)
                        .failure("x"),
                    4 => clock.advance(Duration::from_millis(next(3_000))),
                    5 if next(10) == 0 => b.no_live_instance(),
                    _ => {}
                }
                let s = b.snapshot();
                assert!(s.opened >= opened, "opened went down");
                opened = s.opened;
                // Probes of an earlier half-open spell are stale: only the
                // current spell's count against the limit.
                let epoch = b.lock().epoch;
                let probes = held.iter().filter(|p| p.probe && p.epoch == epoch).count();
                assert!(probes as u32 <= b.config().probes, "too many probes");
                if s.state == State::Closed {
                    assert!(s.consecutive_failures < b.config().failures);
                }
                assert_eq!(s.state == State::Open, s.retry_after_ms.is_some());
            }
        }
    }
}
