//! The last state read from each live entity, readable from any thread.
//!
//! A query (`GET /products/{id}`) used to be a message to the router, then to
//! the entity, and an answer back: three hand-offs between the caller's
//! thread and the service's arbiter, and a wait behind the command the
//! entity was running, since an entity handles one message at a time until
//! its command is durable. Here a query is answered from the state the
//! entity last gave out, when that state is still current; otherwise it asks
//! the entity as before, and the entity leaves its answer here.
//!
//! Why it is never stale:
//! - Only the current incarnation of an entity fills its view. The router
//!   opens a view when it starts an entity (a new incarnation number) and
//!   closes it when it passivates or evicts it. An entity that has been
//!   replaced, and still finishes the commands it had queued, cannot fill.
//! - Every entity, current or replaced, clears the view of its aggregate
//!   when it takes up a command, before anything is written. While the
//!   command runs, queries ask the entity and wait for it, as before. So no
//!   query sees a state older than a write that is durable: not a caller
//!   who has the command's reply, nor one who has read its event from
//!   Kafka.
//! - A clear and a fill of one aggregate both happen on its entity, one
//!   after another; readers only copy what is there.
//!
//! Memory is bounded like the entities: a view exists only between its
//! entity's start and its passivation.

use crate::recovery::Recovered;
use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};
use uuid::Uuid;

/// Shards, so readers on several threads rarely meet on one lock.
const SHARDS: usize = 16;

/// One aggregate's view: which incarnation of its entity may fill it, and
/// the state it last gave out, if still current.
struct View<A> {
    incarnation: u64,
    state: Option<Recovered<A>>,
}

/// The views of one service's live entities.
pub(crate) struct Views<A> {
    shards: Vec<Mutex<HashMap<Uuid, View<A>>>>,
}

impl<A: Clone> Views<A> {
    pub fn new() -> Self {
        Self {
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
        }
    }

    fn shard(&self, id: &Uuid) -> MutexGuard<'_, HashMap<Uuid, View<A>>> {
        let index = (id.as_u128() as usize) % SHARDS;
        // A reader or writer that panicked left the map whole (every change
        // is one insert or remove), so a poisoned lock is still usable.
        self.shards[index]
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The current state of `id`, if its entity gave it out since its last
    /// command.
    pub fn get(&self, id: &Uuid) -> Option<Recovered<A>> {
        self.shard(id).get(id)?.state.clone()
    }

    /// The router started incarnation `incarnation` of `id`'s entity: only
    /// that one may fill the view from now on.
    pub fn open(&self, id: Uuid, incarnation: u64) {
        self.shard(&id).insert(
            id,
            View {
                incarnation,
                state: None,
            },
        );
    }

    /// Incarnation `incarnation` of `id`'s entity gave out `state`.
    pub fn fill(&self, id: Uuid, incarnation: u64, state: &Recovered<A>) {
        if let Some(view) = self.shard(&id).get_mut(&id) {
            if view.incarnation == incarnation {
                view.state = Some(state.clone());
            }
        }
    }

    /// An entity of `id` takes up a command: what was given out may soon be
    /// old.
    pub fn clear(&self, id: &Uuid) {
        if let Some(view) = self.shard(id).get_mut(id) {
            view.state = None;
        }
    }

    /// Incarnation `incarnation` of `id`'s entity stopped or was let go;
    /// a later incarnation's view stays.
    pub fn close(&self, id: &Uuid, incarnation: u64) {
        let mut shard = self.shard(id);
        if shard.get(id).is_some_and(|v| v.incarnation == incarnation) {
            shard.remove(id);
        }
    }

    /// Views open (for the tests: bounded by the live entities).
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.lock().map(|m| m.len()).unwrap_or(0))
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(version: u64) -> Recovered<u64> {
        Recovered {
            state: version * 10,
            version,
        }
    }

    #[test]
    fn only_the_current_incarnation_fills_a_view() {
        let views = Views::new();
        let id = Uuid::new_v4();
        // Given incarnation 1 was replaced by incarnation 2,
        views.open(id, 1);
        views.open(id, 2);
        // when the old one gives out its state, nothing is kept;
        views.fill(id, 1, &at(3));
        assert_eq!(views.get(&id), None);
        // when the current one does, it is served.
        views.fill(id, 2, &at(4));
        assert_eq!(views.get(&id), Some(at(4)));
    }

    #[test]
    fn a_command_by_any_incarnation_clears_the_view() {
        let views = Views::new();
        let id = Uuid::new_v4();
        views.open(id, 1);
        views.fill(id, 1, &at(1));
        views.clear(&id);
        assert_eq!(views.get(&id), None, "the state may be old");
        views.fill(id, 1, &at(2));
        assert_eq!(views.get(&id), Some(at(2)));
    }

    #[test]
    fn a_closed_incarnation_takes_only_its_own_view_away() {
        let views = Views::new();
        let (id, other) = (Uuid::new_v4(), Uuid::new_v4());
        views.open(id, 1);
        views.open(id, 2);
        views.fill(id, 2, &at(5));
        views.open(other, 3);
        // Given incarnation 1 stops after 2 took over, its close is a no-op;
        views.close(&id, 1);
        assert_eq!(views.get(&id), Some(at(5)));
        // 2's close removes the view, so memory follows the live entities.
        views.close(&id, 2);
        assert_eq!(views.get(&id), None);
        assert_eq!(views.len(), 1);
        // A fill after the close keeps nothing.
        views.fill(id, 2, &at(6));
        assert_eq!(views.get(&id), None);
    }

    #[test]
    fn a_view_never_opened_is_never_filled() {
        let views: Views<u64> = Views::new();
        let id = Uuid::new_v4();
        views.fill(id, 1, &at(1));
        views.clear(&id);
        assert_eq!(views.get(&id), None);
        assert_eq!(views.len(), 0);
    }
}
