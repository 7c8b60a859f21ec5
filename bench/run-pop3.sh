#!/usr/bin/env bash
# POP3 retrieve benchmark, Tern and Dovecot side by side on the same mailboxes as
# run-imap.sh (run that first, or POPULATE there): sessions USER, PASS, STAT, UIDL, RETR of
# every message, QUIT (nothing deleted), at each concurrency, runs interleaved.
#
#   RUNS=3 DURATION=30 CONC="1 8 32" PROCS=2 bench/run-pop3.sh
set -uo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=common.sh
. "$HERE/common.sh"
RUNS="${RUNS:-3}"
DURATION="${DURATION:-30}"
CONC="${CONC:-1 8 32}"
PROCS="${PROCS:-2}"
OUT="${OUT:-$HERE/results/$(date +%Y%m%d-%H%M%S)-pop3}"
mkdir -p "$OUT/tern" "$OUT/dovecot"
start_tern
have_dovecot=0
running "$DC_PID" && have_dovecot=1
echo "date: $(date -Is)  tern: $(git -C "$HERE/.." rev-parse --short HEAD)  cpus: $(nproc)" >"$OUT/env.txt"
for run in $(seq 1 "$RUNS"); do
  for c in $CONC; do
    procs=1
    [ "$c" -ge 8 ] && procs="$PROCS"
    quiet
    cmd=(python3 "$HERE/clients/pop3_load.py" --port 12052 -c "$c" -d "$DURATION" --users 1:32 --max-retr 0 --procs "$procs"
         --server-pid "$TERN_PID" --label tern --json "$OUT/tern/pop3.jsonl" --quiet)
    log "${cmd[*]}"; "${cmd[@]}"
    if [ "$have_dovecot" = 1 ]; then
      quiet
      cmd=(python3 "$HERE/clients/pop3_load.py" --port 12110 -c "$c" -d "$DURATION" --users 1:32 --max-retr 0 --procs "$procs"
           --server-pid "@$DC_PID" --label dovecot --json "$OUT/dovecot/pop3.jsonl" --quiet)
      log "${cmd[*]}"; "${cmd[@]}"
    fi
  done
done
dirs=("$OUT/tern")
[ "$have_dovecot" = 1 ] && dirs+=("$OUT/dovecot")
python3 "$HERE/clients/summarize.py" "${dirs[@]}" | tee "$OUT/summary.md"
