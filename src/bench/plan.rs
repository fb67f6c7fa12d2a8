//! The plan of a run: users, products and orders with the failure mix,
//! drawn from a seed.

use super::*;

/// Units a plentiful order line asks for, at most.
pub(super) const MAX_UNITS: u64 = 3;
/// Plentiful lines per order, at most.
pub(super) const MAX_LINES: usize = 3;
/// Unit prices are drawn from 1.00 to this (in cents).
pub(super) const MAX_PRICE: u64 = 50_00;
pub(super) const MIN_PRICE: u64 = 1_00;
/// Stock of a scarce product; a stock-failing order asks for one more.
pub(super) const SCARCE_STOCK: u64 = 1;
/// A poor user's whole balance: below any order's price.
pub(super) const POOR_FUNDS: u64 = 1;

/// What to run.
#[derive(Clone, Debug)]
pub struct BenchConfig {
    /// Orders placed at each level (see [`BenchConfig::level_orders`]).
    pub orders: usize,
    /// The concurrency levels, ascending: orders (and baseline commands,
    /// raw records, ping-pongs) in flight at once. More than one is a sweep.
    pub concurrency: Vec<usize>,
    /// In a sweep, each level places this many orders per slot (see
    /// [`levels::orders_at`]).
    pub rounds: usize,
    /// Users created.
    pub users: usize,
    /// Products created.
    pub products: usize,
    /// Percentage of orders that ask for more than a scarce product's stock.
    pub fail_stock_pct: u8,
    /// Percentage of orders placed by users who cannot pay.
    pub fail_funds_pct: u8,
    /// How long any phase may go without a single command or saga ending
    /// before the run gives up on what is still in flight.
    pub stall_timeout: Duration,
    /// Seed of the order mix (users, products, lines), for reproducible mixes.
    pub seed: u64,
    /// Show a progress bar on stderr.
    pub progress: bool,
}

impl BenchConfig {
    /// Checks the numbers; every problem is an error, never a panic later.
    pub fn validate(&self) -> Result<(), BenchError> {
        if self.orders == 0 || self.orders > MAX_ORDERS {
            return Err(format!("--orders must be between 1 and {MAX_ORDERS}").into());
        }
        if self.concurrency.is_empty()
            || self.concurrency.contains(&0)
            || !self.concurrency.windows(2).all(|w| w[0] < w[1])
        {
            return Err("--concurrency must be levels of at least 1, ascending".into());
        }
        if self.rounds == 0 {
            return Err("--rounds must be at least 1".into());
        }
        if self.total_orders() > MAX_ORDERS {
            return Err(format!(
                "the sweep places {} orders in all, more than {MAX_ORDERS}",
                self.total_orders()
            )
            .into());
        }
        if self.users == 0 || self.products == 0 {
            return Err("--users and --products must be at least 1".into());
        }
        if self.fail_stock_pct > 100 || self.fail_funds_pct > 100 {
            return Err("--fail-stock and --fail-funds are percentages (0 to 100)".into());
        }
        if u16::from(self.fail_stock_pct) + u16::from(self.fail_funds_pct) > 100 {
            return Err("--fail-stock plus --fail-funds must be at most 100".into());
        }
        if self.stall_timeout.is_zero() {
            return Err("the stall timeout must be more than zero".into());
        }
        let plan = Plan::new(self)?;
        if plan.rich.is_empty() {
            // The baseline deposits to users who can pay, so that its
            // deposits cannot turn a failing order into a paid one.
            return Err(
                "--fail-funds leaves no user who can pay, and the baseline needs one: lower it or add --users"
                    .into(),
            );
        }
        Ok(())
    }
}

impl BenchConfig {
    /// Whether the run sweeps more than one level.
    pub fn sweep(&self) -> bool {
        self.concurrency.len() > 1
    }

    /// Each level's concurrency and the orders it places.
    pub fn level_orders(&self) -> Vec<(usize, usize)> {
        self.concurrency
            .iter()
            .map(|&c| {
                (
                    c,
                    levels::orders_at(c, self.orders, self.rounds, self.sweep()),
                )
            })
            .collect()
    }

    /// Orders placed over all levels.
    pub fn total_orders(&self) -> usize {
        self.level_orders()
            .iter()
            .fold(0usize, |sum, &(_, n)| sum.saturating_add(n))
    }

    /// The highest level (what setup runs at).
    pub fn max_concurrency(&self) -> usize {
        self.concurrency.iter().copied().max().unwrap_or(1)
    }
}

/// How an order is expected to end.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Expect {
    Complete,
    StockFail,
    FundsFail,
}

impl Expect {
    /// The `Aborted` reason expected, or `None` for a completion.
    pub(super) fn abort_reason(self) -> Option<&'static str> {
        match self {
            Expect::Complete => None,
            Expect::StockFail => Some("insufficient_stock"),
            Expect::FundsFail => Some("insufficient_funds"),
        }
    }
}

pub(super) struct PlannedOrder {
    pub(super) order_id: OrderId,
    pub(super) user_id: UserId,
    pub(super) lines: Vec<OrderLine>,
    pub(super) expect: Expect,
}

