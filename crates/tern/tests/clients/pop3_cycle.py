#!/usr/bin/env python3
"""Full retrieve-and-delete cycle with Python's poplib (an independent POP3 client). Prints
the UIDLs it saw and the SHA-256 of each retrieved message (joined with CRLF as poplib splits
lines), so the caller can compare with what the server stores."""
import argparse
import hashlib
import json
import poplib

p = argparse.ArgumentParser()
p.add_argument("--port", type=int, required=True)
p.add_argument("--delete", action="store_true")
a = p.parse_args()

M = poplib.POP3("127.0.0.1", a.port, timeout=30)
caps = M.capa()
assert "UIDL" in caps and "TOP" in caps and "PIPELINING" in caps and "RESP-CODES" in caps, caps
M.user("alice@example.test")
M.pass_("secret")
count, size = M.stat()
_, listing, _ = M.list()
assert len(listing) == count
_, uidls, _ = M.uidl()
digests = []
for i in range(1, count + 1):
    _, lines, octets = M.retr(i)
    body = b"\r\n".join(lines) + b"\r\n"
    digests.append(hashlib.sha256(body).hexdigest())
    _, top, _ = M.top(i, 0)
    assert top[-1] == b"", "TOP 0 ends with the empty line after the header"
    if a.delete:
        M.dele(i)
M.quit()
print(json.dumps({"count": count, "size": size, "uidl": [u.decode() for u in uidls], "sha256": digests}))
