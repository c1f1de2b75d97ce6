//! Small files served without a trip to the blocking pool: the answer of a full lookup
//! (representation, validators, bytes) is kept, and reused while a `stat` of every path it
//! depends on still finds the very same file, unchanged. nginx's `open_file_cache` keeps open
//! descriptors and re-stats them every `open_file_cache_valid` seconds; this cache re-stats on
//! every request, so a deploy is seen at once.
//!
//! Why that keeps every guarantee of the full lookup ([`super::resolve`]): an entry is only made
//! from a file the full lookup opened and verified (inside the root, not hidden, not denied, a
//! regular file), and it is used only while the path still resolves to that same inode (device
//! and inode numbers) with the same length, modification and change times. A symlink swapped
//! into the path leads to another inode, so the lookup runs again, with all its checks; a
//! file rewritten in place changes its times; a chmod or a rename changes the change time. The
//! precompressed siblings a request could prefer are checked too (the chosen one must be
//! unchanged, the preferred ones still missing), so a sibling added by a deploy is served at once.
//!
//! A file changed within the timestamps' granularity of the moment it was read could be cached
//! half-written with times that later writes do not move (git's "racy clean" problem): files
//! changed less than [`SETTLE`] ago are served but not cached.
//!
//! The `stat` calls run on the worker's thread, as nginx's do on its event loop: on a local
//! file system a `stat` of a cached path is a few microseconds, far less than the two thread
//! wake-ups of a blocking-pool trip. Bounded: [`MAX_FILE`] bytes per entry, [`MAX_BYTES`] and
//! [`MAX_ENTRIES`] per route; one arbitrary entry goes when a new one does not fit.

use std::collections::HashMap;
use std::fs::Metadata;
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use bytes::Bytes;

use super::conditional::Validators;
use super::Meta;
use crate::encoding::Encoding;

/// Larger files are read on the blocking pool each time (their transfer dominates anyway).
pub const MAX_FILE: u64 = 64 * 1024;
/// Per route.
const MAX_BYTES: usize = 8 * 1024 * 1024;
const MAX_ENTRIES: usize = 1024;
/// A file changed more recently than this is not cached (see the module comment).
const SETTLE: Duration = Duration::from_secs(1);

/// What a request asks for, as far as the chosen representation depends on it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Key {
    /// The target's segments joined with `/`.
    path: String,
    trailing_slash: bool,
    /// Accept-Encoding's usable codings, in preference order.
    encodings: Vec<Encoding>,
}

impl Key {
    pub fn new(segments: &[String], trailing_slash: bool, encodings: &[Encoding]) -> Self {
        Key {
            path: segments.join("/"),
            trailing_slash,
            encodings: encodings.to_vec(),
        }
    }
}

/// Which file a path resolves to, and its state: equal stamps mean the same, unchanged file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamp {
    dev: u64,
    ino: u64,
    len: u64,
    mtime: (i64, i64),
    ctime: (i64, i64),
}

impl Stamp {
    pub fn of(metadata: &Metadata) -> Self {
        Stamp {
            dev: metadata.dev(),
            ino: metadata.ino(),
            len: metadata.len(),
            mtime: (metadata.mtime(), metadata.mtime_nsec()),
            ctime: (metadata.ctime(), metadata.ctime_nsec()),
        }
    }

    /// Changed less than [`SETTLE`] before `now`: possibly still being written.
    pub fn is_settled(&self, now: SystemTime) -> bool {
        let latest = self.mtime.max(self.ctime);
        let Ok(since_epoch) = now.duration_since(SystemTime::UNIX_EPOCH) else {
            return false;
        };
        let settled_before = since_epoch.saturating_sub(SETTLE);
        let latest_secs = u64::try_from(latest.0).unwrap_or(u64::MAX);
        let latest_nanos = u32::try_from(latest.1).unwrap_or(0);
        Duration::new(latest_secs, latest_nanos.min(999_999_999)) < settled_before
    }
}

/// A path the entry depends on, and what a `stat` of it must find.
#[derive(Debug)]
pub struct Check {
    pub path: PathBuf,
    /// `None`: nothing there (a preferred sibling that did not exist).
    pub expect: Option<Stamp>,
}

impl Check {
    fn holds(&self) -> bool {
        match (std::fs::metadata(&self.path), &self.expect) {
            (Ok(metadata), Some(stamp)) => Stamp::of(&metadata) == *stamp,
            (Err(err), None) => err.kind() == std::io::ErrorKind::NotFound,
            _ => false,
        }
    }
}

/// The full lookup's answer for a [`Key`]: the representation and its bytes.
#[derive(Debug)]
pub struct Entry {
    pub meta: Meta,
    pub validators: Validators,
    pub bytes: Bytes,
    pub checks: Vec<Check>,
}

#[derive(Debug, Default)]
pub struct OpenCache {
    entries: Mutex<Entries>,
}

#[derive(Debug, Default)]
struct Entries {
    map: HashMap<Key, Arc<Entry>>,
    bytes: usize,
}

impl OpenCache {
    /// The entry for `key` if every path it depends on is unchanged; a stale one is dropped.
    pub fn get(&self, key: &Key) -> Option<Arc<Entry>> {
        let entry = self.lock().map.get(key).cloned()?;
        if entry.checks.iter().all(Check::holds) {
            return Some(entry);
        }
        self.lock().remove(key);
        None
    }

