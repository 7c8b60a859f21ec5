#!/usr/bin/env bash
# IMAP benchmark, Tern and Dovecot side by side: both get the same mailboxes (2,000 messages of
# ~10 KB in INBOX of user1..user32, delivered over SMTP), then mixed client sessions at each
# concurrency (connect, LOGIN, SELECT, FETCH 1:* (UID FLAGS ENVELOPE), 3 bodies, SEARCH
# SUBJECT, STORE, LOGOUT), runs interleaved; then idle connections (memory per connection).
#
# Needs the peers of the shared harness (../shared/bench/peers-setup.sh) for Dovecot.
#
#   RUNS=3 DURATION=30 CONC="1 8 32" IDLE="1000 10000" bench/run-imap.sh
#   POPULATE=0 ...   # mailboxes already filled
set -uo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=common.sh
. "$HERE/common.sh"
RUNS="${RUNS:-3}"
DURATION="${DURATION:-30}"
CONC="${CONC:-1 8 32}"
IDLE="${IDLE:-1000}"
PER_USER="${PER_USER:-2000}"
POPULATE="${POPULATE:-1}"
OUT="${OUT:-$HERE/results/$(date +%Y%m%d-%H%M%S)-imap}"
mkdir -p "$OUT/tern" "$OUT/dovecot"

start_tern
have_dovecot=0
running "$DC_PID" && have_dovecot=1
{
  echo "date: $(date -Is)"
  echo "tern: $(git -C "$HERE/.." rev-parse --short HEAD) release build"
  command -v dovecot >/dev/null && echo "dovecot: $(dovecot --version 2>/dev/null)"
  echo "cpus: $(nproc)  kernel: $(uname -r)"
} >"$OUT/env.txt"
total=$((PER_USER * 32))

if [ "$POPULATE" = 1 ]; then
  cmd=(python3 "$HERE/clients/smtp_load.py" --port 12050 -n "$total" -c 16 --users 1:32 --quiet)
  log "${cmd[*]}"; "${cmd[@]}"
  if [ "$have_dovecot" = 1 ]; then
    "$PEERS/peers-reset-mail.sh" >/dev/null 2>&1 || true
    cmd=(python3 "$HERE/clients/smtp_load.py" --port 12025 -n "$total" -c 16 --users 1:32 --drain-cmd "$PEERS/peers-drain-wait.sh" --quiet)
    log "${cmd[*]}"; "${cmd[@]}"
  fi
  # Let Tern's full-text indexer finish before measuring.
  # (BENCH_NO_INDEXER=1: do not wait for it.)
  for _ in $(seq 1 600); do
    [ -n "${BENCH_NO_INDEXER:-}" ] && break
    pending=$(curl -s 127.0.0.1:12059/metrics | awk '/^tern_fts_indexed_total/ {print $2}')
    [ "${pending:-0}" -ge "$total" ] && break
    sleep 1
  done
fi

for run in $(seq 1 "$RUNS"); do
  for c in $CONC; do
    quiet
    cmd=(python3 "$HERE/clients/imap_load.py" --port 12051 -c "$c" -d "$DURATION" --users 1:32 --prime --warmup 3
         --server-pid "$TERN_PID" --label tern --json "$OUT/tern/imap.jsonl" --quiet)
    log "${cmd[*]}"; "${cmd[@]}"
    if [ "$have_dovecot" = 1 ]; then
      quiet
      cmd=(python3 "$HERE/clients/imap_load.py" --port 12143 -c "$c" -d "$DURATION" --users 1:32 --prime --warmup 3
           --server-pid "@$DC_PID" --label dovecot --json "$OUT/dovecot/imap.jsonl" --quiet)
      log "${cmd[*]}"; "${cmd[@]}"
    fi
  done
done
for k in $IDLE; do
  quiet
  cmd=(python3 "$HERE/clients/imap_load.py" --port 12051 --idle "$k" --users 1:32 --ramp-concurrency 64 --settle 5
       --server-pid "$TERN_PID" --label tern --json "$OUT/tern/idle.jsonl" --quiet)
  log "${cmd[*]}"; "${cmd[@]}"
  if [ "$have_dovecot" = 1 ]; then
    quiet
    cmd=(python3 "$HERE/clients/imap_load.py" --port 12143 --idle "$k" --users 1:32 --ramp-concurrency 64 --settle 5
         --server-pid "@$DC_PID" --label dovecot --json "$OUT/dovecot/idle.jsonl" --quiet)
    log "${cmd[*]}"; "${cmd[@]}"
  fi
done
dirs=("$OUT/tern")
[ "$have_dovecot" = 1 ] && dirs+=("$OUT/dovecot")
python3 "$HERE/clients/summarize.py" "${dirs[@]}" | tee "$OUT/summary.md"
