//! The chaos run: three `ordersaga serve` processes on a real broker with
//! durable storage, a steady stream of orders from an outside client, and
//! SIGKILLs of every service again and again under that load, a tight loop of
//! kills of one service, and a kill and restart of the broker.
//!
//! Then, within a bounded settle time: every command has its reply, every
//! order was placed, every saga ended Completed or Aborted (none stuck, none
//! aborted for `step_timeout`, since no outage outlasts the saga's step
//! budget), and `verify` holds on the three stores: money and stock are
//! conserved. The run prints its numbers: orders, faults, settle time, and
//! how long each restarted service took to own its partitions again.
//!
//! It runs on the test's own Tansu (`ORDERSAGA_TANSU`, or Tansu in
//! `~/.cargo/bin`) or, with `ORDERSAGA_CHAOS_BROKER=embedded`, on the
//! embedded broker. It takes minutes, so it is not part of `cargo test
//! --workspace`; `scripts/test.sh` runs it on both brokers with `cargo test
//! --test chaos -- --nocapture`. `ORDERSAGA_CHAOS_ROUND`
//! picks the scenario: `ci` (default), or `A`, `B`, `C` (longer; see
//! docs/RELIABILITY.md); `ORDERSAGA_CHAOS_BIN` runs another `ordersaga`
//! binary (a release build, say) as the services.
//!
//! Time here is the scenario itself (how long a service stays dead, the
//! order rate); every wait for an effect synchronises on what the services
//! print (`ready`) or publish (replies, saga events), with a bound only to
//! fail instead of hanging.

#[path = "chaos/broker.rs"]
mod broker;
#[path = "chaos/client.rs"]
mod client;
#[path = "chaos/processes.rs"]
mod processes;
#[path = "chaos/scenario.rs"]
mod scenario;
mod support;

use broker::ChaosBroker;
use client::{Client, Ending, REPLIES};
use ordersaga::kafka::topics::all_topics;
use ordersaga_actors::Journal;
use ordersaga_events::saga::saga_of;
use ordersaga_events::topics::Service;
use ordersaga_events::{ProductId, StreamId, StreamKind, UserId};
use processes::Services;
use scenario::{Action, Rng, Scenario};
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// How long a started or restarted service may take to print `ready`.
const READY_BOUND: Duration = Duration::from_secs(60);
/// How long everything may take to settle after the load ends.
const SETTLE_BOUND: Duration = Duration::from_secs(240);
/// How long a SIGTERMed service may take to exit.
const STOP_BOUND: Duration = Duration::from_secs(30);