pub(super) struct PlannedUser {
    pub(super) user_id: UserId,
    pub(super) funds: u64,
}

pub(super) struct PlannedProduct {
    pub(super) product_id: ProductId,
    pub(super) price: u64,
    pub(super) stock: u64,
}

/// Everything created and placed in a run, decided up front from the seed.
pub(super) struct Plan {
    pub(super) users: Vec<PlannedUser>,
    /// Indexes into `users` of those who can pay for anything.
    pub(super) rich: Vec<usize>,
    pub(super) products: Vec<PlannedProduct>,
    pub(super) orders: Vec<PlannedOrder>,
    pub(super) expected: Expected,
}

/// SplitMix64: a tiny deterministic generator, enough to mix a workload.
pub(super) struct Mix(u64);

impl Mix {
    pub(super) fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number in `0..n`; `n` must be more than zero.
    pub(super) fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// `pct` percent of `n`, rounded to the nearest.
pub(super) fn share(n: usize, pct: u8) -> usize {
    (n * usize::from(pct) + 50) / 100
}

/// How many of `n` entities serve the failing orders: `pct` percent of them,
/// at least one when any order fails, and never all of them when other orders
/// need the rest.
pub(super) fn failing_group(
    n: usize,
    pct: u8,
    failing: usize,
    others: usize,
    what: &str,
) -> Result<usize, BenchError> {
    if failing == 0 {
        return Ok(0);
    }
    let group = share(n, pct).max(1);
    let group = if others > 0 { group.min(n - 1) } else { group };
    if group == 0 {
        return Err(format!(
            "too few {what}: the failure mix needs at least one for the failing orders and one for the others"
        )
        .into());
    }
    Ok(group)
}

impl Plan {
    /// The plan of the whole run: every level's orders, in level order, and
    /// users and products with stock and money enough for all of them.
    pub(super) fn new(config: &BenchConfig) -> Result<Plan, BenchError> {
        let n = config.total_orders();
        let stock_fail = share(n, config.fail_stock_pct);
        let funds_fail = share(n, config.fail_funds_pct).min(n - stock_fail);
        let complete = n - stock_fail - funds_fail;
        let poor = failing_group(
            config.users,
            config.fail_funds_pct,
            funds_fail,
            complete + stock_fail,
            "users",
        )?;
        let scarce = failing_group(
            config.products,
            config.fail_stock_pct,
            stock_fail,
            complete + funds_fail,
            "products",
        )?;
        let mut mix = Mix(config.seed);

        // Rich users can pay for every order of the run on their own, baseline
        // deposits aside; plentiful products can serve every order's lines.
        let max_order = (MAX_LINES as u64) * MAX_UNITS * MAX_PRICE;
        let rich_funds = max_order * n as u64;
        let plenty_stock = MAX_UNITS * n as u64;
        let users: Vec<PlannedUser> = (0..config.users)
            .map(|i| PlannedUser {
                user_id: UserId::new(),
                funds: if i < poor { POOR_FUNDS } else { rich_funds },
            })
            .collect();
        let rich: Vec<usize> = (poor..config.users).collect();
        let products: Vec<PlannedProduct> = (0..config.products)
            .map(|i| PlannedProduct {
                product_id: ProductId::new(),
                price: MIN_PRICE + (mix.next() % (MAX_PRICE - MIN_PRICE + 1)),
                stock: if i < scarce {
                    SCARCE_STOCK
                } else {
                    plenty_stock
                },
            })
            .collect();
        let plenty: Vec<ProductId> = products[scarce..].iter().map(|p| p.product_id).collect();

        let mut kinds: Vec<Expect> = std::iter::repeat_n(Expect::StockFail, stock_fail)
            .chain(std::iter::repeat_n(Expect::FundsFail, funds_fail))
            .chain(std::iter::repeat_n(Expect::Complete, complete))
            .collect();
        for i in (1..kinds.len()).rev() {
            let j = mix.below(i + 1);
            kinds.swap(i, j);
        }
        let plenty_lines = |mix: &mut Mix, count: usize| -> Vec<OrderLine> {
            // Consecutive products from a random start: distinct, as the
            // order aggregate requires.
            let start = mix.below(plenty.len().max(1));
            (0..count)
                .map(|j| OrderLine {
                    product_id: plenty[(start + j) % plenty.len()],
                    quantity: 1 + mix.next() % MAX_UNITS,
                })
                .collect()
        };
        let orders = kinds
            .into_iter()
            .map(|expect| {
                let most = MAX_LINES.min(plenty.len());
                let (user, lines) = match expect {
                    Expect::Complete | Expect::FundsFail => {
                        let count = 1 + mix.below(most);
                        let user = if expect == Expect::Complete {
                            rich[mix.below(rich.len())]
                        } else {
                            mix.below(poor)
                        };
                        (user, plenty_lines(&mut mix, count))
                    }
                    Expect::StockFail => {
                        // The scarce line next to some plentiful ones, so that
                        // compensation has reservations to release.
                        let count = mix.below(most.min(MAX_LINES - 1) + 1);
                        let mut lines = plenty_lines(&mut mix, count);
                        lines.push(OrderLine {
                            product_id: products[mix.below(scarce)].product_id,
                            quantity: SCARCE_STOCK + 1,
                        });
                        (rich[mix.below(rich.len())], lines)
                    }
                };
                PlannedOrder {
                    order_id: OrderId::new(),
                    user_id: users[user].user_id,
                    lines,
                    expect,
                }
            })
            .collect();
        Ok(Plan {
            users,
            rich,
            products,
            orders,
            expected: Expected {
                completed: complete,
                insufficient_stock: stock_fail,
                insufficient_funds: funds_fail,
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(orders: usize, users: usize, products: usize, stock: u8, funds: u8) -> BenchConfig {
        BenchConfig {
            orders,
            concurrency: vec![8],
            rounds: 16,
            users,
            products,
            fail_stock_pct: stock,
            fail_funds_pct: funds,
            stall_timeout: Duration::from_secs(1),
            seed: 7,
            progress: false,
        }
    }

    #[test]
    fn the_plan_has_the_requested_mix_and_valid_orders() {
        let plan = Plan::new(&config(40, 10, 5, 10, 10)).unwrap();
        assert_eq!(plan.orders.len(), 40);
        let count = |e: Expect| plan.orders.iter().filter(|o| o.expect == e).count();
        assert_eq!(count(Expect::StockFail), 4);
        assert_eq!(count(Expect::FundsFail), 4);
        assert_eq!(count(Expect::Complete), 32);
        let funds: HashMap<UserId, u64> = plan.users.iter().map(|u| (u.user_id, u.funds)).collect();
        let stock: HashMap<ProductId, u64> = plan
            .products
            .iter()
            .map(|p| (p.product_id, p.stock))
            .collect();
        for order in &plan.orders {
            assert!(!order.lines.is_empty() && order.lines.len() <= MAX_LINES + 1);
            let mut products: Vec<_> = order.lines.iter().map(|l| l.product_id).collect();
            products.sort_by_key(|p| p.as_uuid());
            products.dedup();
            assert_eq!(products.len(), order.lines.len(), "distinct products");
            let short = order
                .lines
                .iter()
                .any(|l| l.quantity > stock[&l.product_id]);
            assert_eq!(short, order.expect == Expect::StockFail);
            let poor = funds[&order.user_id] == POOR_FUNDS;
            assert_eq!(poor, order.expect == Expect::FundsFail);
        }
    }

    #[test]
    fn impossible_mixes_are_refused_without_panicking() {
        assert!(
            config(10, 1, 5, 0, 10).validate().is_err(),
            "one user cannot be rich and poor"
        );
        assert!(
            config(10, 5, 1, 10, 0).validate().is_err(),
            "one product cannot be scarce and plentiful"
        );
        assert!(config(10, 5, 5, 60, 50).validate().is_err());
        assert!(config(0, 5, 5, 10, 10).validate().is_err());
        assert!(config(10, 1, 1, 0, 0).validate().is_ok());
        assert!(
            config(10, 1, 1, 100, 0).validate().is_ok(),
            "only scarce products needed"
        );
        assert!(config(10, 2, 2, 50, 50).validate().is_ok());
        assert!(
            config(10, 5, 5, 0, 100).validate().is_err(),
            "every user poor leaves the baseline nobody to deposit to"
        );
    }

    #[test]
    fn given_a_sweep_when_planned_then_one_plan_holds_every_level_with_stock_and_money_for_all() {
        let mut sweep = config(2000, 20, 10, 10, 10);
        sweep.concurrency = vec![1, 16, 64];
        assert_eq!(sweep.level_orders(), vec![(1, 100), (16, 256), (64, 1024)]);
        let plan = Plan::new(&sweep).unwrap();
        assert_eq!(plan.orders.len(), 1380);
        assert_eq!(
            plan.expected.completed
                + plan.expected.insufficient_stock
                + plan.expected.insufficient_funds,
            1380
        );
        // Whatever the levels draw, a plentiful product covers every order's
        // largest line and a rich user every order's largest bill.
        for product in plan.products.iter().filter(|p| p.stock != SCARCE_STOCK) {
            assert!(product.stock >= MAX_UNITS * 1380);
        }
        for &rich in &plan.rich {
            assert!(plan.users[rich].funds >= 1380 * MAX_LINES as u64 * MAX_UNITS * MAX_PRICE);
        }
    }

    #[test]
    fn given_levels_out_of_order_or_zero_when_validated_then_they_are_refused() {
        let mut bad = config(10, 5, 5, 10, 10);
        bad.concurrency = vec![16, 1];
        assert!(bad.validate().is_err());
        bad.concurrency = vec![0];
        assert!(bad.validate().is_err());
        bad.concurrency = vec![];
        assert!(bad.validate().is_err());
        bad.concurrency = vec![1, 16];
        assert!(bad.validate().is_ok());
    }
}
