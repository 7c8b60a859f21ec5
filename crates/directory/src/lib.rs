//! The directory: who Tern receives mail for, and where an address leads.
//!
//! Addresses are compared in a canonical form: the local part lower-cased (Unicode), the domain
//! as lower-case IDNA A-labels. Resolution order for `local@domain` (domain local):
//! the account, then an alias, then the plus-address base (`user+tag` → `user`), then the
//! domain's catch-all. Aliases expand recursively with a depth limit and loop detection.

mod address;
mod cache;
mod password;
pub mod srs;

pub use address::{AddressError, canonical_address, canonical_domain};
pub use password::{generate_password, hash_password, verify_password};

use std::collections::HashSet;
use std::sync::Arc;
use tern_store::{Account, AccountId, Alias, AppPassword, Domain, NewAccount, Store, StoreError};

/// How deep alias chains may go.
const MAX_ALIAS_DEPTH: usize = 8;
/// How many targets one address may expand to.
const MAX_EXPANSION: usize = 1000;

#[derive(Debug, thiserror::Error)]
pub enum DirectoryError {
    #[error(transparent)]
    Address(#[from] AddressError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("domain {0} is not served here (add it with `tern domain add {0}`)")]
    UnknownDomain(String),
    #[error("{0} already exists")]
    Exists(String),
    #[error("{0} does not exist")]
    NotFound(String),
    #[error("domain {domain} still has {what}; remove them first")]
    DomainInUse { domain: String, what: String },
    #[error("password hashing failed: {0}")]
    Password(String),
    #[error("{0}")]
    Invalid(String),
}

pub type Result<T> = std::result::Result<T, DirectoryError>;

/// App passwords a user may have at once.
pub const MAX_APP_PASSWORDS: usize = 20;

/// A new app password: 24 characters from a 32-letter alphabet without look-alikes (120
/// bits), in groups of four so it can be typed on a phone.
fn generate_app_password() -> String {
    const ALPHABET: &[u8] = b"abcdefghijkmnpqrstuvwxyz23456789";
    let mut bytes = [0u8; 24];
    rand::Rng::fill(&mut rand::rng(), &mut bytes[..]);
    let letters: Vec<char> = bytes.iter().map(|b| char::from(ALPHABET[usize::from(b % 32)])).collect();
    letters.chunks(4).map(|c| c.iter().collect::<String>()).collect::<Vec<_>>().join("-")
}

fn app_password_hash(secret: &str) -> String {
    // Typed with or without the dashes, in any case.
    let normal: String = secret.chars().filter(|c| *c != '-' && !c.is_whitespace()).collect::<String>().to_lowercase();
    blake3::hash(normal.as_bytes()).to_hex().to_string()
}

/// The app password of `account` that `password` is, if any (compared in constant time).
fn app_password_matches<'a>(account: &'a Account, password: &str) -> Option<&'a AppPassword> {
    if account.app_passwords.is_empty() {
        return None;
    }
    let hash = blake3::Hash::from_hex(app_password_hash(password)).ok()?;
    // blake3::Hash's equality takes the same time wherever the hashes differ.
    account.app_passwords.iter().find(|p| blake3::Hash::from_hex(&p.hash).is_ok_and(|stored| stored == hash))
}

/// Where an address leads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resolution {
    /// The domain is not one of ours.
    NotLocal,
    /// Our domain, but nobody by that name.
    Unknown,
    /// Local accounts (deduplicated) and external addresses to forward to.
    Deliver { accounts: Vec<LocalAccount>, external: Vec<String> },
}

/// An account mail resolves to, with what the message path needs of its record (read once,
/// with the address).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LocalAccount {
    pub id: AccountId,
    /// Its storage limit in bytes, if it has one.
    pub quota_bytes: Option<u64>,
}

/// Storage an account uses and may use, in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quota {
    pub used: u64,
    pub limit: u64,
}

impl Quota {
    /// Whether `size` more bytes fit.
    pub fn fits(&self, size: u64) -> bool {
        self.used.saturating_add(size) <= self.limit
    }
}

