#!/usr/bin/env bash
# A release Tern for benchmarks, set up like the peers of the shared bench harness:
# SMTP on 127.0.0.1:12050, IMAP on :12051, POP3 on :12052, HTTP on :12059, domain bench.test, users
# user1..user50@bench.test with password passN. State lives in $BENCH_TERN_DIR; $BENCH_TERN_EXTRA is
# appended to the config (TOML tables).
#
#   bench/tern-bench.sh start    # build (release) if needed, create users, start
#   bench/tern-bench.sh stop
#   bench/tern-bench.sh reset    # stop and delete all state
#   bench/tern-bench.sh pid      # print the server pid
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/.." && pwd)"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/tern-target}"
TERN="${TERN_BIN:-$CARGO_TARGET_DIR/release/tern}"
DIR="${BENCH_TERN_DIR:-${TMPDIR:-/tmp}/bench-tern}"
SMTP_PORT="${BENCH_TERN_SMTP_PORT:-12050}"
IMAP_PORT="${BENCH_TERN_IMAP_PORT:-12051}"
POP3_PORT="${BENCH_TERN_POP3_PORT:-12052}"
HTTP_PORT="${BENCH_TERN_HTTP_PORT:-12059}"
NUSERS="${BENCH_NUSERS:-50}"
CONFIG="$DIR/tern.toml"

pid() { [ -s "$DIR/tern.pid" ] && kill -0 "$(cat "$DIR/tern.pid")" 2>/dev/null && cat "$DIR/tern.pid"; }

start() {
  if pid >/dev/null; then echo "tern already running (pid $(pid))"; return; fi
  [ -x "$TERN" ] || (cd "$ROOT" && cargo build --release -p tern)
  mkdir -p "$DIR"
  cat >"$CONFIG" <<CONF
hostname = "tern.bench.test"
data_dir = "$DIR/data"
[listen]
smtp = ["127.0.0.1:$SMTP_PORT"]
http = ["127.0.0.1:$HTTP_PORT"]
submission = []
submissions = []
imap = ["127.0.0.1:$IMAP_PORT"]
imaps = []
pop3 = ["127.0.0.1:$POP3_PORT"]
pop3s = []
managesieve = []   # not measured
${BENCH_TERN_LISTEN_EXTRA:-}
[smtp]
max_connections = 10000
[imap]
max_connections = 20000
max_connections_per_ip = 20000
[pop3]
max_connections_per_ip = 1000
[log]
level = "warn"
${BENCH_TERN_EXTRA:-}
CONF
  # (With a PostgreSQL store the data directory holds no store: a marker says the users exist;
  # BENCH_SKIP_USERS=1 for the second and later nodes of a cluster.)
  if [ -z "${BENCH_SKIP_USERS:-}" ] && [ ! -d "$DIR/data/store" ] && [ ! -e "$DIR/data/.bench-users" ]; then
    "$TERN" --config "$CONFIG" setup >/dev/null
    "$TERN" --config "$CONFIG" domain add bench.test >/dev/null
    for i in $(seq 1 "$NUSERS"); do
      echo "pass$i" | "$TERN" --config "$CONFIG" user add "user$i@bench.test" --password-stdin >/dev/null
    done
    touch "$DIR/data/.bench-users"
  fi
  ulimit -n 65536 2>/dev/null || true
  nohup env ${TERN_ENV:-} "$TERN" --config "$CONFIG" serve >>"$DIR/tern.log" 2>&1 &
  echo $! >"$DIR/tern.pid"
  for _ in $(seq 1 100); do
    [ -s "$DIR/data/run.json" ] && break
    sleep 0.1
  done
  echo "tern running (pid $(cat "$DIR/tern.pid")) smtp 127.0.0.1:$SMTP_PORT"
}

stop() {
  local p
  if p=$(pid); then
    kill -TERM "$p"
    for _ in $(seq 1 100); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
  fi
  rm -f "$DIR/tern.pid"
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  reset) stop; rm -rf "$DIR" ;;
  pid) pid ;;
  *) echo "usage: $0 start|stop|reset|pid" >&2; exit 2 ;;
esac
