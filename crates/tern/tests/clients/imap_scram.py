#!/usr/bin/env python3
"""Logs in to IMAP with AUTHENTICATE SCRAM-SHA-256 (RFC 7677) using imaplib, the SCRAM client
written here from RFC 5802 with hashlib/hmac. Then SELECT INBOX and prints the EXISTS count.

    imap_scram.py PORT USER PASSWORD [--tls]
Exit 0 and "ok N" on success; exit 1 with the server's answer otherwise.
"""

import base64
import hashlib
import hmac
import imaplib
import os
import ssl
import sys


class Scram:
    def __init__(self, user, password):
        self.user, self.password = user, password
        self.nonce = base64.b64encode(os.urandom(18)).decode()
        self.bare = "n=%s,r=%s" % (user, self.nonce)
        self.step = 0
        self.expected = None

    def __call__(self, challenge):
        self.step += 1
        if self.step == 1:
            return ("n,," + self.bare).encode()
        if self.step == 2:
            server_first = challenge.decode()
            attrs = dict(kv.split("=", 1) for kv in server_first.split(","))
            assert attrs["r"].startswith(self.nonce)
            salted = hashlib.pbkdf2_hmac("sha256", self.password.encode(), base64.b64decode(attrs["s"]), int(attrs["i"]))
            client_key = hmac.new(salted, b"Client Key", hashlib.sha256).digest()
            stored = hashlib.sha256(client_key).digest()
            without = "c=biws,r=" + attrs["r"]
            auth_message = ",".join([self.bare, server_first, without])
            sig = hmac.new(stored, auth_message.encode(), hashlib.sha256).digest()
            proof = bytes(a ^ b for a, b in zip(client_key, sig))
            server_key = hmac.new(salted, b"Server Key", hashlib.sha256).digest()
            self.expected = "v=" + base64.b64encode(hmac.new(server_key, auth_message.encode(), hashlib.sha256).digest()).decode()
            return (without + ",p=" + base64.b64encode(proof).decode()).encode()
        if challenge.decode() != self.expected:
            raise RuntimeError("the server's signature does not verify")
        return b""


def main():
    port, user, password = int(sys.argv[1]), sys.argv[2], sys.argv[3]
    if "--tls" in sys.argv:
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        imap = imaplib.IMAP4_SSL("127.0.0.1", port, ssl_context=ctx)
    else:
        imap = imaplib.IMAP4("127.0.0.1", port)
    try:
        imap.authenticate("SCRAM-SHA-256", Scram(user, password))
    except imaplib.IMAP4.error as e:
        print("refused", e)
        sys.exit(1)
    typ, data = imap.select("INBOX")
    print("ok", data[0].decode())
    imap.logout()


if __name__ == "__main__":
    main()
