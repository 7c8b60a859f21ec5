//! `tern serve`: opens the store, binds every configured listener, and runs until SIGTERM or
//! SIGINT; then stops accepting, lets sessions finish their transaction, flushes the store and
//! exits.

pub mod acme;
pub mod activity;
pub mod admin;
pub mod api;
pub mod autoconfig;
pub mod backup;
pub mod data_dir;
pub mod dns_check;
mod http;
mod listen;
pub mod metrics_catalog;
pub mod mta_sts;
pub mod privilege;
pub mod web;

use anyhow::Context;
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tern_config::{Config, Service};
use tern_directory::Directory;
use tern_guard::ConnectionLimits;
use tern_smtp::{SmtpServer, SmtpSettings};
use tern_store::Store;
use tern_store::embedded::EmbeddedStore;
use tokio_util::sync::CancellationToken;

/// How long in-flight sessions get to finish after a shutdown signal.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(30);
/// Written in the data directory once every listener is bound: pid and actual addresses
/// (useful with port 0 in tests and for scripts).
pub const RUN_FILE: &str = "run.json";
/// DMARC results counted for the next aggregate reports.
pub(crate) const DMARC_STATE: &str = "dmarc-reports.json";

pub fn store_path(data_dir: &Path) -> PathBuf {
    data_dir.join("store")
}

/// Opens the configured store: the embedded one of the data directory (`full_text` runs its
/// indexer), or the PostgreSQL database of a cluster.
pub async fn open_store(config: &Config, full_text: bool) -> anyhow::Result<Arc<dyn Store>> {
    match config.store.backend {
        tern_config::StoreBackend::Embedded => {
            let path = store_path(&config.data_dir);
            let cache_mb = config.store.cache_mb;
            let opened = tokio::task::spawn_blocking({
                let path = path.clone();
                move || EmbeddedStore::open_with(&path, cache_mb, full_text)
            })
            .await?
            .with_context(|| format!("cannot open the store in {}", path.display()))?;
            Ok(Arc::new(opened))
        }
        tern_config::StoreBackend::Postgres => {
            let options = tern_store_postgres::PgOptions {
                url: config.store.url.clone().unwrap_or_default(),
                pool_size: config.store.pool_size,
                ca_file: config.store.ca_file.clone(),
            };
            let opened = tern_store_postgres::PgStore::open(&options)
                .await
                .context("cannot open the PostgreSQL store (config section [store])")?;
            Ok(Arc::new(opened))
        }
    }
}

/// In a cluster, the guard's counts (failed logins, bans, rates, greylist) are told to the
/// other nodes and theirs taken in, so an attacker spread over the balancer meets one ban list.
fn share_guard_state(
    store: &Arc<dyn Store>,
    auth_guard: &Arc<tern_guard::AuthGuard>,
    inbound: &Arc<tern_smtp::inbound::InboundChecks>,
    shutdown: CancellationToken,
) -> Option<tokio::task::JoinHandle<()>> {
    use tern_guard::GuardEvent;
    let mut incoming = store.cluster_messages()?;
    let outbox: tern_guard::Outbox = {
        let store = Arc::clone(store);
        Arc::new(move |event: GuardEvent| {
            if let Some(line) = event.encode() {
                store.cluster_send(line);
            }
        })
    };
    auth_guard.share(Arc::clone(&outbox));
    inbound.share(outbox);
    let (auth_guard, inbound) = (Arc::clone(auth_guard), Arc::clone(inbound));
    Some(tokio::spawn(async move {
        loop {
            let line = tokio::select! {
                _ = shutdown.cancelled() => return,
                line = incoming.recv() => line,
            };
            match line {
                Ok(line) => match GuardEvent::decode(&line) {
                    Some(event) => {
                        if !auth_guard.apply(&event) && !inbound.apply(&event) {
                            tracing::debug!(?event, "cluster guard event with no taker");
                        }
                    }
                    None => tracing::warn!(line, "unreadable cluster guard event"),
                },
                Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                    tracing::warn!(missed = n, "cluster guard events dropped (too many at once)");
                }
                Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
            }
        }
    }))
}

