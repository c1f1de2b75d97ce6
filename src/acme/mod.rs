//! Certificates from an ACME CA (DESIGN §5b): obtained, stored, renewed and served by rampart
//! itself, with nothing else to run.
//!
//! - [`config`]: `[acme]` compiled, and which names a challenge can prove;
//! - [`storage`]: a directory or Redis (account, keys, chains, back-off, pending tokens, locks);
//! - [`order`]: one order through instant-acme (JWS, nonces and badNonce retries are its own);
//! - [`challenges`]: the HTTP-01 answer and the TLS-ALPN-01 certificate;
//! - [`schedule`]: when to renew (ARI window, else a third of the lifetime left) and back-off.
//!
//! The [`Registry`] is what the listeners read: it outlives config reloads and is attached to
//! every snapshot's certificate resolver. One task per certificate ([`Manager`]) fills it.

pub mod challenges;
pub mod config;
pub mod order;
pub mod schedule;
pub mod storage;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, OnceLock, RwLock};
use std::time::Duration;

use instant_acme::{Account, AccountCredentials, ExternalAccountKey, NewAccount};
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::sync::watch;

use self::config::AcmeSettings;
use self::schedule::{RenewalState, Validity};
use self::storage::{Storage, StorageError};
use crate::metrics::Metrics;

/// While another process holds a certificate's lock, storage is read again this often.
const LOCK_POLL: Duration = Duration::from_secs(2);
/// A certificate far from renewal is still looked at this often (a replica's renewal, ARI).
const RECHECK: Duration = Duration::from_secs(3600);

fn read<T>(lock: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    lock.read()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn write<T>(lock: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    lock.write()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The ACME state the listeners read: issued certificates, pending challenges, and the hosts
/// still waiting for their first certificate.
#[derive(Default)]
pub struct Registry {
    certs: RwLock<HashMap<String, Installed>>,
    alpn: RwLock<HashMap<String, Arc<CertifiedKey>>>,
    tokens: RwLock<HashMap<String, String>>,
    /// Storage name → its hosts, until the first certificate is installed.
    waiting: RwLock<BTreeMap<String, Vec<String>>>,
    /// Shared storage (Redis): tokens placed by another replica are found there.
    shared: OnceLock<Arc<Storage>>,
}

struct Installed {
    certified: Arc<CertifiedKey>,
    not_after: i64,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry")
            .field("certificates", &read(&self.certs).len())
            .finish_non_exhaustive()
    }
}

impl Registry {
    pub fn new() -> Arc<Registry> {
        Arc::new(Registry::default())
    }

    /// The certificate stored under `name`, once issued.
    pub fn certificate(&self, name: &str) -> Option<Arc<CertifiedKey>> {
        read(&self.certs).get(name).map(|i| i.certified.clone())
    }

    /// The TLS-ALPN-01 certificate for `host` while its challenge is pending.
    pub fn alpn_challenge(&self, host: &str) -> Option<Arc<CertifiedKey>> {
        read(&self.alpn).get(&host.to_ascii_lowercase()).cloned()
    }

    /// The key authorization for an HTTP-01 token of a pending order (this process's, or with
    /// Redis storage, any replica's).
    pub async fn http01_answer(&self, token: &str) -> Option<String> {
        if let Some(answer) = read(&self.tokens).get(token) {
            return Some(answer.clone());
        }
        let shared = self.shared.get()?;
        match shared.get(&format!("challenges/{token}")).await {
            Ok(Some(bytes)) => String::from_utf8(bytes).ok(),
            Ok(None) => None,
            Err(err) => {
                tracing::warn!(error = %err, "cannot look up an ACME challenge token");
                None
            }
        }
    }

    /// Hosts of certificates not issued yet (what `/readyz` names).
    pub fn waiting_hosts(&self) -> Vec<String> {
        read(&self.waiting).values().flatten().cloned().collect()
    }

    /// (name, notAfter) of every installed certificate, for the expiry metric.
    pub fn expiries(&self) -> Vec<(String, i64)> {
        read(&self.certs)
            .iter()
            .map(|(name, i)| (name.clone(), i.not_after))
            .collect()
    }

    pub(crate) fn add_token(&self, token: &str, key_authorization: &str) {
        write(&self.tokens).insert(token.to_string(), key_authorization.to_string());
    }

    pub(crate) fn remove_token(&self, token: &str) {
        write(&self.tokens).remove(token);
    }

    pub(crate) fn add_alpn(&self, host: &str, certified: Arc<CertifiedKey>) {
        write(&self.alpn).insert(host.to_ascii_lowercase(), certified);
    }

    pub(crate) fn remove_alpn(&self, host: &str) {
        write(&self.alpn).remove(&host.to_ascii_lowercase());
    }

    fn wait_for(&self, name: &str, hosts: &[String]) {
        write(&self.waiting).insert(name.to_string(), hosts.to_vec());
    }

    /// Serves `certified` for `name` from the next handshake on; open connections keep theirs.
    fn install(&self, name: &str, certified: Arc<CertifiedKey>, not_after: i64, metrics: &Metrics) {
        write(&self.certs).insert(
            name.to_string(),
            Installed {
                certified,
                not_after,
            },
        );
        write(&self.waiting).remove(name);
        metrics
            .certificate_expiry
            .with_label_values(&[name])
            .set(not_after);
    }

    fn installed_leaf(&self, name: &str) -> Option<Vec<u8>> {
        read(&self.certs)
            .get(name)
            .and_then(|i| i.certified.cert.first().map(|c| c.to_vec()))
    }
}

/// The back-off after a failed order (`[acme] retry_min`, `retry_max`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timing {
    /// First wait after a failure; doubled each failure.
    pub backoff_min: Duration,
    pub backoff_max: Duration,
}

