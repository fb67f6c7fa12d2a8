//! The stock check after the run: products replayed from their stores, from
//! their first event (no snapshot), against what the bench saw accepted.

use super::report::StockCheck;
use super::workload::{product, Domain, INITIAL_STOCK};
use crate::bench::BenchError;
use ordersaga_actors::aggregates::Product;
use ordersaga_actors::recovery::replay;
use ordersaga_actors::Journal;
use std::sync::atomic::{AtomicU64, Ordering};

/// At most this many products of the passivation phase are replayed (an
/// even sample): a million replays would outlast the phase itself.
pub const TOUCH_CHECK_SAMPLE: usize = 10_000;

/// Restocks each product of the passivation phase gets (see `touch.rs`).
pub const TOUCH_RESTOCKS: u64 = 3;

/// Checks every load-phase product: on hand = initial stock + its accepted
/// restocks, nothing reserved, one event per command.
pub(super) fn load_products(
    journal: &Journal,
    seed: u64,
    restocked: &[AtomicU64],
    check: &mut StockCheck,
) -> Result<(), BenchError> {
    for (index, count) in restocked.iter().enumerate() {
        let restocks = count.load(Ordering::Relaxed);
        compare(journal, seed, Domain::Load, index, restocks, check)?;
        check.load_checked += 1;
    }
    Ok(())
}

/// Checks an even sample of the passivation phase's products: each was
/// added and restocked [`TOUCH_RESTOCKS`] times.
pub(super) fn touched_products(
    journal: &Journal,
    seed: u64,
    touched: usize,
    check: &mut StockCheck,
) -> Result<(), BenchError> {
    let step = touched.div_ceil(TOUCH_CHECK_SAMPLE).max(1);
    for index in (0..touched).step_by(step) {
        compare(journal, seed, Domain::Touch, index, TOUCH_RESTOCKS, check)?;
        check.touch_checked += 1;
    }
    Ok(())
}

fn compare(
    journal: &Journal,
    seed: u64,
    domain: Domain,
    index: usize,
    restocks: u64,
    check: &mut StockCheck,
) -> Result<(), BenchError> {
    let id = product(seed, domain, index);
    let stored = replay::<Product>(journal, id.as_uuid(), None).map_err(|e| {
        format!(
            "cannot replay product {id} from {}: {e}",
            journal.path().display()
        )
    })?;
    let state = &stored.state;
    let expected_on_hand = INITIAL_STOCK + restocks;
    if !state.exists()
        || state.on_hand() != expected_on_hand
        || state.total_restocked() != restocks
        || state.reserved() != 0
        || stored.version != 1 + restocks
    {
        check.violations.push(format!(
            "product {id} ({domain:?} #{index}): stored on hand {}, restocked {}, reserved {}, version {}; expected {expected_on_hand}, {restocks}, 0, {}",
            state.on_hand(),
            state.total_restocked(),
            state.reserved(),
            stored.version,
            1 + restocks,
        ));
    }
    Ok(())
}