/// Every 30 s: `tern_store_healthy`, `tern_disk_free_bytes`/`tern_disk_size_bytes` of the data
/// directory, and `tern_domain_dkim_keys` per local domain.
async fn health_gauges(store: Arc<dyn Store>, data_dir: PathBuf, shutdown: CancellationToken) {
    let mut tick = tokio::time::interval(Duration::from_secs(30));
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = tick.tick() => {}
        }
        metrics::gauge!("tern_store_healthy").set(if store.is_healthy() { 1.0 } else { 0.0 });
        let dir = data_dir.clone();
        if let Ok(Ok((free, size))) = tokio::task::spawn_blocking(move || disk_space(&dir)).await {
            metrics::gauge!("tern_disk_free_bytes").set(free as f64);
            metrics::gauge!("tern_disk_size_bytes").set(size as f64);
        }
        match store.domain_list().await {
            Ok(domains) => {
                for d in domains {
                    metrics::gauge!("tern_domain_dkim_keys", "domain" => d.name.clone()).set(d.dkim.len() as f64);
                }
            }
            Err(e) => tracing::warn!(error = %e, "cannot list domains for the DKIM gauge"),
        }
    }
}

/// Bytes available to an unprivileged user and the size of the file system holding `path`.
pub(crate) fn disk_space(path: &Path) -> std::io::Result<(u64, u64)> {
    use std::os::unix::ffi::OsStrExt;
    let c_path = std::ffi::CString::new(path.as_os_str().as_bytes())
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
    // SAFETY: statvfs writes into the zeroed struct we own; the path is a valid C string.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::statvfs(c_path.as_ptr(), &mut st) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    let block = st.f_frsize as u64;
    Ok((st.f_bavail as u64 * block, st.f_blocks as u64 * block))
}

fn install_metrics() -> anyhow::Result<metrics_exporter_prometheus::PrometheusHandle> {
    use metrics_exporter_prometheus::PrometheusBuilder;
    let handle = PrometheusBuilder::new()
        .set_buckets(&[0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0])
        .context("metrics buckets")?
        .install_recorder()
        .context("cannot install the metrics recorder")?;
    metrics_catalog::describe_all();
    Ok(handle)
}

/// The server's certificate: its files, the key pair in use (reloadable) and the acceptors for
/// the mail ports and for HTTPS.
struct Certificate {
    paths: tern_tls::CertPaths,
    current: Arc<tern_tls::ServerCertificate>,
    mail: tern_tls::TlsAcceptor,
    https: tern_tls::TlsAcceptor,
}

/// The certificate: ACME's once it has one, else the configured or a self-signed one (ACME
/// replaces it as soon as it is issued).
fn certificate(config: &Config) -> anyhow::Result<Certificate> {
    let acme_paths = acme::certificate_paths(&config.data_dir);
    let cert = if config.acme.enabled && acme_paths.cert.exists() && acme_paths.key.exists() {
        acme_paths
    } else {
        tern_tls::ensure_certificate(
            config.tls.cert.as_deref(),
            config.tls.key.as_deref(),
            &config.data_dir,
            &config.hostname,
        )
        .context("TLS certificate (config keys tls.cert / tls.key)")?
    };
    let (tls_config, certificate) =
        tern_tls::server_config(&cert).context("TLS certificate (config keys tls.cert / tls.key)")?;
    let mail = tern_tls::TlsAcceptor::from(tls_config);
    let https = tern_tls::TlsAcceptor::from(tern_tls::https_config(&certificate)?);
    Ok(Certificate { paths: cert, current: certificate, mail, https })
}

/// The Sieve stage, with the admin's global script when `[sieve] before` names one.
fn sieve_filter(config: &Config, directory: &Directory) -> anyhow::Result<tern_pipeline::stages::SieveFilter> {
    let mut filter = tern_pipeline::stages::SieveFilter::new(directory.clone(), &config.hostname);
    if let Some(path) = &config.sieve.global_dir {
        filter = filter.with_globals(global_sieve_scripts(path)?);
    }
    let Some(path) = &config.sieve.before else { return Ok(filter) };
    let source = std::fs::read_to_string(path).with_context(|| format!("sieve.before {}", path.display()))?;
    let script = tern_sieve::compile(&source).map_err(|e| anyhow::anyhow!("sieve.before {}: {e}", path.display()))?;
    Ok(filter.with_before(Arc::new(script)))
}

