//! Chaos scenarios: the shop, the load, and the faults with their marks.

use ordersaga_events::topics::Service;
use std::time::Duration;

/// One fault.
#[derive(Clone, Debug)]
pub enum Action {
    /// SIGKILL the service, wait, start it again with the same arguments.
    Kill {
        /// Which.
        service: Service,
        /// How long it stays dead.
        restart_after: Duration,
    },
    /// Kill and restart at once, `times` times, `every` apart (often before
    /// it even got its partitions back).
    KillLoop {
        /// Which.
        service: Service,
        /// How many kills.
        times: u32,
        /// Time between kills.
        every: Duration,
    },
    /// SIGKILL the broker, wait, start it again on the same storage.
    Broker {
        /// How long it stays dead.
        down_for: Duration,
    },
}

/// A fault and when it happens: once `after_orders` orders were sent.
#[derive(Clone, Debug)]
pub struct Fault {
    /// The mark.
    pub after_orders: usize,
    /// What.
    pub action: Action,
}

/// A whole chaos run.
#[derive(Clone, Debug)]
pub struct Scenario {
    /// `ci`, `A`, `B` or `C`.
    pub name: &'static str,
    /// Users registered.
    pub users: usize,
    /// Of those, users with too little money for most orders.
    pub poor_users: usize,
    /// Products added.
    pub products: usize,
    /// Of those, products with little stock.
    pub scarce_products: usize,
    /// Orders placed.
    pub orders: usize,
    /// Orders per second.
    pub rate_per_s: f64,
    /// The order mix is drawn from this seed.
    pub seed: u64,
    /// The faults, in order of their marks.
    pub faults: Vec<Fault>,
}

fn kill(after_orders: usize, service: Service, restart_after_ms: u64) -> Fault {
    Fault {
        after_orders,
        action: Action::Kill {
            service,
            restart_after: Duration::from_millis(restart_after_ms),
        },
    }
}

fn broker(after_orders: usize, down_for_ms: u64) -> Fault {
    Fault {
        after_orders,
        action: Action::Broker {
            down_for: Duration::from_millis(down_for_ms),
        },
    }
}

fn kill_loop(after_orders: usize, service: Service, times: u32, every_ms: u64) -> Fault {
    Fault {
        after_orders,
        action: Action::KillLoop {
            service,
            times,
            every: Duration::from_millis(every_ms),
        },
    }
}

impl Scenario {
    /// The scenario `ORDERSAGA_CHAOS_ROUND` names (default `ci`).
    pub fn from_env() -> Self {
        match std::env::var("ORDERSAGA_CHAOS_ROUND").as_deref() {
            Ok("A") | Ok("a") => Self::round_a(Duration::from_millis(1_400), 1_400),
            Ok("B") | Ok("b") => Self::round_b(),
            Ok("C") | Ok("c") => {
                let mut c = Self::round_a(Duration::from_millis(12_000), 2_000);
                c.name = "C";
                c
            }
            Ok("ci") | Ok("") | Err(_) => Self::ci(),
            Ok(other) => panic!("unknown ORDERSAGA_CHAOS_ROUND {other:?} (ci, A, B or C)"),
        }
    }

    /// Every service killed several times with restart delays from 0 to 3 s,
    /// a tight loop of kills of the orders service, and one broker restart,
    /// in about two minutes of load.
    pub fn ci() -> Self {
        use Service::*;
        Self {
            name: "ci",
            users: 40,
            poor_users: 4,
            products: 10,
            scarce_products: 2,
            orders: 600,
            rate_per_s: 6.0,
            seed: 7,
            faults: vec![
                kill(40, Inventory, 0),
                kill(80, Users, 2_000),
                kill(120, Orders, 1_000),
                kill_loop(170, Orders, 4, 2_000),
                kill(260, Inventory, 3_000),
                broker(320, 5_000),
                kill(400, Users, 0),
                kill(450, Orders, 2_500),
                kill(500, Inventory, 1_500),
                kill(540, Users, 3_000),
            ],
        }
    }

    /// Round A of the report: orders killed 3 times, inventory twice, users
    /// once, each restarted after `restart` plus up to `spread_ms`; the
    /// broker down 5 s; 1,500 orders.
    fn round_a(restart: Duration, spread_ms: u64) -> Self {
        use Service::*;
        let base = restart.as_millis() as u64;
        let mut rng = Rng::new(11);
        let mut delay = || base + rng.below(spread_ms as usize + 1) as u64;
        Self {
            name: "A",
            users: 60,
            poor_users: 5,
            products: 12,
            scarce_products: 2,
            orders: 1_500,
            rate_per_s: 10.0,
            seed: 11,
            faults: vec![
                kill(150, Orders, delay()),
                kill(300, Inventory, delay()),
                kill(450, Users, delay()),
                kill(600, Orders, delay()),
                broker(750, 5_000),
                kill(900, Inventory, delay()),
                kill(1_100, Orders, delay()),
            ],
        }
    }

    /// Round B of the report: the orders service killed every 2 s, 5 times,
    /// restarted at once; 300 orders.
    fn round_b() -> Self {
        Self {
            name: "B",
            users: 30,
            poor_users: 3,
            products: 8,
            scarce_products: 1,
            orders: 300,
            rate_per_s: 10.0,
            seed: 13,
            faults: vec![kill_loop(60, Service::Orders, 5, 2_000)],
        }
    }

    /// One line about the scenario.
    pub fn describe(&self) -> String {
        format!(
            "{} orders at {}/s from {} users over {} products, {} faults",
            self.orders,
            self.rate_per_s,
            self.users,
            self.products,
            self.faults.len()
        )
    }
}

/// A small deterministic generator (xorshift64*), so a scenario's order mix
/// is the same on every run.
pub struct Rng(u64);

impl Rng {
    /// Seeded.
    pub fn new(seed: u64) -> Self {
        Self(seed.max(1))
    }

    /// A number in `0..n` (`n` > 0).
    pub fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 33) as usize % n.max(1)
    }
}
