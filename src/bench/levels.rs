//! The concurrency levels of a sweep: the `--concurrency 1,16,64` list and
//! how many orders each level places.

/// Most levels one sweep accepts: each level costs a whole baseline and saga
/// load, so a longer list is a mistake, not a plan.
pub const MAX_LEVELS: usize = 16;

/// Highest concurrency one level accepts.
pub const MAX_CONCURRENCY: usize = 100_000;

/// In a sweep, a level places at least this many orders (or `--orders`, when
/// fewer): enough for its percentiles to mean something even at
/// concurrency 1.
pub const MIN_LEVEL_ORDERS: usize = 100;

/// Parses a concurrency list: comma-separated whole numbers from 1 to
/// [`MAX_CONCURRENCY`], at most [`MAX_LEVELS`] of them. The levels are
/// returned in ascending order without repeats, so `64,1,16` and `1,16,64`
/// run the same sweep.
pub fn parse_concurrency(text: &str) -> Result<Vec<usize>, String> {
    let mut levels = Vec::new();
    for item in text.split(',') {
        let item = item.trim();
        if item.is_empty() {
            return Err(format!(
                "{text:?}: an empty level (write levels as 1,16,64)"
            ));
        }
        let level: usize = item
            .parse()
            .map_err(|_| format!("{text:?}: {item:?} is not a whole number"))?;
        if level == 0 || level > MAX_CONCURRENCY {
            return Err(format!(
                "{text:?}: {level} is outside 1 to {MAX_CONCURRENCY}"
            ));
        }
        levels.push(level);
    }
    levels.sort_unstable();
    levels.dedup();
    if levels.len() > MAX_LEVELS {
        return Err(format!(
            "{text:?}: {} levels, at most {MAX_LEVELS}",
            levels.len()
        ));
    }
    Ok(levels)
}

/// Orders placed at `concurrency` when a run asks for `orders` per level
/// and `rounds` rounds. A single level places `orders`, as a run without a
/// sweep always did. In a sweep a level places `rounds` × its concurrency
/// (each slot refilled that many times, enough to reach a steady state),
/// at least [`MIN_LEVEL_ORDERS`] and at most `orders`: concurrency 1 at
/// full `--orders` would take most of the run's time to measure what a
/// hundred orders show.
pub fn orders_at(concurrency: usize, orders: usize, rounds: usize, sweep: bool) -> usize {
    if !sweep {
        return orders;
    }
    concurrency
        .saturating_mul(rounds)
        .max(MIN_LEVEL_ORDERS)
        .min(orders)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn given_a_single_value_when_parsed_then_it_is_the_only_level() {
        assert_eq!(parse_concurrency("64"), Ok(vec![64]));
    }

    #[test]
    fn given_a_list_when_parsed_then_levels_ascend_without_repeats() {
        assert_eq!(
            parse_concurrency("256, 1,16,64,16,1024"),
            Ok(vec![1, 16, 64, 256, 1024])
        );
    }

    #[test]
    fn given_bad_lists_when_parsed_then_each_is_refused_with_a_reason() {
        for bad in ["", "1,,2", "0", "1,x", "-3", "1.5", "100001", "1,"] {
            let err = parse_concurrency(bad).expect_err(bad);
            assert!(err.contains(&format!("{bad:?}")), "{bad}: {err}");
        }
        let many: Vec<String> = (1..=MAX_LEVELS + 1).map(|n| n.to_string()).collect();
        assert!(parse_concurrency(&many.join(",")).is_err());
        let most: Vec<String> = (1..=MAX_LEVELS).map(|n| n.to_string()).collect();
        assert_eq!(
            parse_concurrency(&most.join(",")).map(|l| l.len()),
            Ok(MAX_LEVELS)
        );
    }

    #[test]
    fn given_one_level_when_sized_then_it_places_every_order() {
        assert_eq!(orders_at(1, 2000, 16, false), 2000);
        assert_eq!(orders_at(1024, 5, 16, false), 5);
    }

    #[test]
    fn given_a_sweep_when_sized_then_levels_place_rounds_times_concurrency_within_bounds() {
        assert_eq!(orders_at(1, 2000, 16, true), MIN_LEVEL_ORDERS);
        assert_eq!(orders_at(16, 2000, 16, true), 256);
        assert_eq!(orders_at(1024, 2000, 16, true), 2000);
        assert_eq!(orders_at(1, 40, 16, true), 40, "never more than --orders");
        assert_eq!(orders_at(usize::MAX, 7, 16, true), 7, "no overflow");
    }
}
