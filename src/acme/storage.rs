//! Where ACME state lives: the account, each certificate's chain and key, its renewal state
//! (back-off), and the pending HTTP-01 tokens. Two kinds: a directory (one host; keys 0600,
//! atomic writes, a lock file) and Redis (every replica; a lock with a heartbeat).
//!
//! Keys are relative paths such as `certs/example.org/chain.pem`; in Redis they are prefixed
//! with `rampart:acme:`.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::OnceCell;

use super::config::StorageKind;

const REDIS_PREFIX: &str = "rampart:acme:";
/// A Redis lock expires this long after its last heartbeat (a replica that died frees it).
const LOCK_TTL: Duration = Duration::from_secs(30);
const HEARTBEAT: Duration = Duration::from_secs(10);
/// Bound on one Redis command, connecting included.
const REDIS_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("ACME storage {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("ACME storage in Redis: {0}")]
    Redis(String),
}

pub enum Storage {
    Dir(PathBuf),
    Redis(RedisStorage),
}

pub struct RedisStorage {
    client: redis::Client,
    connection: OnceCell<redis::aio::ConnectionManager>,
}

/// Held while this process places an order; dropping it frees the lock.
pub enum LockGuard {
    /// The open lock file (an exclusive advisory lock, released when the file is closed).
    Dir(std::fs::File),
    Redis(RedisLock),
}

pub struct RedisLock {
    storage: Arc<Storage>,
    key: String,
    token: String,
    heartbeat: tokio::task::JoinHandle<()>,
}

impl Drop for RedisLock {
    fn drop(&mut self) {
        self.heartbeat.abort();
        let storage = self.storage.clone();
        let key = self.key.clone();
        let token = self.token.clone();
        // Freed at once when possible; otherwise it expires after LOCK_TTL.
        if let Ok(handle) = tokio::runtime::Handle::try_current() {
            handle.spawn(async move {
                if let Storage::Redis(redis) = &*storage {
                    let _ = redis.release(&key, &token).await;
                }
            });
        }
    }
}

impl Storage {
    /// Opens the storage: the directory is created (0700) and probed with a write.
    pub fn open(kind: &StorageKind) -> Result<Storage, StorageError> {
        match kind {
            StorageKind::Dir(path) => {
                let io = |source| StorageError::Io {
                    path: path.display().to_string(),
                    source,
                };
                std::fs::create_dir_all(path).map_err(io)?;
                set_mode(path, 0o700).map_err(io)?;
                let probe = path.join(".probe");
                write_atomic(&probe, b"ok").map_err(io)?;
                let _ = std::fs::remove_file(&probe);
                Ok(Storage::Dir(path.clone()))
            }
            StorageKind::Redis(url) => {
                let client = redis::Client::open(url.as_str())
                    .map_err(|e| StorageError::Redis(e.to_string()))?;
                Ok(Storage::Redis(RedisStorage {
                    client,
                    connection: OnceCell::new(),
                }))
            }
        }
    }

    pub fn is_shared(&self) -> bool {
        matches!(self, Storage::Redis(_))
    }

    pub async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StorageError> {
        match self {
            Storage::Dir(root) => {
                let path = root.join(key);
                match tokio::fs::read(&path).await {
                    Ok(bytes) => Ok(Some(bytes)),
                    Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(None),
                    Err(source) => Err(StorageError::Io {
                        path: path.display().to_string(),
                        source,
                    }),
                }
            }
            Storage::Redis(redis) => {
                let key = format!("{REDIS_PREFIX}{key}");
                redis.run(redis::cmd("GET").arg(&key).clone()).await
            }
        }
    }

