#!/usr/bin/env python3
"""Verifies every DKIM-Signature of a message with dkimpy (an independent implementation).

    dkim_verify.py MESSAGE_FILE SELECTOR._domainkey.DOMAIN=TXT_VALUE [...]

The DNS answers come from the arguments. Prints one line per signature ("ok s=... a=...")
and exits 0 only when there is at least one signature and all verify.
"""

import re
import sys

import dkim


def main():
    message = open(sys.argv[1], "rb").read()
    records = {}
    for arg in sys.argv[2:]:
        name, value = arg.split("=", 1)
        records[name.rstrip(".").lower()] = value.encode()

    def dnsfunc(name, timeout=5):
        if isinstance(name, bytes):
            name = name.decode()
        return records.get(name.rstrip(".").lower())

    d = dkim.DKIM(message)
    count = len(re.findall(rb"(?im)^DKIM-Signature:", message.split(b"\r\n\r\n", 1)[0]))
    if count == 0:
        print("no signature")
        sys.exit(1)
    ok = True
    for idx in range(count):
        good = d.verify(idx=idx, dnsfunc=dnsfunc)
        sig = dict(d.signature_fields) if hasattr(d, "signature_fields") else {}
        print("%s s=%s a=%s" % ("ok" if good else "FAIL", sig.get(b"s", b"?").decode(), sig.get(b"a", b"?").decode()))
        ok = ok and good
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
