//! Service settings, with documented defaults.

use ordersaga_events::Format;
use std::time::Duration;

/// How a service's actors behave. `Default` gives the documented defaults.
#[derive(Clone, Debug)]
pub struct ServiceConfig {
    /// Take a snapshot every this many events per aggregate; 0 disables
    /// snapshots. Default 100.
    pub snapshot_every: u64,
    /// Commands one entity may have queued before new ones are refused as
    /// overloaded. Default 64.
    pub entity_mailbox: usize,
    /// Commands the router may have queued. Default 4096.
    pub router_mailbox: usize,
    /// An entity idle this long is stopped to free memory; it recovers from
    /// the journal on its next command. Default 2 minutes.
    pub passivate_after: Duration,
    /// Most entities kept in memory; past it the least recently used are
    /// passivated. Default 100 000.
    pub max_entities: usize,
    /// Encoding of records published to the events topic. Default JSON, so
    /// that a client in any language reads them with no extra schema; the
    /// store keeps bincode either way.
    pub event_format: Format,
}

impl Default for ServiceConfig {
    fn default() -> Self {
        Self {
            snapshot_every: 100,
            entity_mailbox: 64,
            router_mailbox: 4096,
            passivate_after: Duration::from_secs(120),
            max_entities: 100_000,
            event_format: Format::Json,
        }
    }
}
