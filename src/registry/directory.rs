//! The registry's bookkeeping: the last heartbeat of every instance, and
//! who is live and who owns what as of a time the caller gives.

use super::partitioner::partition_for;
use crate::kafka::heartbeat::{Heartbeat, State};
use chrono::{DateTime, TimeDelta, Utc};
use serde::Serialize;
use std::collections::HashMap;
use uuid::Uuid;

/// How many of its periods an instance may stay silent before it counts as
/// down: one lost or late heartbeat is not a death.
pub const EXPIRY_PERIODS: u32 = 3;

/// How long the registry remembers an instance that is down or left, so a
/// late record from before its `leaving` cannot bring it back.
const FORGET_AFTER: TimeDelta = TimeDelta::hours(1);

/// An instance as its last heartbeat describes it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Instance {
    /// The last heartbeat.
    #[serde(flatten)]
    pub heartbeat: Heartbeat,
    /// The time that heartbeat speaks for: its Kafka timestamp, or when the
    /// registry read it if that is earlier (a clock ahead of the reader's
    /// must not keep an instance alive longer).
    pub last_seen: DateTime<Utc>,
}

impl Instance {
    /// When the instance counts as down unless another heartbeat comes.
    pub fn expires_at(&self) -> DateTime<Utc> {
        let period = TimeDelta::milliseconds(self.heartbeat.period_ms.max(1) as i64);
        self.last_seen + period * EXPIRY_PERIODS as i32
    }

    /// Up, and heard from recently enough, as of `now`.
    pub fn is_live(&self, now: DateTime<Utc>) -> bool {
        self.heartbeat.state == State::Up && now <= self.expires_at()
    }
}

/// The last heartbeat of every instance, told the time by its caller.
#[derive(Clone, Debug, Default)]
pub struct Directory {
    /// By service and instance id: two services may have instances of the
    /// same name.
    instances: HashMap<(String, String), Instance>,
}

impl Directory {
    /// An empty directory.
    pub fn new() -> Self {
        Self::default()
    }

    /// Takes in `heartbeat`, which speaks for `seen_at`. A record older than
    /// the instance's last one (by `sent_at`) is ignored: it was delayed,
    /// and must not undo a newer `leaving`. Returns whether it was taken.
    pub fn observe(&mut self, heartbeat: Heartbeat, seen_at: DateTime<Utc>) -> bool {
        self.instances
            .retain(|_, i| seen_at - i.expires_at() < FORGET_AFTER);
        let key = (heartbeat.service.clone(), heartbeat.instance_id.clone());
        if let Some(known) = self.instances.get(&key) {
            if known.heartbeat.sent_at > heartbeat.sent_at {
                return false;
            }
        }
        let last_seen = match self.instances.get(&key) {
            // Time never runs backwards for one instance.
            Some(known) => seen_at.max(known.last_seen),
            None => seen_at,
        };
        self.instances.insert(
            key,
            Instance {
                heartbeat,
                last_seen,
            },
        );
        true
    }

    /// The last record of one instance, live or not.
    pub fn last(&self, service: &str, instance_id: &str) -> Option<&Instance> {
        self.instances
            .get(&(service.to_string(), instance_id.to_string()))
    }

    /// The live instances of `service` as of `now`, by instance id.
    pub fn live(&self, service: &str, now: DateTime<Utc>) -> Vec<Instance> {
        let mut live: Vec<Instance> = self
            .instances
            .values()
            .filter(|i| i.heartbeat.service == service && i.is_live(now))
            .cloned()
            .collect();
        live.sort_by(|a, b| a.heartbeat.instance_id.cmp(&b.heartbeat.instance_id));
        live
    }

    /// Every live instance as of `now`, by service and instance id.
    pub fn all_live(&self, now: DateTime<Utc>) -> Vec<Instance> {
        let mut live: Vec<Instance> = self
            .instances
            .values()
            .filter(|i| i.is_live(now))
            .cloned()
            .collect();
        live.sort_by(|a, b| {
            (&a.heartbeat.service, &a.heartbeat.instance_id)
                .cmp(&(&b.heartbeat.service, &b.heartbeat.instance_id))
        });
        live
    }

