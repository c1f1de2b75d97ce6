//! Reload triggers: a change on disk of the config file or of any certificate or key it names
//! (notify), and SIGHUP (through [`ConfigWatch::reload_now`]).
//!
//! Editors and Kubernetes replace files by rename (vim's backup copy, ConfigMap's `..data`
//! symlink swap, certbot's `live/` links), which a watch on the file itself would lose. So the
//! *directories* holding the files are watched (both the named path's and, for a symlink, its
//! target's), events are debounced, and a reload happens only when the content of a watched
//! file really changed: a swap file or an unrelated neighbour never reloads anything.

use std::collections::hash_map::DefaultHasher;
use std::collections::BTreeSet;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::time::Duration;

use notify::{EventKind, RecommendedWatcher, RecursiveMode, Watcher};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::reload::Reloader;

/// Quiet time after the last event before the files are read: an editor's write-rename-chmod
/// sequence or a ConfigMap's swap is one reload, not three.
const DEBOUNCE: Duration = Duration::from_millis(250);

/// The longest a change waits for quiet: a directory that never stays quiet (a log file
/// written beside the config, say) must not hold a change back.
const DEBOUNCE_CEILING: Duration = Duration::from_millis(750);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Trigger {
    /// Something changed in a watched directory.
    Changed,
    /// SIGHUP: reload even when no content changed.
    Signal,
}

/// Watches the config and its certificates and reloads the server on change. Dropping it
/// stops watching.
pub struct ConfigWatch {
    trigger: mpsc::Sender<Trigger>,
    task: JoinHandle<()>,
}

impl ConfigWatch {
    /// Starts watching `config_path` and the files of the running snapshot. With
    /// `watch_files = false` only [`reload_now`](Self::reload_now) (SIGHUP) reloads.
    pub fn spawn(config_path: PathBuf, reloader: Reloader, watch_files: bool) -> ConfigWatch {
        // Capacity 1 coalesces bursts: one pending trigger is as good as a hundred.
        let (trigger, events) = mpsc::channel(1);
        let files = watched_files(&config_path, &reloader);
        let names = Names::default();
        names.set(&files);
        let mut watcher = if watch_files {
            let sender = trigger.clone();
            let relevant = names.clone();
            let watcher = notify::recommended_watcher(
                move |event: notify::Result<notify::Event>| match event {
                    Ok(event) if matches!(event.kind, EventKind::Access(_)) => {}
                    // Neighbours (a log written beside the config) neither wake nor delay us.
                    Ok(event) if !relevant.concerns(&event.paths) => {}
                    Ok(_) => {
                        let _ = sender.try_send(Trigger::Changed);
                    }
                    Err(err) => tracing::warn!(error = %err, "config watch error"),
                },
            );
            match watcher {
                Ok(watcher) => Some(watcher),
                Err(err) => {
                    tracing::warn!(error = %err, "cannot watch the config for changes; SIGHUP still reloads");
                    None
                }
            }
        } else {
            None
        };
        // The watches and the first fingerprint are taken before `spawn` returns: a change made
        // right after it (a test, or a deploy racing the start) is then always seen.
        let mut watched = BTreeSet::new();
        if let Some(watcher) = watcher.as_mut() {
            update_watches(watcher, &mut watched, &files);
        }
        let last = fingerprint(&files);
        let state = State {
            files,
            names,
            watched,
            last,
        };
        let task = tokio::spawn(run(config_path, reloader, watcher, state, events));
        ConfigWatch { trigger, task }
    }

    /// Reloads now, whether or not a file changed (SIGHUP).
    pub fn reload_now(&self) {
        let _ = self.trigger.try_send(Trigger::Signal);
    }
}

impl Drop for ConfigWatch {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// What the watch task carries from one change to the next.
struct State {
    /// The config file and the certificates and keys it names.
    files: Vec<PathBuf>,
    /// Their file names, which the watcher's events are filtered by.
    names: Names,
    /// The directories being watched.
    watched: BTreeSet<PathBuf>,
    /// The fingerprint of `files` at the last reload (or at the start).
    last: Vec<Option<u64>>,
}

async fn run(
    config_path: PathBuf,
    reloader: Reloader,
    mut watcher: Option<RecommendedWatcher>,
    state: State,
    mut events: mpsc::Receiver<Trigger>,
) {
    let State {
        mut files,
        names,
        mut watched,
        mut last,
    } = state;

    while let Some(first) = events.recv().await {
        let mut forced = first == Trigger::Signal;
        // Debounce: wait until events stop for DEBOUNCE, or DEBOUNCE_CEILING has passed.
        let ceiling = tokio::time::Instant::now() + DEBOUNCE_CEILING;
        loop {
            let quiet = (tokio::time::Instant::now() + DEBOUNCE).min(ceiling);
            match tokio::time::timeout_at(quiet, events.recv()).await {
                Ok(Some(trigger)) => forced |= trigger == Trigger::Signal,
                Ok(None) => return,
                Err(_quiet_or_ceiling) => break,
            }
        }
        let current = read_fingerprint(&files).await;
        if !forced && current == last {
            continue;
        }
        if forced {
            tracing::info!(path = %config_path.display(), "SIGHUP: reloading the config");
        } else {
            tracing::info!(path = %config_path.display(), "config or certificate changed on disk: reloading");
        }
        let path = config_path.clone();
        let worker = reloader.clone();
        // Reading files and building TLS configs is blocking work: off the runtime threads.
        let result = tokio::task::spawn_blocking(move || worker.reload_file(&path)).await;
        // What was read before the reload is what the next change is compared with: a file
        // written while the reload ran then differs, and its event (queued meanwhile) reloads
        // again. Reading the fingerprint after the reload could swallow that edit.
        last = current;
        if result.is_ok_and(|r| r.is_ok()) {
            // New certificate paths, or a symlink now pointing elsewhere: watch those folders.
            let next = watched_files(&config_path, &reloader);
            if let Some(watcher) = watcher.as_mut() {
                update_watches(watcher, &mut watched, &next);
            }
            if next != files {
                names.set(&next);
                files = next;
                last = read_fingerprint(&files).await;
            }
        }
    }
}

/// The names an event must touch to matter: every component of each watched file's path and
/// of its symlink target's (a certificate at `live/site.crt` changes when the `live` link is
/// swapped, as certbot and Kubernetes Secrets do). Events for other names are dropped in the watcher's thread, except names that
/// start with `..` (Kubernetes swaps a ConfigMap by renaming its `..data` link) and events
/// without a path. Shared with that thread, which has no other way to learn new certificates.
#[derive(Debug, Clone, Default)]
struct Names(std::sync::Arc<std::sync::RwLock<BTreeSet<std::ffi::OsString>>>);

impl Names {
    fn set(&self, files: &[PathBuf]) {
        let mut names = BTreeSet::new();
        for file in files {
            let target = std::fs::canonicalize(file).ok();
            for path in [Some(file.as_path()), target.as_deref()]
                .into_iter()
                .flatten()
            {
                for component in path.components() {
                    if let std::path::Component::Normal(name) = component {
                        names.insert(name.to_os_string());
                    }
                }
            }
        }
        *self
            .0
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = names;
    }

