//! `ordersaga replay --check`: each aggregate rebuilt three ways, and every
//! way in which they disagree.
//!
//! - **replay**: from the first event, ignoring snapshots
//!   ([`ordersaga_actors::recovery::replay`]); the truth, by definition of
//!   event sourcing.
//! - **recover**: the latest snapshot plus the events after it
//!   ([`ordersaga_actors::recovery::recover`]); what an entity actor starts
//!   from.
//! - **snapshot**: the stored snapshot itself, decoded, against the replay
//!   up to the snapshot's sequence; a snapshot that disagrees is damage,
//!   or an `apply` that changed since the snapshot was taken.
//! - **index**: the archive and list indexes derived from the events
//!   ([`ordersaga_actors::recovery::index_differences`]), for the aggregates
//!   that keep them.
//!
//! A snapshot of an older layout is not a difference: recovery ignores it
//! and replays in full, so it is only counted.

use super::{kinds, ReplayError};
use indicatif::ProgressBar;
use ordersaga_actors::aggregates::{Order, Product, Saga, User};
use ordersaga_actors::recovery::{index_differences, recover, replay};
use ordersaga_actors::{Aggregate, Journal};
use ordersaga_events::codec::decode;
use ordersaga_events::topics::Service;
use ordersaga_events::{StreamId, StreamKind, Versioned};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Which path disagrees with the replay from scratch.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Path {
    /// The replay from scratch itself failed, or fell short of the stream's
    /// recorded version.
    Replay,
    /// Snapshot + tail, as the live service recovers.
    Recover,
    /// The stored snapshot.
    Snapshot,
    /// The archive or list index.
    Index,
}

impl Path {
    /// The lower-case name, as printed.
    pub fn name(self) -> &'static str {
        match self {
            Path::Replay => "replay",
            Path::Recover => "recover",
            Path::Snapshot => "snapshot",
            Path::Index => "index",
        }
    }
}

/// One disagreement.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Difference {
    /// The aggregate's stream, as `kind:uuid`.
    pub stream: String,
    /// The path that disagrees with the replay from scratch.
    pub path: Path,
    /// What differs, in one sentence.
    pub what: String,
}

/// What a check covered.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct CheckTotals {
    /// Aggregates checked.
    pub aggregates: u64,
    /// Events replayed from scratch.
    pub events: u64,
    /// Snapshots decoded and compared.
    pub snapshots: u64,
    /// Snapshots of an older layout, which recovery ignores.
    pub stale_snapshots: u64,
    /// Differences found.
    pub differences: u64,
}

/// A snapshot as the journal stores it (`recovery::encode_snapshot`): the
/// layout it was taken under, then the state. The recovery module keeps
/// its own copy private; `snapshot_mirrors_the_stored_layout` below pins
/// this one to it.
#[derive(Deserialize)]
struct StoredSnapshot<A> {
    schema_version: u16,
    state: A,
}

/// The layout recovery accepts for `A` (its private `snapshot_layout`): the
/// event schema in the low byte, the state's layout in the high byte.
fn snapshot_layout<A: Aggregate>() -> u16 {
    (A::Event::SCHEMA_VERSION & 0xff) | (u16::from(A::STATE_VERSION) << 8)
}

/// Most field differences reported per comparison: past that, a count.
const MAX_FIELDS: usize = 20;

