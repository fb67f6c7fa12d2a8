"""The outside contract, from Python: docs/TOPICS.md followed by a client that
is not Rust, against a running ordersaga.

    python tests/python/test_contract.py BOOTSTRAP_SERVERS [--namespace NS] [--timeout SECONDS]

Needs confluent-kafka and jsonschema (scripts/python-env.sh installs both) and
an `ordersaga run` on BOOTSTRAP_SERVERS (with `--namespace NS` when given);
scripts/test.sh starts one on the embedded broker and one on Tansu. It

- runs docs/example_register.py twice: a reply, then `email_taken`;
- registers two users, deposits, adds two products (JSON commands, each
  checked against docs/schema/*-command.json first) and reads every reply on
  its own reply topic, correlated by correlation id;
- sends one command twice: the same reply twice, and one event;
- sends a Deposit with a negative amount: the schema refuses it, and so does
  the service, with an `invalid_command` reply and a dead letter;
- places one order that completes, one that fails for funds and one that
  fails for stock, and follows `orders.events` to each saga's end
  (`Completed`, or `Aborted` with the reason);
- checks every record it sees on the event topics and its reply topic: JSON,
  valid against docs/schema/*-event.json or reply.json, its key and headers
  (content-type, event-id, stream, a traceparent whose trace id is the
  correlation id), gap-free sequences per stream of its own; and that no
  record it sees (dead letters and the saga's replies included) carries a
  password or an argon2 hash.

It reads each topic from where it ended when the test began, so it sees this
run's records only. Prints each failed check, then `contract: N passed, M
failed`; exits 0 when all passed, 1 otherwise (2 for bad arguments).
"""
import argparse
import json
import re
import subprocess
import sys
import time
import traceback
import uuid
from datetime import datetime, timezone
from pathlib import Path

from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition
from jsonschema import Draft7Validator, FormatChecker

ROOT = Path(__file__).resolve().parents[2]
SCHEMAS = ROOT / "docs" / "schema"
EXAMPLE = ROOT / "docs" / "example_register.py"
TRACEPARENT = re.compile(r"^00-([0-9a-f]{32})-([0-9a-f]{16})-01$")
JSON = "application/json"


class Fatal(Exception):
    """Ends the run: a timeout, or nothing to talk to."""


class Checks:
    """Named checks. A check made many times (once per record) counts once:
    passed when every time held. Each failure is printed as it happens (the
    first few of each check)."""

    SHOWN = 5

    def __init__(self):
        self.failures = {}  # name -> number of failures

    def check(self, ok, what, detail=""):
        failures = self.failures.setdefault(what, 0)
        if not ok:
            self.failures[what] = failures + 1
            if failures < self.SHOWN:
                print(f"FAIL {what}" + (f": {detail}" if detail else ""), flush=True)
        return ok

    def equal(self, got, want, what):
        return self.check(got == want, what, f"got {got!r}, want {want!r}")

    def passed(self):
        return sum(1 for n in self.failures.values() if n == 0)

    def failed(self):
        return sum(1 for n in self.failures.values() if n > 0)


def validator(name):
    schema = json.loads((SCHEMAS / f"{name}.json").read_text())
    Draft7Validator.check_schema(schema)
    return Draft7Validator(schema, format_checker=FormatChecker())


def schema_errors(validator, value):
    return [f"{'/'.join(map(str, e.absolute_path)) or '(root)'}: {e.message}"
            for e in validator.iter_errors(value)]


def now():
    return datetime.now(timezone.utc).isoformat().replace("+00:00", "Z")


def headers_of(record):
    out = {}
    for name, value in record.headers() or []:
        out[name] = value.decode("utf-8") if value is not None else None
    return out


def variant(payload):
    """The variant name of an externally tagged enum value."""
    return payload if isinstance(payload, str) else next(iter(payload))


def parent_id(uuid_text):
    """The traceparent parent id of a record carrying this command or event id."""
    span = uuid.UUID(uuid_text).hex[:16]
    return "0000000000000001" if span == "0" * 16 else span


