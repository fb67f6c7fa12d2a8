//! Where the orders service's sagas get their time.
//!
//! A saga reads time only from its commands' `now`; the orders service
//! stamps that `now` on every start, reply, cancellation, operator retry and
//! tick it hands a saga, and the timer decides when to tick. All of them
//! read one [`Clock`], so a saga's deadlines and the ticks that test them
//! are on the same time line.
//!
//! A running service uses [`Clock::System`]: the system time, and a timer
//! that ticks every `saga_tick`. Tests use [`Clock::Manual`]: time stands
//! still until the test moves it ([`ManualClock::advance`]), and the timer
//! ticks only when the test asks ([`ManualClock::tick`]). A timeout then
//! happens because the test said so, never because the machine was slow,
//! and a test can show that without the clock moving no saga gives up.

use chrono::{DateTime, TimeDelta, Utc};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::watch;

/// The time source of the orders service's sagas and timer.
#[derive(Clone, Debug, Default)]
pub enum Clock {
    /// The system time; the timer ticks every interval by itself.
    #[default]
    System,
    /// Time that a test moves; the timer ticks only when the test asks.
    Manual(ManualClock),
}

impl Clock {
    /// The time now, by this clock.
    pub fn now(&self) -> DateTime<Utc> {
        match self {
            Clock::System => Utc::now(),
            Clock::Manual(clock) => clock.now(),
        }
    }
}

/// A clock a test moves by hand, and the switch that makes the timer tick.
///
/// Clones share one time and one timer switch, so the handle a test keeps
/// drives the service it started, and the same service again after a
/// restart. Meant for one orders service at a time: with two, a tick
/// request is served by whichever timer sees it first.
#[derive(Clone, Debug)]
pub struct ManualClock {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    now: Mutex<DateTime<Utc>>,
    /// How many ticks were asked for so far.
    requested: watch::Sender<u64>,
    /// The last tick done: the requests it served and its result.
    ticked: watch::Sender<Ticked>,
}

/// What the timer reports after a tick a test asked for.
#[derive(Clone, Copy, Debug, Default)]
struct Ticked {
    /// Every request up to this count is served.
    served: u64,
    /// How many sagas were due; `None` if the deadline index could not be
    /// read (the timer logged why).
    due: Option<usize>,
}

impl ManualClock {
    /// A clock standing at `start`.
    pub fn new(start: DateTime<Utc>) -> Self {
        Self {
            shared: Arc::new(Shared {
                now: Mutex::new(start),
                requested: watch::Sender::new(0),
                ticked: watch::Sender::new(Ticked::default()),
            }),
        }
    }

    /// The time the clock stands at.
    pub fn now(&self) -> DateTime<Utc> {
        *self.lock()
    }

    /// Moves the clock forward by `by`. Nothing is ticked: sagas whose
    /// deadline has passed give up or resend at the next [`tick`](Self::tick).
    pub fn advance(&self, by: Duration) {
        let by = TimeDelta::from_std(by).unwrap_or(TimeDelta::MAX);
        let mut now = self.lock();
        *now = now
            .checked_add_signed(by)
            .unwrap_or(DateTime::<Utc>::MAX_UTC);
    }

    /// Asks the timer to tick the sagas due now, and waits until it has:
    /// every saga due was ticked and its decision stored. Returns how many
    /// were due, or `None` if the timer could not read the deadline index.
    ///
    /// Waits for as long as no orders service runs on this clock; a request
    /// made while none runs is served by the next one to start. Requests made
    /// at the same time may be served by one tick, and share its count.
    pub async fn tick(&self) -> Option<usize> {
        let mut wanted = 0;
        self.shared.requested.send_modify(|requested| {
            *requested += 1;
            wanted = *requested;
        });
        let mut ticked = self.shared.ticked.subscribe();
        // The sender lives as long as `self`: the wait cannot fail.
        let done = ticked.wait_for(|t| t.served >= wanted).await.ok()?;
        done.due
    }

    /// The tick requests, for the timer.
    pub(crate) fn requests(&self) -> watch::Receiver<u64> {
        self.shared.requested.subscribe()
    }

    /// The requests served so far, for a timer that starts.
    pub(crate) fn served(&self) -> u64 {
        self.shared.ticked.borrow().served
    }

    /// The timer's report of a tick that served every request up to `served`.
    pub(crate) fn ticked(&self, served: u64, due: Option<usize>) {
        self.shared.ticked.send_replace(Ticked { served, due });
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, DateTime<Utc>> {
        // A panic while holding the lock cannot leave a time half written.
        self.shared
            .now
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn manual_time_moves_only_when_advanced() {
        let start = Utc.with_ymd_and_hms(2024, 1, 1, 0, 0, 0).unwrap();
        let clock = ManualClock::new(start);
        let shared = Clock::Manual(clock.clone());
        assert_eq!(shared.now(), start);
        clock.advance(Duration::from_millis(1_500));
        assert_eq!(shared.now(), start + TimeDelta::milliseconds(1_500));
    }

    #[tokio::test]
    async fn a_tick_waits_for_the_timer_to_serve_it() {
        let clock = ManualClock::new(Utc::now());
        let timer = clock.clone();
        let mut requests = timer.requests();
        let serve = tokio::spawn(async move {
            let served = timer.served();
            let wanted = *requests.wait_for(|&r| r > served).await.unwrap();
            timer.ticked(wanted, Some(3));
        });
        assert_eq!(clock.tick().await, Some(3));
        serve.await.unwrap();
    }
}
