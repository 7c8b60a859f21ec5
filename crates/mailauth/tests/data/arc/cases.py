"""ARC validation cases (RFC 8617 §5.2) with dkimpy's arc_verify as the independent oracle.

Builds ARC chains with dkimpy's arc_sign (and, where dkimpy cannot make the variant, with a
small signer on dkimpy's own canonicalization and RSA code), damages them in each way an
outside ARC suite found Tern wrong, and asks dkimpy for the verdict. Prints JSON:
{"dns": {name: TXT}, "cases": [{"name", "message" (base64), "dkimpy", "expected"}]}.
The keys in this folder exist only for these tests."""
import base64, hashlib, json, pathlib, re, sys
import dkim
from dkim.crypto import parse_pem_private_key, RSASSA_PKCS1_v1_5_sign, parse_public_key
from dkim.canonicalization import Relaxed, Simple

HERE = pathlib.Path(__file__).parent
KEY1 = (HERE / "sealer1.key").read_bytes()
KEY2 = (HERE / "sealer2.key").read_bytes()


def pubkey_txt(pem):
    # SubjectPublicKeyInfo DER of the RSA key, as DKIM's p= carries it.
    import subprocess
    der = subprocess.run(["openssl", "rsa", "-pubout", "-outform", "DER"], input=pem, capture_output=True, check=True).stdout
    return "v=DKIM1; k=rsa; p=" + base64.b64encode(der).decode()


DNS = {
    "s1._domainkey.sealer1.test": pubkey_txt(KEY1),
    "s2._domainkey.sealer2.test": pubkey_txt(KEY2),
    "bad._domainkey.sealer1.test": "v=DKIM1; k=rsa; p=QUJDREVGR0g=",
}


def dnsfunc(name, timeout=5):
    name = name.decode().rstrip(".")
    return DNS.get(name, "").encode()


BASE = (b"Authentication-Results: sealer1.test; spf=pass smtp.mailfrom=a@origin.test\r\n"
        b"From: a@origin.test\r\nTo: b@list.test\r\nSubject: ARC test\r\n"
        b"Date: Tue, 01 Dec 2026 10:00:00 +0000\r\nMessage-ID: <arc@origin.test>\r\n\r\n"
        b"Hello over the list.\r\n   \r\n")


def seal(message, selector, domain, key, srv):
    return b"".join(dkim.arc_sign(message, selector, domain, key, srv, timestamp="1764583200")) + message


ONE = seal(BASE, b"s1", b"sealer1.test", KEY1, b"sealer1.test")
TWO = seal(b"Authentication-Results: sealer2.test; arc=pass\r\n" + ONE, b"s2", b"sealer2.test", KEY2, b"sealer2.test")


def sign_rsa(data, key):
    return base64.b64encode(RSASSA_PKCS1_v1_5_sign(hashlib.sha256(data), parse_pem_private_key(key))).decode()


def fold(value):
    return value


