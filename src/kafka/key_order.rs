//! One command at a time per aggregate, in arrival order.
//!
//! Commands for different aggregates run concurrently, but a later command
//! for an aggregate must never overtake an earlier one: not even while the
//! earlier one waits between retries after a failure. The consumer starts a
//! command only when no earlier command of the same key is running, and
//! queues it behind that one otherwise.

use std::collections::{HashMap, VecDeque};
use std::hash::Hash;

/// Work waiting per key. A key is present while a piece of its work runs.
#[derive(Debug)]
pub struct KeyOrder<K, W> {
    waiting: HashMap<K, VecDeque<W>>,
}

impl<K: Eq + Hash + Clone, W> Default for KeyOrder<K, W> {
    fn default() -> Self {
        Self {
            waiting: HashMap::new(),
        }
    }
}

impl<K: Eq + Hash + Clone, W> KeyOrder<K, W> {
    /// Offers `work` for `key`: returns it back when it may start now, or
    /// keeps it until the work running for `key` is done.
    pub fn arrive(&mut self, key: K, work: W) -> Option<W> {
        match self.waiting.get_mut(&key) {
            Some(queue) => {
                queue.push_back(work);
                None
            }
            None => {
                self.waiting.insert(key, VecDeque::new());
                Some(work)
            }
        }
    }

    /// The work running for `key` is done: returns the next to start, if
    /// any.
    pub fn done(&mut self, key: &K) -> Option<W> {
        let queue = self.waiting.get_mut(key)?;
        match queue.pop_front() {
            Some(next) => Some(next),
            None => {
                self.waiting.remove(key);
                None
            }
        }
    }

    /// Keys with work running.
    pub fn busy(&self) -> usize {
        self.waiting.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn work_for_one_key_runs_one_at_a_time_in_arrival_order() {
        let mut order = KeyOrder::default();
        assert_eq!(order.arrive("a", 1), Some(1));
        assert_eq!(order.arrive("a", 2), None, "behind 1");
        assert_eq!(
            order.arrive("b", 10),
            Some(10),
            "other keys are not held up"
        );
        assert_eq!(order.arrive("a", 3), None);
        assert_eq!(order.done(&"a"), Some(2));
        assert_eq!(order.done(&"a"), Some(3));
        assert_eq!(order.done(&"b"), None);
        assert_eq!(order.busy(), 1);
        assert_eq!(order.done(&"a"), None);
        assert_eq!(order.busy(), 0);
        assert_eq!(order.arrive("a", 4), Some(4), "an idle key starts at once");
    }
}
