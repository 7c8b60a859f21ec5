#!/usr/bin/env bash
# SpamAssassin (Debian's, local rules only: -L, no network tests) trained with sa-learn on
# SPLIT/train, judging SPLIT/test through spamd/spamc. Prints one line per test message:
#   label <TAB> file <TAB> score <TAB> BAYES_xx
set -euo pipefail
SPLIT="$1"; WORK="$2"; PORT="${3:-17830}"
rm -rf "$WORK"; mkdir -p "$WORK/site" "$WORK/bayes"
cp /etc/spamassassin/*.pre "$WORK/site/" 2>/dev/null || true
cp /etc/spamassassin/*.cf "$WORK/site/" 2>/dev/null || true
cat >>"$WORK/site/local.cf" <<CF
use_bayes 1
bayes_auto_learn 0
bayes_path $WORK/bayes/bayes
bayes_file_mode 0777
use_txrep 0
CF
sa-learn --siteconfigpath="$WORK/site" -L --spam "$SPLIT/train/spam" >&2
sa-learn --siteconfigpath="$WORK/site" -L --ham "$SPLIT/train/ham" >&2
sa-learn --siteconfigpath="$WORK/site" --dump magic >&2
spamd --siteconfigpath="$WORK/site" -L --listen="127.0.0.1:$PORT" --nouser-config -u nobody \
  --pidfile="$WORK/spamd.pid" -m 2 >"$WORK/spamd.log" 2>&1 &
for _ in $(seq 1 120); do spamc -d 127.0.0.1 -p "$PORT" -K >/dev/null 2>&1 && break; sleep 0.5; done
for label in spam ham; do
  for f in "$SPLIT/test/$label"/*.eml; do
    status=$(spamc -d 127.0.0.1 -p "$PORT" -s 30000000 <"$f" | python3 -c '
import sys, email
m = email.message_from_binary_file(sys.stdin.buffer)
s = " ".join((m.get("X-Spam-Status") or "").split())
score = s.split("score=")[1].split()[0] if "score=" in s else "nan"
tests = s.split("tests=")[1].split()[0] if "tests=" in s else ""
bayes = [t for t in tests.split(",") if t.startswith("BAYES_")]
print(score + "\t" + (bayes[0] if bayes else "none"))')
    printf '%s\t%s\t%s\n' "$label" "$f" "$status"
  done
done
kill "$(cat "$WORK/spamd.pid")" 2>/dev/null || true