/// The admin's scripts in `[sieve] global_dir` (`NAME.sieve`), compiled, by name.
pub fn global_sieve_scripts(dir: &std::path::Path) -> anyhow::Result<HashMap<String, Arc<tern_sieve::Script>>> {
    let mut scripts = HashMap::new();
    let entries = std::fs::read_dir(dir).with_context(|| format!("sieve.global_dir {}", dir.display()))?;
    for entry in entries {
        let path = entry.with_context(|| format!("sieve.global_dir {}", dir.display()))?.path();
        let (Some(name), Some("sieve")) =
            (path.file_stem().and_then(|s| s.to_str()), path.extension().and_then(|s| s.to_str()))
        else {
            continue;
        };
        let source = std::fs::read_to_string(&path).with_context(|| format!("sieve.global_dir {}", path.display()))?;
        let script =
            tern_sieve::compile(&source).map_err(|e| anyhow::anyhow!("sieve.global_dir {}: {e}", path.display()))?;
        scripts.insert(name.to_string(), Arc::new(script));
    }
    Ok(scripts)
}

/// What DMARC aggregate reporting needs: the verifier whose results it reports, and the
/// aggregator that collects them.
type DmarcReporting = (Arc<tern_mailauth::verify::Verifier>, Arc<tern_mailauth::report::Aggregator>);

/// The pipeline of mail arriving on port 25: SPF/DKIM/ARC/DMARC and iprev when
/// `[inbound] verify` (with DMARC reporting when asked for), then the content scan, trace
/// headers and the recipients' Sieve scripts.
fn inbound_pipeline(
    config: &Config,
    dns: &tern_dns::Dns,
    directory: &Directory,
    content_scan: Option<tern_pipeline::stages::ContentScan>,
) -> anyhow::Result<(tern_pipeline::Pipeline, Option<DmarcReporting>)> {
    let mut dmarc_reporting = None;
    // Every inbound message meets its recipients' active Sieve scripts, last.
    let sieve = Some(sieve_filter(config, directory)?);
    let pipeline = match config.inbound.verify {
        true => {
            let psl = match &config.inbound.public_suffix_list {
                Some(path) => {
                    let text = std::fs::read_to_string(path)
                        .with_context(|| format!("inbound.public_suffix_list {}", path.display()))?;
                    tern_mailauth::dmarc::PublicSuffixList::parse(&text)
                        .map_err(|e| anyhow::anyhow!("inbound.public_suffix_list {}: {e}", path.display()))?
                }
                None => tern_mailauth::dmarc::PublicSuffixList::bundled(),
            };
            let verifier = Arc::new(
                tern_mailauth::verify::Verifier::new(dns.clone(), &config.hostname, psl)
                    .with_dmarc(dmarc_specification(config)),
            );
            let aggregator = config.inbound.dmarc_reports.then(|| {
                let saved = std::fs::read(config.data_dir.join(DMARC_STATE)).unwrap_or_default();
                Arc::new(tern_mailauth::report::Aggregator::restore(&saved, tern_store::now_unix()))
            });
            dmarc_reporting = aggregator.clone().map(|a| (Arc::clone(&verifier), a));
            tern_pipeline::inbound_verified(
                tern_pipeline::stages::InboundAuthentication {
                    reports: aggregator,
                    directory: Some(directory.clone()),
                    verifier,
                    policy: tern_pipeline::stages::InboundPolicy {
                        dmarc_reject: config.inbound.dmarc_reject,
                        dmarc_quarantine: config.inbound.dmarc_quarantine,
                        iprev: config.inbound.iprev,
                        trusted: config.limit_exempt(),
                    },
                },
                content_scan,
                sieve,
            )
        }
        _ => tern_pipeline::inbound(content_scan, sieve),
    };
    Ok((pipeline, dmarc_reporting))
}

