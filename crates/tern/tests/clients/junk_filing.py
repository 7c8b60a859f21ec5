#!/usr/bin/env python3
"""Files messages as a user does in a mail client, with Python's imaplib: moves the given
UIDs from INBOX into Junk (UID MOVE, RFC 6851) and marks others as not junk ($NotJunk).
Prints OK when every command succeeded."""
import argparse
import imaplib

p = argparse.ArgumentParser()
p.add_argument("--port", type=int, required=True)
p.add_argument("--user", required=True)
p.add_argument("--password", required=True)
p.add_argument("--junk", default="", help="UIDs to move into Junk, comma-separated")
p.add_argument("--not-junk", default="", help="UIDs to mark $NotJunk, comma-separated")
a = p.parse_args()

imap = imaplib.IMAP4("127.0.0.1", a.port)
imap.login(a.user, a.password)
typ, _ = imap.select("INBOX")
assert typ == "OK", typ
if a.junk:
    typ, data = imap.uid("MOVE", a.junk, "Junk")
    assert typ == "OK", (typ, data)
if a.not_junk:
    typ, data = imap.uid("STORE", a.not_junk, "+FLAGS", "($NotJunk)")
    assert typ == "OK", (typ, data)
imap.logout()
print("OK")
