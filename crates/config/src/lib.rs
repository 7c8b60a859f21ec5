//! Tern's configuration.
//!
//! One TOML file, every key optional: a missing file or an empty file gives the embedded
//! defaults. Unknown keys and bad values are refused with a message that names the key
//! (serde's `deny_unknown_fields` plus [`Config::validate`]). Every key is documented in
//! `docs/config.md`; a test there checks that the documented example parses.

use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

mod listen;
pub use listen::{Listen, Service};

/// Errors while loading or validating configuration. Each names the file or key at fault.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The I/O error is part of the message, not a `source`: shown once.
    #[error("cannot read config file {path}: {error}")]
    Read { path: PathBuf, error: std::io::Error },
    #[error("config file {path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("config key `{key}`: {message}")]
    Invalid { key: String, message: String },
}

/// The system-wide configuration file, read when no other is named.
pub const SYSTEM_CONFIG: &str = "/etc/tern/tern.toml";

/// The configuration file of a user who is not root (`tern setup` run as a user writes it):
/// `$XDG_CONFIG_HOME/tern/tern.toml`, else `~/.config/tern/tern.toml`; `None` for root, whose
/// file is [`SYSTEM_CONFIG`].
pub fn user_config() -> Option<PathBuf> {
    if is_root() {
        return None;
    }
    if let Some(xdg) = std::env::var_os("XDG_CONFIG_HOME").map(PathBuf::from).filter(|p| p.is_absolute()) {
        return Some(xdg.join("tern/tern.toml"));
    }
    std::env::var_os("HOME").map(PathBuf::from).filter(|p| p.is_absolute()).map(|h| h.join(".config/tern/tern.toml"))
}

/// Whether this process runs as root (`/proc/self` belongs to the effective user).
pub fn is_root() -> bool {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self").map(|m| m.uid() == 0).unwrap_or(false)
}

/// Where the data lives when the configuration does not say: `$XDG_DATA_HOME/tern` when that
/// is set, else `/var/lib/tern` for root (the system service), else `~/.local/share/tern`. It
/// never depends on the directory a command is run from, so every command finds the server's
/// data.
pub fn default_data_dir() -> PathBuf {
    if let Some(xdg) = std::env::var_os("XDG_DATA_HOME").map(PathBuf::from).filter(|p| p.is_absolute()) {
        return xdg.join("tern");
    }
    match std::env::var_os("HOME").map(PathBuf::from).filter(|p| p.is_absolute()) {
        Some(home) if !is_root() => home.join(".local/share/tern"),
        _ => PathBuf::from("/var/lib/tern"),
    }
}

fn invalid(key: &str, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid { key: key.to_string(), message: message.into() }
}

/// The whole configuration.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// The name this server announces in greetings, EHLO and Received headers.
    pub hostname: String,
    /// Where the store, the generated certificate and the admin socket live.
    pub data_dir: PathBuf,
    pub listen: Listen,
    pub tls: Tls,
    pub smtp: Smtp,
    pub imap: Imap,
    pub pop3: Pop3,
    pub managesieve: ManageSieve,
    pub sieve: Sieve,
    pub auth: Auth,
    pub limits: Limits,
    pub directory: Directory,
    pub store: Store,
    pub dns: Dns,
    pub delivery: Delivery,
    pub dkim: Dkim,
    pub inbound: Inbound,
    pub spam: Spam,
    pub quarantine: Quarantine,
    pub alerts: Alerts,
    /// Outside scanners (`[[scanner]]` tables), asked about every message concurrently.
    #[serde(rename = "scanner")]
    pub scanners: Vec<Scanner>,
    pub mta_sts: MtaSts,
    pub acme: Acme,
    pub server: Server,
    pub log: Log,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            hostname: system_hostname(),
            data_dir: default_data_dir(),
            listen: Listen::default(),
            tls: Tls::default(),
            smtp: Smtp::default(),
            imap: Imap::default(),
            pop3: Pop3::default(),
            managesieve: ManageSieve::default(),
            sieve: Sieve::default(),
            auth: Auth::default(),
            limits: Limits::default(),
            directory: Directory::default(),
            store: Store::default(),
            dns: Dns::default(),
            delivery: Delivery::default(),
            dkim: Dkim::default(),
            inbound: Inbound::default(),
            spam: Spam::default(),
            quarantine: Quarantine::default(),
            alerts: Alerts::default(),
            scanners: Vec::new(),
            mta_sts: MtaSts::default(),
            acme: Acme::default(),
            server: Server::default(),
            log: Log::default(),
        }
    }
}

/// TLS certificate and key. When both are absent a self-signed pair is generated under
/// `data_dir/tls/` on first start.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Tls {
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
}

/// SMTP receive limits and timeouts.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Smtp {
    /// Largest message accepted, in bytes (advertised in SIZE).
    pub max_message_size: u64,
    /// Recipients per transaction.
    pub max_recipients: usize,
    /// Longest command line, CRLF included.
    pub max_line_length: usize,
    /// Time for the next command; a command or message data must keep arriving at 500
    /// bytes per second once begun (a trickle does not restart the clock).
    pub timeout_seconds: u64,
    /// Longest an SMTP session may last, however busy.
    pub session_max_seconds: u64,
    /// Protocol errors tolerated in one session before it is closed.
    pub max_errors: u32,
    /// Concurrent SMTP connections, all listeners together.
    pub max_connections: usize,
    /// Concurrent SMTP connections from one IP address.
    pub max_connections_per_ip: usize,
    /// Message bytes held in memory by all sessions together before new data is refused
    /// with `452 4.3.1`.
    pub max_inflight_bytes: u64,
}

impl Default for Smtp {
    fn default() -> Self {
        Smtp {
            max_message_size: 50 * 1024 * 1024,
            max_recipients: 100,
            max_line_length: 2048,
            timeout_seconds: 300,
            session_max_seconds: 3600,
            max_errors: 20,
            max_connections: 1000,
            max_connections_per_ip: 50,
            max_inflight_bytes: 1024 * 1024 * 1024,
        }
    }
}

