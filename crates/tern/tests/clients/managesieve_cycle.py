"""A full ManageSieve cycle with sievelib (Debian's python3-sievelib): log in (STARTTLS,
PLAIN), upload, check, list, activate, get, rename, delete; a bad script refused with its
line. Prints one line per step; exits non-zero on the first surprise."""
import ssl
import sys

from sievelib.managesieve import Client

host, port, user, password = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]

# The test server's certificate is self-signed.
ssl._create_default_https_context = ssl._create_unverified_context
_wrap = ssl.SSLContext.wrap_socket


def fail(step, client):
    print(f"FAILED {step}: {client.errmsg!r}")
    sys.exit(1)


c = Client(host, port)
if not c.connect(user, password, starttls=True, authmech="PLAIN"):
    fail("login", c)
print("login ok")
print("implementation", c.get_implementation())
exts = c.get_sieve_capabilities()
for needed in ("fileinto", "vacation", "variables", "imap4flags"):
    if needed not in exts:
        print("FAILED capabilities:", exts)
        sys.exit(1)
print("sieve extensions", len(exts))

script = 'require ["fileinto"];\r\nif header :contains "subject" "lists" { fileinto "Lists"; }\r\n'
if not c.havespace("rules", len(script)):
    fail("havespace", c)
if not c.putscript("rules", script):
    fail("putscript", c)
if not c.checkscript(script):
    fail("checkscript", c)
bad = 'require ["fileinto"];\r\nkeep;\r\nfileinto;\r\n'
if c.putscript("bad", bad):
    print("FAILED a bad script was stored")
    sys.exit(1)
print("bad script refused:", c.errmsg.decode() if isinstance(c.errmsg, bytes) else c.errmsg)
if not c.putscript("spare", "keep;\r\n"):
    fail("putscript spare", c)
if not c.setactive("rules"):
    fail("setactive", c)
active, others = c.listscripts()
print("active", active, "others", sorted(others))
if active != "rules" or sorted(others) != ["spare"]:
    sys.exit(1)
got = c.getscript("rules")
# (sievelib gives the script back with its line ends as LF and the last one cut.)
if got.replace("\r\n", "\n").strip() != script.replace("\r\n", "\n").strip():
    print("FAILED getscript returned", repr(got))
    sys.exit(1)
print("getscript ok")
if c.deletescript("rules"):
    print("FAILED the active script was deleted")
    sys.exit(1)
print("active delete refused")
if not c.renamescript("spare", "renamed"):
    fail("renamescript", c)
if not c.deletescript("renamed"):
    fail("deletescript", c)
if not c.setactive(""):
    fail("deactivate", c)
active, others = c.listscripts()
print("after: active", active, "others", sorted(others))
c.logout()
print("done")
