//! The `tern` command: `tern serve` runs the server; the other subcommands administer it,
//! through the running server's admin socket or, when it is stopped, on the store directly.

mod check;
mod doctor;
mod mailfile;
mod migrate;
mod setup;
mod train;
mod transfer;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tern_config::Config;
use tern_server::admin::{self, AdminRequest};

/// Sessions allocate many small, short-lived buffers; mimalloc handles that pattern with
/// far less overhead than the system allocator.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// `mi_option_purge_delay` (libmimalloc-sys names no constant for it).
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

#[derive(Parser)]
#[command(name = "tern", version = VERSION, about = "Tern: a complete mail server in one binary")]
struct Cli {
    #[command(flatten)]
    global: Global,
    #[command(subcommand)]
    command: Command,
}

#[derive(Args)]
pub(crate) struct Global {
    /// Configuration file (TOML). Else the file $TERN_CONFIG names, else (not as root)
    /// ~/.config/tern/tern.toml when it exists, else /etc/tern/tern.toml when it exists, else
    /// the embedded defaults.
    #[arg(long, short = 'c', global = true, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Data directory (overrides `data_dir` of the config).
    #[arg(long, short = 'd', global = true, value_name = "DIR")]
    data: Option<PathBuf>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server.
    Serve {
        /// Listen on 127.0.0.1 high ports (SMTP 2525, submission 2587, submissions 2465,
        /// IMAP 1143, IMAPS 1993, POP3 1110, POP3S 1995, HTTP 8080): no root needed.
        #[arg(long)]
        dev: bool,
    },
    /// Prepare a new server: the data directory, a configuration file (when there is none),
    /// and for DOMAIN its admin account, DKIM keys and the DNS records to publish. Safe to
    /// run again: what exists is kept.
    Setup {
        /// Your mail domain (e.g. example.org); without it only the data directory and the
        /// configuration file are made.
        domain: Option<String>,
        /// The admin account's address (default admin@DOMAIN); postmaster@ and abuse@ go to it.
        #[arg(long, value_name = "EMAIL")]
        admin: Option<String>,
        /// This server's host name, the target of the MX record (default: the system's), for a
        /// new configuration file.
        #[arg(long, value_name = "NAME")]
        hostname: Option<String>,
        /// Read the admin's password from the first line of standard input (else one is
        /// generated and printed once).
        #[arg(long)]
        password_stdin: bool,
    },
    /// Check the configuration (and the files it names) and print it as a TOML file with every
    /// default filled in.
    Config,
    /// Manage domains.
    #[command(subcommand)]
    Domain(DomainCmd),
    /// Manage users.
    #[command(subcommand)]
    User(UserCmd),
    /// Manage aliases.
    #[command(subcommand)]
    Alias(AliasCmd),
    /// Users' Sieve scripts (what ManageSieve clients upload).
    #[command(subcommand)]
    Sieve(SieveCmd),
    /// Share a user's mailboxes with other users (the ACLs of RFC 4314, as IMAP clients set
    /// them with SETACL).
    #[command(subcommand)]
    Share(ShareCmd),
    /// Tokens for the REST API (/api/v1 on the http listener).
    #[command(subcommand)]
    Token(TokenCmd),
    /// Look at stored mail.
    #[command(subcommand)]
    Mail(MailCmd),
    /// The outbound queue.
    #[command(subcommand)]
    Queue(QueueCmd),
    /// Copy the store (one consistent point in time, while the server runs) and the data
    /// directory's keys and certificates into DIR.
    Backup {
        /// A new or empty directory (the running server writes into it: it must be able to).
        dir: PathBuf,
    },
    /// Make the data directory (it must hold no store) from a backup `tern backup` wrote. Run
    /// it with the server stopped.
    Restore {
        /// The backup's directory.
        dir: PathBuf,
    },
    /// Move the store: `tern store migrate --to postgres://...` copies this data directory's
    /// store into PostgreSQL for cluster mode.
    #[command(subcommand)]
    Store(StoreCmd),
    /// Bring mail in from an mbox file or a Maildir (flags, keywords and dates kept; an
    /// interrupted import goes on where it stopped when run again).
    #[command(subcommand)]
    Import(ImportCmd),
    /// Copy mail from another server into Tern.
    #[command(subcommand)]
    Migrate(MigrateCmd),
    /// Write a user's mail out as Maildir (Maildir++ folders) or mbox files, flags and dates
    /// kept; run again, it writes only what is new.
    Export {
        /// The user's address.
        email: String,
        /// The directory to write into (made when missing).
        dir: PathBuf,
        /// Maildir: INBOX at DIR, other mailboxes as DIR/.Name.Sub; mbox: DIR/Name.mbox.
        #[arg(long, value_enum, default_value = "maildir")]
        format: transfer::Format,
        /// Only this mailbox (else all of them).
        #[arg(long, value_name = "NAME")]
        mailbox: Option<String>,
    },
    /// The built-in spam classifier: teach it, ask it, see what it learnt.
    #[command(subcommand)]
    Spam(SpamCmd),
    /// Messages held instead of delivered (virus or spam verdicts that say so).
    #[command(subcommand)]
    Quarantine(QuarantineCmd),
    /// DKIM signing keys.
    #[command(subcommand)]
    Dkim(DkimCmd),
    /// Check mail authentication the way the server does (uses the configured resolver).
    #[command(subcommand)]
    Check(CheckCmd),
    /// Check what the world sees of a domain, through DNS and the network: MX, the server's
    /// addresses and reverse names, SPF, DKIM, DMARC, MTA-STS (record and policy served),
    /// TLS-RPT, TLSA, the certificate, and outbound port 25; each item ok, warn, missing or
    /// wrong with the fix. Exits 1 when something is missing or wrong.
    Doctor {
        /// A local domain.
        domain: String,
        /// A domain whose MX is tried on port 25 to tell whether outbound SMTP is open.
        #[arg(long, value_name = "DOMAIN", default_value = "gmail.com")]
        probe: String,
    },
    /// Print the DNS records a domain should publish (MX, SPF, DKIM, DMARC, MTA-STS, TLS-RPT,
    /// SRV for client autoconfiguration).
    Dns {
        /// The domain (one of this server's).
        domain: String,
    },
}