#[derive(Clone)]
pub struct Directory {
    store: Arc<dyn Store>,
    plus_separator: Option<char>,
    logins: Arc<cache::LoginCache>,
    /// Keys the made-up SCRAM salts of unknown users (see [`Directory::scram_lookup`]).
    secret: Arc<[u8; 32]>,
    /// Sender rewriting for forwarded mail, keyed by the same secret.
    srs: Arc<srs::Srs>,
}

/// What SASL SCRAM runs on for a user name: the account's keys, or for an unknown name (or
/// an account without keys yet) made-up ones that cannot succeed, with a salt that is the
/// same at every attempt, so the exchange does not tell the two apart (RFC 5802 §9).
pub struct ScramLookup {
    pub account: Option<Account>,
    pub credentials: tern_sasl::ScramCredentials,
}

/// A hash to verify passwords of unknown users against, so that a wrong user name takes as
/// long as a wrong password.
fn dummy_hash() -> &'static str {
    static DUMMY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DUMMY.get_or_init(|| hash_password(&generate_password()).unwrap_or_default())
}

/// SASL exchanges of every protocol check credentials here.
impl tern_sasl::CredentialStore for Directory {
    type Account = Account;
    type Error = DirectoryError;

    async fn verify_password(&self, user: &str, password: &str) -> Result<Option<Account>> {
        self.authenticate(user, password).await
    }

    async fn scram_keys(&self, user: &str) -> Result<(Option<Account>, tern_sasl::ScramCredentials)> {
        let found = self.scram_lookup(user).await?;
        Ok((found.account, found.credentials))
    }
}

impl Directory {
    pub fn new(store: Arc<dyn Store>, plus_separator: Option<char>) -> Directory {
        Directory::with_login_cache(store, plus_separator, std::time::Duration::from_secs(300))
    }

    /// With a cache of verified logins kept for `ttl` (zero turns it off).
    pub fn with_login_cache(
        store: Arc<dyn Store>,
        plus_separator: Option<char>,
        ttl: std::time::Duration,
    ) -> Directory {
        let mut secret = [0u8; 32];
        rand::Rng::fill(&mut rand::rng(), &mut secret[..]);
        Directory {
            store,
            plus_separator,
            logins: Arc::new(cache::LoginCache::new(ttl)),
            srs: Arc::new(srs::Srs::new(&secret)),
            secret: Arc::new(secret),
        }
    }

    /// Sets the server secret that made-up SCRAM salts derive from; it must survive restarts
    /// (the server keeps it in its data directory), or an unknown user's salt would change.
    pub fn with_secret(mut self, secret: [u8; 32]) -> Directory {
        self.srs = Arc::new(srs::Srs::new(&secret));
        self.secret = Arc::new(secret);
        self
    }

    /// The sender rewriting of forwarded mail (its addresses are decoded by [`Directory::resolve`]).
    pub fn srs(&self) -> &srs::Srs {
        &self.srs
    }

    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    // --- domains ---

    pub async fn domain_add(&self, name: &str, catch_all: Option<&str>) -> Result<Domain> {
        let name = canonical_domain(name)?;
        if self.store.domain_get(&name).await?.is_some() {
            return Err(DirectoryError::Exists(format!("domain {name}")));
        }
        let catch_all = catch_all.map(canonical_address).transpose()?;
        let domain = Domain { name, catch_all, created: tern_store::now_unix(), dkim: vec![] };
        self.store.domain_put(domain.clone()).await?;
        Ok(domain)
    }

    pub async fn domain_set_catch_all(&self, name: &str, catch_all: Option<&str>) -> Result<Domain> {
        let name = canonical_domain(name)?;
        let mut domain =
            self.store.domain_get(&name).await?.ok_or_else(|| DirectoryError::UnknownDomain(name.clone()))?;
        domain.catch_all = catch_all.map(canonical_address).transpose()?;
        self.store.domain_put(domain.clone()).await?;
        Ok(domain)
    }

    pub async fn domain_list(&self) -> Result<Vec<Domain>> {
        let mut list = self.store.domain_list().await?;
        list.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(list)
    }

