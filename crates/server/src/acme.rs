//! Certificates from an ACME CA (RFC 8555; Let's Encrypt by default): obtained when missing,
//! renewed ahead of expiry, and presented by every TLS listener at once (the shared
//! certificate resolver). Challenges are answered by this server itself: TLS-ALPN-01 (RFC
//! 8737) on the `https` listener, HTTP-01 on `public_http`. The account key and the
//! certificate live in `data_dir/acme/`.

use anyhow::Context;
use instant_acme::{
    Account, AccountCredentials, AuthorizationStatus, ChallengeType, Identifier, NewAccount, NewOrder, OrderStatus,
    RetryPolicy,
};
use std::collections::{BTreeSet, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;
use tern_config::{AcmeChallenge, Config};
use tern_directory::Directory;
use tern_tls::{CertPaths, ServerCertificate};

/// HTTP-01 answers: token → key authorization.
pub type HttpTokens = Arc<RwLock<HashMap<String, String>>>;

/// Where the ACME certificate and key are kept.
pub fn certificate_paths(data_dir: &Path) -> CertPaths {
    let dir = data_dir.join("acme");
    CertPaths { cert: dir.join("cert.pem"), key: dir.join("key.pem"), generated: false }
}

pub struct AcmeService {
    settings: tern_config::Acme,
    hostname: String,
    dir: PathBuf,
    directory: Directory,
    certificate: Arc<ServerCertificate>,
    /// The files the listeners' certificate comes from (SIGHUP reads them again).
    current: Arc<Mutex<CertPaths>>,
    pub http_tokens: HttpTokens,
    alerts: Option<Arc<tern_pipeline::alerts::Alerts>>,
    /// Names whose validation failed: left out of the next orders.
    failed: Mutex<HashSet<String>>,
}

/// What a certificate on disk covers and until when.
struct Held {
    names: BTreeSet<String>,
    not_before: i64,
    not_after: i64,
}

fn held(path: &Path) -> Option<Held> {
    use rustls_pki_types::pem::PemObject;
    let der = rustls_pki_types::CertificateDer::pem_file_iter(path).ok()?.next()?.ok()?;
    let (_, cert) = x509_parser::parse_x509_certificate(&der).ok()?;
    let mut names = BTreeSet::new();
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        for n in &san.value.general_names {
            if let x509_parser::extensions::GeneralName::DNSName(d) = n {
                names.insert(d.to_ascii_lowercase());
            }
        }
    }
    Some(Held {
        names,
        not_before: cert.validity().not_before.timestamp(),
        not_after: cert.validity().not_after.timestamp(),
    })
}

impl AcmeService {
    pub fn new(
        config: &Config,
        directory: Directory,
        certificate: Arc<ServerCertificate>,
        current: Arc<Mutex<CertPaths>>,
        alerts: Option<Arc<tern_pipeline::alerts::Alerts>>,
        http_tokens: HttpTokens,
    ) -> Arc<AcmeService> {
        Arc::new(AcmeService {
            settings: config.acme.clone(),
            hostname: config.hostname.trim_end_matches('.').to_ascii_lowercase(),
            dir: config.data_dir.join("acme"),
            directory,
            certificate,
            current,
            http_tokens,
            alerts,
            failed: Mutex::default(),
        })
    }

