//! `tern setup [DOMAIN]`: makes a data directory (the only command besides `serve` that may),
//! and for a domain its admin account, DKIM keys and the DNS records to publish; writes a
//! commented configuration file when there is none. Every step is skipped when already done,
//! so running it again is safe.

use crate::{Admin, DATA_SOURCE, Global};
use anyhow::Context;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use tern_config::{Config, Listen, Service};
use tern_server::admin::AdminRequest;

pub struct SetupArgs {
    pub domain: Option<String>,
    pub admin: Option<String>,
    pub hostname: Option<String>,
    pub password: Option<String>,
}

/// The file `tern setup` reads or writes: `--config`, `$TERN_CONFIG`, else the system file for
/// root and the user's file for anyone else.
fn config_target(global: &Global) -> PathBuf {
    global.named_config().or_else(tern_config::user_config).unwrap_or_else(|| PathBuf::from(tern_config::SYSTEM_CONFIG))
}

pub async fn run(global: &Global, args: SetupArgs) -> anyhow::Result<String> {
    let target = config_target(global);
    let existing = target.exists();
    let mut config = if existing { Config::load(&target)? } else { Config::default() };
    if !existing {
        // What the new file will say (see `config_template`).
        config.listen.https = Listen::default_addresses(Service::Https);
    }
    let mut out = String::new();
    if let Some(hostname) = &args.hostname {
        if existing && !config.hostname.eq_ignore_ascii_case(hostname) {
            anyhow::bail!(
                "{} says hostname = {:?}; change it there (setup does not edit an existing file)",
                target.display(),
                config.hostname
            );
        }
        config.hostname = hostname.trim_end_matches('.').to_ascii_lowercase();
    }
    if let Some(data) = &global.data {
        config.data_dir = data.clone();
    }
    config.validate()?;
    let _ = DATA_SOURCE.set(format!("data_dir of {}", target.display()));

    let data_dir = config.data_dir.clone();
    tokio::task::spawn_blocking(move || tern_server::data_dir::secure(&data_dir)).await??;
    let admin = Admin::connect(&config, true).await?;
    writeln!(out, "data directory {}: ready", config.data_dir.display())?;
    let reply = match &args.domain {
        Some(domain) => Some(
            admin
                .run(AdminRequest::Setup {
                    domain: domain.clone(),
                    admin: args.admin.clone(),
                    password: args.password.clone(),
                })
                .await,
        ),
        None => None,
    };
    admin.close().await?;
    if let Some(reply) = reply {
        let reply = reply?;
        let text = String::from_utf8_lossy(&reply.output);
        anyhow::ensure!(reply.ok, "{}", text.trim_end());
        out.push_str(&text);
    }

    if existing {
        writeln!(out, "\nconfiguration {}: exists (unchanged)", target.display())?;
    } else {
        write_new_file(&target, config_template(&config, args.domain.as_deref()).as_bytes())
            .with_context(|| format!("cannot write the configuration file {}", target.display()))?;
        writeln!(out, "\nconfiguration {}: written (edit it, then check it with `tern config`)", target.display())?;
    }
    out.push_str(&firewall(&config));
    writeln!(out, "\nNext:")?;
    if args.domain.is_none() {
        writeln!(out, "  tern setup DOMAIN          add your mail domain, its admin and DKIM keys")?;
    }
    writeln!(out, "  publish the DNS records     (`tern dns DOMAIN` prints them again)")?;
    writeln!(out, "  tern serve                  or: systemctl enable --now tern (deploy/systemd/tern.service)")?;
    Ok(out)
}

/// Creates `path` (and its directory) with `bytes`, flushed to disk; never replaces a file.
fn write_new_file(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)?;
    }
    let mut file = std::fs::OpenOptions::new().write(true).create_new(true).open(path)?;
    file.write_all(bytes)?;
    file.sync_all()
}