    /// The live instance of `service` that owns the command partition of
    /// `aggregate_id`, as of `now`; `None` if no live instance says it owns
    /// it (during a rebalance, say) or the partition count is not known yet.
    pub fn owner(&self, service: &str, aggregate_id: Uuid, now: DateTime<Utc>) -> Option<Instance> {
        self.owner_ref(service, aggregate_id, now).cloned()
    }

    /// [`Directory::owner`] without copying the heartbeat: the gateway asks
    /// this on every read.
    pub fn owner_ref(
        &self,
        service: &str,
        aggregate_id: Uuid,
        now: DateTime<Utc>,
    ) -> Option<&Instance> {
        // Ties go to the greater instance id, so that the answer does not
        // depend on the map's order.
        let newest = |a: &&Instance, b: &&Instance| {
            (a.heartbeat.sent_at, &a.heartbeat.instance_id)
                .cmp(&(b.heartbeat.sent_at, &b.heartbeat.instance_id))
        };
        let live = || {
            self.instances
                .values()
                .filter(move |i| i.heartbeat.service == service && i.is_live(now))
        };
        // The newest word on the topic's size: partitions can be added.
        let count = live()
            .filter(|i| i.heartbeat.partition_count.is_some())
            .max_by(newest)?
            .heartbeat
            .partition_count?;
        let partition = partition_for(aggregate_id, count);
        // Two claims overlap only while a rebalance is reported: the newer
        // heartbeat is the truer one.
        live()
            .filter(|i| i.heartbeat.partitions.contains(&partition))
            .max_by(newest)
    }

