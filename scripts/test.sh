#!/usr/bin/env bash
# The project's test command.
#
# 1. Every test in the workspace; the Kafka tests run on the embedded broker.
#    Then the unit tests of the patched rdkafka copy (vendor/rdkafka), with
#    the versions of the workspace's lock file.
# 2. The Kafka, saga, gateway, operator-tool, HTTP and heartbeat tests again against a real Kafka-protocol broker: Tansu, built
#    from crates.io on first use (about 10 minutes) and started on loopback.
#    On each broker, the Python contract test (tests/python/run.sh: a Python
#    client, confluent-kafka from PyPI in target/python-venv, against `ordersaga run`).
# 3. The chaos run (tests/chaos.rs) on both brokers: three `ordersaga serve`
#    processes, killed again and again under load, the broker killed once (the
#    test's own Tansu with sqlite storage, or the embedded broker taken down);
#    every order placed, every saga ended, the invariants held.
#
# Set ORDERSAGA_SKIP_REAL_BROKER=1 to run step 1 only, ORDERSAGA_SKIP_CHAOS=1 to skip step 3.
set -euo pipefail
cd "$(dirname "$0")/.."

echo "== cargo test --workspace (embedded broker)"
cargo test --workspace
echo "== the patched rdkafka's unit tests (vendor/rdkafka/PATCHES.md)"
cp Cargo.lock vendor/rdkafka/Cargo.lock
(cd vendor/rdkafka && CARGO_TARGET_DIR=../../target/vendor-rdkafka cargo test --lib)
echo "== the Python contract test on the embedded broker"
tests/python/run.sh

if [ "${ORDERSAGA_SKIP_REAL_BROKER:-}" = "1" ]; then
  echo "== skipping the real-broker run (ORDERSAGA_SKIP_REAL_BROKER=1)"
  exit 0
fi

# A port of its own, so a broker a developer runs on 9092 is left alone.
export ORDERSAGA_BROKER_PORT=${ORDERSAGA_TEST_BROKER_PORT:-39092}
scripts/kafka-broker.sh start
trap 'scripts/kafka-broker.sh stop' EXIT

kafka_tests=()
for f in tests/kafka_*.rs tests/saga_*.rs tests/gateway_*.rs tests/ops_*.rs tests/no_secrets.rs tests/http_queries.rs tests/heartbeats.rs; do
  kafka_tests+=(--test "$(basename "$f" .rs)")
done
echo "== Kafka and saga tests against Tansu on 127.0.0.1:$ORDERSAGA_BROKER_PORT"
ORDERSAGA_TEST_BROKERS="127.0.0.1:$ORDERSAGA_BROKER_PORT" cargo test -p ordersaga "${kafka_tests[@]}"
echo "== the Python contract test against Tansu on 127.0.0.1:$ORDERSAGA_BROKER_PORT"
tests/python/run.sh --brokers "127.0.0.1:$ORDERSAGA_BROKER_PORT"

if [ "${ORDERSAGA_SKIP_CHAOS:-}" = "1" ]; then
  echo "== skipping the chaos run (ORDERSAGA_SKIP_CHAOS=1)"
  exit 0
fi
scripts/kafka-broker.sh stop
echo "== the chaos run on the embedded broker"
ORDERSAGA_CHAOS_BROKER=embedded cargo test -p ordersaga --test chaos -- --nocapture
echo "== the chaos run on Tansu (its own, with sqlite storage)"
ORDERSAGA_CHAOS_BROKER=tansu cargo test -p ordersaga --test chaos -- --nocapture