/// What to open in the firewall, from the listeners the configuration has.
fn firewall(config: &Config) -> String {
    let port = |s: Service| config.listen.addrs(s).first().map(|a| a.port());
    let mut inbound = Vec::new();
    for (service, why) in [
        (Service::Smtp, "mail from the world"),
        (Service::Submissions, "mail from your users, TLS"),
        (Service::Submission, "mail from your users, STARTTLS"),
        (Service::Imaps, "IMAP, TLS"),
        (Service::Imap, "IMAP, STARTTLS"),
        (Service::Pop3s, "POP3, TLS"),
        (Service::Pop3, "POP3, STARTTLS"),
        (Service::Https, "MTA-STS policy, client autoconfiguration"),
    ] {
        if let Some(p) = port(service) {
            inbound.push(format!("  {p:>5}/tcp  {why}"));
        }
    }
    let mut out = String::from("\nFirewall: open inbound\n");
    out.push_str(&inbound.join("\n"));
    out.push_str("\nand outbound 25/tcp (delivery to other servers; many clouds block it until asked) and 53 (DNS).\n");
    if let Some(p) = port(Service::Http) {
        let _ = writeln!(out, "Keep {p}/tcp (metrics and health) closed to the world.");
    }
    out
}

/// A commented configuration file: the values setup decided, and the keys an admin changes
/// first, with their defaults (`tern config` prints every key).
pub fn config_template(config: &Config, domain: Option<&str>) -> String {
    let https =
        Listen::default_addresses(Service::Https).iter().map(|a| format!("\"{a}\"")).collect::<Vec<_>>().join(", ");
    let made_for = domain.map(|d| format!(" for {d}")).unwrap_or_default();
    format!(
        r#"# Tern configuration, written by `tern setup`{made_for}.
# Keys left out have their defaults: `tern config` prints them all, docs/config.md explains them.
# After a change: `tern config` checks the file; restart Tern (certificates: SIGHUP is enough).

# The name of this server: its greeting, its MX target, the name on its certificate.
hostname = "{hostname}"
# Mail, keys, certificates and the admin socket. Back it up (`tern backup`).
data_dir = "{data_dir}"

[listen]
# Standard ports on every address by default. HTTPS serves the MTA-STS policy and mail client
# autoconfiguration; remove it if a web server already has port 443.
https = [{https}]
# http = ["127.0.0.1:8080"]   # metrics and health: keep it private

[tls]
# A certificate for the hostname (and mta-sts.DOMAIN, autoconfig.DOMAIN). Without one, Tern
# makes a self-signed certificate in data_dir/tls, which mail clients will warn about.
# cert = "/etc/tern/fullchain.pem"
# key = "/etc/tern/privkey.pem"

[mta_sts]
# "testing" asks senders to report TLS problems; switch to "enforce" once reports are clean.
mode = "{mode}"

[acme]
# Certificates from Let's Encrypt for the hostname and mta-sts./autoconfig. of each domain,
# renewed by Tern itself (TLS-ALPN-01 on port 443). Replaces [tls] cert/key once issued.
enabled = false
# contact = ["mailto:you@example.org"]
# directory = "https://acme-staging-v02.api.letsencrypt.org/directory"   # to try things out

# [spam]
# junk_score = 5.0
# [delivery]
# smarthost = {{ host = "smtp.example.net", port = 587, security = "starttls", username = "u", password = "p" }}

[log]
level = "info"
# format = "json"
"#,
        hostname = config.hostname,
        data_dir = config.data_dir.display(),
        mode = config.mta_sts.mode.as_str(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_template_is_a_valid_configuration_with_the_values_given() {
        let config = Config { hostname: "mail.example.org".into(), data_dir: "/srv/tern".into(), ..Default::default() };
        let text = config_template(&config, Some("example.org"));
        let parsed = Config::from_toml(&text, Path::new("tern.toml")).unwrap();
        assert_eq!(parsed.hostname, "mail.example.org");
        assert_eq!(parsed.data_dir, PathBuf::from("/srv/tern"));
        assert_eq!(parsed.listen.https.len(), 2);
        assert_eq!(parsed.listen.https[0].port(), 443);
        // The commented-out smarthost line is itself valid TOML once uncommented.
        let smarthost = text.lines().find(|l| l.starts_with("# smarthost")).unwrap();
        let uncommented = format!("[delivery]\n{}\n", &smarthost[2..]);
        assert!(Config::from_toml(&uncommented, Path::new("x.toml")).is_ok(), "{uncommented}");
    }
}