/// The fields where `left` and `right` differ, as `path: left L, right R`.
fn field_differences(
    left_name: &str,
    left: &Value,
    right_name: &str,
    right: &Value,
) -> Vec<String> {
    fn walk(at: &str, left: &Value, right: &Value, out: &mut Vec<(String, String, String)>) {
        match (left, right) {
            (Value::Object(l), Value::Object(r)) => {
                let mut keys: Vec<&String> = l.keys().chain(r.keys()).collect();
                keys.sort();
                keys.dedup();
                for key in keys {
                    let here = if at.is_empty() {
                        key.clone()
                    } else {
                        format!("{at}.{key}")
                    };
                    let missing = Value::Null;
                    walk(
                        &here,
                        l.get(key).unwrap_or(&missing),
                        r.get(key).unwrap_or(&missing),
                        out,
                    );
                }
            }
            (Value::Array(l), Value::Array(r)) if l.len() == r.len() => {
                for (i, (l, r)) in l.iter().zip(r).enumerate() {
                    walk(&format!("{at}[{i}]"), l, r, out);
                }
            }
            (l, r) if l != r => {
                let name = if at.is_empty() { "state" } else { at };
                out.push((name.to_owned(), l.to_string(), r.to_string()));
            }
            _ => {}
        }
    }
    let mut found = Vec::new();
    walk("", left, right, &mut found);
    let total = found.len();
    let mut out: Vec<String> = found
        .into_iter()
        .take(MAX_FIELDS)
        .map(|(at, l, r)| format!("{at}: {left_name} {l}, {right_name} {r}"))
        .collect();
    if total > MAX_FIELDS {
        out.push(format!("and {} more fields", total - MAX_FIELDS));
    }
    out
}

/// The fields where two states differ; one line when they do not serialize.
fn state_differences<A: Aggregate>(
    left_name: &str,
    left: &A,
    right_name: &str,
    right: &A,
) -> Vec<String> {
    match (serde_json::to_value(left), serde_json::to_value(right)) {
        (Ok(l), Ok(r)) => {
            let found = field_differences(left_name, &l, right_name, &r);
            if found.is_empty() {
                // Equal as JSON yet unequal: say so rather than nothing.
                vec![format!(
                    "state: {left_name} {left:?}, {right_name} {right:?}"
                )]
            } else {
                found
            }
        }
        _ => vec![format!(
            "state: {left_name} {left:?}, {right_name} {right:?}"
        )],
    }
}

/// Checks one aggregate of type `A` with `head` events, pushing each
/// difference to `out`.
fn check_one<A: Aggregate>(
    journal: &Journal,
    stream: StreamId,
    head: u64,
    totals: &mut CheckTotals,
    out: &mut Vec<Difference>,
) {
    let name = stream.to_string();
    let mut differ = |path: Path, what: String| {
        out.push(Difference {
            stream: name.clone(),
            path,
            what,
        })
    };
    totals.aggregates += 1;
    let fresh = match replay::<A>(journal, stream.id, None) {
        Ok(fresh) => fresh,
        Err(err) => {
            differ(Path::Replay, err.to_string());
            return;
        }
    };
    totals.events += fresh.version;
    if fresh.version != head {
        differ(
            Path::Replay,
            format!("reached version {} of {head}", fresh.version),
        );
    }

    match recover::<A>(journal, stream.id) {
        Err(err) => differ(Path::Recover, err.to_string()),
        Ok(live) => {
            if live.version != fresh.version {
                differ(
                    Path::Recover,
                    format!(
                        "version: recover {}, replay {}",
                        live.version, fresh.version
                    ),
                );
            }
            if live.state != fresh.state {
                for what in state_differences("recover", &live.state, "replay", &fresh.state) {
                    differ(Path::Recover, what);
                }
            }
        }
    }

    match journal.load_snapshot(&stream) {
        Err(err) => differ(Path::Snapshot, err.to_string()),
        Ok(None) => {}
        Ok(Some((sequence, bytes))) => match decode::<StoredSnapshot<A>>(&bytes) {
            Err(err) => differ(
                Path::Snapshot,
                format!("the snapshot at #{sequence} is unreadable: {err}"),
            ),
            Ok(snapshot) if snapshot.schema_version != snapshot_layout::<A>() => {
                totals.stale_snapshots += 1;
            }
            Ok(_) if sequence > head => differ(
                Path::Snapshot,
                format!("the snapshot is at #{sequence}, past the stream's last event #{head}"),
            ),
            Ok(snapshot) => {
                totals.snapshots += 1;
                match replay::<A>(journal, stream.id, Some(sequence)) {
                    Err(err) => differ(Path::Snapshot, err.to_string()),
                    Ok(then) if then.state != snapshot.state => {
                        let label = format!("snapshot@{sequence}");
                        let replay_label = format!("replay@{sequence}");
                        for what in
                            state_differences(&label, &snapshot.state, &replay_label, &then.state)
                        {
                            differ(Path::Snapshot, what);
                        }
                    }
                    Ok(_) => {}
                }
            }
        },
    }

    if A::ARCHIVES || A::LISTS {
        match index_differences::<A>(journal, &stream) {
            Ok(found) => {
                for what in found {
                    // The sentences already start with the stream.
                    let what = what
                        .strip_prefix(&format!("{stream}: "))
                        .map(str::to_owned)
                        .unwrap_or(what);
                    differ(Path::Index, what);
                }
            }
            Err(err) => differ(Path::Index, err.to_string()),
        }
    }
}

