#!/usr/bin/env python3
"""The web admin in a real browser: Debian's Chromium driven by Playwright.

Usage: webadmin.py CONFIG.json, with base (http://127.0.0.1:PORT), admin, password, smtp_port,
submission_port, user_password, shots (a directory for screenshots). Prints "ok" at the end;
any failed expectation raises (the test sees the traceback and a non-zero exit).
"""
import http.server
import json
import re
import smtplib
import ssl
import sys
import threading

from playwright.sync_api import expect, sync_playwright

conf = json.load(open(sys.argv[1]))
BASE = conf["base"]
SHOTS = conf["shots"]
expect.set_options(timeout=15_000)


def shot(page, name):
    page.screenshot(path=f"{SHOTS}/{name}.png", full_page=True)


def number(page, selector):
    return float(page.locator(selector).inner_text().strip() or 0)


def send(port, rcpt, subject, login=None):
    if login:
        s = smtplib.SMTP("127.0.0.1", port, timeout=30)
        s.starttls(context=ssl._create_unverified_context())
        s.login(*login)
    else:
        s = smtplib.SMTP("127.0.0.1", port, timeout=30)
    sender = login[0] if login else "someone@remote.test"
    s.sendmail(sender, [rcpt], f"From: {sender}\r\nTo: {rcpt}\r\nSubject: {subject}\r\nMessage-ID: <{subject}@remote.test>\r\n\r\nhello\r\n")
    s.quit()


# A page on another site (localhost is not 127.0.0.1 to the browser) that posts a form to the
# admin: a CSRF attempt.
EVIL = f"""<!doctype html><html><body>
<form id=f method=post action="{BASE}/admin/users">
<input name=email value="mallory@shop.test"><input name=password value="pwned12345"><input name=admin value=on>
</form><script>document.getElementById('f').submit()</script></body></html>"""