/// What happened to one fault.
struct FaultRecord {
    what: String,
    /// Restart → `ready` (services), or broker up → next reply (broker).
    recovered_in: Option<Duration>,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn services_killed_again_and_again_under_load_lose_nothing_and_recover() {
    let scenario = Scenario::from_env();
    println!("chaos scenario {}: {}", scenario.name, scenario.describe());
    let dir = tempfile::tempdir().unwrap();
    let mut broker = ChaosBroker::from_env(dir.path());
    println!("  broker: {}", broker.describe());
    let kafka = broker.kafka();
    let mut topics = all_topics();
    topics.push(REPLIES.to_string());
    broker.create_topics(&kafka, &topics).await;

    let mut services = Services::new(
        kafka.clone(),
        &dir.path().join("data"),
        &dir.path().join("logs"),
        broker.service_args(),
    );
    // On failure, the services' logs are shown before the directory goes.
    let _logs = LogsOnFailure(dir.path().join("logs"));
    let started = Instant::now();
    for service in Service::ALL {
        services.spawn(service);
    }
    for service in Service::ALL {
        let took = services.ready(service, READY_BOUND).await;
        println!(
            "  {} ready {} ms after start",
            service.name(),
            took.as_millis()
        );
    }
    println!("  all ready after {} ms", started.elapsed().as_millis());

    // The shop: users with plenty of money and a few without, products with
    // plenty of stock and a few scarce ones, so that some orders abort for
    // funds and for stock while the faults happen.
    let mut client = Client::new(&kafka);
    let mut users: Vec<UserId> = Vec::new();
    for i in 0..scenario.users {
        let funds = if i < scenario.poor_users {
            500
        } else {
            10_000_000
        };
        users.push(client.user(funds).await);
    }
    let mut products: Vec<ProductId> = Vec::new();
    for i in 0..scenario.products {
        let stock = if i < scenario.scarce_products {
            5
        } else {
            1_000_000
        };
        products.push(client.product(250 + 100 * i as u64, stock).await);
    }
    let seeded = client.sent.len();
    assert!(
        client
            .until(READY_BOUND, |seen| seen.replies.len() >= seeded)
            .await,
        "the shop's users and products were not all answered"
    );

    // The load runs beside the faults, and each fault waits until enough
    // orders have gone out. (The faults stay on this thread: the embedded
    // broker must not leave the thread that made it.)
    let (progress_tx, progress) = watch::channel(0usize);
    let replies_seen = client.reply_clock();
    let load = tokio::spawn(drive_load(
        client,
        scenario.clone(),
        users,
        products,
        progress_tx,
    ));
    let records = run_faults(
        &scenario,
        &mut services,
        &mut broker,
        progress,
        replies_seen,
    )
    .await;
    let (client, load_took) = load.await.expect("the load failed");

    // Settle: every command answered, every saga ended.
    let settle_started = Instant::now();
    let commands = client.sent.len();
    let sagas: Vec<String> = client
        .orders
        .iter()
        .map(|(order, _)| StreamId::new(StreamKind::Saga, saga_of(*order).as_uuid()).to_string())
        .collect();
    let settled = client
        .until(SETTLE_BOUND, |seen| {
            seen.replies.len() >= commands && sagas.iter().all(|s| seen.endings.contains_key(s))
        })
        .await;
    let settle_took = settle_started.elapsed();

    // A stop must end within its bound even while the broker is down.
    broker.down();
    let stops = services.terminate_all(STOP_BOUND);
    drop(broker);

    let resends = client.seen(|seen| seen.resends);
    let (answered, placed, completed, aborted, timeouts, stuck, reasons) = client.seen(|seen| {
        let placed = client
            .orders
            .iter()
            .filter(|(_, command)| seen.replies.get(command).is_some_and(|o| o.is_accepted()))
            .count();
        let mut reasons = std::collections::BTreeMap::<String, usize>::new();
        let (mut completed, mut aborted, mut timeouts) = (0, 0, 0);
        for saga in &sagas {
            match seen.endings.get(saga) {
                Some(Ending::Completed) => completed += 1,
                Some(Ending::Aborted(reason)) => {
                    aborted += 1;
                    timeouts += usize::from(reason == "step_timeout");
                    *reasons.entry(reason.clone()).or_default() += 1;
                }
                None => {}
            }
        }
        let answered = client
            .sent
            .keys()
            .filter(|c| seen.replies.contains_key(c))
            .count();
        (
            answered,
            placed,
            completed,
            aborted,
            timeouts,
            seen.stuck.len(),
            reasons,
        )
    });

    println!("chaos run {} — numbers", scenario.name);
    println!(
        "  orders sent {} in {:.1} s ({:.1}/s)",
        scenario.orders,
        load_took.as_secs_f64(),
        scenario.orders as f64 / load_took.as_secs_f64()
    );
    println!(
        "  commands answered {answered}/{commands}; orders placed {placed}/{}",
        scenario.orders
    );
    println!("  sagas completed {completed}, aborted {aborted} {reasons:?}, ever stuck {stuck}; step resends {resends}");
    println!(
        "  settle time {:.1} s (bound {} s)",
        settle_took.as_secs_f64(),
        SETTLE_BOUND.as_secs()
    );
    println!("  faults {}:", records.len());
    for record in &records {
        match record.recovered_in {
            Some(took) => println!("    {}: recovered in {} ms", record.what, took.as_millis()),
            None => println!("    {}", record.what),
        }
    }
    for (name, code, took) in &stops {
        println!(
            "  SIGTERM {name} with the broker down: exit {code:?} after {} ms",
            took.as_millis()
        );
    }

    assert!(settled, "the system did not settle within {SETTLE_BOUND:?}");
    assert_eq!(answered, commands, "every command gets its reply");
    assert_eq!(placed, scenario.orders, "every order is placed");
    assert_eq!(completed + aborted, scenario.orders, "every saga ends");
    assert_eq!(
        timeouts, 0,
        "no saga aborts for step_timeout: no outage outlasts the budget"
    );
    assert!(
        stops.iter().all(|(_, code, _)| *code == Some(0)),
        "a stop exits 0"
    );

    let data = dir.path().join("data");
    let open = |name: &str| Journal::open_path(data.join(name)).unwrap();
    let report =
        ordersaga::verify::check(&open("users"), &open("inventory"), &open("orders"), true)
            .unwrap();
    println!(
        "  verify: {} users, {} products, {} orders, violations {}",
        report.users,
        report.products,
        report.orders,
        report.violations.len()
    );
    assert!(
        report.is_ok(),
        "invariants broken: {:#?}",
        report.violations
    );
    assert_eq!(report.orders, scenario.orders);
}

/// Places the scenario's orders at its rate, counting them in `progress`.
/// Returns the client and how long the load took.
async fn drive_load(
    mut client: Client,
    scenario: Scenario,
    users: Vec<UserId>,
    products: Vec<ProductId>,
    progress: watch::Sender<usize>,
) -> (Client, Duration) {
    let started = Instant::now();
    let mut rng = Rng::new(scenario.seed);
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / scenario.rate_per_s));
    for sent in 0..scenario.orders {
        tick.tick().await;
        let user = users[rng.below(users.len())];
        let mut lines = vec![(products[rng.below(products.len())], 1 + rng.below(3) as u64)];
        if rng.below(3) == 0 {
            let other = products[rng.below(products.len())];
            if other != lines[0].0 {
                lines.push((other, 1));
            }
        }
        client.order(user, &lines).await;
        progress.send_replace(sent + 1);
    }
    (client, started.elapsed())
}

