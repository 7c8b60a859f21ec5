#!/usr/bin/env bash
# SMTP ingest in cluster mode, side by side in one run: Tern on its embedded store, one Tern
# node on PostgreSQL, two and three nodes on PostgreSQL behind HAProxy (TCP, PROXY v2), and
# Postfix. N messages of SIZE bytes at each concurrency; runs interleaved. Every server
# fsyncs before its 250 (PostgreSQL: synchronous_commit on).
#
# Needs Debian's postgresql and haproxy, and the Postfix peer of the shared harness
# (../shared/bench/peers-setup.sh; without it Postfix is left out).
#
#   RUNS=3 N=10000 CONC="32" OUT=bench/results/cluster bench/run-cluster.sh
#
# ONLY="tern-embedded tern-pg-1node postfix" measures those configurations alone.
set -uo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=common.sh
. "$HERE/common.sh"
RUNS="${RUNS:-3}"
N="${N:-10000}"
SIZE="${SIZE:-10240}"
CONC="${CONC:-32}"
ONLY="${ONLY:-tern-embedded tern-pg-1node tern-pg-2nodes tern-pg-3nodes postfix}"
OUT="${OUT:-$HERE/results/$(date +%Y%m%d-%H%M%S)-cluster}"
TMPD="${TMPDIR:-/tmp}"
mkdir -p "$OUT"

# The embedded node (the usual bench instance on 12050).
"$HERE/tern-bench.sh" reset >/dev/null
start_tern
EMBEDDED_PID=$TERN_PID

# PostgreSQL, one fresh database, three nodes on it (SMTP 12070/12080/12090).
"$HERE/pg-bench.sh" start >/dev/null
URL="$("$HERE/pg-bench.sh" newdb)"
PSQL="$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)/psql"
node() { # node INDEX start|stop|pid
  local i=$1
  BENCH_TERN_DIR="$TMPD/bench-tern-pg$i" BENCH_TERN_SMTP_PORT=$((12060 + 10 * i)) \
  BENCH_TERN_IMAP_PORT=$((12061 + 10 * i)) BENCH_TERN_POP3_PORT=$((12062 + 10 * i)) \
  BENCH_TERN_HTTP_PORT=$((12069 + 10 * i)) BENCH_SKIP_USERS=$([ "$i" = 1 ] || echo 1) \
  BENCH_TERN_LISTEN_EXTRA='proxy_from = ["127.0.0.2/32"]' \
  BENCH_TERN_EXTRA="$(printf '[store]\nbackend = "postgres"\nurl = "%s"\npool_size = 40\n' "$URL")" \
  "$HERE/tern-bench.sh" "$2"
}
for i in 1 2 3; do node "$i" reset >/dev/null; node "$i" start; done
NODE1_PID="$(node 1 pid)"

haproxy_for() { # haproxy_for PORT NODES...
  local port=$1; shift
  local cfg="$OUT/haproxy-$port.cfg"
  {
    printf 'global\n    maxconn 4000\ndefaults\n    mode tcp\n    timeout connect 5s\n    timeout client 60s\n    timeout server 60s\n'
    printf 'frontend smtp\n    bind 127.0.0.1:%s\n    default_backend nodes\nbackend nodes\n    balance roundrobin\n' "$port"
    printf '    default-server send-proxy-v2 source 127.0.0.2\n'
    for i in "$@"; do printf '    server n%s 127.0.0.1:%s\n' "$i" $((12060 + 10 * i)); done
  } >"$cfg"
  haproxy -D -f "$cfg" -p "$OUT/haproxy-$port.pid"
}
haproxy_for 12100 1 2
haproxy_for 12101 1 2 3

have_postfix=0
running "$PF_PID" && have_postfix=1
{
  echo "date: $(date -Is)"
  echo "tern: $(git -C "$HERE/.." rev-parse --short HEAD) release build"
  echo "postgresql: $("$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)/postgres" --version)"
  echo "haproxy: $(haproxy -v | head -1)"
  command -v postconf >/dev/null && echo "postfix: $(postconf -d -h mail_version 2>/dev/null)"
  echo "cpus: $(nproc)  kernel: $(uname -r)"
} >"$OUT/env.txt"

# Contents the nodes' search indexers have still to index (0 without the database).
unindexed() {
  "$PSQL" "$URL" -Atc "SELECT count(*) FROM contents WHERE NOT indexed" 2>/dev/null || echo 0
}
# Waits (bounded) until the indexers have caught up.
wait_indexed() {
  for _ in $(seq 1 600); do [ "$(unindexed)" = 0 ] && return; sleep 0.5; done
}

load() { # load LABEL PORT SERVER_PID DRAIN
  local label=$1 port=$2 pid=$3 drain=$4
  case " $ONLY " in *" $label "*) ;; *) return ;; esac
  mkdir -p "$OUT/$label"
  # Each load starts with no search text waiting from the one before.
  wait_indexed
  quiet
  local pg0 pg1 pg2
  pg0=$("$HERE/pg-bench.sh" cpu)
  cmd=(python3 "$HERE/clients/smtp_load.py" --host 127.0.0.1 --port "$port" -n "$N" -c "$c" --size "$SIZE"
       --rcpt 'user{i}@bench.test' --users 1:50 --server-pid "$pid" --label "$label" --drain-cmd "$drain"
       --json "$OUT/$label/smtp.jsonl")
  echo "${cmd[*]}" >>"$OUT/commands.log"
  "${cmd[@]}" --quiet
  pg1=$("$HERE/pg-bench.sh" cpu)
  # The search indexers work behind the deliveries: their CPU after the load, counted apart.
  local left; left=$(unindexed)
  wait_indexed
  pg2=$("$HERE/pg-bench.sh" cpu)
  echo "{\"label\": \"$label\", \"c\": $c, \"postgres_cpu_ms_per_msg\": $(python3 -c "print(round(($pg1-$pg0)*10/$N, 3))"), \"postgres_cpu_ms_per_msg_after\": $(python3 -c "print(round(($pg2-$pg1)*10/$N, 3))"), \"unindexed_at_end\": $left}" >>"$OUT/postgres-cpu.jsonl"
}

for run in $(seq 1 "$RUNS"); do
  for c in $CONC; do
    load tern-embedded 12050 "$EMBEDDED_PID" true
    load tern-pg-1node 12070 "$NODE1_PID" true
    load tern-pg-2nodes 12100 "$NODE1_PID" true
    load tern-pg-3nodes 12101 "$NODE1_PID" true
    if [ "$have_postfix" = 1 ] && [[ " $ONLY " == *" postfix "* ]]; then
      "$PEERS/peers-reset-mail.sh" >/dev/null 2>&1 || true
      load postfix 12025 "@$PF_PID" "$PEERS/peers-drain-wait.sh"
    fi
  done
done

dirs=()
for label in $ONLY; do [ -d "$OUT/$label" ] && dirs+=("$OUT/$label"); done
python3 "$HERE/clients/summarize.py" "${dirs[@]}" | tee "$OUT/summary.md"
echo "PostgreSQL's CPU per message (ms):" | tee -a "$OUT/summary.md"
tee -a "$OUT/summary.md" <"$OUT/postgres-cpu.jsonl"

for f in "$OUT"/haproxy-*.pid; do kill "$(cat "$f")" 2>/dev/null || true; done
for i in 1 2 3; do node "$i" reset; done
"$HERE/tern-bench.sh" stop
# The database holds every run's mail and gigabytes of WAL: gone with the run.
"$HERE/pg-bench.sh" reset
