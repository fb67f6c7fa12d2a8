#!/usr/bin/env bash
# A local Kafka-protocol broker for tests: Tansu, built from crates.io.
#
#   scripts/kafka-broker.sh install        build Tansu into ~/.cargo/bin if missing
#   scripts/kafka-broker.sh start          start it on 127.0.0.1:$ORDERSAGA_BROKER_PORT
#   scripts/kafka-broker.sh stop           stop it
#   scripts/kafka-broker.sh status         say whether it runs
#
# Environment:
#   ORDERSAGA_BROKER_PORT     listening port (default 9092)
#   ORDERSAGA_BROKER_STORAGE  memory (default) or sqlite
#   ORDERSAGA_BROKER_DIR      state directory: pid file, log, sqlite file
#                             (default target/tansu-$PORT)
#
# Tansu does not create topics on demand; ordersaga creates its topics at
# start-up through the admin API.
set -euo pipefail

TANSU_VERSION=0.6.0
PORT=${ORDERSAGA_BROKER_PORT:-9092}
STORAGE=${ORDERSAGA_BROKER_STORAGE:-memory}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
DIR=${ORDERSAGA_BROKER_DIR:-$ROOT/target/tansu-$PORT}
PIDFILE=$DIR/tansu.pid
LOG=$DIR/tansu.log

tansu_bin() {
  if command -v tansu >/dev/null 2>&1; then command -v tansu; return; fi
  if [ -x "${CARGO_HOME:-$HOME/.cargo}/bin/tansu" ]; then echo "${CARGO_HOME:-$HOME/.cargo}/bin/tansu"; return; fi
  return 1
}

install() {
  if bin=$(tansu_bin) && "$bin" --version 2>/dev/null | grep -q "$TANSU_VERSION"; then
    return 0
  fi
  echo "installing tansu $TANSU_VERSION from crates.io (about 10 minutes on 2 cores)..." >&2
  cargo install tansu --version "$TANSU_VERSION" --locked --features dynostore,libsql
}

running() {
  [ -f "$PIDFILE" ] && kill -0 "$(cat "$PIDFILE")" 2>/dev/null
}

port_open() {
  (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null
}

start() {
  install
  if running; then
    echo "tansu already running on 127.0.0.1:$PORT (pid $(cat "$PIDFILE"))"
    return 0
  fi
  mkdir -p "$DIR"
  case "$STORAGE" in
    memory) engine="memory://tansu/" ;;
    # Tansu resolves a sqlite path against its working directory ($DIR below).
    sqlite) engine="sqlite://tansu.db" ;;
    *) echo "unknown ORDERSAGA_BROKER_STORAGE=$STORAGE (memory or sqlite)" >&2; exit 2 ;;
  esac
  bin=$(tansu_bin)
  (cd "$DIR" && exec nohup "$bin" broker \
    --listener-url "tcp://127.0.0.1:$PORT" \
    --advertised-listener-url "tcp://127.0.0.1:$PORT" \
    --storage-engine "$engine") >"$LOG" 2>&1 &
  echo $! >"$PIDFILE"
  for _ in $(seq 1 300); do
    if port_open; then
      echo "tansu listening on 127.0.0.1:$PORT ($STORAGE storage, pid $(cat "$PIDFILE"), log $LOG)"
      return 0
    fi
    if ! running; then
      echo "tansu exited during start-up; its log:" >&2
      cat "$LOG" >&2
      exit 1
    fi
    sleep 0.1
  done
  echo "tansu did not open port $PORT within 30 s; its log:" >&2
  cat "$LOG" >&2
  exit 1
}

stop() {
  if running; then
    pid=$(cat "$PIDFILE")
    kill "$pid"
    for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null || true
    echo "tansu stopped"
  fi
  rm -f "$PIDFILE"
}

case "${1:-}" in
  install) install ;;
  start) start ;;
  stop) stop ;;
  status) if running; then echo "running (pid $(cat "$PIDFILE"))"; else echo "stopped"; exit 1; fi ;;
  *) sed -n '2,17p' "$0"; exit 2 ;;
esac