    /// The HTTP address of the first live instance of `service` by
    /// instance id, if it answers HTTP ([`Directory::live`]'s first).
    pub fn first_http(&self, service: &str, now: DateTime<Utc>) -> Option<String> {
        self.instances
            .values()
            .filter(|i| i.heartbeat.service == service && i.is_live(now))
            .min_by(|a, b| a.heartbeat.instance_id.cmp(&b.heartbeat.instance_id))
            .and_then(|i| i.heartbeat.http.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn beat(instance: &str, at: DateTime<Utc>, state: State, partitions: &[i32]) -> Heartbeat {
        Heartbeat {
            service: "users".into(),
            instance_id: instance.into(),
            http: None,
            version: "0.1.0".into(),
            started_at: at,
            sent_at: at,
            period_ms: 1000,
            state,
            commands_topic: "users.commands".into(),
            partitions: partitions.to_vec(),
            partition_count: Some(3),
            ready: true,
            reasons: vec![],
        }
    }

    fn t0() -> DateTime<Utc> {
        DateTime::from_timestamp(1_700_000_000, 0).unwrap()
    }

    fn secs(s: i64) -> TimeDelta {
        TimeDelta::milliseconds(s * 1000)
    }

    fn ids(instances: &[Instance]) -> Vec<&str> {
        instances
            .iter()
            .map(|i| i.heartbeat.instance_id.as_str())
            .collect()
    }

    #[test]
    fn an_instance_is_down_after_three_silent_periods() {
        let mut dir = Directory::new();
        dir.observe(beat("a", t0(), State::Up, &[0]), t0());
        assert_eq!(ids(&dir.live("users", t0() + secs(3))), ["a"]);
        assert!(dir
            .live("users", t0() + secs(3) + TimeDelta::milliseconds(1))
            .is_empty());
        assert!(
            dir.live("orders", t0()).is_empty(),
            "other services are apart"
        );
        // A new heartbeat starts the count again.
        dir.observe(beat("a", t0() + secs(2), State::Up, &[0]), t0() + secs(2));
        assert_eq!(ids(&dir.live("users", t0() + secs(5))), ["a"]);
    }

    #[test]
    fn leaving_removes_at_once_and_a_late_record_does_not_undo_it() {
        let mut dir = Directory::new();
        dir.observe(beat("a", t0(), State::Up, &[0]), t0());
        dir.observe(beat("b", t0(), State::Up, &[1, 2]), t0());
        let leaving = t0() + TimeDelta::milliseconds(100);
        dir.observe(beat("a", leaving, State::Leaving, &[0]), leaving);
        assert_eq!(ids(&dir.live("users", leaving)), ["b"]);
        assert!(!dir.observe(beat("a", t0(), State::Up, &[0]), leaving));
        assert_eq!(ids(&dir.live("users", leaving)), ["b"]);
        assert_eq!(
            dir.last("users", "a").unwrap().heartbeat.state,
            State::Leaving
        );
        // The same instance restarted is live again.
        let back = t0() + secs(10);
        dir.observe(beat("a", back, State::Up, &[0]), back);
        assert_eq!(ids(&dir.live("users", back)), ["a"]);
    }

    #[test]
    fn a_clock_ahead_does_not_keep_an_instance_alive() {
        let mut dir = Directory::new();
        // The caller passes the earlier of record time and its own time.
        dir.observe(beat("a", t0() + secs(60), State::Up, &[0]), t0());
        assert!(dir.live("users", t0() + secs(4)).is_empty());
    }

    #[test]
    fn the_owner_is_the_live_instance_that_owns_the_keys_partition() {
        let mut dir = Directory::new();
        dir.observe(beat("a", t0(), State::Up, &[0, 2]), t0());
        dir.observe(beat("b", t0(), State::Up, &[1]), t0());
        let ids: Vec<Uuid> = (0..32).map(|_| Uuid::new_v4()).collect();
        for id in &ids {
            let owner = dir
                .owner("users", *id, t0())
                .expect("every partition is owned");
            assert!(owner.heartbeat.partitions.contains(&partition_for(*id, 3)));
        }
        // b down: its partition has no owner until someone reports it.
        let later = t0() + secs(2);
        dir.observe(beat("a", later, State::Up, &[0, 2]), later);
        let orphan = ids.iter().find(|id| partition_for(**id, 3) == 1).unwrap();
        assert!(dir.owner("users", *orphan, later + secs(2)).is_none());
        // a takes it over; its newer claim wins over b's older one.
        dir.observe(
            beat("a", later + secs(1), State::Up, &[0, 1, 2]),
            later + secs(1),
        );
        let owner = dir.owner("users", *orphan, later + secs(1)).unwrap();
        assert_eq!(owner.heartbeat.instance_id, "a");
    }

    #[test]
    fn equal_claims_go_to_the_greater_instance_id_and_the_first_live_one_answers_otherwise() {
        // Given two live instances claiming the same partitions at the same
        // moment (a rebalance in progress), each answering HTTP
        let mut dir = Directory::new();
        let mut a = beat("a", t0(), State::Up, &[0, 1, 2]);
        a.http = Some("127.0.0.1:1".into());
        let mut b = beat("b", t0(), State::Up, &[0, 1, 2]);
        b.http = Some("127.0.0.1:2".into());
        dir.observe(b, t0());
        dir.observe(a, t0());
        // Then the owner is the same whatever the map's order, with or
        // without a copy, and the first live instance is "a"
        let id = Uuid::new_v4();
        let owner = dir.owner_ref("users", id, t0()).unwrap();
        assert_eq!(owner.heartbeat.instance_id, "b");
        assert_eq!(dir.owner("users", id, t0()).as_ref(), Some(owner));
        assert_eq!(
            dir.first_http("users", t0()).as_deref(),
            Some("127.0.0.1:1")
        );
        assert_eq!(dir.first_http("orders", t0()), None);
        // And once both are silent, nobody answers
        let late = t0() + secs(10);
        assert!(dir.owner_ref("users", id, late).is_none());
        assert_eq!(dir.first_http("users", late), None);
    }
}
