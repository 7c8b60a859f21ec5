#!/usr/bin/env python3
"""A mail client's usual session with Python's imaplib (an independent IMAP client):
list, select, fetch headers and bodies, search, flag, copy, append, expunge."""
import argparse
import imaplib
import email

p = argparse.ArgumentParser()
p.add_argument("--port", type=int, required=True)
a = p.parse_args()

M = imaplib.IMAP4("127.0.0.1", a.port)
assert "IMAP4REV1" in M.capabilities
typ, _ = M.login("alice@example.test", "secret")
assert typ == "OK"
typ, boxes = M.list()
names = [b.decode().rsplit(" ", 1)[-1] for b in boxes]
for want in ["INBOX", "Sent", "Drafts", "Trash", "Junk", "Archive"]:
    assert want in names, (want, names)
typ, data = M.select("INBOX")
assert typ == "OK" and data == [b"2"], data
typ, data = M.uid("FETCH", "1:*", "(UID RFC822.SIZE BODY.PEEK[HEADER])")
assert typ == "OK"
headers = [email.message_from_bytes(d[1]) for d in data if isinstance(d, tuple)]
assert headers[1]["Subject"] == "second", headers[1]["Subject"]
typ, data = M.fetch("1", "(RFC822)")
msg = email.message_from_bytes(data[0][1])
assert msg.is_multipart()
attachment = msg.get_payload()[1]
assert attachment.get_filename() == "secret.txt"
assert attachment.get_payload(decode=True) == b"The password is swordfish.\n"
typ, data = M.search(None, "UNSEEN")
assert data == [b"2"], data
typ, data = M.search(None, "BODY", "swordfish")
assert data == [b"1"], data
typ, data = M.store("2", "+FLAGS", "(\\Flagged $Work)")
assert b"\\Flagged" in data[0] and b"$Work" in data[0], data
typ, data = M.copy("1:2", "Archive")
assert typ == "OK", data
typ, data = M.append("Sent", "\\Seen", imaplib.Time2Internaldate(1700000000), b"From: alice@example.test\r\nTo: bob@x.test\r\nSubject: sent by imaplib\r\n\r\nhi\r\n")
assert typ == "OK" and b"APPENDUID" in data[0], data
typ, data = M.status("Archive", "(MESSAGES UNSEEN)")
assert b"MESSAGES 2" in data[0], data
M.store("1", "+FLAGS", "\\Deleted")
typ, data = M.expunge()
assert data == [b"1"], data
typ, data = M.select("Sent", readonly=True)
assert data == [b"1"], data
typ, data = M.fetch("1", "(FLAGS BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
assert b"sent by imaplib" in data[0][1], data
M.close()
M.logout()
print("workflow ok")
