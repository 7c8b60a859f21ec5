#!/usr/bin/env python3
"""Sends one message with Python's smtplib (an independent SMTP client) and prints the
final reply. Used by the Rust end-to-end tests."""
import argparse
import smtplib
import ssl
import sys

p = argparse.ArgumentParser()
p.add_argument("--host", default="127.0.0.1")
p.add_argument("--port", type=int, required=True)
p.add_argument("--from", dest="sender", default="python@remote.test")
p.add_argument("--to", action="append", required=True)
p.add_argument("--body", required=True, help="the message, CRLF line endings")
p.add_argument("--starttls", action="store_true")
a = p.parse_args()

with smtplib.SMTP(a.host, a.port, local_hostname="python.client.test", timeout=30) as s:
    s.ehlo()
    if a.starttls:
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        s.starttls(context=ctx)
        s.ehlo()
    code, msg = s.mail(a.sender)
    assert code == 250, (code, msg)
    for r in a.to:
        code, msg = s.rcpt(r)
        assert code == 250, (r, code, msg)
    # smtplib's data() dot-stuffs and terminates the message.
    code, msg = s.data(a.body.encode("utf-8"))
    print(code, msg.decode())
    sys.exit(0 if code == 250 else 1)
