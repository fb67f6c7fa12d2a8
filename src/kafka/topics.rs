//! Topic creation at start-up. Some clusters (Tansu among them) do not create
//! topics on demand, so every service creates the topics it uses; a topic that
//! already exists is fine.

use super::{clients, KafkaConfig, TransportError};
use ordersaga_events::topics::{Service, DEADLETTER, HEARTBEATS, SAGA_COMMANDS, SAGA_REPLIES};
use rdkafka::admin::{AdminOptions, NewTopic, TopicReplication};
use rdkafka::types::RDKafkaErrorCode;

/// The topics `service` reads or writes: its command and event topics, the
/// dead-letter topic, the heartbeats topic and, for the orders service, the
/// saga's topics.
pub fn topics_of(service: Service) -> Vec<String> {
    let mut topics = vec![
        service.commands_topic().to_string(),
        service.events_topic().to_string(),
        DEADLETTER.to_string(),
        HEARTBEATS.to_string(),
    ];
    if service == Service::Orders {
        topics.extend([SAGA_REPLIES.to_string(), SAGA_COMMANDS.to_string()]);
    }
    topics
}

/// Every topic the three services use, each once.
pub fn all_topics() -> Vec<String> {
    let mut all: Vec<String> = Service::ALL.into_iter().flat_map(topics_of).collect();
    all.sort();
    all.dedup();
    all
}

/// Creates the logical topics `names` (namespaced by the config) with the
/// configured partitions and replication, skipping those that exist.
pub async fn ensure_topics(config: &KafkaConfig, names: &[String]) -> Result<(), TransportError> {
    if config.auto_create_topics {
        return Ok(());
    }
    let admin = clients::admin(config, "ordersaga-admin")?;
    let mut physical: Vec<String> = names.iter().map(|n| config.name(n)).collect();
    // A name twice in one request is a malformed request to some brokers.
    physical.sort();
    physical.dedup();
    let new: Vec<NewTopic<'_>> = physical
        .iter()
        .map(|name| {
            NewTopic::new(
                name,
                config.partitions,
                TopicReplication::Fixed(config.replication),
            )
        })
        .collect();
    let options = AdminOptions::new().operation_timeout(Some(clients::CONNECT_TIMEOUT));
    for result in admin.create_topics(new.iter(), &options).await? {
        match result {
            Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((topic, code)) => {
                return Err(TransportError::Topic {
                    topic,
                    reason: code.to_string(),
                })
            }
        }
    }
    Ok(())
}
