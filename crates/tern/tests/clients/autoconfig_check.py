#!/usr/bin/env python3
"""Fetches a server's mail client autoconfiguration as the clients do and checks it against
the formats: Thunderbird's config-v1.1.xml (GET, ?emailaddress=), Microsoft's Autodiscover
(POX request POSTed), Apple's .mobileconfig (a property list). Prints what each says, one line
per server entry, then OK."""
import argparse
import plistlib
import urllib.error
import urllib.request
import xml.etree.ElementTree as ET

p = argparse.ArgumentParser()
p.add_argument("--http", required=True, help="host:port of the HTTP listener")
p.add_argument("--email", required=True)
a = p.parse_args()
base = f"http://{a.http}"

# Thunderbird (https://wiki.mozilla.org/Thunderbird:Autoconfiguration:ConfigFileFormat).
with urllib.request.urlopen(f"{base}/.well-known/autoconfig/mail/config-v1.1.xml?emailaddress={a.email}") as r:
    assert r.status == 200
    root = ET.fromstring(r.read())
assert root.tag == "clientConfig" and root.get("version") == "1.1", root.tag
provider = root.find("emailProvider")
domain = a.email.split("@")[1]
assert provider is not None and provider.get("id") == domain
assert provider.findtext("domain") == domain
for kind in ("incomingServer", "outgoingServer"):
    servers = provider.findall(kind)
    assert servers, f"no {kind}"
    for s in servers:
        assert s.get("type") in ("imap", "pop3", "smtp"), s.get("type")
        assert s.findtext("hostname"), "hostname"
        port = int(s.findtext("port"))
        assert 0 < port < 65536
        assert s.findtext("socketType") in ("plain", "SSL", "STARTTLS"), s.findtext("socketType")
        assert s.findtext("authentication") in ("password-cleartext", "password-encrypted", "OAuth2"), "auth"
        assert s.findtext("username") == "%EMAILADDRESS%"
        print(f"thunderbird {s.get('type')} {s.findtext('hostname')}:{port} {s.findtext('socketType')}")

# Microsoft Autodiscover (POX).
request = f"""<?xml version="1.0" encoding="utf-8"?>
<Autodiscover xmlns="http://schemas.microsoft.com/exchange/autodiscover/outlook/requestschema/2006">
  <Request>
    <EMailAddress>{a.email}</EMailAddress>
    <AcceptableResponseSchema>http://schemas.microsoft.com/exchange/autodiscover/outlook/responseschema/2006a</AcceptableResponseSchema>
  </Request>
</Autodiscover>"""
req = urllib.request.Request(f"{base}/autodiscover/autodiscover.xml", data=request.encode(), method="POST",
                             headers={"Content-Type": "text/xml"})
with urllib.request.urlopen(req) as r:
    root = ET.fromstring(r.read())
NS = "{http://schemas.microsoft.com/exchange/autodiscover/responseschema/2006}"
NSA = "{http://schemas.microsoft.com/exchange/autodiscover/outlook/responseschema/2006a}"
assert root.tag == NS + "Autodiscover", root.tag
account = root.find(f"{NSA}Response/{NSA}Account")
assert account is not None and account.findtext(f"{NSA}AccountType") == "email"
assert account.findtext(f"{NSA}Action") == "settings"
types = []
for proto in account.findall(f"{NSA}Protocol"):
    t = proto.findtext(f"{NSA}Type")
    types.append(t)
    assert proto.findtext(f"{NSA}LoginName") == a.email
    assert proto.findtext(f"{NSA}SSL") in ("on", "off")
    print(f"autodiscover {t} {proto.findtext(f'{NSA}Server')}:{proto.findtext(f'{NSA}Port')}")
assert "IMAP" in types and "SMTP" in types, types

# Apple configuration profile.
with urllib.request.urlopen(f"{base}/apple/mail.mobileconfig?emailaddress={a.email}") as r:
    assert r.headers["Content-Type"] == "application/x-apple-aspen-config", r.headers["Content-Type"]
    profile = plistlib.loads(r.read())
assert profile["PayloadType"] == "Configuration" and profile["PayloadVersion"] == 1
mail = profile["PayloadContent"][0]
assert mail["PayloadType"] == "com.apple.mail.managed"
assert mail["EmailAddress"] == a.email and mail["IncomingMailServerUsername"] == a.email
assert isinstance(mail["IncomingMailServerPortNumber"], int) and isinstance(mail["OutgoingMailServerUseSSL"], bool)
print(f"apple {mail['EmailAccountType']} {mail['IncomingMailServerHostName']}:{mail['IncomingMailServerPortNumber']} "
      f"out {mail['OutgoingMailServerPortNumber']}")

# Unknown domains are not answered.
try:
    urllib.request.urlopen(f"{base}/.well-known/autoconfig/mail/config-v1.1.xml?emailaddress=x@elsewhere.example")
    raise SystemExit("an unknown domain was answered")
except urllib.error.HTTPError as e:
    assert e.code == 404, e.code
print("OK")
