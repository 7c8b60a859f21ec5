"""Reads an mbox file or a Maildir with Python's own `mailbox` module (an independent reader)
and prints one JSON line per message: subject, flags as that module sees them, the SHA-256 of
the body with LF line ends, and the date (mbox From line / Maildir file time)."""
import hashlib
import json
import mailbox
import os
import sys

kind, path = sys.argv[1], sys.argv[2]
if kind == "mbox":
    box = mailbox.mbox(path, create=False)
else:
    box = mailbox.Maildir(path, factory=None, create=False)
out = []
for key in box.keys():
    msg = box[key]
    payload = msg.as_bytes().split(b"\n\n", 1)[1] if b"\n\n" in msg.as_bytes() else b""
    payload = payload.replace(b"\r\n", b"\n")
    if kind == "mbox":
        flags = msg.get_flags()
        date = msg.get_from()
    else:
        flags = msg.get_flags()
        date = int(os.path.getmtime(os.path.join(path, box._lookup(key))))
    out.append({"subject": msg["subject"], "flags": "".join(sorted(flags)),
                "body": hashlib.sha256(payload).hexdigest(), "date": date,
                "keywords": msg.get("X-Keywords", "")})
out.sort(key=lambda m: m["subject"] or "")
for m in out:
    print(json.dumps(m))