/// Runs the scenario's faults in order, each once `progress` (orders sent)
/// reaches its mark. Returns what each fault did.
async fn run_faults(
    scenario: &Scenario,
    services: &mut Services,
    broker: &mut ChaosBroker,
    mut progress: watch::Receiver<usize>,
    mut last_reply: watch::Receiver<Option<Instant>>,
) -> Vec<FaultRecord> {
    let mut records = Vec::new();
    for fault in &scenario.faults {
        progress
            .wait_for(|sent| *sent >= fault.after_orders)
            .await
            .expect("the load stopped early");
        match fault.action {
            Action::Kill {
                service,
                restart_after,
            } => {
                services.kill(service);
                tokio::time::sleep(restart_after).await;
                services.spawn(service);
                let took = services.ready(service, READY_BOUND).await;
                records.push(FaultRecord {
                    what: format!(
                        "kill {} after {} orders, restart after {} ms",
                        service.name(),
                        fault.after_orders,
                        restart_after.as_millis()
                    ),
                    recovered_in: Some(took),
                });
            }
            Action::KillLoop {
                service,
                times,
                every,
            } => {
                for round in 1..=times {
                    services.kill(service);
                    services.spawn(service);
                    tokio::time::sleep(every).await;
                    let ready = services.is_ready(service);
                    records.push(FaultRecord {
                        what: format!("kill loop {round}/{times}: {} killed and restarted at once ({} when killed again)", service.name(), if ready { "ready" } else { "not yet ready" }),
                        recovered_in: None,
                    });
                }
                let took = services.ready(service, READY_BOUND).await;
                records.push(FaultRecord {
                    what: format!("kill loop of {} over: last restart", service.name()),
                    recovered_in: Some(took),
                });
            }
            Action::Broker { down_for } => {
                broker.down();
                tokio::time::sleep(down_for).await;
                broker.up();
                let up = Instant::now();
                let next_reply = last_reply.wait_for(|at| at.is_some_and(|at| at > up));
                let resumed = match tokio::time::timeout(READY_BOUND, next_reply).await {
                    Ok(Ok(at)) => at.unwrap().duration_since(up),
                    _ => panic!("no reply came within {READY_BOUND:?} of the broker's restart"),
                };
                records.push(FaultRecord {
                    what: format!(
                        "broker killed after {} orders, down {} ms; first reply after its restart",
                        fault.after_orders,
                        down_for.as_millis()
                    ),
                    recovered_in: Some(resumed),
                });
            }
        }
    }
    records
}

/// Prints the tail of every service log if the test fails.
struct LogsOnFailure(std::path::PathBuf);

impl Drop for LogsOnFailure {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            return;
        }
        let Ok(entries) = std::fs::read_dir(&self.0) else {
            return;
        };
        for entry in entries.flatten() {
            let text = std::fs::read_to_string(entry.path()).unwrap_or_default();
            let lines: Vec<&str> = text.lines().collect();
            eprintln!("---- last lines of {}", entry.path().display());
            for line in &lines[lines.len().saturating_sub(40)..] {
                eprintln!("{line}");
            }
        }
    }
}