#[derive(Subcommand)]
enum MigrateCmd {
    /// Every folder of an IMAP account (Dovecot, Cyrus, Exchange, Gmail...) into a Tern user,
    /// with flags, keywords and dates; run again, it copies only what is new.
    Imap {
        /// The source server: imaps://host[:port] (TLS), or imap://host[:port] (STARTTLS;
        /// clear text only to a loopback address).
        #[arg(long, value_name = "URL")]
        from: String,
        /// The login name on the source server.
        #[arg(long, value_name = "NAME")]
        user: String,
        /// Read the source password from the first line of standard input.
        #[arg(long, required = true)]
        password_stdin: bool,
        /// The Tern user to copy into (default: --user, when it is an address here).
        #[arg(long, value_name = "EMAIL")]
        to: Option<String>,
        /// Extra CA certificates (PEM) to trust for the source server's certificate.
        #[arg(long, value_name = "FILE")]
        ca_file: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
enum ImportCmd {
    /// An mbox file (mboxrd or mboxo): each message with the date of its `From ` line and the
    /// flags of its Status:, X-Status: and X-Keywords: fields.
    Mbox {
        /// The user's address.
        email: String,
        /// The mbox file.
        path: PathBuf,
        /// The mailbox to import into (made when missing).
        #[arg(long, value_name = "NAME", default_value = "INBOX")]
        mailbox: String,
    },
    /// A Maildir (cur/ and new/) with its Maildir++ subfolders (.Sent, .Archive.2024): flags
    /// from the file names, keywords from dovecot-keywords, dates from the files' times.
    Maildir {
        /// The user's address.
        email: String,
        /// The Maildir's directory.
        path: PathBuf,
        /// Import the Maildir into this mailbox (its subfolders below it), not INBOX.
        #[arg(long, value_name = "NAME")]
        mailbox: Option<String>,
    },
}

#[derive(Subcommand)]
enum QuarantineCmd {
    /// One line per held message: id, date, sender, recipients, size, reason, expiry.
    List,
    /// A held message's verdict and header.
    Show {
        /// The held message's id (from `tern quarantine list`).
        id: u64,
    },
    /// Deliver a held message to its recipients (once).
    Release {
        /// The held message's id (from `tern quarantine list`).
        id: u64,
        /// Also teach it as ham (to the recipients' models and the global one).
        #[arg(long)]
        learn_ham: bool,
    },
    /// Delete a held message.
    Delete {
        /// The held message's id (from `tern quarantine list`).
        id: u64,
    },
}

#[derive(Subcommand)]
enum SpamCmd {
    /// Teach messages as spam and as ham: .eml files, mbox files, Maildir folders, or
    /// directories of message files.
    Train {
        /// Spam to learn (repeat, or list several).
        #[arg(long, num_args = 1.., value_name = "PATH")]
        spam: Vec<PathBuf>,
        /// Ham (wanted mail) to learn.
        #[arg(long, num_args = 1.., value_name = "PATH")]
        ham: Vec<PathBuf>,
        /// Teach this user's model (else the global one).
        #[arg(long, value_name = "EMAIL")]
        user: Option<String>,
    },
    /// How many messages the global model (or a user's) has learnt, and its size.
    Status {
        /// This user's model (else the global one and a line per user).
        #[arg(long, value_name = "EMAIL")]
        user: Option<String>,
    },
    /// Judge message files without delivering them, and explain the verdicts.
    Classify {
        /// Message files (.eml; a file saved from an mbox may keep its `From ` line).
        #[arg(required = true, num_args = 1..)]
        files: Vec<PathBuf>,
        /// One line per file: path, score, action, spam probability (tab-separated).
        #[arg(long)]
        brief: bool,
        /// Judge with this user's model and the global one (else the global one alone).
        #[arg(long, value_name = "EMAIL")]
        user: Option<String>,
    },
}

#[derive(Subcommand)]
enum StoreCmd {
    /// Copy the embedded store (users, mailboxes with their UIDs, UIDVALIDITY, flags and
    /// modseqs, the queue, the quarantine, DKIM keys, spam models) into a PostgreSQL database,
    /// so that clients do not resync. Run it with the server stopped; an interrupted copy goes
    /// on where it stopped when run again. Then set `[store] backend = "postgres"` and `url`.
    Migrate {
        /// The database: `postgres://user:password@host:port/database` or the key/value form
        /// (`host=/run/postgresql dbname=tern user=tern`).
        #[arg(long)]
        to: String,
    },
}

#[derive(Subcommand)]
enum QueueCmd {
    /// One line per queued message: id, date, sender, size, age, next attempt, recipients.
    List,
    /// Every recipient of a queued message with its status and last result. ID is the
    /// message's id (`queued as ...` in the SMTP reply, `id` in its Received: field).
    Show {
        /// The message's id (`queued as ...` in its SMTP reply, `id` in its Received: field), or the queue's number for it.
        id: String,
    },
    /// Try again now: one message, or all with --all.
    Retry {
        /// The message's id (`queued as ...`), or the queue's number for it.
        id: Option<String>,
        /// Every queued message.
        #[arg(long, conflicts_with = "id")]
        all: bool,
    },
    /// Drop a message from the queue without delivering or bouncing it.
    Remove {
        /// The message's id (`queued as ...`), or the queue's number for it.
        id: String,
    },
}

#[derive(Subcommand)]
enum CheckCmd {
    /// SPF of a client: the result word on the first line, then details.
    Spf {
        /// The client's IP address.
        #[arg(long)]
        ip: std::net::IpAddr,
        /// The name the client gave in HELO/EHLO.
        #[arg(long)]
        helo: String,
        /// Check the MAIL FROM identity (else the HELO identity).
        #[arg(long)]
        sender: Option<String>,
    },
    /// Every DKIM signature of a message file, then the overall result word.
    Dkim {
        /// The message file.
        file: PathBuf,
    },
    /// DMARC of a message file as if it came from IP with HELO and MAIL FROM.
    Dmarc {
        /// The message file.
        file: PathBuf,
        /// The client's IP address.
        #[arg(long)]
        ip: std::net::IpAddr,
        /// The name the client gave in HELO/EHLO.
        #[arg(long)]
        helo: String,
        /// The MAIL FROM address.
        #[arg(long)]
        sender: String,
    },
}

#[derive(Subcommand)]
enum DkimCmd {
    /// Make new Ed25519 and RSA-2048 keys for a local domain and print their DNS records.
    Generate {
        /// A local domain.
        domain: String,
    },
}

#[derive(Subcommand)]
enum DomainCmd {
    /// Receive mail for a domain.
    Add {
        /// The domain (an IDN may be given in Unicode).
        domain: String,
        /// Deliver mail for unknown local parts to this address.
        #[arg(long, value_name = "ADDRESS")]
        catch_all: Option<String>,
    },
    /// Set or clear (no ADDRESS) the catch-all address of a domain.
    CatchAll {
        /// A local domain.
        domain: String,
        /// Where its unknown local parts go; none clears the catch-all.
        address: Option<String>,
    },
    List,
    /// Stop receiving mail for a domain (it must have no users or aliases left).
    Remove {
        /// A local domain.
        domain: String,
    },
}

#[derive(Subcommand)]
enum UserCmd {
    /// Create a user with INBOX, Sent, Drafts, Trash, Junk and Archive. Prints a generated
    /// password unless --password-stdin is given.
    Add {
        /// The new user's address, in a local domain.
        email: String,
        /// Read the password from the first line of standard input (else one is generated and printed).
        #[arg(long, conflicts_with = "shared")]
        password_stdin: bool,
        /// A shared mailbox account such as support@: it receives mail, nobody logs in as it,
        /// and the users its ACLs name (`tern share set`) read it under Public/, each with
        /// their own \Seen.
        #[arg(long)]
        shared: bool,
    },
    /// Change a password (generated unless --password-stdin).
    Passwd {
        /// The user's address.
        email: String,
        /// Read the password from the first line of standard input (else one is generated and printed).
        #[arg(long)]
        password_stdin: bool,
    },
    List,
    /// Remove a user and all of its mail.
    Remove {
        /// The user's address.
        email: String,
    },
    /// Set the storage limit of a user in bytes, or remove it with `none`.
    Quota {
        /// The user's address.
        email: String,
        /// The limit in bytes, or `none`.
        bytes: String,
    },
    /// Make a user an administrator of the web admin (`on`), or no longer one (`off`).
    Admin {
        /// The user's address.
        email: String,
        /// `on` or `off`.
        #[arg(value_parser = ["on", "off"])]
        state: String,
    },
    /// Refuse every login of a user (IMAP, POP3, submission, ManageSieve, web); mail is still received.
    Disable {
        /// The user's address.
        email: String,
    },
    /// Allow a disabled user's logins again.
    Enable {
        /// The user's address.
        email: String,
    },
    /// App passwords: one random password per device or program, removable one by one.
    #[command(subcommand, name = "app-password")]
    AppPassword(AppPasswordCmd),
}

#[derive(Subcommand)]
enum AppPasswordCmd {
    /// Make one; it is printed once.
    Add {
        /// The user's address.
        email: String,
        /// What it is for (`phone`, `laptop`).
        name: String,
    },
    /// Remove one (`tern user list` shows their names).
    Remove {
        /// The user's address.
        email: String,
        name: String,
    },
}

#[derive(Subcommand)]
enum AliasCmd {
    /// Forward an address to one or more local or external addresses.
    Add {
        /// The alias address, in a local domain.
        address: String,
        /// Where its mail goes: local or external addresses.
        #[arg(required = true)]
        targets: Vec<String>,
    },
    List,
    /// Remove an alias, or one of its targets.
    Remove {
        /// The alias address.
        address: String,
        /// Remove only this target (else the whole alias).
        target: Option<String>,
    },
}

#[derive(Subcommand)]
enum TokenCmd {
    /// Make a token; its secret is printed once (only its hash is kept).
    Create {
        /// A name for it (letters, digits, '-', '_', '.').
        name: String,
        /// read: look at everything, change nothing; admin: everything.
        #[arg(long, value_enum, default_value = "read")]
        scope: TokenScope,
    },
    /// The tokens with their scopes (never their secrets).
    List,
    /// Revoke a token.
    Remove {
        /// The token's name.
        name: String,
    },
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum TokenScope {
    Read,
    Admin,
}

#[derive(Subcommand)]
enum ShareCmd {
    /// Give IDENTIFIER rights on a user's mailbox: `tern share set bob@example.org Team
    /// @example.org lrs` lets everyone of example.org read Team; rights `""` take them away.
    Set {
        /// The owner's address.
        email: String,
        /// The owner's mailbox (e.g. INBOX, Team/2024).
        mailbox: String,
        /// Who: an address, `@domain` (its users), `anyone` or `authenticated`.
        identifier: String,
        /// RFC 4314 rights: l (see) r (read) s (keep \Seen) w (flags) i (insert) p (post to
        /// user+mailbox@) k (create below) x (delete) t (delete messages) e (expunge) a (admin).
        rights: String,
    },
    /// Take IDENTIFIER's rights on a user's mailbox away.
    Remove {
        /// The owner's address.
        email: String,
        /// The owner's mailbox.
        mailbox: String,
        /// Whose rights go: an address, `@domain`, `anyone` or `authenticated`.
        identifier: String,
    },
    /// A user's shared mailboxes with who may do what, and what others share with the user.
    List {
        /// The user's address.
        email: String,
        /// Only this mailbox's ACL.
        mailbox: Option<String>,
    },
}

#[derive(Subcommand)]
enum SieveCmd {
    /// A user's scripts; the one delivery runs is marked active.
    List {
        /// The user's address.
        email: String,
    },
    /// Print a script.
    Get {
        /// The user's address.
        email: String,
        /// The script's name.
        name: String,
    },
    /// Store a script (from FILE, or standard input), checked first.
    Put {
        /// The user's address.
        email: String,
        /// The script's name (a script of that name is replaced).
        name: String,
        /// The script's file (`-` or none: standard input).
        file: Option<PathBuf>,
    },
    /// Make a script the active one; `--none` leaves the user without one.
    Activate {
        /// The user's address.
        email: String,
        /// The script to run at delivery.
        #[arg(required_unless_present = "none")]
        name: Option<String>,
        /// No script runs for this user.
        #[arg(long, conflicts_with = "name")]
        none: bool,
    },
    /// Delete a script (not the active one).
    Delete {
        /// The user's address.
        email: String,
        /// The script's name.
        name: String,
    },
    /// Check a script without storing it: prints `ok`, or the error with its line and column.
    Check {
        /// The script's file (`-` or none: standard input).
        file: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
enum MailCmd {
    /// One line per message: UID, date, size, from, subject (tab-separated).
    List {
        /// The user's address.
        email: String,
        /// A mailbox (else INBOX).
        mailbox: Option<String>,
    },
    /// The raw message as stored, headers included.
    Show {
        /// The user's address.
        email: String,
        /// The mailbox (INBOX, Junk, ...).
        mailbox: String,
        /// The message's UID (from `tern mail list`).
        uid: u32,
    },
    /// Why a message went where it went: the spam verdict it was delivered with (score,
    /// reasons, the classifier's strongest features both ways, thresholds, action).
    Explain {
        /// The user's address.
        email: String,
        /// The mailbox (INBOX, Junk, ...).
        mailbox: String,
        /// The message's UID (from `tern mail list`).
        uid: u32,
    },
}

impl Global {
    /// The configuration file named on the command line (`--config`) or by `$TERN_CONFIG`.
    fn named_config(&self) -> Option<PathBuf> {
        self.config.clone().or_else(|| std::env::var_os("TERN_CONFIG").filter(|v| !v.is_empty()).map(PathBuf::from))
    }
}

/// The configuration: `--config FILE`, else `$TERN_CONFIG`, else the system file
/// (`/etc/tern/tern.toml`) when it exists, else the embedded defaults; `--data` overrides its
/// `data_dir`. Also says where the data directory came from, for error messages.
fn load_config(global: &Global) -> anyhow::Result<(Config, String)> {
    let named = global.named_config();
    let system = Path::new(tern_config::SYSTEM_CONFIG);
    let user = tern_config::user_config().filter(|p| p.exists());
    let (mut config, mut source) = match (named, user) {
        (Some(path), _) => {
            let how = if global.config.is_some() { "--config" } else { "$TERN_CONFIG" };
            (Config::load(&path)?, format!("data_dir of {} ({how})", path.display()))
        }
        (None, Some(user)) => (Config::load(&user)?, format!("data_dir of {}", user.display())),
        (None, None) if system.exists() => (Config::load(system)?, format!("data_dir of {}", system.display())),
        (None, None) => (
            Config::default(),
            "the default (no --config, no $TERN_CONFIG, no ~/.config/tern/tern.toml, no /etc/tern/tern.toml)"
                .to_string(),
        ),
    };
    if let Some(data) = &global.data {
        config.data_dir = data.clone();
        source = "--data".to_string();
    }
    config.validate()?;
    Ok((config, source))
}

fn read_password_stdin() -> anyhow::Result<String> {
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line).context("reading the password from stdin")?;
    let password = line.trim_end_matches(['\r', '\n']).to_string();
    if password.is_empty() {
        anyhow::bail!("empty password on stdin");
    }
    Ok(password)
}

fn init_logging(config: &Config) {
    use tracing_subscriber::EnvFilter;
    // The storage engine narrates recovery at INFO; keep it to warnings unless asked.
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new(format!("fjall=warn,lsm_tree=warn,{}", config.log.level)));
    // Colour only on a terminal: log files and journald get plain text.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    use tracing_subscriber::Layer;
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    let fmt = tracing_subscriber::fmt::layer().with_ansi(ansi).with_writer(std::io::stderr);
    let fmt = match config.log.format {
        tern_config::LogFormat::Json => fmt.json().with_filter(filter).boxed(),
        tern_config::LogFormat::Text => fmt.with_filter(filter).boxed(),
    };
    // The web admin's log page keeps the mail path's INFO events whatever the log level.
    tracing_subscriber::registry().with(fmt).with(tern_server::activity::layer()).init();
}

fn main() -> std::process::ExitCode {
    // Everything Tern writes (store, index, keys, certificates, sockets) is for its own user
    // alone, whatever umask it was started with.
    // SAFETY: umask only sets the process's file mode mask; no threads run yet.
    unsafe {
        libc::umask(0o077);
    }
    // Freed memory goes back to the system at once rather than after mimalloc's default 10 ms:
    // message buffers of many megabytes are freed by other threads than the ones that
    // allocated them, and with the delay 24 concurrent 48 MiB messages peaked 30 % above the
    // memory budget (`smtp.max_inflight_bytes`); without it the process stays under it. An
    // MIMALLOC_PURGE_DELAY in the environment still wins.
    // SAFETY: options are set before any other thread runs (mimalloc's option calls are not
    // thread safe); 15 is `mi_option_purge_delay` in mimalloc 3's mimalloc.h.
    unsafe {
        libmimalloc_sys::mi_option_set_default(MI_OPTION_PURGE_DELAY, 0);
    }
    // No transparent huge pages for this process: with memory returned at once (above), every
    // fresh page a session's buffer lands on was a 2 MiB page zeroed in full on its first
    // touch — 8.6 % of the server's CPU in the 32-session SMTP benchmark's profile, and its p99
    // fell from 31-42 ms to 24-34 ms without it. mimalloc's own switch (MIMALLOC_ALLOW_THP=0)
    // is read before main runs; the flag set here holds for every mapping of the process.
    // SAFETY: prctl with PR_SET_THP_DISABLE only sets a flag of this process.
    #[cfg(target_os = "linux")]
    unsafe {
        libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0);
    }
    match run() {
        Ok(code) => code,
        Err(e) => {
            let _ = writeln!(std::io::stderr(), "tern: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run() -> anyhow::Result<std::process::ExitCode> {
    let cli = Cli::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("tern")
        // Store reads run on the blocking pool; a few dozen threads keep two cores busy, and
        // hundreds would each keep their own allocator heap.
        .max_blocking_threads(16)
        .build()?;
    // Setup may have to make the configuration file the others read.
    if let Command::Setup { domain, admin, hostname, password_stdin } = cli.command {
        let password = if password_stdin { Some(read_password_stdin()?) } else { None };
        let out = runtime.block_on(setup::run(&cli.global, setup::SetupArgs { domain, admin, hostname, password }))?;
        write_stdout(out.as_bytes())?;
        return Ok(std::process::ExitCode::SUCCESS);
    }
    let (mut config, data_source) = load_config(&cli.global)?;
    let _ = DATA_SOURCE.set(data_source);
    let request = match cli.command {
        Command::Setup { .. } => unreachable!("handled above"),
        Command::Serve { dev } => {
            if dev {
                config.apply_dev_ports();
            }
            init_logging(&config);
            runtime.block_on(tern_server::serve(config))?;
            return Ok(std::process::ExitCode::SUCCESS);
        }
        Command::Config => {
            config.check_files()?;
            if let Some(path) = &config.sieve.before {
                let source =
                    std::fs::read_to_string(path).with_context(|| format!("sieve.before {}", path.display()))?;
                tern_sieve::compile(&source).map_err(|e| anyhow::anyhow!("sieve.before {}: {e}", path.display()))?;
            }
            if let Some(dir) = &config.sieve.global_dir {
                tern_server::global_sieve_scripts(dir)?;
            }
            write_stdout(config.to_toml()?.as_bytes())?;
            return Ok(std::process::ExitCode::SUCCESS);
        }
        Command::Domain(cmd) => match cmd {
            DomainCmd::Add { domain, catch_all } => AdminRequest::DomainAdd { name: domain, catch_all },
            DomainCmd::CatchAll { domain, address } => AdminRequest::DomainCatchAll { name: domain, target: address },
            DomainCmd::List => AdminRequest::DomainList,
            DomainCmd::Remove { domain } => AdminRequest::DomainRemove { name: domain },
        },
        Command::User(cmd) => match cmd {
            UserCmd::Add { email, password_stdin, shared } => {
                let password = if password_stdin { Some(read_password_stdin()?) } else { None };
                AdminRequest::UserAdd { email, password, shared }
            }
            UserCmd::Passwd { email, password_stdin } => {
                let password = if password_stdin { Some(read_password_stdin()?) } else { None };
                AdminRequest::UserPasswd { email, password }
            }
            UserCmd::List => AdminRequest::UserList,
            UserCmd::Remove { email } => AdminRequest::UserRemove { email },
            UserCmd::Quota { email, bytes } => {
                let bytes = match bytes.as_str() {
                    "none" | "unlimited" => None,
                    n => Some(n.parse::<u64>().with_context(|| format!("{n:?} is not a number of bytes or `none`"))?),
                };
                AdminRequest::UserQuota { email, bytes }
            }
            UserCmd::Admin { email, state } => AdminRequest::UserAdmin { email, admin: state == "on" },
            UserCmd::Disable { email } => AdminRequest::UserDisabled { email, disabled: true },
            UserCmd::Enable { email } => AdminRequest::UserDisabled { email, disabled: false },
            UserCmd::AppPassword(AppPasswordCmd::Add { email, name }) => AdminRequest::AppPasswordAdd { email, name },
            UserCmd::AppPassword(AppPasswordCmd::Remove { email, name }) => {
                AdminRequest::AppPasswordRemove { email, name }
            }
        },
        Command::Alias(cmd) => match cmd {
            AliasCmd::Add { address, targets } => AdminRequest::AliasAdd { address, targets },
            AliasCmd::List => AdminRequest::AliasList,
            AliasCmd::Remove { address, target } => AdminRequest::AliasRemove { address, target },
        },
        Command::Token(cmd) => match cmd {
            TokenCmd::Create { name, scope } => AdminRequest::TokenCreate {
                name,
                scope: match scope {
                    TokenScope::Read => tern_store::ApiScope::Read,
                    TokenScope::Admin => tern_store::ApiScope::Admin,
                },
            },
            TokenCmd::List => AdminRequest::TokenList,
            TokenCmd::Remove { name } => AdminRequest::TokenRemove { name },
        },
        Command::Share(cmd) => match cmd {
            ShareCmd::Set { email, mailbox, identifier, rights } => {
                AdminRequest::ShareSet { email, mailbox, identifier, rights }
            }
            ShareCmd::Remove { email, mailbox, identifier } => {
                AdminRequest::ShareSet { email, mailbox, identifier, rights: String::new() }
            }
            ShareCmd::List { email, mailbox } => AdminRequest::ShareList { email, mailbox },
        },
        Command::Sieve(cmd) => match cmd {
            SieveCmd::List { email } => AdminRequest::SieveList { email },
            SieveCmd::Get { email, name } => AdminRequest::SieveGet { email, name },
            SieveCmd::Put { email, name, file } => {
                AdminRequest::SievePut { email, name, source: read_text_input(file.as_deref())? }
            }
            SieveCmd::Activate { email, name, none: _ } => AdminRequest::SieveActivate { email, name },
            SieveCmd::Delete { email, name } => AdminRequest::SieveDelete { email, name },
            // Checked here: no server needed.
            SieveCmd::Check { file } => {
                let source = read_text_input(file.as_deref())?;
                return match tern_sieve::compile(&source) {
                    Ok(_) => {
                        write_stdout(b"ok\n")?;
                        Ok(std::process::ExitCode::SUCCESS)
                    }
                    Err(e) => {
                        eprintln!("{e}");
                        Ok(std::process::ExitCode::FAILURE)
                    }
                };
            }
        },
        Command::Mail(cmd) => match cmd {
            MailCmd::List { email, mailbox } => AdminRequest::MailList { email, mailbox },
            MailCmd::Show { email, mailbox, uid } => AdminRequest::MailShow { email, mailbox, uid },
            MailCmd::Explain { email, mailbox, uid } => AdminRequest::MailExplain { email, mailbox, uid },
        },
        Command::Spam(SpamCmd::Status { user }) => AdminRequest::SpamStatus { email: user },
        Command::Quarantine(cmd) => match cmd {
            QuarantineCmd::List => AdminRequest::QuarantineList,
            QuarantineCmd::Show { id } => AdminRequest::QuarantineShow { id },
            QuarantineCmd::Release { id, learn_ham } => AdminRequest::QuarantineRelease { id, learn_ham },
            QuarantineCmd::Delete { id } => AdminRequest::QuarantineDelete { id },
        },
        Command::Spam(SpamCmd::Classify { files, user, brief }) => {
            let out = runtime.block_on(train::classify(&config, &files, user, brief))?;
            write_stdout(out.as_bytes())?;
            return Ok(std::process::ExitCode::SUCCESS);
        }
        Command::Spam(SpamCmd::Train { spam, ham, user }) => {
            if spam.is_empty() && ham.is_empty() {
                anyhow::bail!("name messages to learn with --spam PATH and/or --ham PATH");
            }
            let summary = runtime.block_on(train::run(&config, &spam, &ham, user))?;
            write_stdout(summary.as_bytes())?;
            return Ok(std::process::ExitCode::SUCCESS);
        }
        Command::Import(cmd) => {
            let out = runtime.block_on(async {
                match cmd {
                    ImportCmd::Mbox { email, path, mailbox } => {
                        transfer::import_mbox(&config, &email, &path, &mailbox).await
                    }
                    ImportCmd::Maildir { email, path, mailbox } => {
                        transfer::import_maildir(&config, &email, &path, mailbox.as_deref()).await
                    }
                }
            })?;
            write_stdout(out.as_bytes())?;
            return Ok(std::process::ExitCode::SUCCESS);
        }
        Command::Doctor { domain, probe } => {
            let (out, failed) = runtime.block_on(doctor::run(&config, &domain, &probe))?;
            write_stdout(out.as_bytes())?;
            return Ok(if failed { std::process::ExitCode::FAILURE } else { std::process::ExitCode::SUCCESS });
        }
        Command::Backup { dir } => AdminRequest::Backup { dir: tern_server::backup::absolute(&dir)? },
        Command::Restore { dir } => {
            let out = tern_server::backup::restore(&config.data_dir, &dir, config.store.cache_mb)?;
            write_stdout(out.as_bytes())?;
            return Ok(std::process::ExitCode::SUCCESS);
        }
        Command::Store(StoreCmd::Migrate { to }) => {
            let out = runtime.block_on(store_migrate(&config, &to))?;
            write_stdout(out.as_bytes())?;
            return Ok(std::process::ExitCode::SUCCESS);
        }
        Command::Migrate(MigrateCmd::Imap { from, user, password_stdin: _, to, ca_file }) => {
            let password = read_password_stdin()?;
            let to = to.unwrap_or_else(|| user.clone());
            let args = migrate::MigrateArgs { from, user, password, to, ca_file };
            let out = runtime.block_on(migrate::run(&config, args))?;
            write_stdout(out.as_bytes())?;
            return Ok(std::process::ExitCode::SUCCESS);
        }
        Command::Export { email, dir, format, mailbox } => {
            let out = runtime.block_on(transfer::export(&config, &email, &dir, format, mailbox.as_deref()))?;
            write_stdout(out.as_bytes())?;
            return Ok(std::process::ExitCode::SUCCESS);
        }
        Command::Queue(cmd) => match cmd {
            QueueCmd::List => AdminRequest::QueueList,
            QueueCmd::Show { id } => AdminRequest::QueueShow { id },
            QueueCmd::Retry { id, all } => {
                if id.is_none() && !all {
                    anyhow::bail!("name a queue id, or use --all");
                }
                AdminRequest::QueueRetry { id }
            }
            QueueCmd::Remove { id } => AdminRequest::QueueRemove { id },
        },
        Command::Dkim(DkimCmd::Generate { domain }) => AdminRequest::DkimGenerate { domain },
        Command::Dns { domain } => AdminRequest::Dns { domain },
        Command::Check(cmd) => {
            let out = runtime.block_on(async {
                match cmd {
                    CheckCmd::Spf { ip, helo, sender } => check::spf(&config, ip, &helo, sender.as_deref()).await,
                    CheckCmd::Dkim { file } => {
                        let raw = mailfile::crlf(
                            std::fs::read(&file).with_context(|| format!("reading {}", file.display()))?,
                        );
                        check::dkim(&config, &raw).await
                    }
                    CheckCmd::Dmarc { file, ip, helo, sender } => {
                        let raw = mailfile::crlf(
                            std::fs::read(&file).with_context(|| format!("reading {}", file.display()))?,
                        );
                        check::dmarc(&config, &raw, ip, &helo, &sender).await
                    }
                }
            })?;
            write_stdout(out.as_bytes())?;
            return Ok(std::process::ExitCode::SUCCESS);
        }
    };
    let reply = runtime.block_on(administer(&config, request))?;
    if reply.ok {
        write_stdout(&reply.output)?;
    } else {
        let mut err = std::io::stderr();
        let _ = err.write_all(&reply.output).and_then(|_| err.flush());
    }
    Ok(if reply.ok { std::process::ExitCode::SUCCESS } else { std::process::ExitCode::FAILURE })
}

/// Writes command output; a reader that went away (`tern config | head -1`) is not an
/// error worth a panic or a message.
fn write_stdout(bytes: &[u8]) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    match out.write_all(bytes).and_then(|_| out.flush()) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        other => Ok(other?),
    }
}

/// Sends the request to the running server, or executes it on the store when none runs.
async fn administer(config: &Config, request: AdminRequest) -> anyhow::Result<admin::AdminReply> {
    let admin = Admin::connect(config, false).await?;
    let reply = admin.run(request).await;
    admin.close().await?;
    reply
}

fn base64_of(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// `tern store migrate --to URL`: the embedded store of the data directory into PostgreSQL.
async fn store_migrate(config: &Config, url: &str) -> anyhow::Result<String> {
    use tern_store::Store;
    let path = tern_server::store_path(&config.data_dir);
    if !path.exists() {
        anyhow::bail!("there is no store in {} to copy", config.data_dir.display());
    }
    let cache_mb = config.store.cache_mb;
    let source = tokio::task::spawn_blocking({
        let path = path.clone();
        move || tern_store::embedded::EmbeddedStore::open_with(&path, cache_mb, false)
    })
    .await?
    .with_context(|| format!("cannot open the store in {} (stop `tern serve` first)", path.display()))?;
    let options = tern_store_postgres::PgOptions {
        url: url.to_string(),
        pool_size: config.store.pool_size.max(2),
        ca_file: config.store.ca_file.clone(),
    };
    let target = tern_store_postgres::PgStore::open(&options).await.context("cannot open the PostgreSQL store")?;
    let secret = std::fs::read(config.data_dir.join("secret")).ok().and_then(|b| b.try_into().ok());
    let started = std::time::Instant::now();
    let mut progress = |line: &str| eprintln!("{line}");
    let copied = tern_store_postgres::migrate::migrate(&source, &target, secret, &mut progress).await;
    source.shutdown().await?;
    target.shutdown().await?;
    let s = copied.context("copy to PostgreSQL")?;
    Ok(format!(
        "copied in {:.1} s: {} domains, {} accounts, {} aliases, {} mailboxes, {} messages ({} already there), \
         {} queued, {} quarantined, {} spam models, {} Sieve scripts\n\
         Now set in the configuration of every node:\n[store]\nbackend = \"postgres\"\nurl = \"...\"   (the URL given with --to)\n",
        started.elapsed().as_secs_f64(),
        s.domains,
        s.accounts,
        s.aliases,
        s.mailboxes,
        s.messages,
        s.skipped_messages,
        s.queued,
        s.quarantined,
        s.spam_models,
        s.sieve_scripts,
    ))
}

/// `tern --version`: the version, the commit it was built from, the store format it reads.
const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (commit ",
    env!("TERN_COMMIT"),
    ", store format ",
    // Kept equal to tern_store::embedded::FORMAT_VERSION by a test.
    "1",
    ")"
);

/// Where the data directory was taken from (for messages that name it).
pub(crate) static DATA_SOURCE: std::sync::OnceLock<String> = std::sync::OnceLock::new();

/// Where admin requests go: the running server's socket, or the store opened here when no
/// server runs (one process per store).
pub(crate) enum Admin {
    Server(PathBuf),
    Direct { context: admin::AdminContext, store: Arc<dyn tern_store::Store> },
}

impl Admin {
    /// `create`: whether a store may be made when there is none (only `tern setup`).
    pub(crate) async fn connect(config: &Config, create: bool) -> anyhow::Result<Admin> {
        let socket = admin::socket_path(&config.data_dir);
        match admin::send(&socket, &AdminRequest::Ping).await {
            Ok(_) => return Ok(Admin::Server(socket)),
            Err(e) if matches!(e.kind(), std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused) => {}
            Err(e) => return Err(e).with_context(|| format!("talking to the server at {}", socket.display())),
        }
        // A command run with the wrong (or no) configuration must not quietly make an empty
        // store the server never sees: only `serve` and `setup` make one.
        if !create
            && config.store.backend == tern_config::StoreBackend::Embedded
            && !tern_server::store_path(&config.data_dir).exists()
        {
            anyhow::bail!(
                "no server answers at {} and there is no Tern data in {} (from {}). Run `tern setup` \
                 to make it, or name the server's configuration with --config FILE or $TERN_CONFIG \
                 (or its data with --data DIR).",
                socket.display(),
                config.data_dir.display(),
                DATA_SOURCE.get().map(String::as_str).unwrap_or("the configuration"),
            );
        }
        let store = tern_server::open_store(config, false).await?;
        let directory = tern_directory::Directory::new(Arc::clone(&store), config.plus_separator());
        let spam =
            Arc::new(tern_pipeline::spam::SpamFilter::new(Arc::clone(&store), tern_server::spam_settings(config)));
        let context = admin::AdminContext {
            directory,
            hostname: config.hostname.clone(),
            mta_sts: config.mta_sts.clone(),
            data_dir: config.data_dir.clone(),
            delivery: None,
            spam,
            spam_thresholds: tern_server::spam_thresholds(config),
            auth_guard: None,
        };
        Ok(Admin::Direct { context, store })
    }

    pub(crate) async fn run(&self, request: AdminRequest) -> anyhow::Result<admin::AdminReply> {
        match self {
            Admin::Server(socket) => admin::send(socket, &request)
                .await
                .with_context(|| format!("talking to the server at {}", socket.display())),
            Admin::Direct { context, .. } => Ok(admin::execute(context, request).await),
        }
    }

    pub(crate) async fn close(self) -> anyhow::Result<()> {
        if let Admin::Direct { store, .. } = self {
            store.shutdown().await?;
        }
        Ok(())
    }
}

/// A text file's content, or standard input for `-` or none.
fn read_text_input(file: Option<&std::path::Path>) -> anyhow::Result<String> {
    use std::io::Read;
    match file {
        Some(path) if path != std::path::Path::new("-") => {
            std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))
        }
        _ => {
            let mut text = String::new();
            std::io::stdin().read_to_string(&mut text).context("cannot read standard input")?;
            Ok(text)
        }
    }
}
