//! JSON Schemas of every message on the wire, derived from the Rust types.
//!
//! [`all_schemas`] gives one JSON Schema per kind of record that travels on
//! a topic, named by the file it is committed as under `docs/schema/` (see
//! [`SCHEMA_DIR`]); `docs/asyncapi.yaml` refers to those files from its
//! messages. The schemas are JSON Schema draft 07, the dialect AsyncAPI 3
//! schemas extend, so AsyncAPI tools read them as they are. They describe
//! the JSON encoding ([`crate::Format::Json`]); a bincode record carries the
//! same fields in bincode.
//!
//! The schemas describe what a reader must accept (serde's deserialize
//! contract): a field with a default (`reply_to`, `Reply::result`,
//! `SagaCommand::Retry::now`) may be left out, although this crate always
//! writes it. Unknown fields are allowed, as serde ignores them.
//!
//! The committed files are checked against this module by the test
//! `events/tests/schema_check.rs`; after a change to a wire type, rewrite
//! them with [`REGENERATE`].

use crate::codec::Versioned;
use crate::command::CommandEnvelope;
use crate::envelope::Envelope;
use crate::inventory::{InventoryCommand, InventoryEvent};
use crate::order::{OrderCommand, OrderEvent};
use crate::reply::Reply;
use crate::saga::{SagaCommand, SagaEvent};
use crate::user::{UserCommand, UserEvent};
use schemars::generate::SchemaSettings;
use schemars::JsonSchema;
use serde_json::{Map, Value};

/// Where the schema files live, relative to the workspace root.
pub const SCHEMA_DIR: &str = "docs/schema";

/// The command that rewrites the committed schema files from the code.
pub const REGENERATE: &str =
    "ORDERSAGA_WRITE_SCHEMAS=1 cargo test -p ordersaga-events --test schema_check";

/// Every message schema, as `(file name, schema)`, in a fixed order: the
/// command envelope of each command topic, the event envelope of each event
/// type, and the reply. Dead letters have no schema: a dead letter is the
/// original record, unchanged.
pub fn all_schemas() -> Vec<(&'static str, Value)> {
    vec![
        command::<UserCommand>(
            "users-command.json",
            "A command for a user account, on `users.commands`, keyed by the user id.",
        ),
        command::<InventoryCommand>(
            "inventory-command.json",
            "A command for a product, on `inventory.commands`, keyed by the product id.",
        ),
        command::<OrderCommand>(
            "orders-command.json",
            "A command for an order, on `orders.commands`, keyed by the order id.",
        ),
        command::<SagaCommand>(
            "saga-command.json",
            "A command for the order saga, on `orders.saga.commands`, keyed by the saga \
             id. Only `Retry` is accepted there (an operator's retry of a stuck saga; its \
             `now` is replaced by the service's clock); any other variant is dead-lettered \
             as `not_an_operator_command`. The other variants are the saga's internal inputs.",
        ),
        event::<UserEvent>(
            "user-event.json",
            "An event of a user account, on `users.events`, keyed by the user id.",
        ),
        event::<InventoryEvent>(
            "inventory-event.json",
            "An event of a product, on `inventory.events`, keyed by the product id.",
        ),
        event::<OrderEvent>(
            "order-event.json",
            "An event of an order, on `orders.events` (header `stream: order:<id>`), keyed \
             by the order id.",
        ),
        event::<SagaEvent>(
            "saga-event.json",
            "An event of an order saga, on `orders.events` (header `stream: saga:<id>`), \
             keyed by the saga id (= the order id).",
        ),
        root::<Reply>(
            "reply.json",
            "Reply",
            "The one reply to a command, on the topic its `reply_to` names (`NAME.replies`, \
             or `orders.saga.replies` for the saga's commands), keyed by the correlation id.",
        ),
    ]
}

/// `value` as committed: pretty JSON with every object's keys sorted and a
/// trailing newline, so the output does not depend on map ordering.
pub fn to_file_text(value: &Value) -> String {
    let mut text = serde_json::to_string_pretty(&sorted(value)).expect("a JSON value prints");
    text.push('\n');
    text
}

fn command<C: JsonSchema>(file: &'static str, about: &str) -> (&'static str, Value) {
    let title = format!("CommandEnvelope<{}>", C::schema_name());
    root::<CommandEnvelope<C>>(file, &title, about)
}

fn event<E: JsonSchema + Versioned>(file: &'static str, about: &str) -> (&'static str, Value) {
    let title = format!("Envelope<{}>", E::TYPE_NAME);
    let (file, mut schema) = root::<Envelope<E>>(file, &title, about);
    // The envelope is generic; the version its payload schema describes is
    // the payload type's.
    let version = &mut schema["properties"]["schema_version"];
    version["description"] = Value::String(format!(
        "The payload's schema version when it was written. This schema describes version \
         {current} of the payload; a reader upcasts older versions.",
        current = E::SCHEMA_VERSION
    ));
    (file, schema)
}

fn root<T: JsonSchema>(file: &'static str, title: &str, about: &str) -> (&'static str, Value) {
    let generator = SchemaSettings::draft07().into_generator();
    let mut schema = generator.into_root_schema_for::<T>().to_value();
    add_uuid_patterns(&mut schema);
    schema["title"] = Value::String(title.to_owned());
    schema["description"] = Value::String(about.to_owned());
    (file, schema)
}

/// The text form of a UUID that ordersaga writes: hyphenated, as
/// `uuid::Uuid` displays it. (Its reader also accepts the simple, braced and
/// URN forms.)
pub const UUID_PATTERN: &str =
    "^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$";

/// Gives every `"format": "uuid"` string a `pattern`: draft 07 does not
/// define the `uuid` format, so validators ignore it.
fn add_uuid_patterns(value: &mut Value) {
    match value {
        Value::Object(map) => {
            if map.get("format").and_then(Value::as_str) == Some("uuid") {
                map.insert("pattern".into(), UUID_PATTERN.into());
            }
            map.values_mut().for_each(add_uuid_patterns);
        }
        Value::Array(items) => items.iter_mut().for_each(add_uuid_patterns),
        _ => {}
    }
}

/// A copy of `value` with the keys of every object in sorted order.
fn sorted(value: &Value) -> Value {
    match value {
        Value::Object(map) => {
            let mut entries: Vec<(&String, &Value)> = map.iter().collect();
            entries.sort_by(|a, b| a.0.cmp(b.0));
            let map: Map<String, Value> = entries
                .into_iter()
                .map(|(k, v)| (k.clone(), sorted(v)))
                .collect();
            Value::Object(map)
        }
        Value::Array(items) => Value::Array(items.iter().map(sorted).collect()),
        other => other.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_names_are_unique_and_text_is_stable() {
        let all = all_schemas();
        let mut names: Vec<&str> = all.iter().map(|(n, _)| *n).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), all.len());
        for (name, schema) in &all {
            let text = to_file_text(schema);
            assert!(text.ends_with("}\n"), "{name}");
            let again: Value = serde_json::from_str(&text).unwrap();
            assert_eq!(to_file_text(&again), text, "{name}");
        }
    }
}