    /// Removes a domain that has no accounts and no aliases left.
    pub async fn domain_remove(&self, name: &str) -> Result<()> {
        let name = canonical_domain(name)?;
        if self.store.domain_get(&name).await?.is_none() {
            return Err(DirectoryError::UnknownDomain(name));
        }
        let suffix = format!("@{name}");
        let users = self.store.account_list().await?.into_iter().filter(|a| a.address.ends_with(&suffix)).count();
        let aliases = self.store.alias_list().await?.into_iter().filter(|a| a.address.ends_with(&suffix)).count();
        if users + aliases > 0 {
            return Err(DirectoryError::DomainInUse {
                domain: name,
                what: format!("{users} user(s) and {aliases} alias(es)"),
            });
        }
        self.store.domain_remove(&name).await?;
        Ok(())
    }

    pub async fn is_local_domain(&self, domain: &str) -> Result<bool> {
        let Ok(name) = canonical_domain(domain) else { return Ok(false) };
        Ok(self.store.domain_get(&name).await?.is_some())
    }

    async fn require_domain(&self, address: &str) -> Result<()> {
        let domain = address.rsplit_once('@').map(|(_, d)| d).unwrap_or_default();
        if self.store.domain_get(domain).await?.is_none() {
            return Err(DirectoryError::UnknownDomain(domain.to_string()));
        }
        Ok(())
    }

    // --- users ---

    /// Creates a user with INBOX and the special-use mailboxes. Without a password one is
    /// generated and returned.
    pub async fn user_add(&self, email: &str, password: Option<&str>) -> Result<(Account, Option<String>)> {
        let address = self.free_address(email).await?;
        let generated = match password {
            Some(_) => None,
            None => Some(generate_password()),
        };
        let password = password.or(generated.as_deref()).unwrap_or_default();
        if password.is_empty() {
            return Err(DirectoryError::Invalid("the password must not be empty".into()));
        }
        let password_hash = hash_password_blocking(password.to_string()).await?;
        let mut account = self.account_create(&address, password_hash).await?;
        account.scram = Some(scram_blocking(password.to_string()).await?);
        self.store.account_update(account.clone()).await?;
        Ok((account, generated))
    }

    /// Creates a shared mailbox account (`support@`) with INBOX and the special-use
    /// mailboxes: it receives mail like a user, but nobody logs in as it (its password is
    /// random and never shown, and logins are refused); users read it through its ACLs.
    pub async fn shared_account_add(&self, email: &str) -> Result<Account> {
        let address = self.free_address(email).await?;
        let password_hash = hash_password_blocking(generate_password()).await?;
        let mut account = self.account_create(&address, password_hash).await?;
        account.shared = true;
        self.store.account_update(account.clone()).await?;
        Ok(account)
    }

    /// The canonical form of an address a new account may take: in a local domain, not an
    /// alias.
    async fn free_address(&self, email: &str) -> Result<String> {
        let address = canonical_address(email)?;
        self.require_domain(&address).await?;
        if self.store.alias_get(&address).await?.is_some() {
            return Err(DirectoryError::Exists(format!("alias {address}")));
        }
        Ok(address)
    }

    /// A new account with the default mailboxes; `Exists` when the address is taken.
    async fn account_create(&self, address: &str, password_hash: String) -> Result<Account> {
        self.store
            .account_create(
                NewAccount { address: address.to_string(), password_hash, quota_bytes: None },
                tern_store::default_mailboxes(),
            )
            .await
            .map_err(|e| match e {
                StoreError::Exists(_) => DirectoryError::Exists(format!("user {address}")),
                e => e.into(),
            })
    }

    /// The account of `email`, or `NotFound`.
    async fn existing_user(&self, email: &str) -> Result<Account> {
        let address = canonical_address(email)?;
        self.store
            .account_by_address(&address)
            .await?
            .ok_or_else(|| DirectoryError::NotFound(format!("user {address}")))
    }

    pub async fn user_set_password(&self, email: &str, password: Option<&str>) -> Result<Option<String>> {
        let mut account = self.existing_user(email).await?;
        if account.shared {
            return Err(DirectoryError::Invalid(format!(
                "{} is a shared account: nobody logs in as it",
                account.address
            )));
        }
        let generated = match password {
            Some(_) => None,
            None => Some(generate_password()),
        };
        let password = password.or(generated.as_deref()).unwrap_or_default();
        if password.is_empty() {
            return Err(DirectoryError::Invalid("the password must not be empty".into()));
        }
        account.password_hash = hash_password_blocking(password.to_string()).await?;
        account.scram = Some(scram_blocking(password.to_string()).await?);
        self.store.account_update(account).await?;
        Ok(generated)
    }

