#!/usr/bin/env python3
"""Where latency spikes come from: a server's threads' CPU and disk writes beside the load
client's transaction latencies, in windows of a quarter second.

  thread_timeline.py sample PID SECONDS samples.json   # every 100 ms: CPU ticks per thread
                                                       # name, bytes written by the process
  smtp_load.py ... --timeline tl.json                  # meanwhile, the load
  thread_timeline.py report tl.json samples.json       # windows with their slowest
                                                       # transaction and what ran

Linux only (/proc). Threads are grouped by the first ten characters of their name.
"""
import collections
import json
import os
import sys
import time


def snapshot(pid):
    cpu = collections.Counter()
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            stat = open(f"/proc/{pid}/task/{tid}/stat").read()
        except OSError:
            continue
        name = stat[stat.index("(") + 1:stat.rindex(")")][:10]
        fields = stat[stat.rindex(")") + 2:].split()
        cpu[name] += int(fields[11]) + int(fields[12])
    io = dict(line.split(": ") for line in open(f"/proc/{pid}/io").read().splitlines())
    cpu["write MB"] = int(io["write_bytes"]) / 1e6
    return cpu


def sample(pid, seconds, out):
    samples = []
    end = time.time() + seconds
    while time.time() < end:
        samples.append((time.time(), snapshot(pid)))
        time.sleep(0.1)
    json.dump(samples, open(out, "w"))


def report(timeline_file, samples_file):
    timeline = json.load(open(timeline_file))
    samples = json.load(open(samples_file))
    if not timeline or not samples:
        sys.exit("nothing recorded")
    latencies = sorted(lat for _, lat in timeline)
    p99 = latencies[int(len(latencies) * 0.99)]
    print(f"{len(timeline)} transactions, p99 {p99 * 1000:.1f} ms; windows of 250 ms, "
          "* = has transactions at or over the p99")
    start = timeline[0][0]
    windows = collections.defaultdict(list)
    for t, lat in timeline:
        windows[int((t - start) * 4)].append(lat)

    def at(t):
        return min(samples, key=lambda s: abs(s[0] - t))[1]

    for w in sorted(windows):
        lats = windows[w]
        before, after = at(start + w / 4), at(start + (w + 1) / 4)
        ran = {k: round(after.get(k, 0) - before.get(k, 0), 1) for k in after
               if after.get(k, 0) - before.get(k, 0) > 0}
        mark = "*" if max(lats) >= p99 else " "
        print(f"{mark} {w / 4:6.2f}s n={len(lats):4d} max={max(lats) * 1000:6.1f} ms  {ran}")


if __name__ == "__main__":
    if len(sys.argv) == 5 and sys.argv[1] == "sample":
        sample(sys.argv[2], float(sys.argv[3]), sys.argv[4])
    elif len(sys.argv) == 4 and sys.argv[1] == "report":
        report(sys.argv[2], sys.argv[3])
    else:
        sys.exit(__doc__)
