//! Heartbeats and the registry over real Kafka: a started service shows up
//! within one period, a killed one is counted down after three, a stopped
//! one leaves at once, and `owner()` names the instance that really consumes
//! an aggregate's commands.
//!
//! Runs against the embedded broker, or a real one when
//! `ORDERSAGA_TEST_BROKERS` is set (see `tests/support`). Every wait is on
//! records or registry state, bounded by [`support::PATIENCE`].

mod support;

use chrono::Utc;
use ordersaga::kafka::heartbeat::State;
use ordersaga::kafka::KafkaConfig;
use ordersaga::node::{self, NodeOptions, RunningService};
use ordersaga::registry::{partition_for, Instance, Registry, Since, EXPIRY_PERIODS};
use ordersaga_actors::aggregates::User;
use ordersaga_actors::recovery::stream_of;
use ordersaga_events::codec::{decode, encode, Format};
use ordersaga_events::topics::{Service, HEARTBEATS, USERS_COMMANDS};
use ordersaga_events::user::{Password, UserCommand};
use ordersaga_events::{CommandEnvelope, Reply, UserId};
use rdkafka::message::Message;
use rdkafka::producer::FutureRecord;
use std::collections::{BTreeSet, HashSet};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use support::{producer, Probe, TestBroker, PATIENCE};

const REPLIES: &str = "heartbeats.replies";

/// Waits until `found` gives something, re-checking on every heartbeat the
/// registry takes and every 50 ms (expiry comes with time alone); panics
/// with what the registry knows after [`PATIENCE`].
async fn until<T>(
    registry: &Registry,
    what: &str,
    mut found: impl FnMut(&Registry) -> Option<T>,
) -> T {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    let mut observed = registry.observed();
    loop {
        if let Some(value) = found(registry) {
            return value;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}; live: {:#?}",
            registry.all_live()
        );
        let _ = tokio::time::timeout(Duration::from_millis(50), observed.changed()).await;
    }
}

fn live_instance(registry: &Registry, instance_id: &str) -> Option<Instance> {
    registry
        .live(Service::Users)
        .into_iter()
        .find(|i| i.heartbeat.instance_id == instance_id)
}

async fn start_users(
    kafka: &KafkaConfig,
    dir: &std::path::Path,
    instance: &str,
    period: Duration,
) -> RunningService {
    let mut options = NodeOptions::new(kafka.clone(), dir);
    options.instance_id = Some(instance.to_string());
    options.heartbeat_period = period;
    node::start(Service::Users, &options)
        .await
        .expect("start users")
}

#[actix_rt::test]
async fn a_started_service_announces_itself_within_one_period() {
    let broker = TestBroker::from_env();
    let kafka = broker.users_topics(&[HEARTBEATS]).await;
    let registry = Registry::start(&kafka, Since::Beginning).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let period = Duration::from_secs(2);
    let running = start_users(&kafka, dir.path(), "announced", period).await;
    let started = Instant::now();

    let first = until(&registry, "the first heartbeat", |r| {
        live_instance(r, "announced")
    })
    .await;
    let waited = started.elapsed();
    assert!(waited <= period, "the first heartbeat took {waited:?}");
    let beat = &first.heartbeat;
    assert_eq!(beat.service, "users");
    assert_eq!(beat.version, env!("CARGO_PKG_VERSION"));
    assert_eq!(beat.state, State::Up);
    assert_eq!(beat.period_ms, 2000);
    assert_eq!(beat.commands_topic, kafka.name(USERS_COMMANDS));
    assert_eq!(
        beat.http,
        running.http_address().map(|a| a.to_string()),
        "the HTTP address the instance listens on"
    );
    assert!(beat.started_at <= beat.sent_at);

    // A change of ownership is announced at once, not a period later.
    let owning = until(&registry, "a ready heartbeat owning every partition", |r| {
        live_instance(r, "announced").filter(|i| {
            i.heartbeat.ready
                && i.heartbeat.partitions == [0, 1, 2]
                && i.heartbeat.partition_count == Some(kafka.partitions)
        })
    })
    .await;
    assert!(owning.heartbeat.reasons.is_empty());
    running.stop().await;
}

/// `ordersaga serve users` as its own process, with a short heartbeat period.
fn serve(kafka: &KafkaConfig, data: &std::path::Path, instance: &str, period: Duration) -> Child {
    Command::new(env!("CARGO_BIN_EXE_ordersaga"))
        .args(["serve", "users", "--brokers", &kafka.brokers, "--data"])
        .arg(data)
        .args(["--namespace", kafka.namespace.as_deref().unwrap()])
        .args(["--partitions", &kafka.partitions.to_string()])
        // Topics are made by the test, so this also works on the embedded
        // broker, which has no CreateTopics API.
        .arg("--no-create-topics")
        .args(["--instance-id", instance])
        .args(["--heartbeat-ms", &period.as_millis().to_string()])
        .args(support::restart_args())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start ordersaga serve")
}

