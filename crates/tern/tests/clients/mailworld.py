#!/usr/bin/env python3
"""The outside world for delivery tests, on loopback only: a stub DNS server (dnslib), an
SMTP sink that plays remote MX hosts (aiosmtpd), and an HTTPS server for MTA-STS policies.

    mailworld.py CONFIG.json

CONFIG:
  {"dns_port": N, "records": [[name, type, value], ...], "ad": true|false,
   "sink": {"port": N, "dir": PATH, "tls_cert": PEM, "tls_key": PEM, "chunking": bool,
            "no_8bitmime": bool},
   "https": {"port": N, "cert": PEM, "key": PEM, "files": {"/path": "body"}}}

Record types: MX ("10 host."), A, AAAA, TXT, PTR, TLSA ("3 1 1 hex"). Names end without a
dot. Names that start with "servfail" get SERVFAIL (a temporary DNS failure).
The sink decides per recipient by its local part:
  tempfail*  -> 451 4.3.0 the first time that exact address is seen, then accepted
  reject*    -> 550 5.1.1 User unknown
  slow*      -> accepted after 2 seconds
  stall*     -> accepted after 8 seconds (a delivery still in progress when its sender dies)
  anything else -> accepted
Each accepted message is written to DIR/<n>.eml with DIR/<n>.json (envelope, TLS, params).
Prints "ready" once everything listens. Stops on SIGTERM or when stdin closes.
"""

import asyncio
import json
import os
import signal
import socketserver
import ssl
import sys
import threading
import time

from dnslib import QTYPE, RCODE, RR, DNSRecord, A, AAAA, MX, TXT, RD
from dnslib.dns import DNSHeader

try:
    from aiosmtpd.controller import Controller
    from aiosmtpd.smtp import SMTP as SMTPServer
except ImportError:  # pragma: no cover
    Controller = None


class TLSA(RD):
    """TLSA RDATA (RFC 6698 §2.1), which dnslib does not know."""

    def __init__(self, usage, selector, matching, data):
        self.usage, self.selector, self.matching, self.data = usage, selector, matching, data

    def pack(self, buffer):
        buffer.pack("!BBB", self.usage, self.selector, self.matching)
        buffer.append(self.data)

    def __repr__(self):
        return "%d %d %d %s" % (self.usage, self.selector, self.matching, self.data.hex())


def make_rr(name, rtype, value):
    if rtype == "A":
        rdata = A(value)
    elif rtype == "AAAA":
        rdata = AAAA(value)
    elif rtype == "MX":
        pref, host = value.split(None, 1)
        rdata = MX(host, int(pref))
    elif rtype == "TXT":
        chunks = [value[i:i + 255] for i in range(0, len(value), 255)] or [""]
        rdata = TXT(chunks)
    elif rtype == "PTR":
        from dnslib import PTR
        rdata = PTR(value)
    elif rtype == "TLSA":
        u, s, m, hexdata = value.split()
        rdata = TLSA(int(u), int(s), int(m), bytes.fromhex(hexdata))
        return RR(name, 52, rdata=rdata, ttl=60)
    else:
        raise ValueError(rtype)
    return RR(name, getattr(QTYPE, rtype), rdata=rdata, ttl=60)


class Dns:
    def __init__(self, records, ad):
        self.records = records
        self.ad = ad

    def answer(self, data):
        request = DNSRecord.parse(data)
        reply = DNSRecord(DNSHeader(id=request.header.id, qr=1, aa=1, ra=1, rd=request.header.rd), q=request.q)
        qname = str(request.q.qname).rstrip(".").lower()
        qtype = QTYPE[request.q.qtype]
        # Names under "servfail." (or starting with it) fail: temporary DNS errors.
        if qname.startswith("servfail") or ".servfail." in qname:
            reply.header.rcode = RCODE.SERVFAIL
            return reply.pack()
        names = {n.lower() for n, _, _ in self.records}
        found = False
        for name, rtype, value in self.records:
            if name.lower() == qname and rtype == qtype:
                reply.add_answer(make_rr(name + ".", rtype, value))
                found = True
        if not found and qname not in names:
            reply.header.rcode = RCODE.NXDOMAIN
        if self.ad:
            reply.header.ad = 1
        return reply.pack()