/// IMAP sessions.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Imap {
    /// Autologout of an authenticated session without activity (RFC 9051 §5.4: at least 30
    /// minutes).
    pub timeout_seconds: u64,
    /// Concurrent IMAP connections in total.
    pub max_connections: usize,
    /// Concurrent IMAP connections from one IP address.
    pub max_connections_per_ip: usize,
    /// How often an IDLE session gets `* OK Still here` so NAT does not drop it.
    pub idle_keepalive_seconds: u64,
    /// Memory for message summaries (ENVELOPE, BODYSTRUCTURE, SEARCH on headers) shared by
    /// all sessions, in MiB.
    pub summary_cache_mb: u64,
    /// Time one SEARCH, SORT or THREAD may compute before it is answered `NO [LIMIT]`.
    pub command_time_limit_seconds: u64,
    /// Time a connection has to log in, from its start.
    pub login_timeout_seconds: u64,
    /// How often a long SEARCH, SORT, THREAD or FETCH reports how far it got (RFC 9585
    /// INPROGRESS), in milliseconds; 0: never.
    pub progress_interval_ms: u64,
}

impl Default for Imap {
    fn default() -> Self {
        Imap {
            timeout_seconds: 1800,
            max_connections: 10_000,
            max_connections_per_ip: 100,
            idle_keepalive_seconds: 120,
            summary_cache_mb: 384,
            command_time_limit_seconds: 20,
            login_timeout_seconds: 180,
            progress_interval_ms: 2000,
        }
    }
}

/// POP3 sessions.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Pop3 {
    /// Inactivity allowed (RFC 1939 §3: at least 10 minutes).
    pub timeout_seconds: u64,
    /// Time a connection has to log in, from its start.
    pub login_timeout_seconds: u64,
    pub max_connections: usize,
    pub max_connections_per_ip: usize,
}

impl Default for Pop3 {
    fn default() -> Self {
        Pop3 { timeout_seconds: 600, login_timeout_seconds: 180, max_connections: 10_000, max_connections_per_ip: 100 }
    }
}

/// The largest `managesieve.max_script_bytes` allowed (16 MiB).
const fn tern_max_script_bytes() -> usize {
    16 << 20
}

/// ManageSieve (RFC 5804): where users put their Sieve scripts.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ManageSieve {
    /// Inactivity allowed.
    pub timeout_seconds: u64,
    /// Time a connection has to log in, from its start.
    pub login_timeout_seconds: u64,
    pub max_connections: usize,
    pub max_connections_per_ip: usize,
    /// Largest script a user may upload, in bytes (Dovecot's default: 1 MiB).
    pub max_script_bytes: usize,
    /// Scripts per user at most.
    pub max_scripts: usize,
}

impl Default for ManageSieve {
    fn default() -> Self {
        ManageSieve {
            timeout_seconds: 600,
            login_timeout_seconds: 180,
            max_connections: 1_000,
            max_connections_per_ip: 20,
            max_script_bytes: 1 << 20,
            max_scripts: 100,
        }
    }
}

/// Sieve at delivery.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Sieve {
    /// The admin's script, run for every local recipient before the user's own (as
    /// Dovecot's `sieve_before`); the user's script does not run when it ends with `stop`.
    /// Checked at startup: a script that does not compile stops the server with its line.
    pub before: Option<PathBuf>,
    /// A directory of admin scripts (`NAME.sieve`) that users' scripts may `include :global
    /// "NAME"` (RFC 6609 §3.2); read and checked at startup.
    pub global_dir: Option<PathBuf>,
}

/// Client authentication (IMAP, POP3, submission).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Auth {
    /// Allow passwords without TLS from loopback addresses (local tools, tests, benchmarks).
    /// Over any other address, login is refused until STARTTLS or on the implicit-TLS ports.
    pub plaintext_on_loopback: bool,
    /// How long a verified login is remembered, so reconnecting clients skip the argon2
    /// verification (0 = always verify).
    pub login_cache_seconds: u64,
}

impl Default for Auth {
    fn default() -> Self {
        Auth { plaintext_on_loopback: true, login_cache_seconds: 300 }
    }
}

/// Limits shared by every service.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Networks (CIDR) exempt from per-address connection limits and login bans, like
    /// Postfix's mynetworks.
    pub exempt: Vec<String>,
    /// Failed logins from one address within 10 minutes before it is banned.
    pub auth_failures_before_ban: u32,
    /// How long a ban lasts.
    pub ban_seconds: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits { exempt: vec!["127.0.0.0/8".into(), "::1/128".into()], auth_failures_before_ban: 10, ban_seconds: 900 }
    }
}

/// Address handling.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Directory {
    /// The character that separates a sub-address: `user+tag@domain` reaches `user`.
    /// Empty string turns plus-addressing off.
    pub plus_separator: String,
}

impl Default for Directory {
    fn default() -> Self {
        Directory { plus_separator: "+".into() }
    }
}

/// Where Tern keeps its state: the embedded store in the data directory (default), or
/// PostgreSQL (cluster mode: every node of a cluster on one database).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Store {
    pub backend: StoreBackend,
    /// Embedded store: block cache size in MiB.
    pub cache_mb: u64,
    /// PostgreSQL: `postgres://user:pass@host:port/db` or the key/value form
    /// (`host=/run/postgresql dbname=tern user=tern`); add `sslmode=require` for TLS.
    pub url: Option<String>,
    /// PostgreSQL: connections this node keeps open at most.
    pub pool_size: usize,
    /// PostgreSQL: PEM file of the CA that signed the database's certificate (besides the
    /// public roots).
    pub ca_file: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum StoreBackend {
    #[default]
    Embedded,
    Postgres,
}

impl Default for Store {
    fn default() -> Self {
        Store { backend: StoreBackend::Embedded, cache_mb: 64, url: None, pool_size: 16, ca_file: None }
    }
}

