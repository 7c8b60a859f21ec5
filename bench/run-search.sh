#!/usr/bin/env bash
# SEARCH over one 100,000-message mailbox (user33), Tern and Dovecot side by side:
#   BODY "<topic>"       a body word: matches nearly every message (the generator's bodies
#                        come from a small vocabulary) — the worst case for any index
#   TEXT "] <topic>"     the subject tag: matches 1 message in 12
#   BODY "<topic>xq"     matches nothing
#   SUBJECT "<topic>"    a header key (summary fields, no full-text index): 1 in 9
# Each for DURATION seconds with one client; p50/p99 of SEARCH from imap_load.py.
#
#   N=100000 DURATION=30 bench/run-search.sh     POPULATE=0 to reuse the mailboxes
set -uo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=common.sh
. "$HERE/common.sh"
N="${N:-100000}"
DURATION="${DURATION:-30}"
POPULATE="${POPULATE:-1}"
OUT="${OUT:-$HERE/results/$(date +%Y%m%d-%H%M%S)-search}"
mkdir -p "$OUT/tern" "$OUT/dovecot"
start_tern
have_dovecot=0
running "$DC_PID" && have_dovecot=1
echo "date: $(date -Is)  tern: $(git -C "$HERE/.." rev-parse --short HEAD)  N=$N" >"$OUT/env.txt"
if [ "$POPULATE" = 1 ]; then
  before=$(curl -s 127.0.0.1:12059/metrics | awk '/^tern_fts_indexed_total/ {print $2}')
  cmd=(python3 "$HERE/clients/smtp_load.py" --port 12050 -n "$N" -c 16 --users 33 --quiet)
  log "${cmd[*]}"; "${cmd[@]}"
  if [ "$have_dovecot" = 1 ]; then
    cmd=(python3 "$HERE/clients/smtp_load.py" --port 12025 -n "$N" -c 16 --users 33 --drain-cmd "$PEERS/peers-drain-wait.sh" --quiet)
    log "${cmd[*]}"; "${cmd[@]}"
  fi
  for _ in $(seq 1 1200); do
    done_=$(curl -s 127.0.0.1:12059/metrics | awk '/^tern_fts_indexed_total/ {print $2}')
    [ "$((done_ - ${before:-0}))" -ge "$N" ] && break
    sleep 1
  done
  log "index caught up: $(curl -s 127.0.0.1:12059/metrics | grep ^tern_fts_indexed_total)"
fi
for search in 'BODY "{topic}"' 'TEXT "] {topic}"' 'BODY "{topic}xq"' 'SUBJECT "{topic}"'; do
  for server in tern dovecot; do
    if [ "$server" = tern ]; then port=12051; pid="$TERN_PID"; else
      [ "$have_dovecot" = 1 ] || continue
      port=12143; pid="@$DC_PID"
    fi
    cmd=(python3 "$HERE/clients/imap_load.py" --port "$port" -c 1 -d "$DURATION" --users 33 --prime --ops search
         --search "$search" --server-pid "$pid" --label "$server $search" --json "$OUT/$server/search.jsonl" --quiet)
    log "${cmd[*]}"; "${cmd[@]}"
  done
done
python3 - "$OUT" <<'PY'
import json, sys, os
out = sys.argv[1]
print("| server | search | searches | p50 ms | p99 ms | server CPU ms/search |")
print("|---|---|---|---|---|---|")
for server in ("tern", "dovecot"):
    path = os.path.join(out, server, "search.jsonl")
    if not os.path.exists(path):
        continue
    for line in open(path):
        d = json.loads(line)
        s = d["latency"].get("SEARCH", {})
        cpu = d["resources"].get("server_cpu_s") or 0
        n = s.get("n", 0) or 1
        print("| %s | %s | %d | %.1f | %.1f | %.1f |" % (server, d["params"]["search"], s.get("n", 0), s.get("p50_ms", 0), s.get("p99_ms", 0), cpu * 1000 / n))
PY
