//! Records a broker leaves out of the middle of a partition.
//!
//! Tansu 0.6 was seen to leave a whole batch out of a busy partition: the
//! records were in the topic, but the consumer got the batch after them.
//! A consumer of ordersaga drops a record that comes after such a hole and
//! reads the partition again from the first offset missing
//! (`kafka/resume.rs`). No broker leaves records out on demand, so this test
//! plays the broker's part: it hides two records from the check, as if they
//! had never arrived, and requires that the real consumer, on the embedded
//! broker and on a real one alike, then reads exactly those records again,
//! in order, before anything after them.

mod support;

use ordersaga::kafka::resume::ResumePoints;
use rdkafka::consumer::StreamConsumer;
use rdkafka::producer::FutureRecord;
use rdkafka::Message;
use std::time::Duration;
use support::{from_the_beginning, producer, TestBroker};

const TOPIC: &str = "holes.records";

/// Records written to partition 0.
const RECORDS: i64 = 10;

/// How long the test waits for one record before it fails.
const PATIENCE: Duration = Duration::from_secs(30);

/// The offset of the next record `consumer` receives from partition 0.
async fn next_offset(consumer: &StreamConsumer) -> i64 {
    let message = tokio::time::timeout(PATIENCE, consumer.recv())
        .await
        .expect("a record in time")
        .expect("a record");
    assert_eq!(message.partition(), 0, "only partition 0 has records");
    message.offset()
}

#[actix_rt::test]
async fn records_left_out_of_a_partition_are_read_again_before_what_follows() {
    // Given a partition with ten records, read by a consumer that checks
    // each record's offset,
    let broker = TestBroker::from_env();
    let kafka = broker.kafka();
    broker.create_topics(&kafka, &[TOPIC]).await;
    let producer = producer(&kafka);
    let physical = kafka.name(TOPIC);
    for i in 0..RECORDS {
        let payload = format!("record {i}");
        let record = FutureRecord::<(), _>::to(&physical)
            .partition(0)
            .payload(&payload);
        let delivery = producer
            .send(record, PATIENCE)
            .await
            .map_err(|(err, _)| err)
            .expect("produce");
        assert_eq!((delivery.partition, delivery.offset), (0, i));
    }
    let consumer = from_the_beginning(&kafka, TOPIC, "holes");
    let points = ResumePoints::default();
    let mut rewinds = 0;
    let mut admit =
        |offset: i64| points.admit(&consumer, "test", (&physical, 0, offset), || rewinds += 1);
    for expected in 0..5 {
        let offset = next_offset(&consumer).await;
        assert_eq!(offset, expected);
        assert!(admit(offset), "record {offset} is handled");
    }

    // when records 5 and 6 go missing, as if the broker had left them out,
    // and record 7 comes next,
    assert_eq!(next_offset(&consumer).await, 5);
    assert_eq!(next_offset(&consumer).await, 6);
    let after_the_hole = next_offset(&consumer).await;
    assert_eq!(after_the_hole, 7);

    // then record 7 is not handled,
    assert!(!admit(after_the_hole), "a record after a hole is dropped");
    // and the consumer reads 5 and 6 again, then 7 and the rest, in order.
    for expected in 5..RECORDS {
        let offset = next_offset(&consumer).await;
        assert_eq!(offset, expected, "read again from the hole, in order");
        assert!(admit(offset), "record {offset} is handled");
    }
    assert_eq!(rewinds, 1, "one partition sought back, once");
}