/// Runs the server until a shutdown signal.
pub async fn serve(config: Config) -> anyhow::Result<()> {
    let signals = Signals::catch();
    tern_tls::install_crypto_provider();
    let metrics = install_metrics()?;
    let run_as = privilege::target(config.server.user.as_deref())?;
    data_dir::secure(&config.data_dir)?;

    let Certificate { paths: cert, current: certificate, mail: tls, https: https_tls } = certificate(&config)?;
    let cert = Arc::new(std::sync::Mutex::new(cert));

    // Every listening socket, while still root (ports below 1024); then root is dropped
    // (`[server] user`) before anything else is opened or created.
    let mut sockets: std::collections::HashMap<Service, Vec<tokio::net::TcpListener>> =
        std::collections::HashMap::new();
    for service in Service::ALL {
        sockets.insert(service, listen::bind_service(&config.listen, service)?);
    }
    if let Some(account) = &run_as {
        privilege::hand_over(&config.data_dir, account)?;
        privilege::drop_to(account)?;
    }

    let store = open_store(&config, true).await?;
    let directory = Directory::with_login_cache(
        Arc::clone(&store),
        config.plus_separator(),
        Duration::from_secs(config.auth.login_cache_seconds),
    )
    .with_secret(match store.cluster_secret().await.context("the cluster's shared secret")? {
        Some(shared) => shared,
        None => data_dir::server_secret(&config.data_dir)?,
    });

    let shutdown = CancellationToken::new();
    let ready = Arc::new(AtomicBool::new(false));
    let mut bound: BTreeMap<&'static str, Vec<String>> = BTreeMap::new();

    // Failed-login accounting, shared by submission, IMAP and POP3.
    let auth_guard = Arc::new(tern_guard::AuthGuard::from_config(&config));

    // Inbound checks: SPF/DKIM/ARC/DMARC in the pipeline, anti-abuse in the sessions.
    // One resolver (with one cache) for verification, blocklists and delivery.
    let dns = tern_dns::Dns::from_config(&config.dns)
        .map_err(|e| anyhow::anyhow!(e))
        .context("the DNS resolver (config section [dns])")?;
    let spam_filter = Arc::new(tern_pipeline::spam::SpamFilter::new(Arc::clone(&store), spam_settings(&config)));
    let scanners = configured_scanners(&config)?;
    let alerts = tern_pipeline::alerts::Alerts::start(
        tern_pipeline::alerts::AlertSettings {
            notify: config.alerts.notify.clone(),
            webhook: match &config.alerts.webhook {
                Some(url) => Some(
                    tern_scan::scanner::http::HttpUrl::parse(url)
                        .map_err(|e| anyhow::anyhow!("alerts.webhook: {e}"))?,
                ),
                None => None,
            },
            min_interval: Duration::from_secs(config.alerts.min_interval_seconds),
            hostname: config.hostname.clone(),
        },
        Arc::clone(&store),
        directory.clone(),
    );
    let content_scan = |classifier: bool| {
        let filter = (classifier && config.spam.enabled).then(|| Arc::clone(&spam_filter));
        (filter.is_some() || !scanners.is_empty()).then(|| tern_pipeline::stages::ContentScan {
            filter,
            scanners: scanners.clone(),
            thresholds: spam_thresholds(&config),
            alerts: alerts.clone(),
        })
    };
    let (inbound_pipeline, dmarc_reporting) = inbound_pipeline(&config, &dns, &directory, content_scan(true))?;
    let inbound_checks =
        Arc::new(tern_smtp::inbound::InboundChecks::new(&config, Arc::clone(&auth_guard), Some(dns.clone())));
    let guard_sharing = share_guard_state(&store, &auth_guard, &inbound_checks, shutdown.clone());

    // SMTP (port 25).
    let smtp_limits =
        ConnectionLimits::new(config.smtp.max_connections, config.smtp.max_connections_per_ip, config.limit_exempt());
    // Message data in memory, for both SMTP services and IMAP APPEND; beyond it, SMTP data is
    // spooled and APPEND waits (see tern_guard::memory).
    let message_memory = tern_guard::MessageMemory::new(config.smtp.max_inflight_bytes, config.data_dir.join("spool"));
    message_memory
        .clear_spool()
        .with_context(|| format!("spool directory {}", message_memory.spool_dir().display()))?;
    let smtp = SmtpServer::new(
        SmtpSettings::from_config(&config, "smtp"),
        directory.clone(),
        inbound_pipeline,
        Some(tls.clone()),
        Arc::clone(&smtp_limits),
        Arc::clone(&auth_guard),
        Some(inbound_checks),
        Arc::clone(&message_memory),
        shutdown.clone(),
    );
    let mut smtp_tasks = Vec::new();
    for listener in sockets.remove(&Service::Smtp).unwrap_or_default() {
        bound.entry("smtp").or_default().push(listener.local_addr()?.to_string());
        smtp_tasks.push(tokio::spawn(Arc::clone(&smtp).serve(listener, false)));
    }

    // Submission (587 with STARTTLS, 465 implicit TLS: RFC 6409, RFC 8314).
    let submission = SmtpServer::new(
        SmtpSettings::from_config(&config, "submission"),
        directory.clone(),
        tern_pipeline::submission(
            directory.clone(),
            &config.hostname,
            config.dkim.sign,
            content_scan(false),
            Some(sieve_filter(&config, &directory)?),
        ),
        Some(tls.clone()),
        smtp_limits,
        Arc::clone(&auth_guard),
        None,
        Arc::clone(&message_memory),
        shutdown.clone(),
    );
    for (service, implicit) in [(Service::Submission, false), (Service::Submissions, true)] {
        for listener in sockets.remove(&service).unwrap_or_default() {
            bound.entry(service.name()).or_default().push(listener.local_addr()?.to_string());
            smtp_tasks.push(tokio::spawn(Arc::clone(&submission).serve(listener, implicit)));
        }
    }

    // Outbound delivery: the queue's workers.
    let delivery = tern_delivery::DeliveryService::new(&config, directory.clone(), dns.clone(), shutdown.clone())
        .context("outbound delivery (config sections [delivery] and [dns])")?;
    let delivery_task = tokio::spawn(Arc::clone(&delivery).run());
    let reports_task = dmarc_reporting.map(|(verifier, aggregator)| {
        tokio::spawn(tern_delivery::reports::run(
            Arc::clone(&delivery),
            verifier,
            aggregator,
            Duration::from_secs(config.inbound.dmarc_report_interval_seconds),
            config.data_dir.join(DMARC_STATE),
        ))
    });

    // What the alert rules watch that nothing else counts: the store's health, the data
    // directory's disk, and each domain's DKIM keys.
    let health_task = tokio::spawn(health_gauges(Arc::clone(&store), config.data_dir.clone(), shutdown.clone()));

    // The quarantine's retention: expired entries go once an hour (and at start).
    let quarantine_task = {
        let store = Arc::clone(&store);
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(3600));
            loop {
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    _ = tick.tick() => {}
                }
                match store.quarantine_expire(tern_store::now_unix()).await {
                    Ok(0) => {}
                    Ok(n) => tracing::info!(removed = n, "expired quarantine entries removed"),
                    Err(e) => tracing::warn!(error = %e, "quarantine expiry failed"),
                }
                if let Ok(held) = store.quarantine_list().await {
                    metrics::gauge!("tern_quarantine_messages").set(held.len() as f64);
                    metrics::gauge!("tern_quarantine_bytes").set(held.iter().map(|q| q.size).sum::<u64>() as f64);
                }
            }
        })
    };

    // IMAP (143 with STARTTLS, 993 implicit TLS).
    let imap_limits =
        ConnectionLimits::new(config.imap.max_connections, config.imap.max_connections_per_ip, config.limit_exempt());
    let imap = tern_imap::ImapServer::new(
        tern_imap::ImapSettings::from_config(&config),
        directory.clone(),
        Some(tls.clone()),
        imap_limits,
        Arc::clone(&auth_guard),
        message_memory,
        shutdown.clone(),
    );
    if config.spam.learn_from_users {
        imap.set_junk_feedback(Arc::new(JunkTrainer(tern_pipeline::spam::Trainer::start(
            Arc::clone(&spam_filter),
            Arc::clone(&store),
        ))));
    }
    let mut imap_tasks = Vec::new();
    for (service, implicit) in [(Service::Imap, false), (Service::Imaps, true)] {
        for listener in sockets.remove(&service).unwrap_or_default() {
            bound.entry(service.name()).or_default().push(listener.local_addr()?.to_string());
            imap_tasks.push(tokio::spawn(Arc::clone(&imap).serve(listener, implicit)));
        }
    }

    // POP3 (110 with STLS, 995 implicit TLS).
    let pop3_limits =
        ConnectionLimits::new(config.pop3.max_connections, config.pop3.max_connections_per_ip, config.limit_exempt());
    let pop3 = tern_pop3::Pop3Server::new(
        tern_pop3::Pop3Settings::from_config(&config),
        directory.clone(),
        Some(tls.clone()),
        pop3_limits,
        Arc::clone(&auth_guard),
        shutdown.clone(),
    );
    for (service, implicit) in [(Service::Pop3, false), (Service::Pop3s, true)] {
        for listener in sockets.remove(&service).unwrap_or_default() {
            bound.entry(service.name()).or_default().push(listener.local_addr()?.to_string());
            imap_tasks.push(tokio::spawn(Arc::clone(&pop3).serve(listener, implicit)));
        }
    }

    // ManageSieve (4190, STARTTLS).
    let managesieve_limits = ConnectionLimits::new(
        config.managesieve.max_connections,
        config.managesieve.max_connections_per_ip,
        config.limit_exempt(),
    );
    let managesieve = tern_managesieve::ManageSieveServer::new(
        tern_managesieve::ManageSieveSettings::from_config(&config),
        directory.clone(),
        Some(tls.clone()),
        managesieve_limits,
        Arc::clone(&auth_guard),
        shutdown.clone(),
    );
    for listener in sockets.remove(&Service::ManageSieve).unwrap_or_default() {
        bound.entry(Service::ManageSieve.name()).or_default().push(listener.local_addr()?.to_string());
        imap_tasks.push(tokio::spawn(Arc::clone(&managesieve).serve(listener)));
    }

    // HTTP: metrics, health, and mail client autoconfiguration (with the ports bound above).
    let port_of = |service: &str| {
        bound
            .get(service)
            .and_then(|addrs| addrs.first())
            .and_then(|a| a.parse::<std::net::SocketAddr>().ok())
            .map(|a| a.port())
    };
    let client_settings = autoconfig::ClientSettings {
        hostname: config.hostname.clone(),
        imaps: port_of("imaps"),
        imap: port_of("imap"),
        pop3s: port_of("pop3s"),
        pop3: port_of("pop3"),
        submissions: port_of("submissions"),
        submission: port_of("submission"),
    };
    let admin_context = admin::AdminContext {
        directory: directory.clone(),
        hostname: config.hostname.clone(),
        mta_sts: config.mta_sts.clone(),
        data_dir: config.data_dir.clone(),
        delivery: Some(Arc::clone(&delivery)),
        spam: Arc::clone(&spam_filter),
        spam_thresholds: spam_thresholds(&config),
        auth_guard: Some(Arc::clone(&auth_guard)),
    };
    let history = Arc::new(activity::MetricHistory::default());
    let listeners = Arc::new(std::sync::OnceLock::new());
    let http_state = http::HttpState {
        api: Arc::new(api::ApiContext {
            admin: admin_context.clone(),
            config: Arc::new(config.clone()),
            history: Arc::clone(&history),
            metrics: Some(metrics.clone()),
            started: std::time::Instant::now(),
            listeners: Arc::clone(&listeners),
            sessions: web::Sessions::new(Arc::clone(&store)),
            mail_bytes: tokio::sync::Mutex::new(None),
        }),
        metrics: metrics.clone(),
        store: Arc::clone(&store),
        ready: Arc::clone(&ready),
        autoconfig: autoconfig::AutoconfigState { settings: client_settings, directory: directory.clone() },
        mta_sts: mta_sts::MtaStsState {
            policy: mta_sts::policy(&config.hostname, &config.mta_sts).into(),
            directory: directory.clone(),
        },
        acme_tokens: acme::HttpTokens::default(),
    };
    let acme_task = config.acme.enabled.then(|| {
        let service = acme::AcmeService::new(
            &config,
            directory.clone(),
            Arc::clone(&certificate),
            Arc::clone(&cert),
            alerts.clone(),
            http_state.acme_tokens.clone(),
        );
        tokio::spawn(service.run(shutdown.clone()))
    });
    let proxy_from: Arc<[tern_config::Cidr]> = config.proxy_from().into();
    for listener in sockets.remove(&Service::Http).unwrap_or_default() {
        bound.entry("http").or_default().push(listener.local_addr()?.to_string());
        tokio::spawn(http::serve(
            listener,
            http::router(http_state.clone()),
            None,
            Arc::clone(&proxy_from),
            shutdown.clone(),
        ));
    }
    for listener in sockets.remove(&Service::Https).unwrap_or_default() {
        bound.entry("https").or_default().push(listener.local_addr()?.to_string());
        let router = http::public_router(&http_state);
        tokio::spawn(http::serve(listener, router, Some(https_tls.clone()), Arc::clone(&proxy_from), shutdown.clone()));
    }
    for listener in sockets.remove(&Service::PublicHttp).unwrap_or_default() {
        bound.entry("public_http").or_default().push(listener.local_addr()?.to_string());
        let router = http::public_router(&http_state);
        tokio::spawn(http::serve(listener, router, None, Arc::clone(&proxy_from), shutdown.clone()));
    }

    admin::serve_socket(admin::socket_path(&config.data_dir), admin_context, shutdown.clone()).await?;

    let _ = listeners.set(bound.iter().map(|(k, v)| (k.to_string(), v.clone())).collect());
    // The dashboard's rates: the counters sampled every 10 s.
    let history_task = tokio::spawn({
        let shutdown = shutdown.clone();
        async move {
            let mut tick = tokio::time::interval(activity::SAMPLE_EVERY);
            loop {
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    _ = tick.tick() => history.sample(&metrics.render()),
                }
            }
        }
    });
    let run_file = config.data_dir.join(RUN_FILE);
    let state = serde_json::json!({ "pid": std::process::id(), "listeners": bound });
    write_atomically(&run_file, serde_json::to_vec_pretty(&state)?.as_slice())?;
    ready.store(true, Ordering::SeqCst);
    tracing::info!(hostname = %config.hostname, data_dir = %config.data_dir.display(), listeners = ?bound, "Tern is ready");
    sd_notify("READY=1\nSTATUS=serving mail");

    // SIGHUP reads the certificate and key files again (a renewed certificate is presented
    // to new connections without a restart); SIGTERM and Ctrl-C stop.
    signals
        .wait(|| {
            let paths = cert.lock().unwrap_or_else(|p| p.into_inner()).clone();
            match certificate.reload(&paths) {
                Ok(()) => tracing::info!(cert = %paths.cert.display(), "SIGHUP: certificate reloaded"),
                Err(e) => tracing::warn!(error = %e, "SIGHUP: certificate not reloaded; the one in use stays"),
            }
        })
        .await;
    tracing::info!("shutting down: no new connections; finishing transactions in progress");
    sd_notify("STOPPING=1");
    ready.store(false, Ordering::SeqCst);
    shutdown.cancel();
    for t in smtp_tasks.into_iter().chain(imap_tasks) {
        let _ = t.await;
    }
    let _ = delivery_task.await;
    let _ = quarantine_task.await;
    let _ = health_task.await;
    let _ = history_task.await;
    if let Some(task) = guard_sharing {
        let _ = task.await;
    }
    if let Some(t) = acme_task {
        let _ = t.await;
    }
    if let Some(t) = reports_task {
        let _ = t.await;
    }
    if tokio::time::timeout(SHUTDOWN_GRACE, async {
        tokio::join!(smtp.drain(), submission.drain(), imap.drain(), pop3.drain(), managesieve.drain())
    })
    .await
    .is_err()
    {
        tracing::warn!("some sessions did not finish within {SHUTDOWN_GRACE:?}; closing them");
    }
    store.shutdown().await.context("flushing the store")?;
    let _ = std::fs::remove_file(&run_file);
    tracing::info!("stopped");
    Ok(())
}