#[actix_rt::test]
async fn a_killed_instance_is_down_after_three_periods_and_a_stopped_one_leaves_at_once() {
    let broker = TestBroker::from_env();
    let kafka = broker.users_topics(&[HEARTBEATS]).await;
    let registry = Registry::start(&kafka, Since::Beginning).await.unwrap();
    let period = Duration::from_millis(300);
    let expiry = period * EXPIRY_PERIODS;

    let killed_dir = tempfile::tempdir().unwrap();
    let mut killed = serve(&kafka, killed_dir.path(), "killed", period);
    until(&registry, "the instance to be killed", |r| {
        live_instance(r, "killed")
    })
    .await;
    killed.kill().expect("SIGKILL the service");
    killed.wait().unwrap();
    let killed_at = Instant::now();
    until(&registry, "the killed instance to be counted down", |r| {
        live_instance(r, "killed").is_none().then_some(())
    })
    .await;
    let gone_after = killed_at.elapsed();
    let last = registry.last(Service::Users, "killed").unwrap();
    assert_eq!(
        last.heartbeat.state,
        State::Up,
        "a killed instance says nothing"
    );
    // Not before three periods of silence, and not much after.
    assert!(Utc::now() > last.expires_at());
    assert!(
        gone_after < expiry + Duration::from_secs(2),
        "counted down {gone_after:?} after the kill"
    );

    let stopped_dir = tempfile::tempdir().unwrap();
    let mut stopped = serve(&kafka, stopped_dir.path(), "stopped", period);
    until(&registry, "the instance to be stopped", |r| {
        live_instance(r, "stopped")
    })
    .await;
    let status = Command::new("kill")
        .args(["-TERM", &stopped.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let before = registry.last(Service::Users, "stopped").unwrap();
    let leaving = until(&registry, "the leaving record", |r| {
        r.last(Service::Users, "stopped")
            .filter(|i| i.heartbeat.state == State::Leaving)
    })
    .await;
    // Gone as of the farewell, while its last heartbeat alone would still
    // keep it live: it left, it did not expire.
    assert!(live_instance(&registry, "stopped").is_none());
    assert!(registry
        .live_at(Service::Users, leaving.last_seen)
        .iter()
        .all(|i| i.heartbeat.instance_id != "stopped"));
    assert!(
        before.is_live(leaving.last_seen),
        "the farewell came {} ms after the last heartbeat",
        (leaving.last_seen - before.last_seen).num_milliseconds()
    );
    assert!(stopped.wait().unwrap().success(), "a clean stop exits 0");
}

fn register(user_id: UserId) -> CommandEnvelope<UserCommand> {
    CommandEnvelope::new(UserCommand::Register {
        user_id,
        email: format!("{user_id}@example.com"),
        username: "owner tester".into(),
        password: Password::new("a long password"),
    })
    .reply_to(REPLIES)
}

#[actix_rt::test]
async fn the_owner_is_the_instance_that_consumes_the_aggregate() {
    let broker = TestBroker::from_env();
    let kafka = broker.users_topics(&[HEARTBEATS, REPLIES]).await;
    let registry = Registry::start(&kafka, Since::Beginning).await.unwrap();
    let period = Duration::from_millis(300);
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let a = start_users(&kafka, dir_a.path(), "owner-a", period).await;
    let b = start_users(&kafka, dir_b.path(), "owner-b", period).await;

    // Both own partitions, and between them every partition once.
    let all: BTreeSet<i32> = (0..kafka.partitions).collect();
    until(
        &registry,
        "the partitions shared between both instances",
        |r| {
            let live = r.live(Service::Users);
            let owned: Vec<i32> = live
                .iter()
                .flat_map(|i| i.heartbeat.partitions.clone())
                .collect();
            let shared = live.len() == 2
                && live.iter().all(|i| i.heartbeat.ready)
                && owned.len() == all.len()
                && owned.iter().copied().collect::<BTreeSet<_>>() == all;
            shared.then_some(())
        },
    )
    .await;

    // Two aggregates for each instance, by the registry's word.
    let mut chosen: Vec<(UserId, String)> = Vec::new();
    for instance in ["owner-a", "owner-b"] {
        while chosen.iter().filter(|(_, owner)| owner == instance).count() < 2 {
            let user_id = UserId::new();
            let owner = registry
                .owner(Service::Users, user_id.as_uuid())
                .expect("an owner");
            if owner.heartbeat.instance_id == instance {
                chosen.push((user_id, instance.to_string()));
            }
        }
    }

    let producer = producer(&kafka);
    let topic = kafka.name(USERS_COMMANDS);
    let mut command_ids = HashSet::new();
    for (user_id, owner) in &chosen {
        let command = register(*user_id);
        command_ids.insert(command.command_id);
        let key = user_id.to_string();
        let payload = encode(Format::Json, &command).unwrap();
        let delivery = producer
            .send(
                FutureRecord::to(&topic).key(&key).payload(&payload),
                Duration::from_secs(30),
            )
            .await
            .map_err(|(err, _)| err)
            .expect("produce a command");
        // Our producer partitions as Kafka's Java client does.
        assert_eq!(
            delivery.partition,
            partition_for(user_id.as_uuid(), kafka.partitions),
            "the partition of {key}"
        );
        let claimed = registry.last(Service::Users, owner).unwrap();
        assert!(
            claimed.heartbeat.partitions.contains(&delivery.partition),
            "{owner} owns partition {} of {key}",
            delivery.partition
        );
    }

    // The owner's store, and only the owner's, handled each command.
    let mut replies = Probe::new(&kafka, REPLIES);
    replies
        .until("a reply to every command", |seen| {
            let answered: HashSet<_> = seen
                .iter()
                .filter_map(|m| decode::<Reply>(m.payload()?).ok())
                .map(|r| r.command_id)
                .collect();
            command_ids.is_subset(&answered)
        })
        .await;
    for (user_id, owner) in &chosen {
        let stream = stream_of::<User>(user_id.as_uuid());
        let (mine, other) = if owner == "owner-a" {
            (&a, &b)
        } else {
            (&b, &a)
        };
        assert_eq!(
            mine.journal().version(&stream).unwrap(),
            1,
            "{owner} has {user_id}"
        );
        assert_eq!(
            other.journal().version(&stream).unwrap(),
            0,
            "only {owner} has {user_id}"
        );
    }
    a.stop().await;
    b.stop().await;
}
