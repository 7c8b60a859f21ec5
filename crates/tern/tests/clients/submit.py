#!/usr/bin/env python3
"""Submits one message the way a mail client does, with Python's smtplib.

    submit.py --port N [--ssl | --starttls] --user U --password P [--mech PLAIN|LOGIN|SCRAM-SHA-256]
              --from ADDR --to ADDR [--to ADDR ...] --message FILE

SCRAM-SHA-256 (RFC 5802, RFC 7677) is written here from the RFC with hashlib/hmac, as smtplib
has no SCRAM. Prints "sent" and exits 0, or prints the SMTP error and exits 1.
"""

import argparse
import base64
import hashlib
import hmac
import os
import smtplib
import ssl
import sys


def scram_login(smtp, user, password):
    nonce = base64.b64encode(os.urandom(18)).decode()
    bare = "n=%s,r=%s" % (user.replace("=", "=3D").replace(",", "=2C"), nonce)
    first = "n,," + bare
    code, resp = smtp.docmd("AUTH", "SCRAM-SHA-256 " + base64.b64encode(first.encode()).decode())
    if code != 334:
        raise smtplib.SMTPAuthenticationError(code, resp)
    server_first = base64.b64decode(resp).decode()
    attrs = dict(kv.split("=", 1) for kv in server_first.split(","))
    if not attrs["r"].startswith(nonce):
        raise RuntimeError("server nonce does not extend ours")
    salted = hashlib.pbkdf2_hmac("sha256", password.encode(), base64.b64decode(attrs["s"]), int(attrs["i"]))
    client_key = hmac.new(salted, b"Client Key", hashlib.sha256).digest()
    stored_key = hashlib.sha256(client_key).digest()
    without_proof = "c=biws,r=" + attrs["r"]
    auth_message = ",".join([bare, server_first, without_proof])
    signature = hmac.new(stored_key, auth_message.encode(), hashlib.sha256).digest()
    proof = bytes(a ^ b for a, b in zip(client_key, signature))
    final = without_proof + ",p=" + base64.b64encode(proof).decode()
    code, resp = smtp.docmd(base64.b64encode(final.encode()).decode())
    if code == 535:
        raise smtplib.SMTPAuthenticationError(code, resp)
    if code != 334:
        raise RuntimeError("unexpected reply %d %r" % (code, resp))
    server_final = base64.b64decode(resp).decode()
    server_key = hmac.new(salted, b"Server Key", hashlib.sha256).digest()
    expected = "v=" + base64.b64encode(hmac.new(server_key, auth_message.encode(), hashlib.sha256).digest()).decode()
    if server_final != expected:
        raise RuntimeError("server signature does not verify: the server does not know the password")
    code, resp = smtp.docmd("")
    if code != 235:
        raise smtplib.SMTPAuthenticationError(code, resp)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--ssl", action="store_true")
    ap.add_argument("--starttls", action="store_true")
    ap.add_argument("--user", required=True)
    ap.add_argument("--password", required=True)
    ap.add_argument("--mech", default="PLAIN")
    ap.add_argument("--from", dest="sender", required=True)
    ap.add_argument("--to", action="append", required=True)
    ap.add_argument("--message", required=True)
    ap.add_argument("--body-8bitmime", action="store_true", help="MAIL FROM ... BODY=8BITMIME")
    args = ap.parse_args()
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    with open(args.message, "rb") as f:
        message = f.read()
    try:
        if args.ssl:
            smtp = smtplib.SMTP_SSL("127.0.0.1", args.port, context=context, timeout=30)
        else:
            smtp = smtplib.SMTP("127.0.0.1", args.port, timeout=30)
        smtp.ehlo("client.test")
        if args.starttls:
            smtp.starttls(context=context)
            smtp.ehlo("client.test")
        if args.mech == "SCRAM-SHA-256":
            scram_login(smtp, args.user, args.password)
        else:
            smtp.user, smtp.password = args.user, args.password
            auth = {"PLAIN": smtp.auth_plain, "LOGIN": smtp.auth_login}[args.mech]
            smtp.auth(args.mech, auth, initial_response_ok=(args.mech == "PLAIN"))
        options = ["BODY=8BITMIME"] if args.body_8bitmime else []
        refused = smtp.sendmail(args.sender, args.to, message, mail_options=options)
        smtp.quit()
    except smtplib.SMTPResponseException as e:
        print("%d %s" % (e.smtp_code, e.smtp_error.decode(errors="replace")))
        sys.exit(1)
    except smtplib.SMTPRecipientsRefused as e:
        for rcpt, (code, text) in e.recipients.items():
            print("%s %d %s" % (rcpt, code, text.decode(errors="replace")))
        sys.exit(1)
    if refused:
        print("refused: %r" % refused)
        sys.exit(1)
    print("sent")


if __name__ == "__main__":
    main()
