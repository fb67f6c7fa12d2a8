//! Reply topics named by commands (`reply_to`).
//!
//! A reply topic is a trust boundary too: a command names it, and the
//! service publishes there. Only names of the documented form are accepted:
//! `NAME.replies`, a logical name inside the service's namespace (a name that
//! already carries the namespace prefix is accepted as the same topic).
//! Everything else is refused, and the command dead-lettered with the code
//! [`INVALID_REPLY_TO`], without being applied.
//!
//! Some clusters do not create topics on first use, so a reply topic the
//! service has not seen is created, off the consume path: the command runs at
//! once, and its reply waits in the outbox (the relay's producer waits for
//! the topic's metadata) until the topic exists.

use super::{topics, valid_topic_name, KafkaConfig};
use std::collections::HashSet;
use std::sync::{Arc, Mutex};

/// The dead-letter code of a command whose `reply_to` is refused.
pub const INVALID_REPLY_TO: &str = "invalid_reply_to";

/// The suffix every reply topic carries.
pub const SUFFIX: &str = ".replies";

/// How many reply topics a service remembers as created; past that it
/// forgets them all and asks again (creating an existing topic is a no-op).
const REMEMBERED: usize = 4_096;

/// The logical reply topic `reply_to` names, or why it is refused.
pub fn logical_reply_topic(kafka: &KafkaConfig, reply_to: &str) -> Result<String, String> {
    let is_reply_topic = |logical: &str| {
        let name = logical.strip_suffix(SUFFIX).unwrap_or_default();
        !name.is_empty() && valid_topic_name(&kafka.name(logical))
    };
    // `NS.shop.replies` in namespace `NS` is `shop.replies`; but
    // `NS.replies` is the logical `NS.replies`, since `replies` alone names
    // no reply topic.
    let unprefixed = kafka.namespace.as_deref().and_then(|ns| {
        reply_to
            .strip_prefix(ns)
            .and_then(|rest| rest.strip_prefix('.'))
            .filter(|rest| is_reply_topic(rest))
    });
    let logical = unprefixed.unwrap_or(reply_to);
    if !is_reply_topic(logical) {
        return Err(format!(
            "reply_to {reply_to:?} is not a reply topic: it must be NAME{SUFFIX} (letters, digits, '.', '_', '-'), at most 249 characters with the namespace"
        ));
    }
    Ok(logical.to_string())
}

/// The reply topics a service has made sure exist. Cheap to clone.
#[derive(Clone)]
pub struct ReplyTopics {
    kafka: KafkaConfig,
    known: Arc<Mutex<HashSet<String>>>,
}

impl ReplyTopics {
    /// Reply topics on `kafka`.
    pub fn new(kafka: KafkaConfig) -> Self {
        Self {
            kafka,
            known: Arc::default(),
        }
    }

    /// Makes sure the logical reply topic exists, in the background.
    pub fn ensure(&self, logical: &str) {
        if self.kafka.auto_create_topics {
            return;
        }
        {
            let Ok(mut known) = self.known.lock() else {
                return;
            };
            if known.contains(logical) {
                return;
            }
            if known.len() >= REMEMBERED {
                known.clear();
            }
            known.insert(logical.to_string());
        }
        let (kafka, known, topic) = (self.kafka.clone(), self.known.clone(), logical.to_string());
        actix::spawn(async move {
            if let Err(err) = topics::ensure_topics(&kafka, std::slice::from_ref(&topic)).await {
                tracing::warn!(topic, cause = %err, "cannot create the reply topic; its replies wait in the outbox");
                // Ask again with the next command that names it.
                if let Ok(mut known) = known.lock() {
                    known.remove(&topic);
                }
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kafka(namespace: Option<&str>) -> KafkaConfig {
        let config = KafkaConfig::new("127.0.0.1:9092");
        match namespace {
            Some(ns) => config.with_namespace(ns),
            None => config,
        }
    }

    #[test]
    fn reply_topics_are_name_dot_replies() {
        let k = kafka(None);
        assert_eq!(
            logical_reply_topic(&k, "gateway.replies").unwrap(),
            "gateway.replies"
        );
        assert_eq!(
            logical_reply_topic(&k, "a.b-c_d.replies").unwrap(),
            "a.b-c_d.replies"
        );
        for refused in [
            "users.commands",
            ".replies",
            "replies",
            "x y.replies",
            "",
            "a.replies.x",
        ] {
            assert!(logical_reply_topic(&k, refused).is_err(), "{refused:?}");
        }
        let long = format!("{}.replies", "a".repeat(250));
        assert!(logical_reply_topic(&k, &long).is_err());
    }

    #[test]
    fn a_namespaced_reply_to_names_the_same_topic() {
        let k = kafka(Some("prod"));
        assert_eq!(
            logical_reply_topic(&k, "shop.replies").unwrap(),
            "shop.replies"
        );
        assert_eq!(
            logical_reply_topic(&k, "prod.shop.replies").unwrap(),
            "shop.replies"
        );
        assert_eq!(
            k.name(&logical_reply_topic(&k, "prod.shop.replies").unwrap()),
            "prod.shop.replies"
        );
        assert_eq!(
            logical_reply_topic(&k, "prod.replies").unwrap(),
            "prod.replies",
            "`replies` alone names no reply topic, so this is the logical name"
        );
    }
}