impl Default for Timing {
    fn default() -> Self {
        Timing {
            backoff_min: Duration::from_secs(60),
            backoff_max: Duration::from_secs(6 * 3600),
        }
    }
}

/// Obtains and renews the ACME certificates of a server.
pub struct Manager {
    settings: Arc<AcmeSettings>,
    storage: Arc<Storage>,
    registry: Arc<Registry>,
    metrics: Arc<Metrics>,
    timing: Timing,
    account: tokio::sync::Mutex<Option<Account>>,
}

impl Manager {
    /// Opens the storage and starts one task per certificate. Only a storage that cannot be
    /// used is an error: the CA being down never stops the proxy.
    pub fn spawn(
        settings: Arc<AcmeSettings>,
        certificates: &[(String, Vec<String>)],
        registry: &Arc<Registry>,
        metrics: &Arc<Metrics>,
        shutdown: &watch::Receiver<bool>,
    ) -> Result<(), StorageError> {
        let storage = Arc::new(Storage::open(&settings.storage)?);
        let settings_timing = settings.timing;
        if storage.is_shared() {
            let _ = registry.shared.set(storage.clone());
        }
        let manager = Arc::new(Manager {
            settings,
            storage,
            registry: registry.clone(),
            metrics: metrics.clone(),
            timing: settings_timing,
            account: tokio::sync::Mutex::new(None),
        });
        for (name, hosts) in certificates {
            registry.wait_for(name, hosts);
            let manager = manager.clone();
            let name = name.clone();
            let hosts: Vec<String> = hosts
                .iter()
                .map(|h| h.trim().to_ascii_lowercase())
                .collect();
            let mut shutdown = shutdown.clone();
            tokio::spawn(async move {
                tokio::select! {
                    () = manager.run(&name, &hosts) => {}
                    _ = shutdown.wait_for(|stop| *stop) => {}
                }
            });
        }
        Ok(())
    }

    async fn run(&self, name: &str, hosts: &[String]) {
        loop {
            let wait = self.step(name, hosts).await;
            tokio::time::sleep(wait).await;
        }
    }

    /// One look at a certificate: install what storage has, order when due. Returns how long
    /// to wait before the next look.
    async fn step(&self, name: &str, hosts: &[String]) -> Duration {
        let now = unix_now();
        let stored = self.load_stored(name, hosts).await;
        if let Some((certified, leaf, validity)) = &stored {
            if self.registry.installed_leaf(name).as_deref() != Some(leaf.as_ref()) {
                self.registry
                    .install(name, certified.clone(), validity.not_after, &self.metrics);
                tracing::info!(certificate = %name, not_after = validity.not_after, "ACME certificate from storage in use");
            }
        }
        let state = self.load_state(name).await;
        let due = match &stored {
            None => now,
            Some((_, leaf, _)) => {
                let account = self.account.lock().await.clone();
                schedule::renewal_time(account.as_ref(), leaf, now)
                    .await
                    .map_or(now, |(at, _)| at)
            }
        };
        let at = due.max(state.next_attempt);
        if at > now {
            let wait = Duration::from_secs(u64::try_from(at - now).unwrap_or(0));
            return wait.min(RECHECK);
        }

        let lock = match self.storage.try_lock(name).await {
            Ok(Some(lock)) => lock,
            Ok(None) => {
                // Another replica is ordering: its certificate will appear in storage.
                return LOCK_POLL;
            }
            Err(err) => {
                tracing::error!(certificate = %name, error = %err, "cannot take the ACME lock; trying again");
                return self.timing.backoff_min;
            }
        };
        // Under the lock, look again: the replica that held it may have just finished, or
        // failed and set a back-off.
        let state = self.load_state(name).await;
        if state.next_attempt > now {
            return LOCK_POLL;
        }
        if let Some((_, leaf, _)) = self.load_stored(name, hosts).await {
            if stored.as_ref().map(|(_, old, _)| old) != Some(&leaf) {
                return Duration::ZERO;
            }
        }

        let renewing = stored.is_some();
        let result = match self.account().await {
            Ok(account) => {
                order::issue(
                    &account,
                    hosts,
                    self.settings.challenge,
                    &self.registry,
                    &self.storage,
                )
                .await
            }
            Err(err) => Err(err),
        };
        let wait = match result {
            Ok(issued) => self.save_issued(name, hosts, issued, renewing).await,
            Err(err) => {
                self.record_failure(name, state, &err.to_string(), renewing)
                    .await
            }
        };
        drop(lock);
        wait
    }