    /// Writes a value whole: a reader sees the old value or the new one, never a mix. Files
    /// are 0600 (keys among them). `ttl`: Redis expiry (files are removed by [`Storage::delete`]).
    pub async fn put(
        &self,
        key: &str,
        value: &[u8],
        ttl: Option<Duration>,
    ) -> Result<(), StorageError> {
        match self {
            Storage::Dir(root) => {
                let path = root.join(key);
                let value = value.to_vec();
                let shown = path.display().to_string();
                tokio::task::spawn_blocking(move || {
                    if let Some(parent) = path.parent() {
                        std::fs::create_dir_all(parent)?;
                        set_mode(parent, 0o700)?;
                    }
                    write_atomic(&path, &value)
                })
                .await
                .map_err(|e| StorageError::Io {
                    path: shown.clone(),
                    source: std::io::Error::other(e.to_string()),
                })?
                .map_err(|source| StorageError::Io {
                    path: shown,
                    source,
                })
            }
            Storage::Redis(redis) => {
                let key = format!("{REDIS_PREFIX}{key}");
                let mut cmd = redis::cmd("SET");
                cmd.arg(&key).arg(value);
                if let Some(ttl) = ttl {
                    cmd.arg("PX").arg(ttl.as_millis().max(1) as u64);
                }
                redis.run::<()>(cmd).await
            }
        }
    }

    pub async fn delete(&self, key: &str) -> Result<(), StorageError> {
        match self {
            Storage::Dir(root) => {
                let path = root.join(key);
                match tokio::fs::remove_file(&path).await {
                    Ok(()) => Ok(()),
                    Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(()),
                    Err(source) => Err(StorageError::Io {
                        path: path.display().to_string(),
                        source,
                    }),
                }
            }
            Storage::Redis(redis) => {
                let key = format!("{REDIS_PREFIX}{key}");
                redis.run::<()>(redis::cmd("DEL").arg(&key).clone()).await
            }
        }
    }

    /// Tries to take the lock `name` (one order at a time per certificate, across processes
    /// sharing this storage). `None`: another process holds it.
    pub async fn try_lock(self: &Arc<Self>, name: &str) -> Result<Option<LockGuard>, StorageError> {
        match &**self {
            Storage::Dir(root) => {
                let path = root.join("locks").join(format!("{name}.lock"));
                let shown = path.display().to_string();
                let io = |source| StorageError::Io {
                    path: shown.clone(),
                    source,
                };
                if let Some(parent) = path.parent() {
                    std::fs::create_dir_all(parent).map_err(io)?;
                }
                let file = std::fs::OpenOptions::new()
                    .create(true)
                    .truncate(false)
                    .write(true)
                    .open(&path)
                    .map_err(io)?;
                match file.try_lock() {
                    Ok(()) => Ok(Some(LockGuard::Dir(file))),
                    Err(std::fs::TryLockError::WouldBlock) => Ok(None),
                    Err(std::fs::TryLockError::Error(err)) => Err(io(err)),
                }
            }
            Storage::Redis(redis) => {
                let key = format!("{REDIS_PREFIX}locks:{name}");
                let token = uuid::Uuid::new_v4().to_string();
                let mut cmd = redis::cmd("SET");
                cmd.arg(&key)
                    .arg(&token)
                    .arg("NX")
                    .arg("PX")
                    .arg(LOCK_TTL.as_millis() as u64);
                let taken: Option<String> = redis.run(cmd).await?;
                if taken.is_none() {
                    return Ok(None);
                }
                let storage = self.clone();
                let (hb_key, hb_token) = (key.clone(), token.clone());
                // The heartbeat keeps the lock while the order runs (orders can take minutes).
                let heartbeat = tokio::spawn(async move {
                    loop {
                        tokio::time::sleep(HEARTBEAT).await;
                        if let Storage::Redis(redis) = &*storage {
                            match redis.extend(&hb_key, &hb_token).await {
                                Ok(true) => {}
                                Ok(false) => {
                                    tracing::warn!(lock = %hb_key, "ACME lock lost to another replica");
                                    return;
                                }
                                Err(err) => {
                                    tracing::warn!(error = %err, "ACME lock heartbeat failed")
                                }
                            }
                        }
                    }
                });
                Ok(Some(LockGuard::Redis(RedisLock {
                    storage: self.clone(),
                    key,
                    token,
                    heartbeat,
                })))
            }
        }
    }
}

const EXTEND_SCRIPT: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0";

