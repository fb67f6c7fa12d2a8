//! Tests of [`super`] (`breaker.rs`), kept apart so the module stays readable.
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
