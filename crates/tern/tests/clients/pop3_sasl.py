#!/usr/bin/env python3
"""Logs in to POP3 with AUTH (RFC 5034) over implicit TLS using poplib and the SCRAM client of
imap_scram.py (written from RFC 5802), or LOGIN; then STAT.

    pop3_sasl.py PORT USER PASSWORD MECHANISM
Exit 0 and "ok STAT-REPLY" on success; exit 1 with the server's answer otherwise.
"""

import base64
import os
import poplib
import ssl
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from imap_scram import Scram  # noqa: E402


def main():
    port, user, password, mechanism = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    pop = poplib.POP3_SSL("127.0.0.1", port, context=ctx)
    if mechanism == "SCRAM-SHA-256":
        step = Scram(user, password)
    elif mechanism == "LOGIN":
        answers = iter([user.encode(), password.encode()])
        step = lambda challenge: next(answers)  # noqa: E731
    else:
        raise SystemExit("unknown mechanism " + mechanism)
    pop._putcmd("AUTH " + mechanism)
    while True:
        line = pop._getline()[0].decode()
        if line.startswith("+OK"):
            break
        if line.startswith("-ERR"):
            print("refused", line)
            sys.exit(1)
        assert line.startswith("+"), line
        challenge = base64.b64decode(line[1:].strip())
        try:
            answer = step(challenge)
        except RuntimeError as e:
            print("refused", e)
            sys.exit(1)
        pop._putline(base64.b64encode(answer))
    print("ok", pop.stat())
    pop.quit()


if __name__ == "__main__":
    main()
