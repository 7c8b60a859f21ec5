"""Puts mail into an IMAP account with Python's imaplib (the migration tests' source server):
folders, messages with flags, keywords and internal dates. Prints the source's folder
delimiter.

usage: imap_seed.py HOST PORT USER PASSWORD SPEC.json
SPEC: [{"folder": "INBOX", "flags": "\\\\Seen $Forwarded", "date": 1600000000, "subject": "s"}]
"""
import imaplib
import json
import sys
import time

host, port, user, password, spec_path = sys.argv[1:6]
spec = json.load(open(spec_path))
imap = imaplib.IMAP4(host, int(port))
imap.login(user, password)
typ, data = imap.list()
delimiter = data[0].decode().split('"')[1] if data and data[0] else "."
for m in spec:
    folder = m["folder"].replace("/", delimiter)
    if folder != "INBOX":
        imap.create(folder)  # NO when it exists: fine
    body = (f"From: source@remote.test\r\nTo: {user}\r\nSubject: {m['subject']}\r\n"
            f"Message-ID: <{m['subject'].replace(' ', '.')}@remote.test>\r\n\r\nbody of {m['subject']}\r\n")
    date = imaplib.Time2Internaldate(time.gmtime(m["date"])) if "date" in m else None
    typ, resp = imap.append(folder, "(" + m.get("flags", "") + ")", date, body.encode())
    assert typ == "OK", resp
imap.logout()
print(delimiter)
