//! Applying a new config to a running server. A snapshot is built and validated whole, away
//! from the request path; only a complete one is swapped in, in one atomic store. Requests in
//! flight, open WebSockets and long downloads keep the snapshot they started with.

use std::path::Path;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::config::{self, ConfigErrors, MissingCert};
use crate::metrics::Metrics;
use crate::snapshot::{Listen, Snapshot};
use crate::Shared;

/// What [`Reloader::on_apply`] calls.
type ApplyHook = dyn Fn(&Snapshot) + Send + Sync;

/// Swaps snapshots into a running server. Cheap to clone: the file watcher and the SIGHUP
/// handler each hold one.
#[derive(Clone)]
pub struct Reloader {
    shared: Shared,
    metrics: Arc<Metrics>,
    /// The listen addresses as configured when the sockets were bound: every reload is
    /// compared with these, not with the last config (whose address may never have applied).
    bound: Arc<Listen>,
    /// ACME certificates and challenges, attached to every snapshot swapped in.
    acme: Arc<crate::acme::Registry>,
    /// Called with each snapshot before it is swapped in (the command line applies `[log]
    /// level` with it).
    on_apply: Option<Arc<ApplyHook>>,
}

impl Reloader {
    pub(crate) fn new(
        shared: Shared,
        metrics: Arc<Metrics>,
        bound: Arc<Listen>,
        acme: Arc<crate::acme::Registry>,
    ) -> Self {
        Reloader {
            shared,
            metrics,
            bound,
            acme,
            on_apply: None,
        }
    }

    /// This reloader, calling `hook` with every snapshot it applies, before the swap and before
    /// `config reloaded` is logged (so a new `[log] level` already decides that line).
    pub fn on_apply(mut self, hook: impl Fn(&Snapshot) + Send + Sync + 'static) -> Self {
        self.on_apply = Some(Arc::new(hook));
        self
    }

    /// The snapshot requests are served with right now.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.shared.load_full()
    }

    /// Reads, validates and applies the config file. On any error the running snapshot stays,
    /// every error is logged with file:line:key, and `rampart_config_reloads_total{result="failure"}`
    /// counts it.
    pub fn reload_file(&self, path: &Path) -> Result<(), ConfigErrors> {
        // A certificate that is missing now is an error, never a reason to generate one.
        match config::load_file_with(path, MissingCert::Refuse) {
            Ok(snapshot) => {
                self.apply(snapshot);
                Ok(())
            }
            Err(errors) => {
                self.refuse(&errors);
                Err(errors)
            }
        }
    }

    /// Swaps in a snapshot that is already valid.
    pub fn apply(&self, mut snapshot: Snapshot) {
        if let Some(hook) = &self.on_apply {
            hook(&snapshot);
        }
        report_listen_changes(&self.bound, &snapshot.listen, &self.metrics);
        for warning in &snapshot.warnings {
            tracing::warn!("{warning}");
        }
        // `[acme]` itself is read at start: a change needs a restart (the tasks and storage
        // are the server's), but certificates already obtained keep being served.
        if snapshot.acme != self.shared.load().acme {
            tracing::warn!("[acme] changed: restart rampart to apply it (ACME certificates already obtained are still served)");
        }
        snapshot.tls.attach_acme(&self.acme);
        // Bans outlive reloads: the new snapshot enforces the running jail. Its store is the
        // server's, like ACME's: a change of `[ban] store` or `max_keys` needs a restart.
        let running_jail = self.shared.load().bans.jail.clone();
        if snapshot.bans.jail.settings() != running_jail.settings() {
            tracing::warn!("[ban] store or max_keys changed: restart rampart to apply it (the bans in force stay)");
        }
        snapshot.bans.jail = running_jail;
        self.record_certificates(&snapshot);
        // Before the swap: servers kept from the running config keep their health.
        let running = &self.shared.load().upstreams;
        crate::upstream::health::spawn(&snapshot.upstreams, Some(running), &self.metrics);
        self.shared.store(Arc::new(snapshot));
        self.metrics
            .config_reloads
            .with_label_values(&["success"])
            .inc();
        self.metrics.config_last_reload_success.set(unix_now());
        tracing::info!("config reloaded");
    }

    fn refuse(&self, errors: &ConfigErrors) {
        for error in &errors.0 {
            tracing::error!("{error}");
        }
        tracing::error!(
            errors = errors.0.len(),
            "config reload refused: the running config stays"
        );
        self.metrics
            .config_reloads
            .with_label_values(&["failure"])
            .inc();
    }

    /// `rampart_certificate_expiry_timestamp_seconds`, replaced whole so that a certificate
    /// removed from the config leaves no stale series.
    pub(crate) fn record_certificates(&self, snapshot: &Snapshot) {
        let gauge = &self.metrics.certificate_expiry;
        gauge.reset();
        for info in &snapshot.tls.certificates {
            if let Some(not_after) = info.not_after {
                gauge
                    .with_label_values(&[info.label.as_str()])
                    .set(not_after);
            }
        }
        for (name, not_after) in self.acme.expiries() {
            gauge.with_label_values(&[name.as_str()]).set(not_after);
        }
    }
}

/// Listeners are bound once: an address that differs from the bound one (or another number of
/// workers) is reported on every reload (log and `rampart_listen_restart_required`), and the
/// bound listeners keep serving.
fn report_listen_changes(bound: &Listen, next: &Listen, metrics: &Metrics) {
    let text =
        |addr: Option<std::net::SocketAddr>| addr.map_or("none".to_string(), |a| a.to_string());
    let pairs = [
        (text(Some(bound.https)), text(Some(next.https))),
        (text(bound.http), text(next.http)),
        (text(bound.admin), text(next.admin)),
        (bound.workers.to_string(), next.workers.to_string()),
    ];
    for (key, (bound, configured)) in crate::metrics::LISTEN_KEYS.into_iter().zip(pairs) {
        let differs = bound != configured;
        metrics
            .listen_restart_required
            .with_label_values(&[key])
            .set(i64::from(differs));
        if differs {
            tracing::warn!(
                key,
                bound = %bound,
                configured = %configured,
                "listen address changed: restart rampart to apply it; the running listeners stay as they are"
            );
        }
    }
}

pub(crate) fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}