    /// An account's storage use and limit (RFC 9208 STORAGE: the sizes of the messages in
    /// all its mailboxes); `None` when it has no quota or no longer exists. Read fresh: an
    /// administrator's change applies at once.
    pub async fn quota(&self, account: AccountId) -> Result<Option<Quota>> {
        let limit = self.store.account_get(account).await?.and_then(|a| a.quota_bytes);
        self.quota_of(LocalAccount { id: account, quota_bytes: limit }).await
    }

    /// As [`Directory::quota`] for an account whose limit is known (a resolved recipient):
    /// no read at all when it has none.
    pub async fn quota_of(&self, account: LocalAccount) -> Result<Option<Quota>> {
        let Some(limit) = account.quota_bytes else {
            return Ok(None);
        };
        let used = self.store.mailbox_list(account.id).await?.iter().map(|m| m.size).sum();
        Ok(Some(Quota { used, limit }))
    }

    /// Sets (or clears) a user's storage limit in bytes.
    pub async fn user_set_quota(&self, email: &str, bytes: Option<u64>) -> Result<()> {
        let mut account = self.existing_user(email).await?;
        account.quota_bytes = bytes;
        self.store.account_update(account).await?;
        Ok(())
    }

    /// Refuses (or allows again) every login of a user; mail is still received.
    pub async fn user_set_disabled(&self, email: &str, disabled: bool) -> Result<Account> {
        let mut account = self.existing_user(email).await?;
        account.disabled = disabled;
        self.store.account_update(account.clone()).await?;
        Ok(account)
    }

    /// Makes a user an administrator of the web admin (or no longer one).
    pub async fn user_set_admin(&self, email: &str, admin: bool) -> Result<Account> {
        let mut account = self.existing_user(email).await?;
        if account.shared && admin {
            return Err(DirectoryError::Invalid(format!(
                "{} is a shared account: nobody logs in as it",
                account.address
            )));
        }
        account.admin = admin;
        self.store.account_update(account.clone()).await?;
        Ok(account)
    }

    /// Makes an app password named `name` for a user: the record and the secret, which is
    /// shown this once.
    pub async fn app_password_add(&self, email: &str, name: &str) -> Result<(AppPassword, String)> {
        let mut account = self.existing_user(email).await?;
        if account.shared {
            return Err(DirectoryError::Invalid(format!(
                "{} is a shared account: nobody logs in as it",
                account.address
            )));
        }
        if name.is_empty() || name.len() > 64 || name.chars().any(char::is_control) {
            return Err(DirectoryError::Invalid("an app password's name is 1-64 printable characters".into()));
        }
        if account.app_passwords.iter().any(|p| p.name == name) {
            return Err(DirectoryError::Exists(format!("app password {name}")));
        }
        if account.app_passwords.len() >= MAX_APP_PASSWORDS {
            return Err(DirectoryError::Invalid(format!("at most {MAX_APP_PASSWORDS} app passwords per user")));
        }
        let secret = generate_app_password();
        let record =
            AppPassword { name: name.to_string(), hash: app_password_hash(&secret), created: tern_store::now_unix() };
        account.app_passwords.push(record.clone());
        self.store.account_update(account).await?;
        Ok((record, secret))
    }

    pub async fn app_password_remove(&self, email: &str, name: &str) -> Result<()> {
        let mut account = self.existing_user(email).await?;
        let before = account.app_passwords.len();
        account.app_passwords.retain(|p| p.name != name);
        if account.app_passwords.len() == before {
            return Err(DirectoryError::NotFound(format!("app password {name}")));
        }
        self.store.account_update(account).await?;
        Ok(())
    }

    pub async fn user_remove(&self, email: &str) -> Result<()> {
        let account = self.existing_user(email).await?;
        self.store.account_remove(account.id).await?;
        Ok(())
    }

    pub async fn user_list(&self) -> Result<Vec<Account>> {
        let mut list = self.store.account_list().await?;
        list.sort_by(|a, b| a.address.cmp(&b.address));
        Ok(list)
    }