class Contract:
    def __init__(self, args):
        self.args = args
        self.deadline = time.monotonic() + args.timeout
        self.prefix = f"{args.namespace}." if args.namespace else ""
        self.c = Checks()
        self.validators = {name: validator(name) for name in [
            "users-command", "inventory-command", "orders-command", "reply",
            "user-event", "inventory-event", "order-event", "saga-event"]}
        run = uuid.uuid4().hex[:12]
        self.reply_to = f"contract-{run}.replies"  # logical: the service adds the namespace
        self.replies_topic = self.topic(self.reply_to)
        self.passwords = [f"pw-{run}-alice", f"pw-{run}-bob"]
        self.producer = Producer({"bootstrap.servers": args.brokers, "enable.idempotence": True})
        config = {"bootstrap.servers": args.brokers, "group.id": f"contract-{run}", "enable.auto.commit": False}
        # Reads records from the partitions it is assigned (no group membership).
        self.consumer = Consumer(config)
        # Asks for metadata and offsets: not queued behind the reader's fetches.
        self.probe = Consumer(config)
        self.replies = {}  # correlation id -> reply
        self.reply_count = {}  # correlation id -> replies seen
        self.events = {}  # event id -> (topic, envelope)
        self.streams = {}  # "kind:id" -> [sequence, ...] as they arrive, duplicates dropped
        self.dead_letters = []  # (headers, value)
        self.sent = {}  # correlation id -> what it is, for messages
        self.seen = {"event": 0, "reply": 0, "other": 0}
        self.replies_assigned = False
        self.positions = {}  # (topic, partition) -> the next offset to read

    def topic(self, logical):
        return self.prefix + logical

    def left(self):
        return self.deadline - time.monotonic()

    # --- reading -----------------------------------------------------------

    def partitions(self, topic):
        try:
            meta = self.probe.list_topics(topic, timeout=max(1.0, min(5.0, self.left()))).topics[topic]
        except KafkaException as err:
            raise Fatal(f"cannot read metadata of {topic} from {self.args.brokers}: {err}")
        if meta.error is not None or not meta.partitions:
            return None
        return sorted(meta.partitions)

    def start_reading(self):
        """Assigns the event topics, the saga replies and the dead letters at
        their current ends: everything after is this run's."""
        wanted = [self.topic(t) for t in ["users.events", "inventory.events", "orders.events",
                                          "orders.saga.replies", "ordersaga.deadletter"]]
        assignment = []
        for topic in wanted:
            parts = self.partitions(topic)
            if parts is None:
                raise Fatal(f"topic {topic} does not exist on {self.args.brokers}: is ordersaga "
                              f"running there{' with --namespace ' + self.args.namespace if self.args.namespace else ''}?")
            for p in parts:
                _low, high = self.probe.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
                assignment.append(TopicPartition(topic, p, high))
                self.positions[(topic, p)] = high
        self.consumer.assign(assignment)

    def assign_replies_when_created(self):
        """The service creates the reply topic when a command first names it."""
        if self.replies_assigned:
            return
        parts = self.partitions(self.replies_topic)
        if parts is not None:
            self.consumer.incremental_assign([TopicPartition(self.replies_topic, p, 0) for p in parts])
            self.positions.update({(self.replies_topic, p): 0 for p in parts})
            self.replies_assigned = True

    def pump(self, done, waiting_for):
        """Reads records until done() holds, or fails with what it was waiting for."""
        next_metadata = 0.0
        while not done():
            if self.left() <= 0:
                raise Fatal(f"timed out after {self.args.timeout:g} s waiting for {waiting_for()}")
            if not self.replies_assigned and time.monotonic() >= next_metadata:
                self.assign_replies_when_created()
                next_metadata = time.monotonic() + 0.25
            record = self.consumer.poll(min(0.25, max(0.01, self.left())))
            if record is None:
                continue
            if record.error():
                print(f"note: consumer: {record.error()}", flush=True)
                continue
            self.take(record)

    def drain(self):
        """Reads every assigned partition up to its end as of now."""
        ends = {}
        for (topic, p) in self.positions:
            _low, high = self.probe.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
            ends[(topic, p)] = high
        behind = lambda: [f"{t}[{p}]" for (t, p), end in ends.items() if self.positions[(t, p)] < end]
        self.pump(lambda: not behind(), lambda: "the ends of " + ", ".join(behind()))

    def take(self, record):
        topic, value, headers = record.topic(), record.value(), headers_of(record)
        self.positions[(topic, record.partition())] = record.offset() + 1
        self.check_no_secrets(record, value, headers)
        logical = topic[len(self.prefix):]
        if logical.endswith(".events"):
            self.seen["event"] += 1
            self.take_event(logical, record, value, headers)
        elif topic == self.replies_topic:
            self.seen["reply"] += 1
            self.take_reply(record, value, headers)
        elif logical == "ordersaga.deadletter":
            self.seen["other"] += 1
            self.dead_letters.append((headers, value))
        else:
            self.seen["other"] += 1  # orders.saga.replies: scanned for secrets only

    def check_no_secrets(self, record, value, headers):
        blobs = [value or b""] + [v.encode() for v in headers.values() if v]
        where = f"{record.topic()}[{record.partition()}]@{record.offset()}"
        for blob in blobs:
            for secret in self.passwords + ["correct horse battery"]:
                self.check(secret.encode() not in blob, "no record carries a password",
                           f"{where} carries {secret!r}")
            self.check(b"$argon2" not in blob, "no record carries an argon2 hash", where)

    def decode_json(self, record, value, headers, what):
        where = f"{what} {record.topic()}[{record.partition()}]@{record.offset()}"
        if not self.check(value is not None and value[:1] == b"{", f"{what} records are JSON",
                          f"{where} starts with {value[:1] if value else value!r}"):
            return None
        self.check(headers.get("content-type") == JSON, f"{what} content-type header",
                   f"{where}: {headers.get('content-type')!r}")
        try:
            return json.loads(value)
        except ValueError as err:
            self.check(False, f"{what} records parse as JSON", f"{where}: {err}")
            return None

    def check_traceparent(self, where, headers, correlation_id, span_id):
        trace = headers.get("traceparent")
        match = TRACEPARENT.match(trace or "")
        if not self.check(match is not None, "traceparent is 00-<32 hex>-<16 hex>-01", f"{where}: {trace!r}"):
            return
        self.check(match.group(1) == uuid.UUID(correlation_id).hex,
                   "traceparent's trace id is the correlation id", f"{where}: {trace} vs {correlation_id}")
        self.check(match.group(2) == parent_id(span_id),
                   "traceparent's parent id is the record's command or event id", f"{where}: {trace} vs {span_id}")

    def take_event(self, logical, record, value, headers):
        envelope = self.decode_json(record, value, headers, "event")
        if envelope is None:
            return
        where = f"{record.topic()}[{record.partition()}]@{record.offset()}"
        stream = envelope.get("stream")
        kind = stream.get("kind") if isinstance(stream, dict) else None
        schema = {"users.events": {"user": "user-event"},
                  "inventory.events": {"product": "inventory-event"},
                  "orders.events": {"order": "order-event", "saga": "saga-event"}}[logical].get(kind)
        if not self.check(schema is not None, f"{logical} carries only its streams", f"{where}: kind {kind!r}"):
            return
        errors = schema_errors(self.validators[schema], envelope)
        self.check(not errors, f"every event validates against docs/schema/{schema}.json",
                   f"{where}: {errors[:3]} in {json.dumps(envelope)}")
        try:
            self.follow_event(logical, record, envelope, headers, where)
        except (KeyError, TypeError, ValueError, StopIteration) as err:
            self.check(False, "events carry the envelope's fields", f"{where}: {err!r} in {json.dumps(envelope)}")

    def follow_event(self, logical, record, envelope, headers, where):
        stream = envelope["stream"]
        kind = stream["kind"]
        self.check(headers.get("event-id") == envelope["event_id"], "event-id header is the event id",
                   f"{where}: {headers.get('event-id')!r}")
        stream_text = f"{kind}:{stream['id']}"
        self.check(headers.get("stream") == stream_text, "stream header is kind:id",
                   f"{where}: {headers.get('stream')!r} vs {stream_text}")
        key = record.key().decode() if record.key() is not None else None
        self.check(key == stream["id"], "an event is keyed by its aggregate id", f"{where}: key {key!r}")
        self.check_traceparent(where, headers, envelope["correlation_id"], envelope["event_id"])
        earlier = self.events.get(envelope["event_id"])
        if earlier is not None:  # at least once: a duplicate is the same event
            self.equal(earlier[1], envelope, f"a duplicate of event {envelope['event_id']} is the same event")
            return
        self.events[envelope["event_id"]] = (logical, envelope)
        self.streams.setdefault(stream_text, []).append(envelope["sequence"])

    def take_reply(self, record, value, headers):
        reply = self.decode_json(record, value, headers, "reply")
        if reply is None:
            return
        where = f"{record.topic()}[{record.partition()}]@{record.offset()}"
        errors = schema_errors(self.validators["reply"], reply)
        self.check(not errors, "every reply validates against docs/schema/reply.json",
                   f"{where}: {errors[:3]} in {json.dumps(reply)}")
        try:
            self.follow_reply(record, reply, headers, where)
        except (KeyError, TypeError, ValueError) as err:
            self.check(False, "replies carry the reply's fields", f"{where}: {err!r} in {json.dumps(reply)}")

    def follow_reply(self, record, reply, headers, where):
        key = record.key().decode() if record.key() is not None else None
        self.check(key == reply["correlation_id"], "a reply is keyed by its correlation id", f"{where}: key {key!r}")
        self.check_traceparent(where, headers, reply["correlation_id"], reply["command_id"])
        self.check(reply["correlation_id"] in self.sent, "a reply answers a command of this run",
                   f"{where}: {reply['correlation_id']}")
        cid = reply["correlation_id"]
        if cid in self.replies:
            self.equal(reply, self.replies[cid], "a command sent again gets its first reply again")
        else:
            self.replies[cid] = reply
        self.reply_count[cid] = self.reply_count.get(cid, 0) + 1

    # --- writing -----------------------------------------------------------

    def send_again(self, service, key, envelope):
        """Sends a command envelope as JSON, keyed by its aggregate id."""
        self.producer.produce(self.topic(f"{service}.commands"), key=key, value=json.dumps(envelope),
                              headers={"content-type": JSON}, on_delivery=self.delivered)

    def send(self, service, key, command, what, schema_valid=True):
        command_id = str(uuid.uuid4())
        envelope = {"command_id": command_id, "correlation_id": command_id,
                    "reply_to": self.reply_to, "issued_at": now(), "command": command}
        errors = schema_errors(self.validators[f"{service}-command"], envelope)
        if schema_valid:
            self.check(not errors, f"docs/schema/{service}-command.json accepts {what}", str(errors[:3]))
        else:
            self.check(bool(errors), f"docs/schema/{service}-command.json refuses {what}")
        self.sent[command_id] = what
        self.send_again(service, key, envelope)
        return command_id, envelope

    def delivered(self, err, record):
        self.check(err is None, "commands are delivered", f"{record.topic()}: {err}")

    def flush(self):
        left = self.producer.flush(max(0.0, self.left()))
        if left:
            raise Fatal(f"{left} command(s) not delivered to {self.args.brokers} within {self.args.timeout:g} s")

    def await_replies(self, ids):
        self.flush()
        self.pump(lambda: all(i in self.replies for i in ids),
                  lambda: "replies to " + ", ".join(self.sent[i] for i in ids if i not in self.replies)
                  + f" on {self.replies_topic}" + ("" if self.replies_assigned else " (the topic does not exist yet)"))
        return [self.replies[i] for i in ids]

    def expect_accepted(self, reply, what, sequences=None):
        outcome = reply["outcome"]
        if self.check("accepted" in outcome, f"{what} is accepted", json.dumps(outcome)) and sequences is not None:
            self.equal(outcome["accepted"]["sequences"], sequences, f"{what}: sequences")

    def expect_rejected(self, reply, what, code):
        outcome = reply["outcome"]
        got = outcome.get("rejected", {}).get("code")
        self.check(got == code, f"{what} is rejected with {code}", json.dumps(outcome))

    # --- the scenario ------------------------------------------------------

    def say(self, what):
        print(f"  {time.monotonic() - self.started:5.1f} s  {what}", flush=True)

    def run_example(self):
        cmd = [sys.executable, str(EXAMPLE), self.args.brokers]
        if self.args.namespace:
            cmd.append(self.args.namespace)
        cmd += ["--timeout", str(max(5, min(30, int(self.left()))))]
        outputs = []
        for attempt in (1, 2):
            done = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
            ok = self.check(done.returncode == 0, f"docs/example_register.py run {attempt} exits 0",
                            f"exit {done.returncode}; stderr: {done.stderr.strip()}")
            outputs.append(done.stdout if ok else "")
        # The first run registers ada@example.com, unless an earlier run on the
        # same store did; the second always finds the email taken.
        self.check("registered" in outputs[0] or "email_taken" in outputs[0],
                   "docs/example_register.py prints the reply", outputs[0])
        self.check("rejected: email_taken" in outputs[1],
                   "docs/example_register.py run twice is rejected with email_taken", outputs[1])
        self.say("docs/example_register.py ran twice")

    def scenario(self):
        alice, bob = str(uuid.uuid4()), str(uuid.uuid4())
        widget, gadget = str(uuid.uuid4()), str(uuid.uuid4())
        tag = uuid.uuid4().hex[:8]
        send = self.send

        # Users and products; the replies are correlated by correlation id.
        first = [
            send("users", alice, {"Register": {"user_id": alice, "email": f"alice-{tag}@example.com",
                                               "username": "Alice", "password": self.passwords[0]}}, "register alice"),
            send("users", bob, {"Register": {"user_id": bob, "email": f"bob-{tag}@example.com",
                                             "username": "Bob", "password": self.passwords[1]}}, "register bob"),
            send("users", alice, {"Deposit": {"user_id": alice, "amount": 10000}}, "deposit 100.00 for alice"),
            send("users", bob, {"Deposit": {"user_id": bob, "amount": 500}}, "deposit 5.00 for bob"),
            send("inventory", widget, {"AddProduct": {"product_id": widget, "sku": f"WIDGET-{tag}",
                                                      "name": "Widget", "unit_price": 2500, "stock": 10}}, "add WIDGET"),
            send("inventory", gadget, {"AddProduct": {"product_id": gadget, "sku": f"GADGET-{tag}",
                                                      "name": "Gadget", "unit_price": 4000, "stock": 1}}, "add GADGET"),
        ]
        bob_deposit = first[3]
        first = [command_id for command_id, _envelope in first]
        bad_id, bad = send("users", alice, {"Deposit": {"user_id": alice, "amount": -5}},
                           "a deposit of a negative amount", schema_valid=False)
        replies = self.await_replies(first + [bad_id])
        self.say(f"{len(replies)} replies: users registered and funded, products added, the invalid command refused")
        for reply, (what, seq) in zip(replies, [("register alice", [1]), ("register bob", [1]),
                                                ("deposit for alice", [2]), ("deposit for bob", [2]),
                                                ("add WIDGET", [1]), ("add GADGET", [1])]):
            self.expect_accepted(reply, what, seq)
        self.expect_rejected(replies[-1], "a deposit of a negative amount", "invalid_command")
        self.equal(replies[-1]["stream"], {"kind": "user", "id": alice},
                   "the invalid_command reply names the stream of the record's key")

        # The same command again (same command id) changes nothing and gets its first reply.
        self.send_again("users", bob, bob_deposit[1])
        self.flush()
        self.pump(lambda: self.reply_count.get(bob_deposit[0], 0) >= 2,
                  lambda: f"the second reply to {self.sent[bob_deposit[0]]}, sent twice")

        # Orders: one completes, one fails for funds, one for stock.
        orders = {str(uuid.uuid4()): ("alice buys 2 widgets and the gadget", alice,
                                      [(widget, 2), (gadget, 1)], "Completed", None),
                  str(uuid.uuid4()): ("bob buys a widget with 5.00", bob,
                                      [(widget, 1)], "Aborted", "insufficient_funds"),
                  str(uuid.uuid4()): ("alice buys 5 gadgets (1 in stock)", alice,
                                      [(gadget, 5)], "Aborted", "insufficient_stock")}
        placed = [send("orders", order_id, {"Place": {"order_id": order_id, "user_id": user, "lines": [
            {"product_id": p, "quantity": q} for p, q in lines]}}, what)[0]
                  for order_id, (what, user, lines, _, _) in orders.items()]
        for reply, (what, *_rest) in zip(self.await_replies(placed), orders.values()):
            self.expect_accepted(reply, f"place: {what}", [1])
        self.say(f"{len(placed)} orders placed")

        def saga_end(order_id):
            ends = [env["payload"] for topic, env in self.events.values()
                    if env["stream"] == {"kind": "saga", "id": order_id}
                    and variant(env["payload"]) in ("Completed", "Aborted", "Stuck")]
            return ends[0] if ends else None
        self.pump(lambda: all(saga_end(o) is not None for o in orders),
                  lambda: "the end of the sagas of " + ", ".join(
                      orders[o][0] for o in orders if saga_end(o) is None) + " on " + self.topic("orders.events"))
        self.say("every saga ended")
        self.drain()

        for order_id, (what, _user, _lines, end, reason) in orders.items():
            got = saga_end(order_id)
            self.equal(variant(got), end, f"saga of '{what}' ends")
            if end == "Aborted" and variant(got) == "Aborted":
                self.equal(got["Aborted"]["reason"], reason, f"saga of '{what}': abort reason")
            order_events = [variant(env["payload"]) for _t, env in self.events.values()
                            if env["stream"] == {"kind": "order", "id": order_id}]
            self.equal(order_events[-1:], ["Confirmed" if end == "Completed" else "Cancelled"],
                       f"order of '{what}': last order event")
        charges = [(env["stream"]["id"], env["payload"]["Charged"]) for _t, env in self.events.values()
                   if variant(env["payload"]) == "Charged" and env["stream"]["kind"] == "user"
                   and env["stream"]["id"] in (alice, bob)]
        completed = next(o for o, v in orders.items() if v[3] == "Completed")
        self.equal(charges, [(alice, {"order_id": completed, "amount": 9000})],
                   "users.events: alice is charged 90.00 for her order, bob nothing")

        bob_events = [variant(env["payload"]) for _t, env in self.events.values()
                      if env["stream"] == {"kind": "user", "id": bob}]
        self.equal(bob_events, ["Registered", "Deposited"],
                   "users.events for bob: his deposit, sent twice, applied once; his order charged nothing")
        # Every stream of this run is gap-free from 1.
        ours = {f"user:{alice}", f"user:{bob}", f"product:{widget}", f"product:{gadget}"} | {
            f"{kind}:{o}" for o in orders for kind in ("order", "saga")}
        for stream in sorted(ours):
            seqs = self.streams.get(stream, [])
            self.equal(seqs, list(range(1, len(seqs) + 1)) if seqs else [1],
                       f"{stream}: events in sequence order, from 1, without gaps")

        # The negative deposit is dead-lettered with the same code, unchanged.
        letters = [(h, v) for h, v in self.dead_letters if v == json.dumps(bad).encode()]
        if self.check(len(letters) >= 1, "the invalid command is dead-lettered",
                      f"{len(self.dead_letters)} dead letter(s) seen, none is it"):
            h = letters[0][0]
            self.equal(h.get("deadletter-code"), "invalid_command", "dead letter: deadletter-code")
            self.equal(h.get("deadletter-topic"), "users.commands", "dead letter: deadletter-topic (logical)")
            self.check(bool(h.get("deadletter-reason")), "dead letter: deadletter-reason")
        self.check(self.seen["event"] > 0 and self.seen["reply"] > 0, "records were read",
                   str(self.seen))

    def main(self):
        self.started = started = time.monotonic()
        target = self.args.brokers + (f" (namespace {self.args.namespace})" if self.args.namespace else "")
        print(f"contract test against {target}, reply topic {self.replies_topic}", flush=True)
        try:
            self.start_reading()
            self.run_example()
            self.scenario()
        except Fatal as err:
            self.c.check(False, "the run finished", str(err))
        except subprocess.TimeoutExpired as err:
            self.c.check(False, "docs/example_register.py finished", str(err))
        except Exception:  # a record without the fields the checks above read
            self.c.check(False, "the run finished", traceback.format_exc())
        finally:
            self.consumer.close()
            self.probe.close()
        print(f"read {self.seen['event']} event records ({len(self.events)} distinct), "
              f"{self.seen['reply']} replies, {self.seen['other']} other records "
              f"in {time.monotonic() - started:.1f} s", flush=True)
        for what, n in self.c.failures.items():
            if n > Checks.SHOWN:
                print(f"FAIL {what}: {n} times in all", flush=True)
        print(f"contract: {self.c.passed()} passed, {self.c.failed()} failed", flush=True)
        return 0 if self.c.failed() == 0 else 1

    def check(self, *a):
        return self.c.check(*a)

    def equal(self, *a):
        return self.c.equal(*a)


def main():
    parser = argparse.ArgumentParser(description="ordersaga's Kafka contract, checked from Python")
    parser.add_argument("brokers", help="bootstrap servers of the broker ordersaga runs on")
    parser.add_argument("--namespace", help="the --namespace ordersaga runs with, if any")
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds for the whole test (default 120)")
    sys.exit(Contract(parser.parse_args()).main())


if __name__ == "__main__":
    main()
