//! What a store rebuilt from events (import, restore) remembers of the
//! commands its events came from.

use ordersaga_actors::Journal;
use ordersaga_events::codec::decode;
use ordersaga_events::{CommandId, Outcome, Reply};
use std::collections::BTreeMap;

/// Every processed command of `journal` with its stored reply.
fn processed(journal: &Journal) -> BTreeMap<CommandId, (Reply, Vec<u8>)> {
    journal
        .processed_commands()
        .map(|item| {
            let (id, bytes) = item.expect("a processed entry");
            let reply: Reply = decode(&bytes).expect("a stored reply decodes");
            (id, (reply, bytes))
        })
        .collect()
}

/// Whether `reply` is of a command that left events.
fn with_events(reply: &Reply) -> bool {
    matches!(&reply.outcome, Outcome::Accepted { sequences } if !sequences.is_empty())
}

/// `copy`, rebuilt from `original`'s events, remembers every command that
/// `original` accepted with events, with the same reply byte for byte, and
/// nothing but accepted commands with events (a rejection left none).
pub fn assert_commands_remembered(original: &Journal, copy: &Journal) {
    let rebuilt = processed(copy);
    for (id, (reply, _)) in &rebuilt {
        assert!(
            with_events(reply),
            "{id} remembered without events: {reply:?}"
        );
    }
    let mut compared = 0;
    for (id, (reply, bytes)) in processed(original) {
        if with_events(&reply) {
            let again = rebuilt.get(&id).map(|(_, b)| b);
            assert_eq!(again, Some(&bytes), "command {id} ({reply:?})");
            compared += 1;
        }
    }
    assert!(compared > 0, "the original accepted no command");
}
