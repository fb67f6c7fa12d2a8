#!/usr/bin/env bash
# The CPU an idle `ordersaga run` uses, per thread name.
#
#   scripts/idle-cpu.sh [SECONDS] [-- RUN OPTIONS…]
#
# Starts `target/release/ordersaga run` with a fresh data directory and the
# given options (for example `--brokers 127.0.0.1:9092`; without --brokers,
# the embedded broker), waits until its gateway answers /ready, lets it settle
# for 5 s, then reads every thread's CPU time from /proc over SECONDS (default
# 10) with no load at all, and prints CPU milliseconds per second per thread
# name (10 = 1 % of a core), busiest first, and the total. Then it stops the
# process. Linux only. Build first: `cargo build --release`, or name another
# build in ORDERSAGA_BIN.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
SECONDS_IDLE=10
if [ $# -gt 0 ] && [ "$1" != "--" ]; then SECONDS_IDLE=$1; shift; fi
if [ $# -gt 0 ] && [ "$1" = "--" ]; then shift; fi
BIN=${ORDERSAGA_BIN:-$ROOT/target/release/ordersaga}
[ -x "$BIN" ] || { echo "idle-cpu: $BIN is missing: run cargo build --release" >&2; exit 1; }

DATA=$(mktemp -d)
HTTP=127.0.0.1:$((20000 + RANDOM % 20000))
LOG=$DATA/run.log
"$BIN" run --data "$DATA/stores" --gateway-http "$HTTP" "$@" >"$LOG" 2>&1 &
PID=$!
cleanup() { kill "$PID" 2>/dev/null || true; wait "$PID" 2>/dev/null || true; rm -rf "$DATA"; }
trap cleanup EXIT

for _ in $(seq 1 600); do
  if curl -fs "http://$HTTP/ready" >/dev/null 2>&1; then break; fi
  kill -0 "$PID" 2>/dev/null || { echo "idle-cpu: ordersaga run exited:" >&2; cat "$LOG" >&2; exit 1; }
  sleep 0.1
done
curl -fs "http://$HTTP/ready" >/dev/null || { echo "idle-cpu: $HTTP/ready never answered" >&2; exit 1; }
sleep 5

# Clock ticks of user + system time, summed per thread name.
snapshot() {
  for t in /proc/"$PID"/task/*; do
    name=$(tr ' ' '_' <"$t/comm" 2>/dev/null) || continue
    # Fields 14 and 15 of stat, counted after the ")" that ends the name.
    ticks=$(sed 's/.*) //' "$t/stat" 2>/dev/null | awk '{print $12 + $13}') || continue
    echo "$name $ticks"
  done | awk '{a[$1] += $2} END {for (k in a) print k, a[k]}' | sort
}
before=$(snapshot)
sleep "$SECONDS_IDLE"
after=$(snapshot)
HZ=$(getconf CLK_TCK)
join <(echo "$before") <(echo "$after") | awk -v hz="$HZ" -v s="$SECONDS_IDLE" '
  { ms = ($3 - $2) * 1000 / hz / s; total += ms; if (ms > 0) printf "%8.1f  %s\n", ms, $1 }
  END { printf "%8.1f  total (CPU ms per second; 10 = 1 %% of a core)\n", total }' | sort -rn