def custom_set(message, ams_tags, signed_names, canon_h, canon_b, key=KEY1, d="sealer1.test", s="s1"):
    """One ARC set made here: AMS with the given tags (and no c= unless given), AS over it."""
    header_end = message.index(b"\r\n\r\n") + 2
    body = message[header_end + 2:]
    body_canon = (Relaxed if canon_b == "relaxed" else Simple).canonicalize_body(body)
    bh = base64.b64encode(hashlib.sha256(body_canon).digest()).decode()
    fields = re.findall(rb"(?m)^([^\s:]+):(.*(?:\r\n[ \t].*)*)\r\n", message[:header_end])
    signed = []
    used = set()
    for name in signed_names:
        for k in range(len(fields) - 1, -1, -1):
            if k not in used and fields[k][0].lower() == name.lower().encode():
                used.add(k)
                signed.append((fields[k][0], fields[k][1] + b"\r\n"))
                break
    aar = b"ARC-Authentication-Results: i=1; sealer1.test; spf=pass smtp.mailfrom=a@origin.test"
    ams_value = " " + ams_tags.format(d=d, s=s, bh=bh) + " b="
    canon = Relaxed if canon_h == "relaxed" else Simple
    hdrs = canon.canonicalize_headers(signed + [(b"ARC-Message-Signature", ams_value.encode())])
    data = b"".join(n + b":" + v for n, v in hdrs)
    # The signature field goes in without its final line break (RFC 6376 §3.7).
    data = data[:-2] if data.endswith(b"\r\n") else data
    ams = ("ARC-Message-Signature:" + ams_value + sign_rsa(data, key)).encode()
    as_value = " i=1; cv=none; a=rsa-sha256; d=%s; s=%s; b=" % (d, s)
    seal_hdrs = Relaxed.canonicalize_headers([
        (b"ARC-Authentication-Results", aar[len(b"ARC-Authentication-Results:"):] + b"\r\n"),
        (b"ARC-Message-Signature", ams[len(b"ARC-Message-Signature:"):] + b"\r\n"),
        (b"ARC-Seal", as_value.encode()),
    ])
    seal_data = b"".join(n + b":" + v for n, v in seal_hdrs)[:-2]
    seal_hdr = ("ARC-Seal:" + as_value + sign_rsa(seal_data, key)).encode()
    return seal_hdr + b"\r\n" + ams + b"\r\n" + aar + b"\r\n" + message


def sub(message, pattern, replacement, count=1):
    out, n = re.subn(pattern, replacement, message, count=count)
    assert n, pattern
    return out


def remove_field(message, name):
    return re.sub(rb"(?m)^" + name + rb":.*(?:\r\n[ \t].*)*\r\n", b"", message, count=1)