    pub async fn user_get(&self, email: &str) -> Result<Option<Account>> {
        let Ok(address) = canonical_address(email) else { return Ok(None) };
        Ok(self.store.account_by_address(&address).await?)
    }

    /// Checks a mail client's login (IMAP, POP3, SMTP AUTH, ManageSieve): the account's
    /// password or one of its app passwords. argon2 runs off the async runtime; a login
    /// verified in the last few minutes with the same password and stored hash is not
    /// verified again.
    pub async fn authenticate(&self, email: &str, password: &str) -> Result<Option<Account>> {
        self.check_login(email, password, true).await
    }

    /// Checks the account's own password alone, not its app passwords: for signing in to
    /// manage the account (the web admin), so that an app password taken from one device
    /// cannot change the password or make more app passwords.
    pub async fn authenticate_account_password(&self, email: &str, password: &str) -> Result<Option<Account>> {
        self.check_login(email, password, false).await
    }

    async fn check_login(&self, email: &str, password: &str, app_passwords: bool) -> Result<Option<Account>> {
        let Some(account) = self.user_get(email).await? else {
            // The same argon2 work as for a wrong password: an unknown user must not answer
            // faster (that tells which addresses exist).
            let pw = password.to_string();
            tokio::task::spawn_blocking(move || verify_password(&pw, dummy_hash()))
                .await
                .map_err(|e| DirectoryError::Password(e.to_string()))?;
            return Ok(None);
        };
        // Nobody logs in as a shared or disabled account: the same work as a wrong password.
        let refused = account.shared || account.disabled;
        if !refused && self.logins.verified(&account.address, &account.password_hash, password) {
            return Ok(Some(account));
        }
        let hash = if refused { dummy_hash().to_string() } else { account.password_hash.clone() };
        let pw = password.to_string();
        let ok = tokio::task::spawn_blocking(move || verify_password(&pw, &hash))
            .await
            .map_err(|e| DirectoryError::Password(e.to_string()))?;
        if !ok && !refused && app_passwords && app_password_matches(&account, password).is_some() {
            return Ok(Some(account));
        }
        if ok && !refused {
            self.logins.remember(&account.address, &account.password_hash, password);
            if account.scram.is_none() {
                // Accounts made before SCRAM existed get their keys at the next login.
                let mut upgraded = account.clone();
                upgraded.scram = Some(scram_blocking(password.to_string()).await?);
                if let Err(e) = self.store.account_update(upgraded).await {
                    tracing::warn!(error = %e, "could not store SCRAM keys");
                }
            }
        }
        Ok((ok && !refused).then_some(account))
    }

    /// The SCRAM-SHA-256 keys a SASL exchange for `email` runs on (see [`ScramLookup`]).
    pub async fn scram_lookup(&self, email: &str) -> Result<ScramLookup> {
        if let Some(account) = self.user_get(email).await?
            && !account.shared
            && !account.disabled
            && let Some(credentials) = account.scram.as_deref().and_then(tern_sasl::ScramCredentials::parse)
        {
            return Ok(ScramLookup { account: Some(account), credentials });
        }
        // Keyed by the server secret and the name as given: stable across attempts and
        // restarts, unpredictable to the client; the keys match no password.
        let name = email.to_lowercase();
        let derive = |purpose: &str| {
            let mut h = blake3::Hasher::new_keyed(&self.secret);
            h.update(purpose.as_bytes());
            h.update(name.as_bytes());
            *h.finalize().as_bytes()
        };
        let credentials = tern_sasl::ScramCredentials {
            iterations: tern_sasl::SCRAM_ITERATIONS,
            salt: derive("scram salt\0")[..16].to_vec(),
            stored_key: derive("scram stored key\0").to_vec(),
            server_key: derive("scram server key\0").to_vec(),
        };
        Ok(ScramLookup { account: None, credentials })
    }

    // --- aliases ---

