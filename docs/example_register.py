"""Registers a user through Kafka with a JSON command and prints the reply.

    python3 docs/example_register.py BOOTSTRAP_SERVERS [NAMESPACE] [--timeout SECONDS]

BOOTSTRAP_SERVERS is what `ordersaga run` prints (`127.0.0.1:PORT` for its
embedded broker); NAMESPACE is the `--namespace` ordersaga runs with, if any.
Needs `confluent-kafka` (scripts/python-env.sh installs it) and a running
ordersaga. Exits 0 once the reply is printed, accepted or rejected (a second
run is rejected with `email_taken`), and 1 when no reply comes in time.
"""
import argparse
import json
import sys
import time
import uuid
from datetime import datetime, timezone

from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("brokers", help="bootstrap servers, e.g. 127.0.0.1:PORT")
parser.add_argument("namespace", nargs="?", help="ordersaga's --namespace, if any")
parser.add_argument("--timeout", type=float, default=30.0, help="seconds to wait in all (default 30)")
args = parser.parse_args()
deadline = time.monotonic() + args.timeout
prefix = f"{args.namespace}." if args.namespace else ""
commands_topic = prefix + "users.commands"
reply_to = "shop.replies"  # a reply topic must be named NAME.replies
replies_topic = prefix + reply_to  # where a service in the namespace puts it


def fail(message):
    print(f"error: {message}", file=sys.stderr)
    sys.exit(1)


# confluent-kafka wants a group.id, but this consumer joins no group: it reads
# the partitions it is assigned below, from the offsets it gives.
consumer = Consumer({"bootstrap.servers": args.brokers, "group.id": "unused",
                     "enable.auto.commit": False})


def reply_partitions(offset_of):
    """The reply topic's partitions, each at offset_of(partition), or None
    while the topic does not exist."""
    try:
        topic = consumer.list_topics(replies_topic, timeout=5).topics[replies_topic]
    except KafkaException as err:
        fail(f"cannot read metadata from {args.brokers}: {err}")
    if topic.error is not None or not topic.partitions:
        return None
    return [TopicPartition(replies_topic, p, offset_of(p)) for p in topic.partitions]


def end_offset(partition):
    return consumer.get_watermark_offsets(TopicPartition(replies_topic, partition), timeout=5)[1]


# If the reply topic exists, read it from its current end; the reply comes
# after. If not, the service creates it when it reads the command (in the
# background), so it is looked for again after sending.
start = reply_partitions(end_offset)

user_id, command_id = str(uuid.uuid4()), str(uuid.uuid4())
command = {
    "command_id": command_id,  # new per intent; resending it is safe
    "correlation_id": command_id,  # the reply carries it back
    "reply_to": reply_to,
    "issued_at": datetime.now(timezone.utc).isoformat().replace("+00:00", "Z"),
    "command": {"Register": {"user_id": user_id, "email": "ada@example.com",
                             "username": "Ada", "password": "correct horse battery"}},
}
delivery = []
producer = Producer({"bootstrap.servers": args.brokers, "enable.idempotence": True})
producer.produce(commands_topic, key=user_id, value=json.dumps(command),
                 headers={"content-type": "application/json"},
                 on_delivery=lambda err, _record: delivery.append(err))
producer.flush(max(0.0, deadline - time.monotonic()))
if not delivery:
    fail(f"the command was not delivered to {commands_topic} on {args.brokers} within {args.timeout:g} s")
if delivery[0] is not None:
    fail(f"the command was not delivered to {commands_topic}: {delivery[0]}")

while start is None:  # a new reply topic: everything on it is new
    if time.monotonic() > deadline:
        fail(f"the reply topic {replies_topic} did not appear within {args.timeout:g} s; "
             "is ordersaga running on this broker (and namespace)?")
    time.sleep(0.2)
    start = reply_partitions(lambda _partition: 0)
consumer.assign(start)

while True:
    left = deadline - time.monotonic()
    if left <= 0:
        fail(f"no reply to command {command_id} on {replies_topic} within {args.timeout:g} s")
    record = consumer.poll(min(left, 1.0))
    if record is None:
        continue
    if record.error():
        print(f"warning: {record.error()}", file=sys.stderr)
        continue
    if not (record.value() or b"").startswith(b"{"):
        continue  # a bincode reply, to someone else's bincode command
    reply = json.loads(record.value())
    if reply["correlation_id"] == command_id:
        break
consumer.close()

print(json.dumps(reply, indent=2))
outcome = reply["outcome"]
if "accepted" in outcome:
    print(f"user {user_id} registered")
else:
    print(f"rejected: {outcome['rejected']['code']} ({outcome['rejected']['message']})")