/// Checks the aggregate of `stream` (which must exist in the store).
pub fn check_stream(
    journal: &Journal,
    stream: StreamId,
    totals: &mut CheckTotals,
) -> Result<Vec<Difference>, ReplayError> {
    let head = journal.version(&stream)?;
    if head == 0 {
        return Err(ReplayError::NotFound(format!(
            "no stream {stream} in {}",
            journal.path().display()
        )));
    }
    let mut out = Vec::new();
    dispatch(journal, stream, head, totals, &mut out);
    totals.differences += out.len() as u64;
    Ok(out)
}

fn dispatch(
    journal: &Journal,
    stream: StreamId,
    head: u64,
    totals: &mut CheckTotals,
    out: &mut Vec<Difference>,
) {
    match stream.kind {
        StreamKind::User => check_one::<User>(journal, stream, head, totals, out),
        StreamKind::Product => check_one::<Product>(journal, stream, head, totals, out),
        StreamKind::Order => check_one::<Order>(journal, stream, head, totals, out),
        StreamKind::Saga => check_one::<Saga>(journal, stream, head, totals, out),
    }
}

/// Checks every aggregate of `service`'s store, handing each difference to
/// `each` as it is found. A stream that cannot be read is a difference, and
/// the check goes on with the next; only a store that cannot be listed
/// stops it.
pub fn check_all(
    journal: &Journal,
    service: Service,
    progress: &ProgressBar,
    mut each: impl FnMut(&Difference) -> Result<(), ReplayError>,
) -> Result<CheckTotals, ReplayError> {
    let mut totals = CheckTotals::default();
    let mut found = Vec::new();
    for kind in kinds(service) {
        for item in journal.streams(Some(*kind)) {
            let (stream, head) = item?;
            dispatch(journal, stream, head, &mut totals, &mut found);
            progress.inc(head);
            for difference in found.drain(..) {
                totals.differences += 1;
                each(&difference)?;
            }
        }
    }
    Ok(totals)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ordersaga_events::user::UserEvent;
    use ordersaga_events::{Cents, UserId};

    fn user(deposits: &[u64]) -> User {
        let mut events = vec![UserEvent::Registered {
            user_id: UserId::from_uuid(uuid::Uuid::nil()),
            email: "a@example.com".into(),
            username: "a".into(),
        }];
        events.extend(
            deposits
                .iter()
                .map(|&c| UserEvent::Deposited { amount: Cents(c) }),
        );
        User::from_events(&events)
    }

    #[test]
    fn snapshot_mirrors_the_stored_layout() {
        let state = user(&[5, 7]);
        let bytes = ordersaga_actors::recovery::encode_snapshot(&state).unwrap();
        let stored: StoredSnapshot<User> = decode(&bytes).unwrap();
        assert_eq!(stored.schema_version, snapshot_layout::<User>());
        assert_eq!(stored.state, state);
    }

    #[test]
    fn differences_name_each_field_with_both_values() {
        let (a, b) = (user(&[5, 7]), user(&[5]));
        let found = state_differences("snapshot", &a, "replay", &b);
        assert!(
            found.contains(&"balance: snapshot 12, replay 5".to_owned()),
            "{found:?}"
        );
        assert!(
            found.contains(&"total_deposited: snapshot 12, replay 5".to_owned()),
            "{found:?}"
        );
        assert!(!found.iter().any(|f| f.starts_with("email")), "{found:?}");
    }
}
