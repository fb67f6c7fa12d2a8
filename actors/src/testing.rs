//! A given/when/then harness for aggregate rules. It touches no disk and no
//! broker, but decides as the service does: it runs [`Aggregate::prepare`]
//! first, and recalls a closed item from an in-memory archive of the given
//! events (see [`Aggregate::recall`]).
//!
//! ```
//! use ordersaga_actors::aggregates::Order;
//! use ordersaga_actors::testing::AggregateTest;
//! use ordersaga_events::order::OrderCommand;
//! use ordersaga_events::OrderId;
//!
//! AggregateTest::<Order>::given(vec![])
//!     .when(OrderCommand::Confirm { order_id: OrderId::new() })
//!     .then_expect_rejection("unknown_order");
//! ```

use crate::aggregate::Aggregate;
use ordersaga_events::reply::ReasonCode;
use std::collections::HashMap;

/// The `given` half: an aggregate built from past events.
pub struct AggregateTest<A: Aggregate> {
    state: A,
    archive: HashMap<String, A::Event>,
}

/// The `when` half: the result of deciding one command.
pub struct AggregateResult<A: Aggregate> {
    state: A,
    result: Result<Vec<A::Event>, A::Rejection>,
}

impl<A: Aggregate> AggregateTest<A> {
    /// An aggregate that has seen `events`.
    pub fn given(events: Vec<A::Event>) -> Self {
        let archive = events
            .iter()
            .filter_map(|event| A::archive_key(event).map(|key| (key, event.clone())))
            .collect();
        Self {
            state: A::from_events(&events),
            archive,
        }
    }

    /// An aggregate that has seen no events.
    pub fn given_no_previous_events() -> Self {
        Self::given(Vec::new())
    }

    /// Decides `command` against the given state, as the service would.
    pub fn when(self, mut command: A::Command) -> AggregateResult<A> {
        let result = match A::prepare(&mut command) {
            Err(rejection) => Err(rejection),
            Ok(()) => decide_recalled(&self.state, &self.archive, &command),
        };
        AggregateResult {
            state: self.state,
            result,
        }
    }
}

impl<A: Aggregate> AggregateResult<A> {
    /// Asserts the command was accepted with exactly `expected` events.
    #[track_caller]
    pub fn then_expect_events(self, expected: Vec<A::Event>) {
        match self.result {
            Ok(events) => assert_eq!(events, expected, "unexpected events"),
            Err(rejection) => panic!(
                "expected events {expected:?}, got rejection {} ({rejection})",
                rejection.code()
            ),
        }
    }

    /// Asserts the command was rejected with the given stable code.
    #[track_caller]
    pub fn then_expect_rejection(self, code: &str) {
        match self.result {
            Ok(events) => panic!("expected rejection {code}, got events {events:?}"),
            Err(rejection) => assert_eq!(rejection.code(), code, "wrong rejection: {rejection}"),
        }
    }

    /// Asserts the command was rejected with exactly `expected`.
    #[track_caller]
    pub fn then_expect_rejection_value(self, expected: A::Rejection) {
        match self.result {
            Ok(events) => panic!("expected rejection {expected:?}, got events {events:?}"),
            Err(rejection) => assert_eq!(rejection, expected),
        }
    }

    /// Hands the raw result and the state after applying any events to a
    /// closure, for outcomes that cannot be compared literally (e.g. a salted
    /// password hash).
    #[track_caller]
    pub fn then_inspect(self, check: impl FnOnce(&Result<Vec<A::Event>, A::Rejection>, &A)) {
        let mut state = self.state;
        if let Ok(events) = &self.result {
            for event in events {
                state.apply(event);
            }
        }
        check(&self.result, &state);
    }
}

/// Decides `command` on `state`, with the closed item it needs recalled from
/// `archive` (the latest event per item), as the service does.
pub fn decide_recalled<A: Aggregate>(
    state: &A,
    archive: &HashMap<String, A::Event>,
    command: &A::Command,
) -> Result<Vec<A::Event>, A::Rejection> {
    match A::recall_key(command).and_then(|key| archive.get(&key)) {
        Some(event) => {
            let mut view = state.clone();
            view.recall(event);
            view.decide(command)
        }
        None => state.decide(command),
    }
}
