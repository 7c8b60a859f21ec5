#!/usr/bin/env bash
# Outbound delivery rate, Tern and Postfix side by side: N queued messages (default 10,000 of
# ~10 KB) relayed to a local sink (Postfix's smtp-sink on 127.0.0.1:12026, started by the peers'
# set-up), both through their "smarthost" (Tern [delivery.smarthost], Postfix relayhost).
#
# Tern: the messages arrive on port 25 for fwdK@bench.test, aliases forwarding to userK@sink.test,
# while delivery points at a closed port (everything waits in the queue). Tern restarts with the
# sink as smarthost; `tern queue retry --all` starts the clock, which stops when the delivered
# counter reaches N.
# Postfix: the same messages with defer_transports=smtp; then the deferral is lifted,
# `postqueue -f` starts the clock, which stops when the queue is empty.
#
#   N=10000 RUNS=3 bench/run-outbound.sh
set -uo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
PEERS="${PEERS_DIR:-$HERE/../../shared/bench}"
N="${N:-10000}"
RUNS="${RUNS:-3}"
C="${C:-16}"
OUT="${OUT:-$HERE/results/$(date +%Y%m%d-%H%M%S)-outbound}"
TMP="${TMPDIR:-/tmp}"
PF="$TMP/bench-postfix"
SINK_PORT=12026
mkdir -p "$OUT"
export BENCH_TERN_DIR="$TMP/bench-tern-out"
export BENCH_TERN_SMTP_PORT=12060 BENCH_TERN_IMAP_PORT=12061 BENCH_TERN_POP3_PORT=12062 BENCH_TERN_HTTP_PORT=12069
TERN="${TERN_BIN:-${CARGO_TARGET_DIR:-$HOME/.cache/tern-target}/release/tern}"
log() { echo "$*" | tee -a "$OUT/results.txt"; }
quiet() { [ -f "$PEERS/wait_quiet.py" ] && python3 "$PEERS/wait_quiet.py" >/dev/null 2>&1 || true; }
delivered() { curl -s "127.0.0.1:$BENCH_TERN_HTTP_PORT/metrics" | awk '/^tern_delivery_recipients_total\{result="delivered"\}/ {print $2}'; }
{
  echo "date: $(date -Is)"
  echo "tern: $(git -C "$HERE/.." rev-parse --short HEAD) release build"
  echo "postfix: $(postconf -d -h mail_version 2>/dev/null)"
  echo "cpus: $(nproc)  N=$N  C=$C (injection connections)"
} >"$OUT/env.txt"

tern_round() {
  "$HERE/tern-bench.sh" reset >/dev/null 2>&1
  # Phase 1: accept and queue, delivery pointed at a closed port.
  BENCH_TERN_EXTRA=$'[delivery]\nretry_initial_seconds = 3600\nretry_max_seconds = 3600\n[delivery.smarthost]\nhost = "127.0.0.1"\nport = 9\nsecurity = "none"' \
    "$HERE/tern-bench.sh" start >/dev/null
  local conf="$BENCH_TERN_DIR/tern.toml"
  for i in $(seq 1 50); do "$TERN" --config "$conf" alias add "fwd$i@bench.test" "user$i@sink.test" >/dev/null; done
  python3 "$HERE/clients/smtp_load.py" --port "$BENCH_TERN_SMTP_PORT" -n "$N" -c "$C" --rcpt 'fwd{i}@bench.test' --users 1:50 --quiet >/dev/null
  sleep 2
  "$HERE/tern-bench.sh" stop >/dev/null
  # Phase 2: deliver to the sink.
  BENCH_TERN_EXTRA=$'[delivery.smarthost]\nhost = "127.0.0.1"\nport = '"$SINK_PORT"$'\nsecurity = "none"' \
    "$HERE/tern-bench.sh" start >/dev/null
  local pid; pid=$("$HERE/tern-bench.sh" pid)
  quiet
  local cpu0; cpu0=$(awk '{print $14+$15}' "/proc/$pid/stat")
  local t0; t0=$(date +%s.%N)
  "$TERN" --config "$conf" queue retry --all >/dev/null
  while [ "$(delivered)" != "$N" ]; do sleep 0.05; done
  local t1; t1=$(date +%s.%N)
  local cpu1; cpu1=$(awk '{print $14+$15}' "/proc/$pid/stat")
  local rss; rss=$(awk '/VmHWM/ {print $2}' "/proc/$pid/status")
  awk -v a="$t0" -v b="$t1" -v n="$N" -v c0="$cpu0" -v c1="$cpu1" -v hz="$(getconf CLK_TCK)" -v rss="$rss" \
    'BEGIN{s=b-a; printf "tern    delivered %d in %.2f s = %.0f msg/s, server CPU %.3f ms/msg, peak RSS %d MiB\n", n, s, n/s, (c1-c0)/hz*1000/n, rss/1024}' | tee -a "$OUT/results.txt"
  "$HERE/tern-bench.sh" stop >/dev/null
}

postfix_round() {
  local pc=(postconf -c "$PF/etc")
  "${pc[@]}" -e "relayhost = [127.0.0.1]:$SINK_PORT" "defer_transports = smtp" >/dev/null
  postfix -c "$PF/etc" reload >/dev/null 2>&1
  python3 "$HERE/clients/smtp_load.py" --port 12025 -n "$N" -c "$C" --rcpt 'user{i}@sink.test' --users 1:50 --quiet >/dev/null
  # Wait until everything sits in the deferred queue.
  for _ in $(seq 1 600); do
    busy=$(find "$PF/spool/maildrop" "$PF/spool/incoming" "$PF/spool/active" -type f 2>/dev/null | wc -l)
    [ "$busy" -eq 0 ] && break
    sleep 0.5
  done
  "${pc[@]}" -e "defer_transports =" >/dev/null
  postfix -c "$PF/etc" reload >/dev/null 2>&1
  quiet
  local pid; pid=$(tr -dc 0-9 <"$PF/spool/pid/master.pid")
  local cpu0; cpu0=$(python3 -c "import sys; sys.path.insert(0, '$HERE/clients'); import benchlib; print(benchlib.tree_cpu_seconds([$pid]))" 2>/dev/null || echo 0)
  local t0; t0=$(date +%s.%N)
  postqueue -c "$PF/etc" -f
  "$PEERS/peers-drain-wait.sh" 900 >/dev/null
  local t1; t1=$(date +%s.%N)
  local cpu1; cpu1=$(python3 -c "import sys; sys.path.insert(0, '$HERE/clients'); import benchlib; print(benchlib.tree_cpu_seconds([$pid]))" 2>/dev/null || echo 0)
  awk -v a="$t0" -v b="$t1" -v n="$N" -v c0="$cpu0" -v c1="$cpu1" \
    'BEGIN{s=b-a; printf "postfix delivered %d in %.2f s = %.0f msg/s, server CPU %.3f ms/msg\n", n, s, n/s, (c1-c0)*1000/n}' | tee -a "$OUT/results.txt"
  "${pc[@]}" -e "relayhost =" >/dev/null
  postfix -c "$PF/etc" reload >/dev/null 2>&1
}

for run in $(seq 1 "$RUNS"); do
  log "# run $run"
  tern_round
  postfix_round
done
