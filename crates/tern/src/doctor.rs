//! `tern doctor DOMAIN`: what the world sees of a domain, checked through DNS (the configured
//! resolver) and over the network, each item `ok`, `missing`, `wrong` or `warn` with the fix.
//! The checks are `tern_server::dns_check`'s (the web admin shows the same); this adds whether
//! this machine can send on port 25.

use crate::Admin;
use anyhow::Context;
use std::time::Duration;
use tern_config::Config;
use tern_dns::{Dns, MxAnswer};
use tern_server::admin::{AdminRequest, ExpectedDns};
use tern_server::dns_check::{Report, Status};

/// Runs every check; the report and whether anything is missing or wrong.
pub async fn run(config: &Config, domain: &str, probe: &str) -> anyhow::Result<(String, bool)> {
    let admin = Admin::connect(config, false).await?;
    let reply = admin.run(AdminRequest::DnsExpected { domain: domain.to_string() }).await;
    admin.close().await?;
    let reply = reply?;
    anyhow::ensure!(reply.ok, "{}", String::from_utf8_lossy(&reply.output).trim());
    let expected: ExpectedDns = serde_json::from_slice(&reply.output)?;
    let dns = Dns::from_config(&config.dns)
        .map_err(|e| anyhow::anyhow!(e))
        .context("the DNS resolver (config section [dns])")?;
    let mut report = tern_server::dns_check::check_domain(config, &dns, &expected).await?;
    // Port 25 outward.
    report_outbound(&mut report, &dns, probe, config.delivery.smtp_port).await;

    Ok((report.render(), report.failed()))
}

/// Whether this machine can open SMTP connections to the world: the MX of `probe` on port
/// `port`, a 220 greeting within 15 seconds.
async fn report_outbound(report: &mut Report, dns: &Dns, probe: &str, port: u16) {
    use tokio::io::AsyncReadExt;
    let hosts = match dns.mx(probe).await {
        Ok(MxAnswer::Hosts(h)) if !h.is_empty() => h,
        _ => {
            report.add(
                Status::Warn,
                "outbound 25",
                format!("cannot tell: no MX for {probe} (try --probe DOMAIN)"),
                None,
            );
            return;
        }
    };
    let ip = match dns.ips(&hosts[0]).await.ok().and_then(|ips| ips.first().copied()) {
        Some(ip) => ip,
        None => {
            report.add(Status::Warn, "outbound 25", format!("cannot tell: {} has no address", hosts[0]), None);
            return;
        }
    };
    let attempt = tokio::time::timeout(Duration::from_secs(15), async {
        let mut stream = tokio::net::TcpStream::connect((ip, port)).await?;
        let mut greeting = [0u8; 3];
        stream.read_exact(&mut greeting).await?;
        Ok::<_, std::io::Error>(greeting)
    })
    .await;
    match attempt {
        Ok(Ok(g)) if &g == b"220" => {
            report.add(Status::Ok, "outbound 25", format!("{} ({ip}) port {port} answered", hosts[0]), None)
        }
        Ok(Ok(_)) => report.add(
            Status::Warn,
            "outbound 25",
            format!("{} ({ip}) port {port} answered without 220", hosts[0]),
            None,
        ),
        Ok(Err(e)) => report.add(
            Status::Wrong,
            "outbound 25",
            format!("{} ({ip}) port {port}: {e}", hosts[0]),
            Some("outbound port 25 is blocked here: ask the provider to open it, or use [delivery] smarthost".into()),
        ),
        Err(_) => report.add(
            Status::Wrong,
            "outbound 25",
            format!("{} ({ip}) port {port}: no answer in 15 s", hosts[0]),
            Some("outbound port 25 is blocked here: ask the provider to open it, or use [delivery] smarthost".into()),
        ),
    }
}
