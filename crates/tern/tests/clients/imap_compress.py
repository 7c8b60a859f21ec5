#!/usr/bin/env python3
"""COMPRESS=DEFLATE (RFC 4978) against Tern with a hand-written client: raw deflate both ways,
sync flush after each command. Independent of Tern's own deflate code."""
import argparse
import socket
import zlib

p = argparse.ArgumentParser()
p.add_argument("--port", type=int, required=True)
a = p.parse_args()

s = socket.create_connection(("127.0.0.1", a.port), timeout=10)
f = s.makefile("rb")


def send(line):
    s.sendall(line.encode() + b"\r\n")


def until(tag):
    out = []
    while True:
        line = f.readline()
        assert line, "connection closed"
        out.append(line)
        if line.startswith(tag.encode() + b" "):
            return out


assert f.readline().startswith(b"* OK")
send("a LOGIN alice@example.test secret")
assert until("a")[-1].startswith(b"a OK")
send("b COMPRESS DEFLATE")
assert until("b")[-1].startswith(b"b OK"), "COMPRESS refused"
comp = zlib.compressobj(6, zlib.DEFLATED, -15)
decomp = zlib.decompressobj(-15)
buf = b""


def csend(line):
    s.sendall(comp.compress(line.encode() + b"\r\n") + comp.flush(zlib.Z_SYNC_FLUSH))


def cuntil(tag):
    global buf
    while True:
        while b"\r\n" in buf:
            line, buf = buf.split(b"\r\n", 1)
            if line.startswith(tag.encode() + b" "):
                return line
        data = s.recv(65536)
        assert data, "connection closed"
        buf += decomp.decompress(data)


csend("c SELECT INBOX")
assert cuntil("c").startswith(b"c OK"), "SELECT over compression failed"
csend("d FETCH 1 (BODY[])")
done = cuntil("d")
assert done.startswith(b"d OK"), done
csend("e COMPRESS DEFLATE")
assert b"COMPRESSIONACTIVE" in cuntil("e")
csend("f LOGOUT")
cuntil("f")
print("compressed fetch ok")