    /// Adds targets to an alias (creating it).
    pub async fn alias_add(&self, address: &str, targets: &[String]) -> Result<Alias> {
        let address = canonical_address(address)?;
        self.require_domain(&address).await?;
        if self.store.account_by_address(&address).await?.is_some() {
            return Err(DirectoryError::Exists(format!("user {address} (an alias cannot shadow a user)")));
        }
        if targets.is_empty() {
            return Err(DirectoryError::Invalid("an alias needs at least one target".into()));
        }
        let mut alias =
            self.store.alias_get(&address).await?.unwrap_or(Alias { address: address.clone(), targets: vec![] });
        for t in targets {
            let t = canonical_address(t)?;
            if t == address {
                return Err(DirectoryError::Invalid(format!("alias {address} cannot point at itself")));
            }
            if !alias.targets.contains(&t) {
                alias.targets.push(t);
            }
        }
        self.store.alias_put(alias.clone()).await?;
        Ok(alias)
    }

    /// Removes one target, or the whole alias when `target` is `None` (or its last target goes).
    pub async fn alias_remove(&self, address: &str, target: Option<&str>) -> Result<()> {
        let address = canonical_address(address)?;
        let mut alias = self
            .store
            .alias_get(&address)
            .await?
            .ok_or_else(|| DirectoryError::NotFound(format!("alias {address}")))?;
        match target {
            None => {
                self.store.alias_remove(&address).await?;
            }
            Some(t) => {
                let t = canonical_address(t)?;
                let before = alias.targets.len();
                alias.targets.retain(|x| *x != t);
                if alias.targets.len() == before {
                    return Err(DirectoryError::NotFound(format!("target {t} of alias {address}")));
                }
                if alias.targets.is_empty() {
                    self.store.alias_remove(&address).await?;
                } else {
                    self.store.alias_put(alias).await?;
                }
            }
        }
        Ok(())
    }

    pub async fn alias_list(&self) -> Result<Vec<Alias>> {
        let mut list = self.store.alias_list().await?;
        list.sort_by(|a, b| a.address.cmp(&b.address));
        Ok(list)
    }

    /// Replaces the DKIM keys of a local domain.
    pub async fn domain_set_dkim(&self, name: &str, keys: Vec<tern_store::DomainKey>) -> Result<Domain> {
        let name = canonical_domain(name)?;
        let mut domain =
            self.store.domain_get(&name).await?.ok_or_else(|| DirectoryError::UnknownDomain(name.clone()))?;
        domain.dkim = keys;
        self.store.domain_put(domain.clone()).await?;
        Ok(domain)
    }

    pub async fn domain_get(&self, name: &str) -> Result<Option<Domain>> {
        let Ok(name) = canonical_domain(name) else { return Ok(None) };
        Ok(self.store.domain_get(&name).await?)
    }

    /// The sub-address tag of `user+tag@domain` (with this server's separator), which names the
    /// mailbox mail to it is filed into when the mailbox lets anyone post (RFC 4314 `p`).
    pub fn detail_of(&self, address: &str) -> Option<String> {
        let sep = self.plus_separator?;
        let (local, _) = address.rsplit_once('@')?;
        let (base, tag) = local.split_once(sep)?;
        (!base.is_empty() && !tag.is_empty()).then(|| tag.to_string())
    }

    /// Whether `account` may use `address` as envelope sender or in From: its own address,
    /// a sub-address of it (`user+tag@`), or an alias that leads to it. A catch-all does not
    /// count: owning a domain's leftovers is not owning every name in it.
    pub async fn may_send_as(&self, account: &Account, address: &str) -> Result<bool> {
        let Ok(address) = canonical_address(address) else { return Ok(false) };
        let mut candidates = vec![address.clone()];
        if let Some(sep) = self.plus_separator
            && let Some((local, domain)) = address.rsplit_once('@')
            && let Some((base, _tag)) = local.split_once(sep)
            && !base.is_empty()
        {
            candidates.push(format!("{base}@{domain}"));
        }
        for candidate in &candidates {
            if *candidate == account.address {
                return Ok(true);
            }
            if let Some(alias) = self.store.alias_get(candidate).await? {
                let mut accounts = Vec::new();
                let mut external = Vec::new();
                let mut visited = HashSet::new();
                for t in &alias.targets {
                    self.expand(t, 1, &mut visited, &mut accounts, &mut external).await?;
                }
                if accounts.iter().any(|a| a.id == account.id) {
                    return Ok(true);
                }
            }
        }
        Ok(false)
    }