AS = rb"ARC-Seal: "
CASES = {
    "one-set": (ONE, "pass"),
    "two-sets": (TWO, "pass"),
    "no-arc": (BASE, "none"),
    "ams-sha1": (sub(ONE, rb"(ARC-Message-Signature: i=1; )a=rsa-sha256", rb"\1a=rsa-sha1"), "fail"),
    "ams-no-a": (sub(ONE, rb"(ARC-Message-Signature: i=1; )a=rsa-sha256; ", rb"\1"), "fail"),
    "as-sha1": (sub(ONE, rb"(ARC-Seal: i=1; cv=none; )a=rsa-sha256", rb"\1a=rsa-sha1"), "fail"),
    "as-unknown-algorithm": (sub(ONE, rb"(ARC-Seal: i=1; cv=none; )a=rsa-sha256", rb"\1a=rsa-sha512"), "fail"),
    "as-duplicate-tag": (sub(ONE, rb"ARC-Seal: i=1; cv=none;", rb"ARC-Seal: i=1; cv=none; cv=none;"), "fail"),
    "as-bad-tag-name": (sub(ONE, rb"ARC-Seal: i=1; cv=none;", rb"ARC-Seal: i=1; c#v=none;"), "fail"),
    "as-upper-case-tag": (sub(ONE, rb"ARC-Seal: i=1; cv=none;", rb"ARC-Seal: i=1; CV=none;"), "fail"),
    "as-bad-separator": (sub(ONE, rb"ARC-Seal: i=1; cv=none;", rb"ARC-Seal: i=1, cv=none;"), "fail"),
    "as-missing-i": (sub(ONE, rb"ARC-Seal: i=1; ", rb"ARC-Seal: "), "fail"),
    "as-empty-i": (sub(ONE, rb"ARC-Seal: i=1; ", rb"ARC-Seal: i=; "), "fail"),
    "as-zero-i": (sub(ONE, rb"ARC-Seal: i=1; ", rb"ARC-Seal: i=0; "), "fail"),
    "as-invalid-i": (sub(ONE, rb"ARC-Seal: i=1; ", rb"ARC-Seal: i=one; "), "fail"),
    "as-cv-pass-first": (sub(ONE, rb"ARC-Seal: i=1; cv=none;", rb"ARC-Seal: i=1; cv=pass;"), "fail"),
    "as-missing-cv": (sub(ONE, rb"ARC-Seal: i=1; cv=none; ", rb"ARC-Seal: i=1; "), "fail"),
    "as-with-h": (sub(ONE, rb"ARC-Seal: i=1; cv=none;", rb"ARC-Seal: i=1; cv=none; h=from;"), "fail"),
    "latest-cv-fail": (sub(TWO, rb"ARC-Seal: i=2; cv=pass;", rb"ARC-Seal: i=2; cv=fail;"), "fail"),
    "ams-missing-i": (sub(ONE, rb"ARC-Message-Signature: i=1; ", rb"ARC-Message-Signature: "), "fail"),
    "aar-missing-i": (sub(ONE, rb"ARC-Authentication-Results: i=1; ", rb"ARC-Authentication-Results: "), "fail"),
    "no-ams": (remove_field(ONE, rb"ARC-Message-Signature"), "fail"),
    "no-aar": (remove_field(ONE, rb"ARC-Authentication-Results"), "fail"),
    "no-as": (remove_field(ONE, rb"ARC-Seal"), "fail"),
    "gap-in-instances": (sub(TWO, rb"i=2;", rb"i=3;", count=3), "fail"),
    "body-changed": (ONE.replace(b"Hello over the list.", b"Hello over the list!"), "fail"),
    "signed-header-changed": (ONE.replace(b"Subject: ARC test", b"Subject: ARC test!"), "fail"),
    "as-key-invalid": (sub(ONE, rb"(ARC-Seal: i=1; cv=none; a=rsa-sha256; d=sealer1.test; )s=s1", rb"\1s=bad"), "fail"),
    "as-bad-domain": (sub(ONE, rb"(ARC-Seal: i=1; cv=none; a=rsa-sha256; )d=sealer1.test", rb"\1d=nowhere.test"), "fail"),
    "seal-changed": (sub(TWO, rb"ARC-Authentication-Results: i=1; sealer1.test", rb"ARC-Authentication-Results: i=1; sealer9.test"), "fail"),
    # Made here: an AMS without c= (simple/simple by default, RFC 6376 §3.5) is valid.
    "ams-default-canonicalization": (
        custom_set(BASE, "i=1; a=rsa-sha256; d={d}; s={s}; h=from:to:subject:date:message-id; bh={bh};",
                   ["from", "to", "subject", "date", "message-id"], "simple", "simple"), "pass"),
    # dkimpy (and the ARC implementations it follows) read a missing c= as relaxed/relaxed:
    # such a set verifies too.
    "ams-no-c-relaxed-signed": (
        custom_set(BASE, "i=1; a=rsa-sha256; d={d}; s={s}; h=from:to:subject; bh={bh};",
                   ["from", "to", "subject"], "relaxed", "relaxed"), "pass"),
    "ams-relaxed-header-only": (
        custom_set(BASE, "i=1; a=rsa-sha256; c=relaxed; d={d}; s={s}; h=from:subject; bh={bh};",
                   ["from", "subject"], "relaxed", "simple"), "pass"),
}


def main():
    # The AMS that signs ARC-Seal (RFC 8617 §4.1.2 forbids it), made on top of ONE's set.
    CASES["ams-signs-arc-seal"] = (
        custom_set(BASE, "i=1; a=rsa-sha256; c=relaxed/relaxed; d={d}; s={s}; h=from:subject:arc-seal; bh={bh};",
                   ["from", "subject", "arc-seal"], "relaxed", "relaxed"), "fail")
    out = []
    for name, (message, expected) in CASES.items():
        cv, _, reason = dkim.arc_verify(message, dnsfunc=dnsfunc)
        # dkimpy answers None (no CV) for a chain an earlier sealer declared failed.
        verdict = {dkim.CV_Pass: "pass", dkim.CV_Fail: "fail", dkim.CV_None: "none"}.get(cv, "fail")
        out.append({"name": name, "message": base64.b64encode(message).decode(), "dkimpy": verdict,
                    "expected": expected, "reason": str(reason)})
    json.dump({"dns": DNS, "cases": out}, sys.stdout, indent=1)


main()