/// The DNS resolver used for delivery (MX, MTA-STS, DANE) and mail authentication.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Dns {
    /// Resolvers as `IP:PORT` (or `IP`, port 53). Empty: the system's (`/etc/resolv.conf`).
    pub nameservers: Vec<String>,
    pub timeout_seconds: u64,
    /// Trust the AD ("authenticated data") bit of the resolvers' answers, as Postfix's
    /// `smtp_dns_support_level = dnssec` does: DANE is used only then. Set it when the
    /// resolver is a local validating one (unbound, systemd-resolved with DNSSEC=yes).
    pub dnssec: bool,
}

impl Default for Dns {
    fn default() -> Self {
        Dns { nameservers: Vec::new(), timeout_seconds: 5, dnssec: false }
    }
}

impl Dns {
    /// Parsed nameservers (validated already).
    pub fn nameserver_addrs(&self) -> Vec<SocketAddr> {
        self.nameservers.iter().filter_map(|n| parse_nameserver(n).ok()).collect()
    }
}

fn parse_nameserver(text: &str) -> Result<SocketAddr, String> {
    if let Ok(addr) = text.parse::<SocketAddr>() {
        return Ok(addr);
    }
    text.parse::<std::net::IpAddr>().map(|ip| SocketAddr::new(ip, 53)).map_err(|_| "expected IP or IP:PORT".into())
}

/// Outbound delivery and the queue.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Delivery {
    /// Port of remote MX hosts (25; tests point it at a loopback sink).
    pub smtp_port: u16,
    /// First retry after a temporary failure; doubles up to `retry_max_seconds`.
    pub retry_initial_seconds: u64,
    pub retry_max_seconds: u64,
    /// Give up (and bounce) a message not delivered after this long.
    pub lifetime_seconds: u64,
    /// Send one delay notice (RFC 3464 `action=delayed`) after this long; 0 = never.
    pub delay_notice_seconds: u64,
    /// Outbound transactions in progress at once, all destinations together.
    pub max_concurrency: usize,
    /// Connections to one destination domain at once.
    pub per_domain_concurrency: usize,
    /// Messages per second to one destination domain (0 = no limit).
    pub per_domain_rate: f64,
    /// MX hosts tried per attempt.
    pub max_mx_hosts: usize,
    /// How long a connection stays open for more mail to the same destination.
    pub connection_idle_seconds: u64,
    pub connect_timeout_seconds: u64,
    /// Limit for each reply; the final reply after DATA gets 10 minutes (RFC 5321 §4.5.3.2).
    pub command_timeout_seconds: u64,
    /// Name given in EHLO (default: `hostname`).
    pub ehlo_name: Option<String>,
    /// Fetch and enforce MTA-STS policies (RFC 8461).
    pub mta_sts: bool,
    /// Port of MTA-STS policy hosts (443; tests use a high port).
    pub mta_sts_port: u16,
    /// Enforce DANE TLSA records (RFC 7672) when `dns.dnssec` vouches for them.
    pub dane: bool,
    /// Extra trusted certificate authorities (PEM), besides the built-in web roots.
    pub ca_file: Option<PathBuf>,
    /// Relay everything through this host instead of looking up MX records.
    pub smarthost: Option<Smarthost>,
    /// How long a queue entry a node works on stays its own without being renewed (renewed
    /// every third of it while the attempt runs). In a cluster, a node that dies leaves its
    /// entries to the others after this long.
    pub lease_seconds: u64,
}

impl Default for Delivery {
    fn default() -> Self {
        Delivery {
            smtp_port: 25,
            lease_seconds: 300,
            retry_initial_seconds: 300,
            retry_max_seconds: 4 * 3600,
            lifetime_seconds: 5 * 86400,
            delay_notice_seconds: 4 * 3600,
            max_concurrency: 100,
            per_domain_concurrency: 20,
            per_domain_rate: 0.0,
            max_mx_hosts: 5,
            connection_idle_seconds: 5,
            connect_timeout_seconds: 30,
            command_timeout_seconds: 300,
            ehlo_name: None,
            mta_sts: true,
            mta_sts_port: 443,
            dane: true,
            ca_file: None,
            smarthost: None,
        }
    }
}

/// A relay host for all outbound mail.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Smarthost {
    pub host: String,
    #[serde(default = "default_submission_port")]
    pub port: u16,
    /// `starttls` (required), `tls` (implicit, port 465) or `none` (trusted network only).
    #[serde(default)]
    pub security: SmarthostSecurity,
    #[serde(default)]
    pub username: Option<String>,
    #[serde(default)]
    pub password: Option<String>,
}

fn default_submission_port() -> u16 {
    587
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SmarthostSecurity {
    #[default]
    Starttls,
    Tls,
    None,
}

/// DKIM signing of outgoing mail. Keys are made per domain with `tern dkim generate`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Dkim {
    /// Sign mail submitted by users from local domains that have keys.
    pub sign: bool,
}

impl Default for Dkim {
    fn default() -> Self {
        Dkim { sign: true }
    }
}