    // --- resolution ---

    /// Where mail for `address` goes. `address` may be in any case, with a U-label domain.
    pub async fn resolve(&self, address: &str) -> Result<Resolution> {
        let as_given = address.trim();
        let Ok(address) = canonical_address(address) else {
            return Ok(Resolution::Unknown);
        };
        let (local, domain) = address.rsplit_once('@').map(|(l, d)| (l.to_string(), d.to_string())).unwrap_or_default();
        if self.store.domain_get(&domain).await?.is_none() {
            return Ok(Resolution::NotLocal);
        }
        if srs::Srs::is_srs_local(&local) {
            // A bounce (or reply) to a forwarded message's rewritten sender: back to the
            // original sender, which is elsewhere (forwarded mail from our own domains is
            // not rewritten). A forged or expired address is nobody.
            // The address as given: the original sender's local part keeps its case.
            return Ok(match self.srs.reverse(as_given, tern_store::now_unix()) {
                Ok(original) => Resolution::Deliver { accounts: Vec::new(), external: vec![original] },
                Err(e) => {
                    tracing::info!(address = ?address, error = %e, "SRS address refused");
                    Resolution::Unknown
                }
            });
        }
        let mut accounts = Vec::new();
        let mut external = Vec::new();
        let mut visited = HashSet::new();
        self.expand(&address, 0, &mut visited, &mut accounts, &mut external).await?;
        if accounts.is_empty() && external.is_empty() {
            return Ok(Resolution::Unknown);
        }
        Ok(Resolution::Deliver { accounts, external })
    }

    /// Expands one local address; iterative over alias targets to keep futures small.
    async fn expand(
        &self,
        start: &str,
        depth: usize,
        visited: &mut HashSet<String>,
        accounts: &mut Vec<LocalAccount>,
        external: &mut Vec<String>,
    ) -> Result<()> {
        let mut work = vec![(start.to_string(), depth)];
        while let Some((address, depth)) = work.pop() {
            if depth > MAX_ALIAS_DEPTH || !visited.insert(address.clone()) || visited.len() > MAX_EXPANSION {
                if depth > MAX_ALIAS_DEPTH {
                    tracing::warn!(%address, "alias chain too deep; ignoring the rest");
                }
                continue;
            }
            let Some((local, domain)) = address.rsplit_once('@') else { continue };
            let domain_record = match self.store.domain_get(domain).await? {
                Some(d) => d,
                None => {
                    if !external.contains(&address) {
                        external.push(address.clone());
                    }
                    continue;
                }
            };
            let mut candidates = vec![address.clone()];
            if let Some(sep) = self.plus_separator
                && let Some((base, _tag)) = local.split_once(sep)
                && !base.is_empty()
            {
                candidates.push(format!("{base}@{domain}"));
            }
            let mut found = false;
            for candidate in &candidates {
                if let Some(account) = self.store.account_by_address(candidate).await? {
                    if !accounts.iter().any(|a| a.id == account.id) {
                        accounts.push(LocalAccount { id: account.id, quota_bytes: account.quota_bytes });
                    }
                    found = true;
                    break;
                }
                if let Some(alias) = self.store.alias_get(candidate).await? {
                    for t in alias.targets {
                        work.push((t, depth + 1));
                    }
                    found = true;
                    break;
                }
            }
            if !found && let Some(catch_all) = domain_record.catch_all {
                work.push((catch_all, depth + 1));
            }
        }
        Ok(())
    }
}

async fn hash_password_blocking(password: String) -> Result<String> {
    tokio::task::spawn_blocking(move || hash_password(&password))
        .await
        .map_err(|e| DirectoryError::Password(e.to_string()))?
        .map_err(DirectoryError::Password)
}

/// SCRAM keys from a password (PBKDF2: a few milliseconds, off the runtime).
async fn scram_blocking(password: String) -> Result<String> {
    tokio::task::spawn_blocking(move || tern_sasl::ScramCredentials::derive(&password).to_text())
        .await
        .map_err(|e| DirectoryError::Password(e.to_string()))
}

#[cfg(test)]
mod tests;