    async fn save_issued(
        &self,
        name: &str,
        hosts: &[String],
        issued: order::Issued,
        renewing: bool,
    ) -> Duration {
        self.metrics.acme_orders.with_label_values(&["valid"]).inc();
        let Some((certified, _, validity)) = parse_pair(
            issued.chain_pem.as_bytes(),
            issued.key_pem.as_bytes(),
            hosts,
        ) else {
            let state = self.load_state(name).await;
            return self
                .record_failure(
                    name,
                    state,
                    "the CA's certificate does not match the order",
                    renewing,
                )
                .await;
        };
        // Key first, chain second: a reader that finds a chain finds its key (a crash between
        // the two leaves a mismatch, which is read as "nothing stored").
        let dir = format!("certs/{name}");
        let written = async {
            self.storage
                .put(&format!("{dir}/key.pem"), issued.key_pem.as_bytes(), None)
                .await?;
            self.storage
                .put(
                    &format!("{dir}/chain.pem"),
                    issued.chain_pem.as_bytes(),
                    None,
                )
                .await?;
            self.storage.delete(&format!("{dir}/state.json")).await
        }
        .await;
        if let Err(err) = written {
            // Served anyway; the next start orders again.
            tracing::error!(certificate = %name, error = %err, "the new ACME certificate could not be stored");
        }
        self.registry
            .install(name, certified, validity.not_after, &self.metrics);
        tracing::info!(
            certificate = %name,
            not_after = validity.not_after,
            renew_after = validity.third_left(),
            "ACME certificate issued and in use"
        );
        Duration::ZERO
    }

    async fn record_failure(
        &self,
        name: &str,
        mut state: RenewalState,
        error: &str,
        renewing: bool,
    ) -> Duration {
        self.metrics
            .acme_orders
            .with_label_values(&["failed"])
            .inc();
        if renewing {
            self.metrics
                .acme_renewal_failures
                .with_label_values(&[name])
                .inc();
        }
        state.failures = state.failures.saturating_add(1);
        let wait = schedule::backoff(
            state.failures,
            self.timing.backoff_min,
            self.timing.backoff_max,
        );
        state.next_attempt = unix_now() + i64::try_from(wait.as_secs()).unwrap_or(i64::MAX / 2);
        state.last_error = error.to_string();
        let saved = match serde_json::to_vec_pretty(&state) {
            Ok(json) => self
                .storage
                .put(&format!("certs/{name}/state.json"), &json, None)
                .await
                .map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        };
        if let Err(err) = saved {
            tracing::error!(certificate = %name, error = %err, "cannot store the ACME back-off");
        }
        tracing::warn!(
            certificate = %name,
            error = %error,
            failures = state.failures,
            retry_in_seconds = wait.as_secs(),
            serving = if renewing { "the current certificate" } else { "nothing yet for these hosts" },
            "ACME order failed; trying again after the back-off"
        );
        // Wake when the back-off ends: the stored state says when.
        wait
    }

    async fn load_state(&self, name: &str) -> RenewalState {
        match self.storage.get(&format!("certs/{name}/state.json")).await {
            Ok(Some(bytes)) => serde_json::from_slice(&bytes).unwrap_or_default(),
            Ok(None) => RenewalState::default(),
            Err(err) => {
                tracing::warn!(certificate = %name, error = %err, "cannot read the ACME back-off state");
                RenewalState::default()
            }
        }
    }