def serve_dns(port, dns):
    class Udp(socketserver.BaseRequestHandler):
        def handle(self):
            data, sock = self.request
            try:
                sock.sendto(dns.answer(data), self.client_address)
            except Exception as e:  # keep serving
                print("dns error", e, file=sys.stderr)

    class Tcp(socketserver.StreamRequestHandler):
        def handle(self):
            try:
                length = int.from_bytes(self.rfile.read(2), "big")
                answer = dns.answer(self.rfile.read(length))
                self.wfile.write(len(answer).to_bytes(2, "big") + answer)
            except Exception as e:
                print("dns error", e, file=sys.stderr)

    socketserver.ThreadingUDPServer.allow_reuse_address = True
    socketserver.ThreadingTCPServer.allow_reuse_address = True
    udp = socketserver.ThreadingUDPServer(("127.0.0.1", port), Udp)
    tcp = socketserver.ThreadingTCPServer(("127.0.0.1", port), Tcp)
    for server in (udp, tcp):
        threading.Thread(target=server.serve_forever, daemon=True).start()


class Sink:
    def __init__(self, directory):
        self.directory = directory
        self.seen = set()
        self.count = 0
        os.makedirs(directory, exist_ok=True)

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        local = address.split("@")[0].lower()
        if local.startswith("reject"):
            return "550 5.1.1 <%s>: User unknown" % address
        if local.startswith("tempfail") and address not in self.seen:
            self.seen.add(address)
            return "451 4.3.0 <%s>: Try again later" % address
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.append(rcpt_options)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server, session, envelope):
        if any(r.split("@")[0].lower().startswith("stall") for r in envelope.rcpt_tos):
            await asyncio.sleep(8)
        elif any(r.split("@")[0].lower().startswith("slow") for r in envelope.rcpt_tos):
            await asyncio.sleep(2)
        self.count += 1
        n = self.count
        base = os.path.join(self.directory, "%06d" % n)
        with open(base + ".eml.tmp", "wb") as f:
            f.write(envelope.original_content or envelope.content)
        tls = None
        if session.ssl is not None:
            tls = session.ssl.get("cipher") if isinstance(session.ssl, dict) else None
        info = {
            "mail_from": envelope.mail_from,
            "mail_options": envelope.mail_options,
            "rcpt_tos": envelope.rcpt_tos,
            "rcpt_options": envelope.rcpt_options,
            "tls": session.ssl is not None,
            "cipher": str(tls),
            "helo": session.host_name,
        }
        with open(base + ".json.tmp", "w") as f:
            json.dump(info, f)
        os.rename(base + ".json.tmp", base + ".json")
        os.rename(base + ".eml.tmp", base + ".eml")
        return "250 2.0.0 Ok: queued as sink%d" % n


class SevenBitSink(Sink):
    """A receiver that does not announce 8BITMIME (RFC 6152)."""

    async def handle_EHLO(self, server, session, envelope, hostname, responses):
        session.host_name = hostname
        return [r for r in responses if "8BITMIME" not in r.upper()]


def serve_sink(conf):
    handler = SevenBitSink(conf["dir"]) if conf.get("no_8bitmime") else Sink(conf["dir"])
    tls_context = None
    if conf.get("tls_cert"):
        tls_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        tls_context.load_cert_chain(conf["tls_cert"], conf["tls_key"])

    class Server(SMTPServer):
        pass

    kwargs = dict(
        hostname="127.0.0.1",
        port=conf["port"],
        server_hostname="sink.remote.test",
        decode_data=False,
        enable_SMTPUTF8=True,
        ident="Tern test sink",
    )
    if tls_context is not None:
        kwargs["tls_context"] = tls_context
    controller = Controller(handler, **kwargs)
    controller.start()
    return controller


def serve_https(conf):
    import http.server

    files = conf["files"]

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            body = files.get(self.path)
            if body is None:
                self.send_response(404)
                self.end_headers()
                return
            data = body.encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args):
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", conf["port"]), Handler)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(conf["cert"], conf["key"])
    httpd.socket = context.wrap_socket(httpd.socket, server_side=True)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()


def main():
    with open(sys.argv[1]) as f:
        conf = json.load(f)
    if "dns_port" in conf:
        serve_dns(conf["dns_port"], Dns(conf.get("records", []), conf.get("ad", False)))
    if conf.get("sink") and conf.get("sink_no_8bitmime"):
        conf["sink"]["no_8bitmime"] = True
    controller = serve_sink(conf["sink"]) if conf.get("sink") else None
    if conf.get("https"):
        serve_https(conf["https"])
    print("ready", flush=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    threading.Thread(target=lambda: (sys.stdin.read(), stop.set()), daemon=True).start()
    while not stop.is_set():
        time.sleep(0.1)
    if controller is not None:
        controller.stop()


if __name__ == "__main__":
    main()
