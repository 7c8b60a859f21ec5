//! Issue 12: certificates from an ACME CA, tested against pebble (Let's Encrypt's test CA,
//! from Debian) on loopback: issuance over TLS-ALPN-01 and HTTP-01, a name whose challenge
//! fails left out, renewal of short-lived certificates while the listeners run.

mod common;

use common::*;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

struct Pebble {
    child: Child,
    dir: tempfile::TempDir,
    management: u16,
    /// The CA that signed pebble's own HTTPS certificate (for the ACME API).
    ca: PathBuf,
    port: u16,
    log: PathBuf,
}

impl Drop for Pebble {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Pebble {
    fn start(dns_port: u16, http_port: u16, tls_port: u16, validity_seconds: u64) -> Pebble {
        let dir = tempfile::tempdir().unwrap();
        let (ca, cert, key) = ca_signed_names(dir.path(), &["localhost"]);
        let (port, management) = (free_port(), free_port());
        let config = serde_json::json!({"pebble": {
            "listenAddress": format!("127.0.0.1:{port}"),
            "managementListenAddress": format!("127.0.0.1:{management}"),
            "certificate": cert, "privateKey": key,
            "httpPort": http_port, "tlsPort": tls_port,
            "ocspResponderURL": "", "externalAccountBindingRequired": false,
            "certificateValidityPeriod": validity_seconds,
        }});
        let config_path = dir.path().join("pebble.json");
        std::fs::write(&config_path, config.to_string()).unwrap();
        let log = dir.path().join("pebble.log");
        let child = Command::new("pebble")
            .arg("-config")
            .arg(&config_path)
            .arg("-dnsserver")
            .arg(format!("127.0.0.1:{dns_port}"))
            .env("PEBBLE_VA_NOSLEEP", "1")
            .env("PEBBLE_WFE_NONCEREJECT", "0")
            .stdout(std::fs::File::create(&log).unwrap())
            .stderr(Stdio::null())
            .spawn()
            .expect("pebble (the test command installs it)");
        eventually(Duration::from_secs(20), "pebble listening", || {
            std::net::TcpStream::connect(("127.0.0.1", port)).ok().map(|_| ())
        });
        Pebble { child, dir, management, ca, port, log }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Pebble's issuing root (random per run), from its management interface.
    fn root(&self) -> PathBuf {
        let path = self.dir.path().join("root.pem");
        let out = Command::new("curl")
            .args(["-sf", "--cacert"])
            .arg(&self.ca)
            .arg(format!("https://localhost:{}/roots/0", self.management))
            .output()
            .expect("curl (the test command installs it)");
        assert!(
            out.status.success() && out.stdout.starts_with(b"-----BEGIN"),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        std::fs::write(&path, &out.stdout).unwrap();
        path
    }
}

/// `openssl s_client`'s verdict on the chain a listener presents for `name`, checked against
/// `root` and for the name.
fn verify(port: u16, name: &str, root: &std::path::Path) -> String {
    let out = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "openssl s_client -connect 127.0.0.1:{port} -servername {name} -verify_hostname {name} -CAfile '{}' </dev/null 2>/dev/null | grep -m1 'Verify return code'",
            root.display()
        ))
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Issuer, serial and names of the certificate a TLS listener presents for `name`.
fn presented(port: u16, name: &str) -> String {
    let out = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "openssl s_client -connect 127.0.0.1:{port} -servername {name} </dev/null 2>/dev/null \
             | openssl x509 -noout -issuer -serial -dates -ext subjectAltName 2>/dev/null"
        ))
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn serial(text: &str) -> String {
    text.lines().find_map(|l| l.strip_prefix("serial=")).unwrap_or_default().to_string()
}

fn acme_config(listen: &str, dns_port: u16, pebble: &Pebble, extra: &str) -> String {
    format!(
        "{listen}\n[dns]\nnameservers = [\"127.0.0.1:{dns_port}\"]\ntimeout_seconds = 2\n[acme]\nenabled = true\ndirectory = \"https://localhost:{}/dir\"\nca_file = \"{}\"\ncontact = [\"mailto:admin@example.test\"]\ncheck_interval_seconds = 1\n{extra}",
        pebble.port,
        pebble.ca.display()
    )
}

/// `f` until it gives something, for at most `timeout`.
fn within<T>(timeout: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = std::time::Instant::now() + timeout;
    while std::time::Instant::now() < deadline {
        if let Some(v) = f() {
            return Some(v);
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    None
}

fn have_pebble() -> bool {
    let found = have("pebble");
    assert!(
        found || std::env::var_os("TERN_ALLOW_MISSING_PEBBLE").is_some(),
        "pebble is missing: ./scripts/test.sh installs it"
    );
    found
}

#[test]
fn tls_alpn_issuance_leaves_out_a_failing_name_and_renews() {
    if !have_pebble() {
        return;
    }
    let https_port = free_port();
    // autoconfig.example.test has no address: its challenge fails.
    let world = World::start(
        &[("mx.tern.test", "A", "127.0.0.1"), ("mta-sts.example.test", "A", "127.0.0.1")],
        None,
        serde_json::json!({}),
    );
    let pebble = Pebble::start(world.dns_port, free_port(), https_port, 30);
    let s = TestServer::started(&acme_config(
        &format!("https = [\"127.0.0.1:{https_port}\"]"),
        world.dns_port,
        &pebble,
        "",
    ));
    let first = within(Duration::from_secs(60), || {
        let text = presented(s.imaps.port(), HOSTNAME);
        text.contains("Pebble Intermediate").then_some(text)
    })
    .unwrap_or_else(|| panic!("no certificate from pebble:\n{}\n{}", s.log(), pebble.log()));
    assert!(first.contains("DNS:mx.tern.test") && first.contains("DNS:mta-sts.example.test"), "{first}");
    assert!(!first.contains("autoconfig.example.test"), "the failed name is left out: {first}");
    let log = s.log();
    assert!(log.contains("challenges failed") && log.contains("autoconfig.example.test"), "{log}");
    // The chain verifies up to pebble's root, for both names.
    let root = pebble.root();
    assert_eq!(verify(s.imaps.port(), HOSTNAME, &root), "Verify return code: 0 (ok)");
    assert_eq!(verify(https_port, "mta-sts.example.test", &root), "Verify return code: 0 (ok)");
    // Every TLS listener presents it (the HTTPS one too, for the MTA-STS host).
    assert_eq!(serial(&presented(https_port, "mta-sts.example.test")), serial(&first));
    assert!(s.data_dir().join("acme/account.json").exists() && s.data_dir().join("acme/cert.pem").exists());

    // 30-second certificates are renewed with a third of their life left, without a restart.
    let renewed = eventually(Duration::from_secs(45), "a renewed certificate", || {
        let text = presented(s.imaps.port(), HOSTNAME);
        (text.contains("Pebble Intermediate") && serial(&text) != serial(&first)).then_some(text)
    });
    assert!(renewed.contains("DNS:mta-sts.example.test"), "{renewed}");
    // Once per third of the life, not more.
    let orders = s.log().matches("ACME: new certificate in use").count();
    assert_eq!(orders, 2, "{}", s.log());
    let (code, metrics) = s.http_get("/metrics");
    assert_eq!(code, 200);
    assert!(metrics.contains("tern_acme_orders_total{result=\"ok\"}"), "{metrics}");
    assert!(metrics.contains("tern_certificate_expiry_timestamp_seconds"), "{metrics}");
    drop(pebble);
}

#[test]
fn http_challenge_issuance_and_a_failed_order_is_reported() {
    if !have_pebble() {
        return;
    }
    let http_port = free_port();
    let world = World::start(&[("mx.tern.test", "A", "127.0.0.1")], None, serde_json::json!({}));
    let pebble = Pebble::start(world.dns_port, http_port, free_port(), 3600);
    let listen = format!("https = [\"127.0.0.1:{}\"]\npublic_http = [\"127.0.0.1:{http_port}\"]", free_port());
    let s = TestServer::started(&acme_config(
        &listen,
        world.dns_port,
        &pebble,
        "challenge = \"http-01\"\nnames = [\"mx.tern.test\"]\n",
    ));
    let cert = eventually(Duration::from_secs(60), "a certificate from pebble", || {
        let text = presented(s.submissions.port(), HOSTNAME);
        text.contains("Pebble Intermediate").then_some(text)
    });
    assert!(cert.contains("DNS:mx.tern.test"), "{cert}");
    assert!(pebble.log().contains("Attempting to validate w/ HTTP: http://mx.tern.test:"), "{}", pebble.log());

    // A hostname whose challenge cannot succeed: no certificate, the failure logged and
    // counted, the self-signed one still in use.
    let world2 = World::start(&[], None, serde_json::json!({}));
    let pebble2 = Pebble::start(world2.dns_port, http_port, free_port(), 3600);
    let listen2 = format!("https = [\"127.0.0.1:{}\"]\npublic_http = [\"127.0.0.1:{}\"]", free_port(), free_port());
    let broken = TestServer::started(&acme_config(&listen2, world2.dns_port, &pebble2, "challenge = \"http-01\"\n"));
    eventually(Duration::from_secs(60), "the failure reported", || {
        let (_, metrics) = broken.http_get("/metrics");
        metrics.contains("tern_acme_orders_total{result=\"failed\"}").then_some(())
    });
    assert!(broken.log().contains("ACME: no certificate obtained"), "{}", broken.log());
    assert!(presented(broken.imaps.port(), HOSTNAME).contains("Tern (self-signed)"));
}