    /// Checks at once, then every `check_interval_seconds`, until `shutdown`.
    pub async fn run(self: Arc<Self>, shutdown: tokio_util::sync::CancellationToken) {
        let interval = Duration::from_secs(self.settings.check_interval_seconds);
        loop {
            if let Err(e) = self.check().await {
                metrics::counter!("tern_acme_orders_total", "result" => "failed").increment(1);
                tracing::error!(error = %format!("{e:#}"), "ACME: no certificate obtained; the one in use stays");
                if let Some(alerts) = &self.alerts {
                    alerts.raise(tern_pipeline::alerts::Alert {
                        kind: "acme_failed",
                        key: self.hostname.clone(),
                        summary: format!("the certificate for {} could not be obtained or renewed", self.hostname),
                        details: vec![
                            ("error".into(), format!("{e:#}")),
                            ("directory".into(), self.settings.directory.clone()),
                        ],
                    });
                }
            }
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(interval) => {}
            }
        }
    }

    /// The names the certificate should cover now.
    async fn wanted(&self) -> anyhow::Result<BTreeSet<String>> {
        let mut names = BTreeSet::new();
        names.insert(self.hostname.clone());
        if self.settings.names.is_empty() {
            for d in self.directory.domain_list().await? {
                names.insert(format!("mta-sts.{}", d.name));
                names.insert(format!("autoconfig.{}", d.name));
            }
        } else {
            names.extend(self.settings.names.iter().map(|n| n.trim_end_matches('.').to_ascii_lowercase()));
        }
        let failed = self.failed.lock().unwrap_or_else(|p| p.into_inner());
        names.retain(|n| *n == self.hostname || !failed.contains(n));
        Ok(names)
    }

    /// Orders a certificate when there is none, it expires soon, or it lacks a wanted name.
    async fn check(&self) -> anyhow::Result<()> {
        let paths = certificate_paths(self.dir.parent().unwrap_or(Path::new(".")));
        let wanted = self.wanted().await?;
        let now = tern_store::now_unix();
        let reason = match held(&paths.cert) {
            None => Some("no certificate yet".to_string()),
            Some(h) => {
                metrics::gauge!("tern_certificate_expiry_timestamp_seconds").set(h.not_after as f64);
                let lifetime = (h.not_after - h.not_before).max(1);
                // `renew_before_days` ahead, or with a third of the life left when that is
                // shorter (short-lived certificates).
                let ahead = (self.settings.renew_before_days as i64 * 86_400).min(lifetime / 3);
                let renew_at = h.not_after - ahead;
                if now >= renew_at {
                    Some(format!("expires in {} s", h.not_after - now))
                } else if !wanted.is_subset(&h.names) {
                    Some(format!("new names: {}", wanted.difference(&h.names).cloned().collect::<Vec<_>>().join(", ")))
                } else {
                    None
                }
            }
        };
        let Some(reason) = reason else { return Ok(()) };
        tracing::info!(%reason, names = ?wanted, "ACME: ordering a certificate");
        let mut names = wanted;
        // A name whose challenge fails is left out and the order made again (the hostname's
        // failure ends it).
        for _ in 0..2 {
            match self.order(&names).await? {
                Ok(()) => {
                    metrics::counter!("tern_acme_orders_total", "result" => "ok").increment(1);
                    return Ok(());
                }
                Err(failed) => {
                    anyhow::ensure!(
                        !failed.contains(&self.hostname),
                        "the challenge for {} failed (is its DNS pointing here, and port {} open?)",
                        self.hostname,
                        self.challenge_port()
                    );
                    tracing::warn!(names = ?failed, "ACME: challenges failed; ordering without these names");
                    self.failed.lock().unwrap_or_else(|p| p.into_inner()).extend(failed.iter().cloned());
                    names.retain(|n| !failed.contains(n));
                }
            }
        }
        anyhow::bail!("challenges kept failing")
    }

    fn challenge_port(&self) -> u16 {
        match self.settings.challenge {
            AcmeChallenge::TlsAlpn01 => 443,
            AcmeChallenge::Http01 => 80,
        }
    }

    async fn account(&self) -> anyhow::Result<Account> {
        let builder = match &self.settings.ca_file {
            Some(ca) => Account::builder_with_root(ca).with_context(|| format!("acme.ca_file {}", ca.display()))?,
            None => Account::builder()?,
        };
        let saved = self.dir.join("account.json");
        if let Ok(bytes) = std::fs::read(&saved) {
            let credentials: AccountCredentials =
                serde_json::from_slice(&bytes).with_context(|| format!("{}", saved.display()))?;
            return Ok(builder.from_credentials(credentials).await?);
        }
        let contact: Vec<&str> = self.settings.contact.iter().map(String::as_str).collect();
        let (account, credentials) = builder
            .create(
                &NewAccount { contact: &contact, terms_of_service_agreed: true, only_return_existing: false },
                self.settings.directory.clone(),
                None,
            )
            .await
            .with_context(|| format!("creating an account at {}", self.settings.directory))?;
        std::fs::create_dir_all(&self.dir)?;
        write_private(&saved, &serde_json::to_vec(&credentials)?)?;
        tracing::info!(directory = %self.settings.directory, "ACME: account created");
        Ok(account)
    }

    /// One order: `Ok(Err(names))` when the challenges of these names failed.
    async fn order(&self, names: &BTreeSet<String>) -> anyhow::Result<Result<(), Vec<String>>> {
        let account = self.account().await?;
        let identifiers: Vec<Identifier> = names.iter().map(|n| Identifier::Dns(n.clone())).collect();
        let mut order = account.new_order(&NewOrder::new(&identifiers)).await.context("new order")?;
        let challenge_type = match self.settings.challenge {
            AcmeChallenge::TlsAlpn01 => ChallengeType::TlsAlpn01,
            AcmeChallenge::Http01 => ChallengeType::Http01,
        };
        let mut published: Vec<(String, String)> = Vec::new();
        let mut authorizations = order.authorizations();
        let result: anyhow::Result<()> = async {
            while let Some(authz) = authorizations.next().await {
                let mut authz = authz?;
                if authz.status == AuthorizationStatus::Valid {
                    continue;
                }
                let mut challenge = authz
                    .challenge(challenge_type.clone())
                    .ok_or_else(|| anyhow::anyhow!("the CA offers no {challenge_type:?} challenge"))?;
                let name = challenge.identifier().to_string();
                let key_authorization = challenge.key_authorization();
                match challenge_type {
                    ChallengeType::TlsAlpn01 => {
                        self.certificate.set_acme_challenge(&name, Some(key_authorization.digest().as_ref()))?
                    }
                    _ => {
                        self.http_tokens
                            .write()
                            .unwrap_or_else(|p| p.into_inner())
                            .insert(challenge.token.clone(), key_authorization.as_str().to_string());
                    }
                }
                published.push((name, challenge.token.clone()));
                challenge.set_ready().await?;
            }
            Ok(())
        }
        .await;
        let status = match result {
            Ok(()) => order.poll_ready(&RetryPolicy::new().timeout(Duration::from_secs(90))).await,
            Err(e) => {
                self.withdraw(&published);
                return Err(e);
            }
        };
        // The challenges are over, whatever the outcome.
        let failed: Vec<String> = {
            let mut failed = Vec::new();
            let mut authorizations = order.authorizations();
            while let Some(Ok(authz)) = authorizations.next().await {
                if authz.status == AuthorizationStatus::Invalid {
                    failed.push(authz.identifier().to_string());
                }
            }
            failed
        };
        self.withdraw(&published);
        // An order whose challenge failed ends invalid (an error from the wait, with the CA's
        // problem): the names that failed are what counts.
        if !failed.is_empty() {
            if let Err(e) = &status {
                tracing::info!(error = %e, names = ?failed, "ACME: validation failed");
            }
            return Ok(Err(failed));
        }
        let status = status.context("waiting for the CA to validate")?;
        anyhow::ensure!(status == OrderStatus::Ready, "the order ended {status:?}");
        let key_pem = order.finalize().await.context("finalizing the order")?;
        let chain_pem = order
            .poll_certificate(&RetryPolicy::new().timeout(Duration::from_secs(90)))
            .await
            .context("downloading the certificate")?;
        let paths = certificate_paths(self.dir.parent().unwrap_or(Path::new(".")));
        // Written and synced on the blocking pool. Key first: a certificate never sits beside
        // a key that is not its own for long, and a reload in between fails (the old pair
        // stays in use).
        let (dir, files) = (self.dir.clone(), paths.clone());
        tokio::task::spawn_blocking(move || -> anyhow::Result<()> {
            std::fs::create_dir_all(&dir)?;
            write_private(&files.key.with_extension("new"), key_pem.as_bytes())?;
            write_private(&files.cert.with_extension("new"), chain_pem.as_bytes())?;
            std::fs::rename(files.key.with_extension("new"), &files.key)?;
            std::fs::rename(files.cert.with_extension("new"), &files.cert)?;
            Ok(())
        })
        .await??;
        self.certificate.reload(&paths).context("loading the new certificate")?;
        *self.current.lock().unwrap_or_else(|p| p.into_inner()) = paths.clone();
        if let Some(h) = held(&paths.cert) {
            metrics::gauge!("tern_certificate_expiry_timestamp_seconds").set(h.not_after as f64);
        }
        tracing::info!(names = ?names, cert = %paths.cert.display(), "ACME: new certificate in use");
        Ok(Ok(()))
    }

    fn withdraw(&self, published: &[(String, String)]) {
        for (name, token) in published {
            let _ = self.certificate.set_acme_challenge(name, None);
            self.http_tokens.write().unwrap_or_else(|p| p.into_inner()).remove(token);
        }
    }
}

fn write_private(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    use std::io::Write;
    // The process umask (077) keeps it private.
    let mut f = std::fs::File::create(path).with_context(|| format!("cannot write {}", path.display()))?;
    f.write_all(bytes)?;
    f.sync_all()?;
    Ok(())
}

/// `GET /.well-known/acme-challenge/{token}` (RFC 8555 §8.3).
pub async fn http_challenge(
    axum::extract::State(tokens): axum::extract::State<HttpTokens>,
    axum::extract::Path(token): axum::extract::Path<String>,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    match tokens.read().unwrap_or_else(|p| p.into_inner()).get(&token) {
        Some(answer) => {
            ([(axum::http::header::CONTENT_TYPE, "application/octet-stream")], answer.clone()).into_response()
        }
        None => (axum::http::StatusCode::NOT_FOUND, "no such challenge\n").into_response(),
    }
}
