//! A private PostgreSQL server for tests: Debian's `initdb` and `pg_ctl` in a temporary
//! directory, reachable only through a unix socket in that directory, started once per test
//! process and stopped when the process ends (a watcher waits for it). Each caller gets a
//! database of its own.
//!
//! PostgreSQL refuses to run as root; as root the server runs as the `postgres` user the
//! Debian package creates.

use crate::PgOptions;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};

pub struct TestServer {
    /// Directory of the server's socket.
    pub socket_dir: PathBuf,
    pub data_dir: PathBuf,
    pub bin_dir: PathBuf,
    pub port: u16,
    /// The CA (a self-signed certificate for `localhost`) of the server's TLS on
    /// 127.0.0.1:`port`.
    pub ca_file: PathBuf,
    /// The user the server runs as when the tests run as root.
    run_as: Option<String>,
    /// `postgres` options given to `pg_ctl start`.
    server_options: String,
}

static SERVER: OnceLock<Result<TestServer, String>> = OnceLock::new();
static DATABASES: AtomicUsize = AtomicUsize::new(0);

/// The PostgreSQL binaries: the newest `/usr/lib/postgresql/N/bin`, else whatever `pg_ctl` is
/// on the PATH.
pub fn bin_dir() -> Option<PathBuf> {
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .flatten()
        .filter_map(|e| Some((e.file_name().to_str()?.parse().ok()?, e.path().join("bin"))))
        .filter(|(_, p): &(u32, PathBuf)| p.join("initdb").exists())
        .collect();
    versions.sort();
    versions.pop().map(|(_, p)| p)
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

impl TestServer {
    fn command(&self, program: &str) -> Command {
        let path = self.bin_dir.join(program);
        match &self.run_as {
            Some(user) => {
                let mut c = Command::new("runuser");
                c.arg("-u").arg(user).arg("--").arg(path);
                c
            }
            None => Command::new(path),
        }
    }

    fn start() -> Result<TestServer, String> {
        let bin_dir = bin_dir().ok_or("PostgreSQL is not installed (Debian package postgresql)")?;
        let root = tempfile::Builder::new()
            .prefix("tern-pg-")
            .tempdir()
            .map_err(|e| format!("temporary directory: {e}"))?
            .keep();
        let run_as = is_root().then(|| "postgres".to_string());
        if let Some(user) = &run_as {
            let status = Command::new("chown")
                .arg("-R")
                .arg(format!("{user}:"))
                .arg(&root)
                .status()
                .map_err(|e| format!("chown: {e}"))?;
            if !status.success() {
                return Err(format!("chown {user} {}: {status}", root.display()));
            }
        }
        // A port free on loopback: besides the socket, the server takes TLS connections there.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map_err(|e| format!("a free port: {e}"))?
            .port();
        let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_string()])
            .map_err(|e| format!("test certificate: {e}"))?;
        let (ca_file, key_file) = (root.join("server.crt"), root.join("server.key"));
        std::fs::write(&ca_file, cert.cert.pem()).map_err(|e| format!("certificate: {e}"))?;
        {
            use std::os::unix::fs::OpenOptionsExt;
            let mut key = std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(&key_file)
                .map_err(|e| format!("key: {e}"))?;
            std::io::Write::write_all(&mut key, cert.signing_key.serialize_pem().as_bytes())
                .map_err(|e| format!("key: {e}"))?;
        }
        if let Some(user) = &run_as {
            let status = Command::new("chown")
                .arg(format!("{user}:"))
                .arg(&ca_file)
                .arg(&key_file)
                .status()
                .map_err(|e| format!("chown: {e}"))?;
            if !status.success() {
                return Err(format!("chown {user} the test certificate: {status}"));
            }
        }
        let server = TestServer {
            server_options: format!(
                "-c listen_addresses=127.0.0.1 -k {} -p {port} -c max_connections=300 -c shared_buffers=32MB \
                 -c fsync=on -c ssl=on -c ssl_cert_file={} -c ssl_key_file={}",
                root.display(),
                ca_file.display(),
                key_file.display()
            ),
            ca_file,
            socket_dir: root.clone(),
            data_dir: root.join("data"),
            bin_dir,
            port,
            run_as,
        };
        let out = server
            .command("initdb")
            .args(["-A", "trust", "-U", "tern", "-E", "UTF8", "--locale=C", "--no-sync", "-D"])
            .arg(&server.data_dir)
            .output()
            .map_err(|e| format!("initdb: {e}"))?;
        if !out.status.success() {
            return Err(format!("initdb failed: {}", String::from_utf8_lossy(&out.stderr)));
        }
        server.start_again()?;
        server.watch_parent(&root);
        Ok(server)
    }

    /// Stops the server and removes its directory once this process is gone.
    fn watch_parent(&self, root: &Path) {
        let stop = match &self.run_as {
            Some(user) => format!("runuser -u {user} -- {}", self.bin_dir.join("pg_ctl").display()),
            None => self.bin_dir.join("pg_ctl").display().to_string(),
        };
        let script = format!(
            "while kill -0 {pid} 2>/dev/null; do sleep 1; done; {stop} -D {data} -m immediate stop >/dev/null 2>&1; rm -rf {root}",
            pid = std::process::id(),
            data = self.data_dir.display(),
            root = root.display(),
        );
        let _ = Command::new("sh")
            .arg("-c")
            .arg(script)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn();
    }

    /// Connection string of one database over TCP with TLS required (verify with `ca_file`).
    pub fn tls_url(&self, database: &str) -> String {
        format!("host=localhost port={} user=tern dbname={database} sslmode=require", self.port)
    }

    /// Connection string of one database on this server.
    pub fn url(&self, database: &str) -> String {
        format!("host={} port={} user=tern dbname={database}", self.socket_dir.display(), self.port)
    }

    /// Starts the (stopped) server.
    pub fn start_again(&self) -> Result<(), String> {
        let log = self.socket_dir.join("log");
        let out = self
            .command("pg_ctl")
            .arg("-D")
            .arg(&self.data_dir)
            .arg("-o")
            .arg(&self.server_options)
            .arg("-l")
            .arg(&log)
            .args(["-w", "start"])
            .output()
            .map_err(|e| format!("pg_ctl: {e}"))?;
        if !out.status.success() {
            let log = std::fs::read_to_string(&log).unwrap_or_default();
            return Err(format!("pg_ctl start failed: {}{log}", String::from_utf8_lossy(&out.stderr)));
        }
        Ok(())
    }

    /// Stops the server (for tests of an unavailable database); `start_again` brings it back.
    pub fn stop(&self) -> Result<(), String> {
        let out = self
            .command("pg_ctl")
            .arg("-D")
            .arg(&self.data_dir)
            .args(["-m", "fast", "-w", "stop"])
            .output()
            .map_err(|e| format!("pg_ctl: {e}"))?;
        if out.status.success() { Ok(()) } else { Err(String::from_utf8_lossy(&out.stderr).into_owned()) }
    }
}

/// The shared test server, started on first use.
pub fn server() -> Result<&'static TestServer, String> {
    SERVER.get_or_init(TestServer::start).as_ref().map_err(|e| e.clone())
}

/// A new, empty database on the test server.
pub async fn database() -> Result<PgOptions, String> {
    let server = server()?;
    let name = format!("t{}_{}", std::process::id(), DATABASES.fetch_add(1, Ordering::SeqCst));
    let (client, connection) = tokio_postgres::connect(&server.url("postgres"), tokio_postgres::NoTls)
        .await
        .map_err(|e| format!("connect to the test server: {e}"))?;
    let driver = tokio::spawn(connection);
    client
        .batch_execute(&format!("CREATE DATABASE {name} ENCODING 'UTF8' TEMPLATE template0"))
        .await
        .map_err(|e| format!("create database: {e}"))?;
    drop(client);
    let _ = driver.await;
    Ok(PgOptions { url: server.url(&name), pool_size: 8, ca_file: None })
}
