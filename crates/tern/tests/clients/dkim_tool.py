#!/usr/bin/env python3
"""DKIM and ARC with dkimpy, as an independent signer for Tern's verification tests.

    dkim_tool.py keygen rsa|ed25519 KEYFILE        -> prints the DNS TXT value
    dkim_tool.py sign KEYFILE SELECTOR DOMAIN rsa|ed25519 IN OUT [--relaxed-body|--simple-body]
    dkim_tool.py arc KEYFILE SELECTOR DOMAIN AUTHSERV_ID IN OUT   (RSA key; IN must carry the
                                                                  forwarder's Authentication-Results)
    dkim_tool.py arc-verify MESSAGE NAME=TXT...                   -> prints the chain result (pass/fail/none)
"""

import base64
import subprocess
import sys

import dkim


def keygen(kind, path):
    if kind == "rsa":
        subprocess.run(["openssl", "genrsa", "-out", path, "2048"], check=True, capture_output=True)
        der = subprocess.run(["openssl", "rsa", "-in", path, "-pubout", "-outform", "DER"], check=True,
                             capture_output=True).stdout
        print("v=DKIM1; k=rsa; p=" + base64.b64encode(der).decode())
    else:
        import nacl.signing
        key = nacl.signing.SigningKey.generate()
        with open(path, "wb") as f:
            f.write(base64.b64encode(bytes(key)))
        print("v=DKIM1; k=ed25519; p=" + base64.b64encode(bytes(key.verify_key)).decode())


def main():
    cmd = sys.argv[1]
    if cmd == "keygen":
        keygen(sys.argv[2], sys.argv[3])
        return
    if cmd == "arc-verify":
        message = open(sys.argv[2], "rb").read()
        records = {}
        for arg in sys.argv[3:]:
            name, value = arg.split("=", 1)
            records[name.rstrip(".").lower()] = value.encode()

        def dnsfunc(name, timeout=5):
            if isinstance(name, bytes):
                name = name.decode()
            return records.get(name.rstrip(".").lower())

        cv, results, comment = dkim.arc_verify(message, dnsfunc=dnsfunc)
        print(cv.decode() if isinstance(cv, bytes) else cv, comment)
        return
    key = open(sys.argv[2], "rb").read()
    selector, domain = sys.argv[3].encode(), sys.argv[4].encode()
    if cmd == "sign":
        alg, src, dst = sys.argv[5], sys.argv[6], sys.argv[7]
        body = b"relaxed"
        if "--simple-body" in sys.argv:
            body = b"simple"
        message = open(src, "rb").read()
        sig = dkim.sign(message, selector, domain, key,
                        canonicalize=(b"relaxed", body),
                        signature_algorithm=b"ed25519-sha256" if alg == "ed25519" else b"rsa-sha256",
                        include_headers=[b"from", b"to", b"subject", b"date", b"message-id"])
        open(dst, "wb").write(sig + message)
    elif cmd == "arc":
        srv_id, src, dst = sys.argv[5].encode(), sys.argv[6], sys.argv[7]
        message = open(src, "rb").read()
        headers = dkim.arc_sign(message, selector, domain, key, srv_id,
                                include_headers=[b"from", b"to", b"subject", b"date", b"message-id"])
        open(dst, "wb").write(b"".join(headers) + message)
    else:
        sys.exit("unknown command " + cmd)


if __name__ == "__main__":
    main()
