"""Registers a user through Kafka with a JSON command and prints the reply.

    python3 docs/example_register.py [BOOTSTRAP_SERVERS]

Needs `pip install confluent-kafka` and a running ordersaga.
"""
import json
import sys
import uuid

from confluent_kafka import Consumer, Producer
from confluent_kafka.admin import AdminClient, NewTopic

BROKERS = sys.argv[1] if len(sys.argv) > 1 else "127.0.0.1:9092"
REPLIES = "shop.replies"

# ordersaga creates a reply topic on first use; creating it here (and waiting
# for it) lets the consumer below subscribe before the first reply exists.
for future in AdminClient({"bootstrap.servers": BROKERS}).create_topics([NewTopic(REPLIES, 1, 1)]).values():
    try:
        future.result()
    except Exception as exists:  # TOPIC_ALREADY_EXISTS on a second run
        print(f"note: {exists}", file=sys.stderr)

user_id, command_id = str(uuid.uuid4()), str(uuid.uuid4())
command = {
    "command_id": command_id,
    "correlation_id": command_id,
    "reply_to": REPLIES,
    "issued_at": "2026-11-26T12:00:00Z",
    "command": {"Register": {"user_id": user_id, "email": "ada@example.com",
                             "username": "Ada", "password": "correct horse battery"}},
}
producer = Producer({"bootstrap.servers": BROKERS, "enable.idempotence": True})
producer.produce("users.commands", key=user_id, value=json.dumps(command),
                 headers={"content-type": "application/json"})
producer.flush()

consumer = Consumer({"bootstrap.servers": BROKERS, "group.id": "example-" + command_id,
                     "auto.offset.reset": "earliest"})
consumer.subscribe([REPLIES])
while True:
    record = consumer.poll(1.0)
    if record is None or record.error():
        continue
    reply = json.loads(record.value())
    if reply["command_id"] == command_id:
        print(json.dumps(reply, indent=2))
        break
consumer.close()