/// Checks of mail arriving on port 25 from untrusted networks (everything outside
/// `limits.exempt`).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Inbound {
    /// SPF, DKIM, ARC, iprev and DMARC, recorded in Authentication-Results.
    pub verify: bool,
    /// Refuse (`550 5.7.1`) mail failing DMARC with `p=reject` (else it goes to Junk).
    pub dmarc_reject: bool,
    /// Deliver mail failing DMARC with `p=quarantine` to Junk.
    pub dmarc_quarantine: bool,
    /// Look up the client's reverse DNS (iprev / FCrDNS).
    pub iprev: bool,
    /// A newer Public Suffix List than the bundled one (publicsuffix.org format).
    pub public_suffix_list: Option<PathBuf>,
    /// Which DMARC specification policy discovery and alignment follow: `rfc7489` (the
    /// Public Suffix List, `pct`) or `rfc9989` (DMARCbis: DNS tree walk, `psd`, `np`, `t`).
    pub dmarc_specification: DmarcSpecification,
    /// Wait this long before the greeting and refuse clients that talk first; 0 = off.
    pub greet_pause_ms: u64,
    /// New connections per minute from one address (0 = no limit).
    pub max_connections_per_minute_per_ip: u32,
    /// Messages (MAIL commands) per minute from one address.
    pub max_messages_per_minute_per_ip: u32,
    /// Messages per minute with one sender domain.
    pub max_messages_per_minute_per_sender_domain: u32,
    /// Unknown recipients from one address within 10 minutes before it is banned (directory
    /// harvesting; the ban is `limits.ban_seconds`, shared with IMAP and POP3). 0 = never.
    pub max_unknown_recipients_per_ip: u32,
    /// DNS blocklist zones to ask about each client (`zen.spamhaus.org`, ...).
    pub dnsbl_zones: Vec<String>,
    pub dnsbl_action: DnsblAction,
    /// Greylisting: first-time (network, sender, recipient) triplets get `451 4.7.1`.
    pub greylisting: bool,
    pub greylist_delay_seconds: u64,
    /// Send DMARC aggregate reports (RFC 7489 §7.2) to domains that ask for them (`rua`).
    pub dmarc_reports: bool,
    pub dmarc_report_interval_seconds: u64,
}

impl Default for Inbound {
    fn default() -> Self {
        Inbound {
            verify: true,
            dmarc_reject: true,
            dmarc_quarantine: true,
            iprev: true,
            public_suffix_list: None,
            dmarc_specification: DmarcSpecification::default(),
            greet_pause_ms: 500,
            max_connections_per_minute_per_ip: 120,
            max_messages_per_minute_per_ip: 300,
            max_messages_per_minute_per_sender_domain: 1000,
            max_unknown_recipients_per_ip: 20,
            dnsbl_zones: Vec::new(),
            dnsbl_action: DnsblAction::Reject,
            greylisting: false,
            greylist_delay_seconds: 300,
            dmarc_reports: true,
            dmarc_report_interval_seconds: 86400,
        }
    }
}

/// Tern's own spam classifier and rules (see `docs/spam.md`), for mail arriving on port 25.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Spam {
    /// Judge inbound mail, add `X-Tern-Spam`, and act on the score.
    pub enabled: bool,
    /// Messages of each class the models must have learnt before the classifier judges
    /// (until then it abstains and the rules alone score).
    pub min_learned: u64,
    /// At or above this score a recipient's copy goes to their Junk mailbox.
    pub junk_score: f64,
    /// At or above this score the message is held in the quarantine when every recipient's
    /// verdict says so; 0 (the default) turns it off.
    pub quarantine_score: f64,
    /// At or above this score the message is refused (`550 5.7.1`) when every recipient's
    /// verdict says so; 0 turns refusal off.
    pub reject_score: f64,
    /// Moving a message into Junk over IMAP (or setting `$Junk`) teaches it as spam, out of
    /// Junk (or `$NotJunk`) as ham, to the user's model and the global one.
    pub learn_from_users: bool,
    /// Features the global model keeps at most (about 40 bytes of memory each); beyond it the
    /// rarest are forgotten.
    pub max_features: usize,
    /// The same for each user's model.
    pub max_user_features: usize,
}

impl Default for Spam {
    fn default() -> Self {
        Spam {
            enabled: true,
            min_learned: 50,
            junk_score: 5.0,
            quarantine_score: 0.0,
            reject_score: 15.0,
            learn_from_users: true,
            max_features: 2_000_000,
            max_user_features: 200_000,
        }
    }
}

/// The quarantine: messages held instead of delivered (`tern quarantine`).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Quarantine {
    /// Days a held message is kept before it is deleted.
    pub retention_days: u64,
}

impl Default for Quarantine {
    fn default() -> Self {
        Quarantine { retention_days: 30 }
    }
}

/// Where alerts go (a virus found, a virus sent by a user, a scanner that stopped answering).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Alerts {
    /// Addresses that get a mail per alert (`postmaster@example.com`).
    pub notify: Vec<String>,
    /// A URL that gets a JSON `POST` per alert.
    pub webhook: Option<String>,
    /// Alerts of one kind about one thing are sent at most this often.
    pub min_interval_seconds: u64,
}

impl Default for Alerts {
    fn default() -> Self {
        Alerts { notify: Vec::new(), webhook: None, min_interval_seconds: 600 }
    }
}

/// One outside scanner (`[[scanner]]`; see `docs/scanners.md`).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Scanner {
    /// Its name in verdicts, logs and metrics.
    pub name: String,
    pub kind: ScannerKind,
    /// clamd: `host:port`, or the path of its Unix socket.
    #[serde(default)]
    pub address: Option<String>,
    /// rspamd (its normal worker, e.g. `http://127.0.0.1:11333`) and `http` scanners.
    #[serde(default)]
    pub url: Option<String>,
    /// rspamd: sent as `Password`.
    #[serde(default)]
    pub password: Option<String>,
    /// `http`: extra request headers (e.g. `Authorization`).
    #[serde(default)]
    pub headers: std::collections::BTreeMap<String, String>,
    #[serde(default = "scanner_timeout")]
    pub timeout_seconds: u64,
    /// When the scanner cannot be asked or does not answer in time.
    #[serde(default)]
    pub on_failure: ScannerFailure,
    /// Messages larger than this are not sent to it (clamd's `StreamMaxLength` defaults to
    /// 25 MiB); clamd refusing a stream as too large is treated the same.
    #[serde(default = "scanner_max_size")]
    pub max_size: u64,
    #[serde(default)]
    pub on_too_large: ScannerTooLarge,
    /// What a virus this scanner finds does.
    #[serde(default)]
    pub on_virus: VirusAction,
    /// Its spam points are multiplied by this before they add to the score.
    #[serde(default = "one")]
    pub weight: f64,
    /// Scan mail from authenticated users too (for viruses).
    #[serde(default = "yes")]
    pub scan_submissions: bool,
}