    /// The stored certificate for `name`, when it matches its key, covers `hosts` and has not
    /// expired.
    async fn load_stored(
        &self,
        name: &str,
        hosts: &[String],
    ) -> Option<(Arc<CertifiedKey>, CertificateDer<'static>, Validity)> {
        let dir = format!("certs/{name}");
        let chain = self.storage.get(&format!("{dir}/chain.pem")).await;
        let key = self.storage.get(&format!("{dir}/key.pem")).await;
        let (chain, key) = match (chain, key) {
            (Ok(Some(chain)), Ok(Some(key))) => (chain, key),
            (Ok(_), Ok(_)) => return None,
            (Err(err), _) | (_, Err(err)) => {
                tracing::warn!(certificate = %name, error = %err, "cannot read the stored ACME certificate");
                return None;
            }
        };
        let (certified, leaf, validity) = parse_pair(&chain, &key, hosts)?;
        (validity.not_after > unix_now()).then_some((certified, leaf, validity))
    }

    /// The ACME account: from storage, else registered (once, under a lock).
    async fn account(&self) -> Result<Account, order::OrderError> {
        let mut cached = self.account.lock().await;
        if let Some(account) = cached.as_ref() {
            return Ok(account.clone());
        }
        let key = format!("accounts/{}.json", storage_safe(&self.settings.directory));
        let builder = || match &self.settings.ca_certificates {
            Some(pem) => Account::builder_with_root(pem),
            None => Account::builder(),
        };
        let _lock = loop {
            match self.storage.try_lock("account").await {
                Ok(Some(lock)) => break lock,
                Ok(None) => tokio::time::sleep(LOCK_POLL).await,
                Err(err) => return Err(order::OrderError::Other(err.to_string())),
            }
        };
        let stored = self
            .storage
            .get(&key)
            .await
            .map_err(|e| order::OrderError::Other(e.to_string()))?;
        let account = match stored
            .and_then(|json| serde_json::from_slice::<AccountCredentials>(&json).ok())
        {
            Some(credentials) => builder()?.from_credentials(credentials).await?,
            None => {
                let contact = self.settings.email.as_ref().map(|e| format!("mailto:{e}"));
                let contacts: Vec<&str> = contact.iter().map(String::as_str).collect();
                let eab = self
                    .settings
                    .eab
                    .as_ref()
                    .map(|eab| ExternalAccountKey::new(eab.kid.clone(), &eab.hmac_key));
                let (account, credentials) = builder()?
                    .create(
                        &NewAccount {
                            contact: &contacts,
                            terms_of_service_agreed: true,
                            only_return_existing: false,
                        },
                        self.settings.directory.clone(),
                        eab.as_ref(),
                    )
                    .await?;
                let json = serde_json::to_vec(&credentials)
                    .map_err(|e| order::OrderError::Other(e.to_string()))?;
                self.storage
                    .put(&key, &json, None)
                    .await
                    .map_err(|e| order::OrderError::Other(e.to_string()))?;
                tracing::info!(directory = %self.settings.directory, "ACME account registered");
                account
            }
        };
        *cached = Some(account.clone());
        Ok(account)
    }
}

/// A chain and key that belong together, as served; with the leaf and its validity. `None`
/// when they do not parse, do not match, or the leaf does not name every host.
fn parse_pair(
    chain: &[u8],
    key: &[u8],
    hosts: &[String],
) -> Option<(Arc<CertifiedKey>, CertificateDer<'static>, Validity)> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(chain)
        .collect::<Result<_, _>>()
        .ok()?;
    let leaf = chain.first()?.clone();
    let key = PrivateKeyDer::from_pem_slice(key).ok()?;
    let validity = Validity::of(&leaf)?;
    if !covers(&leaf, hosts) {
        return None;
    }
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider()); // as the listener's (ring)
    let certified = CertifiedKey::from_der(chain, key, &provider).ok()?;
    Some((Arc::new(certified), leaf, validity))
}

/// Whether the leaf's SANs name every configured host (a host added to the config means a
/// new order).
fn covers(leaf: &[u8], hosts: &[String]) -> bool {
    let Ok((_, cert)) = x509_parser::parse_x509_certificate(leaf) else {
        return false;
    };
    let Ok(Some(san)) = cert.subject_alternative_name() else {
        return false;
    };
    let names: Vec<String> = san
        .value
        .general_names
        .iter()
        .filter_map(|n| match n {
            x509_parser::extensions::GeneralName::DNSName(d) => Some(d.to_ascii_lowercase()),
            _ => None,
        })
        .collect();
    hosts.iter().all(|h| names.contains(h))
}

fn storage_safe(text: &str) -> String {
    text.trim_start_matches("https://")
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}
