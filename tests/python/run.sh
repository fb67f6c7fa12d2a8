#!/usr/bin/env bash
# Runs the Python contract test (tests/python/test_contract.py, which also runs
# docs/example_register.py) and the gateway's HTTP test
# (tests/python/test_gateway.py, standard library only) against a fresh
# `ordersaga run`.
#
#   tests/python/run.sh                       on the embedded broker `run` starts
#   tests/python/run.sh --brokers HOST:PORT   on that broker (a namespace of its own)
#
# Makes the Python environment (scripts/python-env.sh), builds the ordersaga
# binary, starts `ordersaga run` on a temporary store (its gateway on a free
# port, with an administrator), waits for its three `ready` lines and the
# gateway's address, runs the tests, then stops ordersaga with SIGTERM and expects
# it to exit 0. Exits non-zero when any of that fails.
#
# Environment: ORDERSAGA_PYTHON_READY_S (default 120) bounds the wait for
# readiness, ORDERSAGA_PYTHON_TIMEOUT_S (default 120) the test itself.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
cd "$ROOT"

brokers=""
case "${1:-}" in
  --brokers) brokers=${2:?--brokers needs HOST:PORT} ;;
  "") ;;
  *) sed -n '2,15p' "$0"; exit 2 ;;
esac
ready_s=${ORDERSAGA_PYTHON_READY_S:-120}
test_s=${ORDERSAGA_PYTHON_TIMEOUT_S:-120}

python=$(scripts/python-env.sh)
cargo build --quiet --bin ordersaga
bin=${CARGO_TARGET_DIR:-$ROOT/target}/debug/ordersaga

work=$(mktemp -d "${TMPDIR:-/tmp}/ordersaga-python.XXXXXX")
pid=""
show_logs() {
  echo "--- ordersaga run: standard output" >&2
  cat "$work/out" >&2 || true
  echo "--- ordersaga run: last lines of standard error" >&2
  tail -n 40 "$work/err" >&2 || true
}
stop_ordersaga() {
  # SIGTERM, then wait: a stop is bounded by 30 s, so 40 s is plenty.
  local status=0
  if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid"
    for _ in $(seq 1 400); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    if kill -0 "$pid" 2>/dev/null; then
      echo "error: ordersaga run did not stop within 40 s of SIGTERM; killing it" >&2
      kill -KILL "$pid" 2>/dev/null || true
    fi
  fi
  if [ -n "$pid" ]; then
    wait "$pid" 2>/dev/null || status=$?
  fi
  pid=""
  return "$status"
}
cleanup() {
  stop_ordersaga || true
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# The gateway on a free port (8080 may be taken), with an administrator
# for the HTTP checks.
admin_email="admin@python.test"
export ORDERSAGA_ADMIN_PASSWORD="python admin password"
args=(run --data "$work/data" --gateway-http 127.0.0.1:0 --admin-email "$admin_email")
namespace_args=()
if [ -n "$brokers" ]; then
  # A broker others use too: topics and groups of this run's own.
  namespace="python-$(date +%s)-$$"
  args+=(--brokers "$brokers" --namespace "$namespace")
  namespace_args=(--namespace "$namespace")
fi
"$bin" "${args[@]}" >"$work/out" 2>"$work/err" &
pid=$!

# `run` prints `… bootstrap.servers=HOST:PORT`, then `ready SERVICE after N ms: …`
# once each service's consumers own partitions.
deadline=$((SECONDS + ready_s))
address=""
while :; do
  address=$(sed -n 's/.*bootstrap\.servers=\([^ ]*\).*/\1/p' "$work/out" | head -n 1)
  gateway=$(sed -n 's/^gateway \(http:[^ ]*\).*/\1/p' "$work/out" | head -n 1)
  ready=$(grep -c '^ready ' "$work/out" || true)
  if [ -n "$address" ] && [ -n "$gateway" ] && [ "$ready" -ge 3 ]; then break; fi
  if ! kill -0 "$pid" 2>/dev/null; then
    echo "error: ordersaga run exited before it was ready" >&2
    show_logs; exit 1
  fi
  if [ "$SECONDS" -ge "$deadline" ]; then
    echo "error: ordersaga run was not ready within $ready_s s ($ready of 3 services ready)" >&2
    show_logs; exit 1
  fi
  sleep 0.1
done
echo "== ordersaga run ready on ${brokers:-an embedded broker at $address}${namespace_args[*]:+ (${namespace_args[*]})}: the Python contract test"

status=0
"$python" tests/python/test_contract.py "$address" "${namespace_args[@]}" --timeout "$test_s" || status=$?
echo "== the gateway's HTTP API from Python at $gateway"
"$python" tests/python/test_gateway.py "$gateway" --admin-email "$admin_email" \
  --admin-password "$ORDERSAGA_ADMIN_PASSWORD" || status=$?
if ! stop_ordersaga; then
  echo "error: ordersaga run did not exit 0 after SIGTERM" >&2
  status=1
fi
if [ "$status" -ne 0 ]; then show_logs; fi
exit "$status"