fn scanner_timeout() -> u64 {
    30
}
fn scanner_max_size() -> u64 {
    25 * 1024 * 1024
}
fn one() -> f64 {
    1.0
}
fn yes() -> bool {
    true
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ScannerKind {
    Clamd,
    Rspamd,
    Http,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ScannerFailure {
    /// `451 4.7.1`: the sender tries again later.
    #[default]
    Tempfail,
    /// Accepted; the verdict notes the failure and a metric counts it.
    Accept,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ScannerTooLarge {
    /// Accepted unscanned by this scanner (noted in the verdict).
    #[default]
    Accept,
    Tempfail,
    /// `552 5.3.4`.
    Reject,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum VirusAction {
    /// `554 5.7.1` at the end of DATA.
    #[default]
    Reject,
    /// Held in the quarantine.
    Quarantine,
    /// Accepted and dropped (logged).
    Discard,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum DmarcSpecification {
    /// RFC 7489 (2015): organizational domains from the Public Suffix List.
    #[default]
    Rfc7489,
    /// RFC 9989 (DMARCbis): the DNS tree walk, `psd=`, `np=`, `t=`.
    Rfc9989,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum DnsblAction {
    /// `554 5.7.1` at connection time.
    #[default]
    Reject,
    /// Accept, noting the listing in Authentication-Results.
    Tag,
}

/// The MTA-STS policy served for every local domain at
/// `https://mta-sts.<domain>/.well-known/mta-sts.txt` (RFC 8461 §3.2), naming `hostname` as its
/// MX.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct MtaSts {
    /// `testing` (senders report failures but deliver), `enforce` (senders refuse to deliver
    /// without valid TLS to the MX) or `none`.
    pub mode: MtaStsMode,
    /// How long senders may cache the policy (RFC 8461 §3.2: at most 31557600).
    pub max_age_seconds: u64,
}

impl Default for MtaSts {
    fn default() -> Self {
        MtaSts { mode: MtaStsMode::Testing, max_age_seconds: 604_800 }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum MtaStsMode {
    Testing,
    Enforce,
    None,
}

impl MtaStsMode {
    pub fn as_str(self) -> &'static str {
        match self {
            MtaStsMode::Testing => "testing",
            MtaStsMode::Enforce => "enforce",
            MtaStsMode::None => "none",
        }
    }
}

/// Certificates from an ACME certificate authority (RFC 8555), Let's Encrypt by default:
/// obtained at start when missing, renewed ahead of expiry, and put into every listener
/// without a restart. They replace `[tls] cert/key`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Acme {
    pub enabled: bool,
    /// The CA's directory URL. Let's Encrypt's staging CA, for trying things out, is
    /// `https://acme-staging-v02.api.letsencrypt.org/directory`.
    pub directory: String,
    /// Contact addresses for the account (`mailto:admin@example.org`).
    pub contact: Vec<String>,
    /// Names the certificate covers. Empty: `hostname`, and `mta-sts.` and `autoconfig.` of
    /// every local domain (names whose challenge fails are left out, never `hostname`).
    pub names: Vec<String>,
    /// `tls-alpn-01` (answered on the `https` listener, port 443) or `http-01` (on the
    /// `public_http` listener, port 80).
    pub challenge: AcmeChallenge,
    /// Renew this long before expiry (or when a third of the certificate's life is left, if
    /// that comes first: short-lived certificates).
    pub renew_before_days: u64,
    /// How often the certificate is checked.
    pub check_interval_seconds: u64,
    /// Extra CA certificates (PEM) to trust for the ACME server's own HTTPS (a private CA).
    pub ca_file: Option<PathBuf>,
}

impl Default for Acme {
    fn default() -> Self {
        Acme {
            enabled: false,
            directory: "https://acme-v02.api.letsencrypt.org/directory".into(),
            contact: Vec::new(),
            names: Vec::new(),
            challenge: AcmeChallenge::TlsAlpn01,
            renew_before_days: 30,
            check_interval_seconds: 3600,
            ca_file: None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
pub enum AcmeChallenge {
    #[serde(rename = "tls-alpn-01")]
    TlsAlpn01,
    #[serde(rename = "http-01")]
    Http01,
}

/// The process.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Server {
    /// Started as root, `tern serve` binds its ports, reads its certificate, gives the data
    /// directory to this user and runs as it from then on (its own group; no supplementary
    /// groups). Ignored when not started as root.
    pub user: Option<String>,
}

/// Logging.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Log {
    /// A tracing filter: `info`, `debug`, `tern_smtp=debug,info`, ... `RUST_LOG` overrides it.
    pub level: String,
    /// `text` or `json`.
    pub format: LogFormat,
}

impl Default for Log {
    fn default() -> Self {
        Log { level: "info".into(), format: LogFormat::Text }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

impl Config {
    /// Parses TOML text; `origin` names the source in error messages.
    pub fn from_toml(text: &str, origin: &Path) -> Result<Config, ConfigError> {
        let config: Config = toml::from_str(text)
            .map_err(|e| ConfigError::Parse { path: origin.to_path_buf(), message: e.to_string() })?;
        config.validate()?;
        Ok(config)
    }

    /// Reads a config file. Relative paths in it (`data_dir`, `tls.cert`, `tls.key`,
    /// `inbound.public_suffix_list`, `delivery.ca_file`) are relative to the file's directory,
    /// not to wherever a command happens to run.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text =
            std::fs::read_to_string(path).map_err(|error| ConfigError::Read { path: path.to_path_buf(), error })?;
        let mut config = Config::from_toml(&text, path)?;
        let base = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
        let base = std::path::absolute(base).unwrap_or_else(|_| base.to_path_buf());
        let anchor = |p: &mut PathBuf| {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        };
        anchor(&mut config.data_dir);
        for p in [
            &mut config.tls.cert,
            &mut config.tls.key,
            &mut config.inbound.public_suffix_list,
            &mut config.delivery.ca_file,
            &mut config.acme.ca_file,
        ]
        .into_iter()
        .flatten()
        {
            anchor(p);
        }
        Ok(config)
    }

    /// The configuration as a TOML file (every key, defaults filled in) that loads back to the
    /// same configuration.
    pub fn to_toml(&self) -> Result<String, ConfigError> {
        toml::to_string_pretty(self).map_err(|e| invalid("(whole configuration)", e.to_string()))
    }

    /// Checks that the files the configuration names can be read, and that certificate and
    /// key files hold PEM; names the key and the path of the first that cannot.
    pub fn check_files(&self) -> Result<(), ConfigError> {
        let files = [
            ("tls.cert", self.tls.cert.as_ref(), Some("CERTIFICATE")),
            ("tls.key", self.tls.key.as_ref(), Some("PRIVATE KEY")),
            ("inbound.public_suffix_list", self.inbound.public_suffix_list.as_ref(), None),
            ("delivery.ca_file", self.delivery.ca_file.as_ref(), Some("CERTIFICATE")),
        ];
        for (key, path, pem) in files {
            let Some(path) = path else { continue };
            let text = std::fs::read(path).map_err(|e| invalid(key, format!("cannot read {}: {e}", path.display())))?;
            if let Some(label) = pem {
                let text = String::from_utf8_lossy(&text);
                if !text.lines().any(|l| l.starts_with("-----BEGIN ") && l.contains(label)) {
                    return Err(invalid(key, format!("{} holds no PEM {label}", path.display())));
                }
            }
        }
        Ok(())
    }

    /// Moves every listener to loopback high ports, for running as a normal user:
    /// SMTP 2525, submission 2587, submissions 2465, IMAP 1143, IMAPS 1993, POP3 1110,
    /// POP3S 1995, HTTP 8080.
    pub fn apply_dev_ports(&mut self) {
        self.listen = Listen::dev();
    }

    /// Checks values that the TOML types alone cannot.
    pub fn validate(&self) -> Result<(), ConfigError> {
        validate_hostname(&self.hostname)?;
        if self.data_dir.as_os_str().is_empty() {
            return Err(invalid("data_dir", "must not be empty"));
        }
        match (&self.tls.cert, &self.tls.key) {
            (Some(_), None) => return Err(invalid("tls.key", "tls.cert is set but tls.key is not")),
            (None, Some(_)) => return Err(invalid("tls.cert", "tls.key is set but tls.cert is not")),
            _ => {}
        }
        if self.acme.enabled {
            if !self.acme.directory.starts_with("https://") {
                return Err(invalid("acme.directory", "must be an https:// URL"));
            }
            if let Some(c) = self.acme.contact.iter().find(|c| !c.starts_with("mailto:")) {
                return Err(invalid("acme.contact", format!("{c:?}: contacts are mailto: URLs")));
            }
            let listener = match self.acme.challenge {
                AcmeChallenge::TlsAlpn01 => ("https", &self.listen.https),
                AcmeChallenge::Http01 => ("public_http", &self.listen.public_http),
            };
            if listener.1.is_empty() {
                return Err(invalid(
                    "acme.challenge",
                    format!("the challenge is answered on listen.{}, which is off", listener.0),
                ));
            }
            if self.acme.check_interval_seconds == 0 {
                return Err(invalid("acme.check_interval_seconds", "must be at least 1"));
            }
        }
        if !(1..=31_557_600).contains(&self.mta_sts.max_age_seconds) {
            return Err(invalid("mta_sts.max_age_seconds", "must be between 1 and 31557600 (RFC 8461 §3.2)"));
        }
        let mut names = std::collections::HashSet::new();
        for scanner in &self.scanners {
            let key = format!("scanner {:?}", scanner.name);
            if scanner.name.is_empty()
                || !scanner.name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
            {
                return Err(invalid(&key, "name must be letters, digits, - and _"));
            }
            if !names.insert(scanner.name.clone()) {
                return Err(invalid(&key, "two scanners have this name"));
            }
            match scanner.kind {
                ScannerKind::Clamd if scanner.address.as_deref().is_none_or(str::is_empty) => {
                    return Err(invalid(&key, "a clamd scanner needs address = \"host:port\" or a socket path"));
                }
                ScannerKind::Rspamd | ScannerKind::Http
                    if !scanner
                        .url
                        .as_deref()
                        .is_some_and(|u| u.starts_with("http://") || u.starts_with("https://")) =>
                {
                    return Err(invalid(&key, "needs url = \"http://...\" or \"https://...\""));
                }
                _ => {}
            }
            if scanner.timeout_seconds == 0 {
                return Err(invalid(&key, "timeout_seconds must be at least 1"));
            }
            if !scanner.weight.is_finite() || scanner.weight < 0.0 {
                return Err(invalid(&key, "weight must be a number >= 0"));
            }
        }
        if let Some(url) = &self.alerts.webhook
            && !(url.starts_with("http://") || url.starts_with("https://"))
        {
            return Err(invalid("alerts.webhook", "must be an http:// or https:// URL"));
        }
        for address in &self.alerts.notify {
            if !address.contains('@') || address.contains(['\r', '\n', ' ', '<', '>']) {
                return Err(invalid("alerts.notify", format!("{address:?} is not a mail address")));
            }
        }
        validate_log_level(&self.log.level)?;
        let spam = &self.spam;
        if !spam.junk_score.is_finite() || spam.junk_score <= 0.0 {
            return Err(invalid("spam.junk_score", "must be a positive number"));
        }
        if !spam.reject_score.is_finite() || (spam.reject_score != 0.0 && spam.reject_score < spam.junk_score) {
            return Err(invalid("spam.reject_score", "must be 0 (off) or at least spam.junk_score"));
        }
        if !spam.quarantine_score.is_finite()
            || (spam.quarantine_score != 0.0 && spam.quarantine_score < spam.junk_score)
        {
            return Err(invalid("spam.quarantine_score", "must be 0 (off) or at least spam.junk_score"));
        }
        if self.quarantine.retention_days == 0 {
            return Err(invalid("quarantine.retention_days", "must be at least 1"));
        }
        if spam.max_features < 1000 || spam.max_user_features < 1000 {
            return Err(invalid("spam.max_features", "max_features and max_user_features must be at least 1000"));
        }
        if spam.min_learned == 0 {
            return Err(invalid("spam.min_learned", "must be at least 1"));
        }
        let s = &self.smtp;
        if s.max_message_size < 1024 {
            return Err(invalid("smtp.max_message_size", "must be at least 1024 bytes"));
        }
        if s.max_recipients == 0 {
            return Err(invalid("smtp.max_recipients", "must be at least 1"));
        }
        if s.max_line_length < 512 {
            // RFC 5321 §4.5.3.1.4: a command line is at least 512 octets.
            return Err(invalid("smtp.max_line_length", "must be at least 512 (RFC 5321 §4.5.3.1.4)"));
        }
        if s.timeout_seconds == 0 {
            return Err(invalid("smtp.timeout_seconds", "must be at least 1"));
        }
        if s.max_connections == 0 {
            return Err(invalid("smtp.max_connections", "must be at least 1"));
        }
        if s.max_connections_per_ip == 0 {
            return Err(invalid("smtp.max_connections_per_ip", "must be at least 1"));
        }
        if s.max_inflight_bytes < s.max_message_size {
            return Err(invalid("smtp.max_inflight_bytes", "must be at least smtp.max_message_size"));
        }
        for net in &self.limits.exempt {
            Cidr::parse(net).map_err(|m| invalid("limits.exempt", format!("{net:?}: {m}")))?;
        }
        for net in &self.listen.proxy_from {
            Cidr::parse(net).map_err(|m| invalid("listen.proxy_from", format!("{net:?}: {m}")))?;
        }
        if self.limits.auth_failures_before_ban == 0 {
            return Err(invalid("limits.auth_failures_before_ban", "must be at least 1"));
        }
        if self.smtp.session_max_seconds < self.smtp.timeout_seconds {
            return Err(invalid("smtp.session_max_seconds", "must be at least smtp.timeout_seconds"));
        }
        let i = &self.imap;
        if i.timeout_seconds < 60 {
            return Err(invalid("imap.timeout_seconds", "must be at least 60"));
        }
        if i.max_connections == 0 || i.max_connections_per_ip == 0 {
            return Err(invalid("imap.max_connections", "limits must be at least 1"));
        }
        if self.pop3.timeout_seconds < 60 {
            return Err(invalid("pop3.timeout_seconds", "must be at least 60"));
        }
        if self.pop3.login_timeout_seconds == 0 {
            return Err(invalid("pop3.login_timeout_seconds", "must be at least 1"));
        }
        if self.pop3.max_connections == 0 || self.pop3.max_connections_per_ip == 0 {
            return Err(invalid("pop3.max_connections", "limits must be at least 1"));
        }
        if self.managesieve.timeout_seconds < 60 || self.managesieve.login_timeout_seconds == 0 {
            return Err(invalid(
                "managesieve.timeout_seconds",
                "must be at least 60 (and the login timeout at least 1)",
            ));
        }
        if self.managesieve.max_connections == 0 || self.managesieve.max_connections_per_ip == 0 {
            return Err(invalid("managesieve.max_connections", "limits must be at least 1"));
        }
        if self.managesieve.max_script_bytes == 0 || self.managesieve.max_script_bytes > tern_max_script_bytes() {
            return Err(invalid("managesieve.max_script_bytes", "must be between 1 and 16777216"));
        }
        if i.idle_keepalive_seconds == 0 {
            return Err(invalid("imap.idle_keepalive_seconds", "must be at least 1"));
        }
        if i.login_timeout_seconds == 0 {
            return Err(invalid("imap.login_timeout_seconds", "must be at least 1"));
        }
        if i.command_time_limit_seconds == 0 {
            return Err(invalid("imap.command_time_limit_seconds", "must be at least 1"));
        }
        if self.directory.plus_separator.chars().count() > 1 {
            return Err(invalid("directory.plus_separator", "must be one character or empty"));
        }
        if let Some(c) = self.directory.plus_separator.chars().next()
            && (c.is_alphanumeric() || c == '@' || c == '.' || c.is_whitespace())
        {
            return Err(invalid("directory.plus_separator", format!("{c:?} cannot separate a sub-address")));
        }
        if self.store.cache_mb == 0 {
            return Err(invalid("store.cache_mb", "must be at least 1"));
        }
        if self.store.backend == StoreBackend::Postgres {
            match &self.store.url {
                None => return Err(invalid("store.url", "is needed with backend = \"postgres\"")),
                Some(url) if url.trim().is_empty() => return Err(invalid("store.url", "is empty")),
                Some(_) => {}
            }
            if self.store.pool_size < 2 {
                return Err(invalid("store.pool_size", "must be at least 2"));
            }
        }
        for n in &self.dns.nameservers {
            parse_nameserver(n).map_err(|m| invalid("dns.nameservers", format!("{n:?}: {m}")))?;
        }
        if self.dns.timeout_seconds == 0 {
            return Err(invalid("dns.timeout_seconds", "must be at least 1"));
        }
        let d = &self.delivery;
        if d.lease_seconds < 3 {
            return Err(invalid("delivery.lease_seconds", "must be at least 3"));
        }
        if d.retry_initial_seconds == 0 {
            return Err(invalid("delivery.retry_initial_seconds", "must be at least 1"));
        }
        if d.retry_max_seconds < d.retry_initial_seconds {
            return Err(invalid("delivery.retry_max_seconds", "must be at least delivery.retry_initial_seconds"));
        }
        if d.lifetime_seconds == 0 {
            return Err(invalid("delivery.lifetime_seconds", "must be at least 1"));
        }
        if d.max_concurrency == 0 || d.per_domain_concurrency == 0 {
            return Err(invalid("delivery.max_concurrency", "concurrency limits must be at least 1"));
        }
        if !(d.per_domain_rate >= 0.0 && d.per_domain_rate.is_finite()) {
            return Err(invalid("delivery.per_domain_rate", "must be 0 or a positive number"));
        }
        if d.max_mx_hosts == 0 {
            return Err(invalid("delivery.max_mx_hosts", "must be at least 1"));
        }
        if d.connect_timeout_seconds == 0 || d.command_timeout_seconds == 0 {
            return Err(invalid("delivery.command_timeout_seconds", "timeouts must be at least 1"));
        }
        if let Some(name) = &d.ehlo_name {
            validate_hostname(name)
                .map_err(|_| invalid("delivery.ehlo_name", format!("{name:?} is not a host name")))?;
        }
        if let Some(sh) = &d.smarthost {
            if sh.host.trim().is_empty() {
                return Err(invalid("delivery.smarthost.host", "must not be empty"));
            }
            if sh.username.is_some() != sh.password.is_some() {
                return Err(invalid("delivery.smarthost.username", "username and password go together"));
            }
        }
        for zone in &self.inbound.dnsbl_zones {
            if zone.is_empty() || zone.contains(char::is_whitespace) {
                return Err(invalid("inbound.dnsbl_zones", format!("{zone:?} is not a DNS zone")));
            }
        }
        if self.inbound.dmarc_report_interval_seconds == 0 {
            return Err(invalid("inbound.dmarc_report_interval_seconds", "must be at least 1"));
        }
        if self.inbound.greet_pause_ms > 30_000 {
            return Err(invalid("inbound.greet_pause_ms", "must be at most 30000"));
        }
        tracing_filter_sanity(&self.log.level)?;
        Ok(())
    }

    /// Parsed `limits.exempt` (validated already, so unparsable entries cannot occur).
    /// The load balancers trusted to send PROXY headers (`listen.proxy_from`).
    pub fn proxy_from(&self) -> Vec<Cidr> {
        self.listen.proxy_from.iter().filter_map(|n| Cidr::parse(n).ok()).collect()
    }

    pub fn limit_exempt(&self) -> Vec<Cidr> {
        self.limits.exempt.iter().filter_map(|n| Cidr::parse(n).ok()).collect()
    }

    /// The plus-addressing separator, if any.
    pub fn plus_separator(&self) -> Option<char> {
        self.directory.plus_separator.chars().next()
    }
}

fn tracing_filter_sanity(level: &str) -> Result<(), ConfigError> {
    if level.trim().is_empty() {
        return Err(invalid("log.level", "must not be empty"));
    }
    if level.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(invalid("log.level", "must not contain spaces"));
    }
    Ok(())
}

/// The host name of the machine, or `localhost` if it has none usable.
pub fn system_hostname() -> String {
    let name = gethostname::gethostname().to_string_lossy().trim().to_ascii_lowercase();
    if validate_hostname(&name).is_ok() { name } else { "localhost".into() }
}

/// `log.level` is a tracing filter: comma-separated directives, each a level or
/// `target=level` (`info`, `tern_smtp=debug,info`). Anything else would silently turn logging
/// off, so it is refused.
fn validate_log_level(level: &str) -> Result<(), ConfigError> {
    const LEVELS: [&str; 6] = ["error", "warn", "info", "debug", "trace", "off"];
    let bad = |why: &str| {
        invalid(
            "log.level",
            format!(
                "{level:?}: {why} (use error, warn, info, debug, trace or off, optionally as target=level, comma-separated)"
            ),
        )
    };
    if level.trim().is_empty() {
        return Err(bad("empty"));
    }
    for directive in level.split(',') {
        let directive = directive.trim();
        let (target, lvl) = match directive.split_once('=') {
            Some((t, l)) => (Some(t), l),
            None => (None, directive),
        };
        if !LEVELS.contains(&lvl.to_ascii_lowercase().as_str()) {
            return Err(bad(&format!("{lvl:?} is not a level")));
        }
        if let Some(t) = target
            && (t.is_empty() || !t.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':' || c == '-'))
        {
            return Err(bad(&format!("{t:?} is not a module path")));
        }
    }
    Ok(())
}

fn validate_hostname(name: &str) -> Result<(), ConfigError> {
    let ascii =
        idna::domain_to_ascii(name).map_err(|_| invalid("hostname", format!("{name:?} is not a valid host name")))?;
    if ascii.is_empty() || ascii.len() > 253 {
        return Err(invalid("hostname", "must be 1 to 253 characters"));
    }
    for label in ascii.split('.') {
        let ok = !label.is_empty()
            && label.len() <= 63
            && label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            && !label.starts_with('-')
            && !label.ends_with('-');
        if !ok {
            return Err(invalid("hostname", format!("{name:?} is not a valid host name")));
        }
    }
    Ok(())
}

/// An IP network in CIDR notation (`10.0.0.0/8`, `::1/128`; a bare address is a /32 or /128).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    addr: std::net::IpAddr,
    prefix: u8,
}

impl Cidr {
    pub fn parse(text: &str) -> Result<Cidr, String> {
        let (addr, prefix) = match text.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (text, None),
        };
        let addr: std::net::IpAddr = addr.parse().map_err(|_| "not an IP address".to_string())?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            Some(p) => {
                p.parse::<u8>().ok().filter(|p| *p <= max).ok_or_else(|| format!("prefix length must be 0..={max}"))?
            }
            None => max,
        };
        Ok(Cidr { addr, prefix })
    }

    pub fn contains(&self, ip: std::net::IpAddr) -> bool {
        use std::net::IpAddr;
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
            v4 => v4,
        };
        match (self.addr, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX.checked_shl(32 - u32::from(self.prefix)).unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX.checked_shl(128 - u32::from(self.prefix)).unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

/// A socket address that is on the loopback interface.
pub fn is_loopback(addr: &SocketAddr) -> bool {
    match addr.ip() {
        std::net::IpAddr::V4(v4) => v4.is_loopback(),
        std::net::IpAddr::V6(v6) => v6.is_loopback() || v6.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback()),
    }
}

#[cfg(test)]
mod tests;
