#!/usr/bin/env bash
# A PostgreSQL server for the cluster benchmarks (Debian's postgresql package): a private
# cluster in $BENCH_PG_DIR (default /tmp/bench-pg) on a unix socket there, with durability as
# in production (fsync on, synchronous_commit on, full_page_writes on) and memory for a
# benchmark's working set. As root the server runs as the `postgres` user.
#
#   bench/pg-bench.sh start     # prints the url for [store] url
#   bench/pg-bench.sh newdb     # a fresh empty database; prints its url
#   bench/pg-bench.sh stop
#   bench/pg-bench.sh reset     # stop and delete everything (a benchmark leaves gigabytes of WAL)
#   bench/pg-bench.sh cpu       # CPU ticks (1/100 s) of every server process so far
set -euo pipefail
DIR="${BENCH_PG_DIR:-${TMPDIR:-/tmp}/bench-pg}"
PORT=5432
BIN="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)"
[ -x "$BIN/pg_ctl" ] || { echo "PostgreSQL is not installed (apt install postgresql)" >&2; exit 1; }
as_pg() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
url() { echo "host=$DIR port=$PORT user=tern dbname=$1"; }

start() {
  if [ ! -d "$DIR/data" ]; then
    mkdir -p "$DIR"
    [ "$(id -u)" = 0 ] && chown postgres: "$DIR"
    as_pg "$BIN/initdb" -A trust -U tern -E UTF8 --locale=C -D "$DIR/data" >/dev/null
  fi
  if ! as_pg "$BIN/pg_ctl" -D "$DIR/data" status >/dev/null 2>&1; then
    as_pg "$BIN/pg_ctl" -D "$DIR/data" -l "$DIR/log" -w start -o "-c listen_addresses='' -k $DIR -p $PORT \
      -c max_connections=300 -c shared_buffers=512MB -c fsync=on -c synchronous_commit=on \
      -c full_page_writes=on -c max_wal_size=4GB -c checkpoint_timeout=30min ${BENCH_PG_OPTIONS:-}" >/dev/null
  fi
  url postgres
}

newdb() {
  local name="bench_$(date +%s%N)"
  as_pg "$BIN/psql" -h "$DIR" -p "$PORT" -U tern -d postgres -qc "CREATE DATABASE $name ENCODING 'UTF8' TEMPLATE template0" >/dev/null
  url "$name"
}

case "${1:-}" in
  start) start ;;
  newdb) newdb ;;
  stop) as_pg "$BIN/pg_ctl" -D "$DIR/data" -m fast -w stop >/dev/null 2>&1 || true ;;
  reset) as_pg "$BIN/pg_ctl" -D "$DIR/data" -m fast -w stop >/dev/null 2>&1 || true; rm -rf "$DIR" ;;
  # From /proc in clock ticks (ps's whole seconds per process rounded each backend to 0).
  cpu) for p in $(pgrep -u postgres); do cat "/proc/$p/stat" 2>/dev/null; done |
       awk '{s += $14 + $15} END {print s + 0}' ;;
  *) echo "usage: $0 start|newdb|stop|reset|cpu" >&2; exit 2 ;;
esac
