//! Bounded mailboxes with a fail-fast refusal.
//!
//! actix's own mailbox capacity parks the sender rather than refusing, and
//! only once per sender, so it cannot give a caller a prompt "overloaded".
//! Instead every queued message holds a [`Ticket`] from its destination's
//! [`Mailbox`]; a full mailbox hands out no ticket, and a ticket frees its
//! place when the message is dropped — handled, or discarded with a stopped
//! actor.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

/// A count of queued messages against a capacity.
#[derive(Clone, Debug)]
pub(crate) struct Mailbox {
    queued: Arc<AtomicUsize>,
    capacity: usize,
}

/// One place in a [`Mailbox`], released on drop.
#[derive(Debug)]
pub(crate) struct Ticket(Arc<AtomicUsize>);

impl Mailbox {
    pub fn new(capacity: usize) -> Self {
        Self {
            queued: Arc::new(AtomicUsize::new(0)),
            capacity: capacity.max(1),
        }
    }

    /// A place for one more message, or `None` when full.
    pub fn try_reserve(&self) -> Option<Ticket> {
        let before = self.queued.fetch_add(1, Ordering::AcqRel);
        if before >= self.capacity {
            self.queued.fetch_sub(1, Ordering::AcqRel);
            return None;
        }
        Some(Ticket(self.queued.clone()))
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_mailbox_refuses_until_a_ticket_is_dropped() {
        let mailbox = Mailbox::new(2);
        let a = mailbox.try_reserve().unwrap();
        let _b = mailbox.try_reserve().unwrap();
        assert!(mailbox.try_reserve().is_none());
        drop(a);
        assert!(mailbox.try_reserve().is_some());
    }
}