    pub fn insert(&self, key: Key, entry: Entry) {
        let size = entry.bytes.len();
        if size as u64 > MAX_FILE {
            return;
        }
        let mut entries = self.lock();
        entries.remove(&key);
        while entries.map.len() >= MAX_ENTRIES || entries.bytes + size > MAX_BYTES {
            let Some(victim) = entries.map.keys().next().cloned() else {
                break;
            };
            entries.remove(&victim);
        }
        entries.bytes += size;
        entries.map.insert(key, Arc::new(entry));
    }

    fn lock(&self) -> MutexGuard<'_, Entries> {
        // A panic while holding the lock leaves a consistent map (no step can fail half-way).
        self.entries.lock().unwrap_or_else(|err| err.into_inner())
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.lock().map.len()
    }
}

impl Entries {
    fn remove(&mut self, key: &Key) {
        if let Some(old) = self.map.remove(key) {
            self.bytes -= old.bytes.len();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn entry(checks: Vec<Check>, size: usize) -> Entry {
        Entry {
            meta: Meta {
                content_type: HeaderValue::from_static("text/plain"),
                etag: HeaderValue::from_static("\"1\""),
                last_modified: HeaderValue::from_static("x"),
                encoding: None,
                fallback: false,
            },
            validators: Validators::new(size as u64, None, ""),
            bytes: Bytes::from(vec![b'x'; size]),
            checks,
        }
    }

    fn key(name: &str) -> Key {
        Key::new(&[name.to_string()], false, &[])
    }

    #[test]
    fn an_entry_lives_while_its_paths_find_the_same_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("a.css");
        std::fs::write(&file, "one").unwrap();
        let sibling = dir.path().join("a.css.br");
        let stamp = Stamp::of(&std::fs::metadata(&file).unwrap());
        let cache = OpenCache::default();
        let checks = vec![
            Check {
                path: file.clone(),
                expect: Some(stamp),
            },
            Check {
                path: sibling.clone(),
                expect: None,
            },
        ];
        cache.insert(key("a.css"), entry(checks, 3));
        assert!(cache.get(&key("a.css")).is_some());
        assert!(cache.get(&key("b.css")).is_none());

        // A preferred sibling appears: the entry is stale.
        std::fs::write(&sibling, "br").unwrap();
        assert!(cache.get(&key("a.css")).is_none());
        assert_eq!(cache.len(), 0);
    }

    #[test]
    fn a_replaced_or_rewritten_file_is_a_miss() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("a.css");
        std::fs::write(&file, "one").unwrap();
        let check = |path: &PathBuf| Check {
            path: path.clone(),
            expect: Some(Stamp::of(&std::fs::metadata(path).unwrap())),
        };
        let cache = OpenCache::default();

        cache.insert(key("a"), entry(vec![check(&file)], 3));
        // Same length, another inode (an atomic deploy: write a temp file, rename it over).
        let tmp = dir.path().join("tmp");
        std::fs::write(&tmp, "two").unwrap();
        std::fs::rename(&tmp, &file).unwrap();
        assert!(cache.get(&key("a")).is_none());

        cache.insert(key("a"), entry(vec![check(&file)], 3));
        // A symlink swapped in, to a file with the same content.
        let other = dir.path().join("other");
        std::fs::write(&other, "two").unwrap();
        std::fs::remove_file(&file).unwrap();
        std::os::unix::fs::symlink(&other, &file).unwrap();
        assert!(cache.get(&key("a")).is_none());

        cache.insert(key("a"), entry(vec![check(&file)], 3));
        // Permissions changed: the change time moves (past the clock's tick first).
        std::thread::sleep(Duration::from_millis(50));
        let mut perms = std::fs::metadata(&other).unwrap().permissions();
        std::os::unix::fs::PermissionsExt::set_mode(&mut perms, 0o600);
        std::fs::set_permissions(&other, perms).unwrap();
        assert!(cache.get(&key("a")).is_none());
    }

    #[test]
    fn bounded_in_bytes_and_entries() {
        let cache = OpenCache::default();
        let big = MAX_FILE as usize;
        for i in 0..(MAX_BYTES / big + 10) {
            cache.insert(key(&i.to_string()), entry(Vec::new(), big));
        }
        assert!(cache.lock().bytes <= MAX_BYTES);
        assert_eq!(cache.len(), MAX_BYTES / big);
        cache.insert(key("too-big"), entry(Vec::new(), big + 1));
        assert!(cache.get(&key("too-big")).is_none());
        for i in 0..(MAX_ENTRIES + 10) {
            cache.insert(key(&format!("small{i}")), entry(Vec::new(), 1));
        }
        assert!(cache.len() <= MAX_ENTRIES);
    }

    #[test]
    fn recently_changed_files_are_not_settled() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("a");
        std::fs::write(&file, "x").unwrap();
        let stamp = Stamp::of(&std::fs::metadata(&file).unwrap());
        assert!(!stamp.is_settled(SystemTime::now()));
        assert!(stamp.is_settled(SystemTime::now() + Duration::from_secs(2)));
    }
}