const RELEASE_SCRIPT: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0";

impl RedisStorage {
    async fn connection(&self) -> Result<redis::aio::ConnectionManager, StorageError> {
        let connect = self.connection.get_or_try_init(|| async {
            redis::aio::ConnectionManager::new(self.client.clone())
                .await
                .map_err(|e| StorageError::Redis(e.to_string()))
        });
        match tokio::time::timeout(REDIS_TIMEOUT, connect).await {
            Ok(result) => result.cloned(),
            Err(_) => Err(StorageError::Redis("timed out connecting".into())),
        }
    }

    async fn run<T: redis::FromRedisValue>(&self, cmd: redis::Cmd) -> Result<T, StorageError> {
        let mut connection = self.connection().await?;
        match tokio::time::timeout(REDIS_TIMEOUT, cmd.query_async(&mut connection)).await {
            Ok(result) => result.map_err(|e| StorageError::Redis(e.to_string())),
            Err(_) => Err(StorageError::Redis("timed out".into())),
        }
    }

    async fn extend(&self, key: &str, token: &str) -> Result<bool, StorageError> {
        let mut connection = self.connection().await?;
        let script = redis::Script::new(EXTEND_SCRIPT);
        let mut invocation = script.key(key);
        invocation.arg(token).arg(LOCK_TTL.as_millis() as u64);
        let extended: i64 =
            tokio::time::timeout(REDIS_TIMEOUT, invocation.invoke_async(&mut connection))
                .await
                .map_err(|_| StorageError::Redis("timed out".into()))?
                .map_err(|e| StorageError::Redis(e.to_string()))?;
        Ok(extended == 1)
    }

    async fn release(&self, key: &str, token: &str) -> Result<(), StorageError> {
        let mut connection = self.connection().await?;
        let script = redis::Script::new(RELEASE_SCRIPT);
        let mut invocation = script.key(key);
        invocation.arg(token);
        let _: i64 = tokio::time::timeout(REDIS_TIMEOUT, invocation.invoke_async(&mut connection))
            .await
            .map_err(|_| StorageError::Redis("timed out".into()))?
            .map_err(|e| StorageError::Redis(e.to_string()))?;
        Ok(())
    }
}

/// Write to a temporary file beside the target (mode 0600), flush it to disk, rename it over
/// the target, then flush the directory: a crash leaves the old file or the new one.
fn write_atomic(path: &Path, value: &[u8]) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = path.with_file_name(format!(".{name}.{}.tmp", uuid::Uuid::new_v4().simple()));
    let result = (|| {
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)?;
        file.write_all(value)?;
        file.sync_all()?;
        std::fs::rename(&tmp, path)?;
        if let Some(parent) = path.parent() {
            std::fs::File::open(parent)?.sync_all()?;
        }
        Ok(())
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

fn set_mode(path: &Path, mode: u32) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[tokio::test]
    async fn directory_files_are_private_and_the_lock_is_exclusive() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("acme");
        let storage = Arc::new(Storage::open(&StorageKind::Dir(root.clone())).unwrap());
        storage
            .put("certs/a.test/key.pem", b"secret", None)
            .await
            .unwrap();
        let mode = std::fs::metadata(root.join("certs/a.test/key.pem"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(
            std::fs::metadata(&root).unwrap().permissions().mode() & 0o777,
            0o700
        );
        assert_eq!(
            storage.get("certs/a.test/key.pem").await.unwrap().unwrap(),
            b"secret"
        );
        assert!(storage.get("certs/none").await.unwrap().is_none());
        // No temporary file is left beside the value.
        let names: Vec<_> = std::fs::read_dir(root.join("certs/a.test"))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names.len(), 1, "{names:?}");

        let held = storage.try_lock("a.test").await.unwrap();
        assert!(held.is_some());
        // A second open file description (as another process would have) is refused.
        assert!(storage.try_lock("a.test").await.unwrap().is_none());
        drop(held);
        assert!(storage.try_lock("a.test").await.unwrap().is_some());
    }
}