/// SIGTERM and SIGHUP, caught from the start of `serve`: a signal that arrives before the
/// server waits for it (a service manager stopping it right after readiness) is kept, not
/// left to the default action (exit without the orderly stop).
struct Signals {
    #[cfg(unix)]
    term: Option<tokio::signal::unix::Signal>,
    #[cfg(unix)]
    hup: Option<tokio::signal::unix::Signal>,
}

impl Signals {
    fn catch() -> Signals {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            Signals { term: signal(SignalKind::terminate()).ok(), hup: signal(SignalKind::hangup()).ok() }
        }
        #[cfg(not(unix))]
        Signals {}
    }

    /// Waits for SIGTERM or Ctrl-C; calls `on_hangup` for each SIGHUP meanwhile.
    async fn wait(self, on_hangup: impl Fn()) {
        #[cfg(unix)]
        {
            match (self.term, self.hup) {
                (Some(mut term), Some(mut hup)) => loop {
                    tokio::select! {
                        _ = term.recv() => break,
                        _ = tokio::signal::ctrl_c() => break,
                        _ = hup.recv() => on_hangup(),
                    }
                },
                _ => {
                    let _ = tokio::signal::ctrl_c().await;
                }
            }
        }
        #[cfg(not(unix))]
        {
            let _ = on_hangup;
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

fn write_atomically(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, bytes).with_context(|| format!("cannot write {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("cannot write {}", path.display()))?;
    Ok(())
}

/// The configured DMARC specification, as the verifier names it.
pub fn dmarc_specification(config: &Config) -> tern_mailauth::dmarc::Specification {
    match config.inbound.dmarc_specification {
        tern_config::DmarcSpecification::Rfc7489 => tern_mailauth::dmarc::Specification::Rfc7489,
        tern_config::DmarcSpecification::Rfc9989 => tern_mailauth::dmarc::Specification::Rfc9989,
    }
}

/// Users' Junk filing over IMAP, taught to the spam classifier.
struct JunkTrainer(tern_pipeline::spam::Trainer);

impl tern_imap::JunkFeedback for JunkTrainer {
    fn filed(&self, account: tern_store::AccountId, messages: Vec<tern_store::MessageEntry>, spam: bool) {
        let messages = messages
            .into_iter()
            .map(|m| tern_pipeline::spam::FiledMessage { blob: m.blob, delivery_id: m.delivery_id })
            .collect();
        let class = if spam { tern_scan::classifier::Class::Spam } else { tern_scan::classifier::Class::Ham };
        self.0.filed(account, messages, class);
    }
}

/// The spam score thresholds of the configuration.
pub fn spam_thresholds(config: &Config) -> tern_scan::Thresholds {
    tern_scan::Thresholds {
        junk: config.spam.junk_score,
        quarantine: (config.spam.quarantine_score > 0.0).then_some(config.spam.quarantine_score),
        reject: (config.spam.reject_score > 0.0).then_some(config.spam.reject_score),
    }
}

/// The `[[scanner]]`s of the configuration, ready to ask.
fn configured_scanners(config: &Config) -> anyhow::Result<Vec<tern_scan::scanner::ConfiguredScanner>> {
    use tern_config::{ScannerFailure, ScannerKind, ScannerTooLarge, VirusAction};
    use tern_scan::scanner::{ConfiguredScanner, FailureMode, Scanner, TooLargeMode, clamd, http, remote, rspamd};
    let mut out = Vec::new();
    for s in &config.scanners {
        let url = || {
            http::HttpUrl::parse(s.url.as_deref().unwrap_or_default())
                .map_err(|e| anyhow::anyhow!("scanner {:?}: {e}", s.name))
        };
        let scanner: Arc<dyn Scanner> = match s.kind {
            ScannerKind::Clamd => Arc::new(clamd::Clamd {
                name: s.name.clone(),
                address: clamd::ClamdAddress::parse(s.address.as_deref().unwrap_or_default()),
            }),
            ScannerKind::Rspamd => {
                Arc::new(rspamd::Rspamd { name: s.name.clone(), url: url()?, password: s.password.clone() })
            }
            ScannerKind::Http => Arc::new(remote::RemoteScanner {
                name: s.name.clone(),
                url: url()?,
                headers: s.headers.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
            }),
        };
        out.push(ConfiguredScanner {
            scanner,
            timeout: Duration::from_secs(s.timeout_seconds),
            max_size: s.max_size,
            on_failure: match s.on_failure {
                ScannerFailure::Tempfail => FailureMode::Tempfail,
                ScannerFailure::Accept => FailureMode::Accept,
            },
            on_too_large: match s.on_too_large {
                ScannerTooLarge::Accept => TooLargeMode::Accept,
                ScannerTooLarge::Tempfail => TooLargeMode::Tempfail,
                ScannerTooLarge::Reject => TooLargeMode::Reject,
            },
            on_virus: match s.on_virus {
                VirusAction::Reject => tern_scan::Action::Reject,
                VirusAction::Quarantine => tern_scan::Action::Quarantine,
                VirusAction::Discard => tern_scan::Action::Discard,
            },
            weight: s.weight,
            scan_submissions: s.scan_submissions,
        });
    }
    Ok(out)
}

/// The classifier's settings of the configuration.
pub fn spam_settings(config: &Config) -> tern_pipeline::spam::SpamSettings {
    tern_pipeline::spam::SpamSettings {
        min_learned: config.spam.min_learned,
        max_features: config.spam.max_features,
        max_user_features: config.spam.max_user_features,
    }
}

/// Tells systemd (`Type=notify`) how the service stands, when it started us with
/// `$NOTIFY_SOCKET` (sd_notify(3): one datagram to that Unix socket; `@` is the abstract
/// namespace). Without the variable, nothing.
fn sd_notify(state: &str) {
    let Some(path) = std::env::var_os("NOTIFY_SOCKET") else { return };
    let socket = match std::os::unix::net::UnixDatagram::unbound() {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(error = %e, "sd_notify: no socket");
            return;
        }
    };
    let bytes = std::os::unix::ffi::OsStrExt::as_bytes(path.as_os_str());
    let sent = match bytes.strip_prefix(b"@") {
        Some(name) => {
            use std::os::linux::net::SocketAddrExt;
            std::os::unix::net::SocketAddr::from_abstract_name(name)
                .and_then(|addr| socket.send_to_addr(state.as_bytes(), &addr))
        }
        None => socket.send_to(state.as_bytes(), &path),
    };
    if let Err(e) = sent {
        tracing::warn!(error = %e, "sd_notify failed");
    }
}