class Evil(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = EVIL.encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


evil = http.server.HTTPServer(("127.0.0.1", 0), Evil)
threading.Thread(target=evil.serve_forever, daemon=True).start()
EVIL_URL = f"http://localhost:{evil.server_address[1]}/"

STATE = {}


def main(p):
    browser = p.chromium.launch(executable_path=conf.get("chromium", "/usr/bin/chromium"), args=["--no-sandbox"])
    context = browser.new_context()
    page = context.new_page()
    STATE["page"] = page
    errors = []
    # A script or style the CSP blocks shows up as a console error.
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)

    # Sign in.
    page.goto(BASE + "/admin")
    expect(page).to_have_url(re.compile(r"/admin/login$"))
    shot(page, "01-sign-in")
    page.get_by_label("E-mail address").fill(conf["admin"])
    page.get_by_label("Password").fill("wrong password")
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("alert")).to_contain_text("Wrong address or password")
    page.get_by_label("E-mail address").fill(conf["admin"])
    page.get_by_label("Password").fill(conf["password"])
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Dashboard")
    session = [c for c in context.cookies() if c["name"] == "tern_session"]
    assert session and session[0]["httpOnly"] and session[0]["secure"] and session[0]["sameSite"] == "Strict", session
    received_before = number(page, "#received-hour")
    shot(page, "02-dashboard")

    # A domain, and the DNS records it needs with what the (stub) DNS publishes.
    page.get_by_role("link", name="Domains").click()
    page.get_by_label("Domain name").fill("shop.test")
    page.get_by_role("button", name="Add domain").click()
    # The page checks the records through the resolver before it is sent.
    expect(page.get_by_role("heading", level=1)).to_have_text("Domain shop.test", timeout=60_000)
    expect(page.get_by_role("status")).to_contain_text("Added shop.test")
    records = page.locator("table.records")
    expect(records).to_contain_text("MX")
    expect(records).to_contain_text("v=spf1 mx -all")
    expect(records).to_contain_text("_dmarc.shop.test")
    checks = page.locator("#checks")
    expect(checks).to_contain_text("MX")
    expect(checks.locator("tr.status-ok").first).to_contain_text("MX")  # the stub publishes it
    expect(checks).to_contain_text("missing")  # and nothing else
    page.get_by_role("button", name="Generate DKIM keys").click()
    expect(page.get_by_role("status")).to_contain_text("New DKIM keys for shop.test", timeout=60_000)
    expect(records).to_contain_text("._domainkey.shop.test")
    shot(page, "03-domain-dns")

    # A user.
    page.get_by_role("link", name="Users").click()
    page.get_by_label("E-mail address").fill("carol@shop.test")
    page.get_by_label("Password (leave empty to generate one)").fill(conf["user_password"])
    page.get_by_role("button", name="Add user").click()
    expect(page.get_by_role("status")).to_contain_text("Added carol@shop.test")
    expect(page.locator("#users")).to_contain_text("carol@shop.test")
    shot(page, "04-users")

    # Mail to the user over SMTP shows in the dashboard's counters.
    send(conf["smtp_port"], "carol@shop.test", "web-admin-test")
    page.get_by_role("link", name="Dashboard").click()
    expect(page.locator("#received-hour")).not_to_have_text(str(int(received_before)), timeout=30_000)
    assert number(page, "#received-hour") >= received_before + 1
    # The script redraws the chart from /admin/dashboard.json.
    expect(page.locator("#chart svg rect").first).to_be_attached(timeout=30_000)
    shot(page, "05-dashboard-after-mail")

    # The logs find the delivery by address and by message id.
    page.get_by_role("link", name="Logs").click()
    page.get_by_label("Address, queue id or message id").fill("web-admin-test@remote.test")
    page.get_by_role("button", name="Search").click()
    expect(page.locator("#logs")).to_contain_text("message accepted")
    expect(page.locator("#logs")).to_contain_text("carol@shop.test")
    shot(page, "06-logs")

    # A queued message (its MX refuses connections): retried from the queue page.
    send(conf["submission_port"], "dave@remote.test", "queued", login=("alice@example.test", "secret"))
    page.get_by_role("link", name="Queue").click()
    expect(page.locator("#queue")).to_contain_text("dave@remote.test", timeout=20_000)
    page.get_by_role("button", name="Retry now").first.click()
    expect(page.get_by_role("status")).to_contain_text("is due now")
    shot(page, "07-queue")

    # The CSRF attempts: a form without the token from this site, and one from another site.
    status = page.evaluate(
        """async () => (await fetch('/admin/users', {method: 'POST', headers: {'Content-Type':
        'application/x-www-form-urlencoded'}, body: 'email=eve%40shop.test&password=pwned12345'})).status"""
    )
    assert status == 403, status
    evil_page = context.new_page()
    evil_page.goto(EVIL_URL)
    evil_page.wait_for_url(re.compile(r"/admin/users$"))
    expect(evil_page.get_by_role("alert")).to_contain_text("sign in again")
    shot(evil_page, "08-csrf-refused")
    evil_page.close()
    page.get_by_role("link", name="Users").click()
    expect(page.locator("#users")).not_to_contain_text("mallory@shop.test")
    expect(page.locator("#users")).not_to_contain_text("eve@shop.test")

    # Sign out; the old cookie replayed is refused.
    old = [c for c in context.cookies() if c["name"] == "tern_session"]
    page.get_by_role("button", name="Sign out").click()
    expect(page).to_have_url(re.compile(r"/admin/login$"))
    replay = browser.new_context()
    replay.add_cookies(old)
    replayed = replay.new_page()
    replayed.goto(BASE + "/admin/users")
    expect(replayed).to_have_url(re.compile(r"/admin/login$"))
    replay.close()

    # The user signs in and sees only their own account: quota, app passwords, vacation.
    page.get_by_label("E-mail address").fill("carol@shop.test")
    page.get_by_label("Password").fill(conf["user_password"])
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("My account")
    expect(page.locator("#quota")).to_contain_text("1 messages")
    assert page.get_by_role("link", name="Users").count() == 0
    page.get_by_label("New app password for").fill("phone")
    page.get_by_role("button", name="Make app password").click()
    expect(page.locator("#secret")).to_have_text(re.compile(r"^([a-z2-9]{4}-){5}[a-z2-9]{4}$"))
    print("app-password", page.locator("#secret").inner_text(), flush=True)
    page.get_by_label("Answer mail while I am away").check()
    page.get_by_label("Subject").fill("Out of office")
    page.get_by_label("Message").fill("Back on Monday.")
    page.get_by_role("button", name="Save").click()
    expect(page.get_by_role("status")).to_contain_text("Vacation reply on")
    expect(page.get_by_label("Subject")).to_have_value("Out of office")
    shot(page, "09-my-account")
    admin_page = context.new_page()
    admin_page.goto(BASE + "/admin/users")
    expect(admin_page.get_by_role("alert")).to_contain_text("administrators")
    admin_page.close()
    page.get_by_role("button", name="Sign out").click()

    assert not [e for e in errors if "Content Security Policy" in e], errors
    browser.close()


with sync_playwright() as p:
    try:
        main(p)
    except Exception:
        # What the browser showed when it went wrong.
        if "page" in STATE:
            try:
                shot(STATE["page"], "failure")
                print(STATE["page"].url, STATE["page"].content()[:3000], file=sys.stderr)
            except Exception:
                pass
        raise

print("ok", flush=True)