    fn concerns(&self, paths: &[PathBuf]) -> bool {
        if paths.is_empty() {
            return true;
        }
        let names = self
            .0
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        paths.iter().any(|path| {
            path.file_name().is_none_or(|name| {
                names.contains(name) || name.as_encoded_bytes().starts_with(b"..")
            })
        })
    }
}

/// The config file and every certificate and key of the running snapshot.
fn watched_files(config_path: &Path, reloader: &Reloader) -> Vec<PathBuf> {
    let mut files = vec![config_path.to_path_buf()];
    for file in &reloader.snapshot().files {
        if !files.contains(file) {
            files.push(file.clone());
        }
    }
    files
}

/// The directories to watch: each file's own, and its symlink target's.
fn directories(files: &[PathBuf]) -> BTreeSet<PathBuf> {
    let mut dirs = BTreeSet::new();
    for file in files {
        let candidates = [Some(file.clone()), std::fs::canonicalize(file).ok()];
        for path in candidates.into_iter().flatten() {
            let dir = match path.parent() {
                Some(parent) if !parent.as_os_str().is_empty() => parent.to_path_buf(),
                _ => PathBuf::from("."),
            };
            dirs.insert(dir);
        }
    }
    dirs
}

fn update_watches(
    watcher: &mut RecommendedWatcher,
    watched: &mut BTreeSet<PathBuf>,
    files: &[PathBuf],
) {
    let wanted = directories(files);
    for gone in watched.difference(&wanted) {
        let _ = watcher.unwatch(gone);
    }
    watched.retain(|dir| wanted.contains(dir));
    for dir in wanted {
        if watched.contains(&dir) {
            continue;
        }
        match watcher.watch(&dir, RecursiveMode::NonRecursive) {
            Ok(()) => {
                watched.insert(dir);
            }
            Err(err) => {
                tracing::warn!(dir = %dir.display(), error = %err, "cannot watch directory; SIGHUP still reloads");
            }
        }
    }
}

/// [`fingerprint`] on the blocking pool: off the runtime threads.
async fn read_fingerprint(files: &[PathBuf]) -> Vec<Option<u64>> {
    let files = files.to_vec();
    tokio::task::spawn_blocking(move || fingerprint(&files))
        .await
        .unwrap_or_default()
}

/// A digest of each file's content (`None`: unreadable right now).
fn fingerprint(files: &[PathBuf]) -> Vec<Option<u64>> {
    files
        .iter()
        .map(|file| {
            std::fs::read(file).ok().map(|bytes| {
                let mut hasher = DefaultHasher::new();
                bytes.hash(&mut hasher);
                hasher.finish()
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_are_filtered_by_the_watched_names() {
        let names = Names::default();
        names.set(&[
            PathBuf::from("cfg/rampart.toml"),
            PathBuf::from("certs/live/a.pem"),
        ]);
        let p = |s: &str| vec![PathBuf::from(s)];
        assert!(names.concerns(&p("cfg/rampart.toml")));
        assert!(names.concerns(&p("/abs/certs/live/a.pem")));
        assert!(names.concerns(&p("/abs/certs/live")));
        assert!(names.concerns(&p("cfg/..data")));
        assert!(names.concerns(&[]));
        assert!(!names.concerns(&p("cfg/rampart.log")));
        assert!(!names.concerns(&p("cfg/.rampart.toml.swp")));
        assert!(names.concerns(&[
            PathBuf::from("cfg/x.tmp"),
            PathBuf::from("cfg/rampart.toml")
        ]));
    }

    #[test]
    fn watches_the_directory_of_a_file_and_of_its_symlink_target() {
        let dir = tempfile::tempdir().unwrap();
        let real = dir.path().join("real");
        std::fs::create_dir(&real).unwrap();
        std::fs::write(real.join("cert.pem"), "x").unwrap();
        let link_dir = dir.path().join("live");
        std::fs::create_dir(&link_dir).unwrap();
        std::os::unix::fs::symlink(real.join("cert.pem"), link_dir.join("cert.pem")).unwrap();

        let dirs = directories(&[link_dir.join("cert.pem"), PathBuf::from("rampart.toml")]);
        assert!(dirs.contains(&link_dir));
        assert!(dirs.contains(&std::fs::canonicalize(&real).unwrap()));
        assert!(dirs.contains(&PathBuf::from(".")));
    }
}
