//! The file system side: open a path only if it really lies inside the root. Blocking calls;
//! run them on a blocking thread.
//!
//! Open, then verify. The path is resolved (`canonicalize`, every symlink followed) and must
//! lie inside the canonical root and be a regular file; it is then opened with `O_NOFOLLOW`
//! and `O_NONBLOCK` (a FIFO swapped in cannot hang the thread), and the **opened descriptor**
//! is checked again: its real path (`/proc/self/fd/N`, what the kernel actually opened) must
//! be inside the root, and it must be a regular file. A symlink swapped into the path between
//! the check and the open (the classic race) is caught by that second check, before a byte is
//! read. Without `/proc` the second check compares device and inode of the opened file with
//! the checked path's, which leaves a narrower window (a swap and a swap back) open.

use std::ffi::OsString;
use std::fs::{File, Metadata, OpenOptions};
use std::io;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::os::unix::io::AsRawFd;
use std::path::{Component, Path, PathBuf};

/// What a path turned out to be.
#[derive(Debug)]
pub enum Found {
    File(Box<Opened>),
    Directory,
}

#[derive(Debug)]
pub struct Opened {
    pub file: File,
    /// Of the opened descriptor (fstat), not of the path.
    pub metadata: Metadata,
    /// The file's own name, after every link was followed.
    pub real_name: OsString,
}

#[derive(Debug)]
pub enum ResolveError {
    /// Missing, not a regular file or directory, or not reachable as a file.
    NotFound,
    /// A link inside the root leads to a hidden file (`.env`): refused as not found.
    Hidden,
    /// The path resolves outside the root (a symlink pointing out): refused as not found, and
    /// logged, since it means the root holds a link it should not.
    Outside(PathBuf),
    /// The process may not read it.
    PermissionDenied,
    /// Any other I/O failure.
    Io(io::Error),
}

impl From<io::Error> for ResolveError {
    fn from(err: io::Error) -> Self {
        if err.kind() == io::ErrorKind::NotFound {
            return ResolveError::NotFound;
        }
        if err.kind() == io::ErrorKind::PermissionDenied {
            return ResolveError::PermissionDenied;
        }
        match err.raw_os_error() {
            // A file used as a directory, a name too long, a symlink loop, or the O_NOFOLLOW
            // refusal of a symlink swapped in: nothing to serve at this path.
            Some(libc::ENOTDIR | libc::ENAMETOOLONG | libc::ELOOP) => ResolveError::NotFound,
            _ => ResolveError::Io(err),
        }
    }
}

/// Opens `path` (below `root`, which is canonical) if it is a regular file inside `root`;
/// reports a directory inside `root` as such.
pub fn open_inside_root(root: &Path, path: &Path) -> Result<Found, ResolveError> {
    let canonical = std::fs::canonicalize(path)?;
    let Ok(relative) = canonical.strip_prefix(root) else {
        return Err(ResolveError::Outside(canonical));
    };
    // A link inside the root may still point at a hidden file inside it.
    if relative.components().any(is_hidden) {
        return Err(ResolveError::Hidden);
    }
    let checked = std::fs::metadata(&canonical)?;
    if checked.is_dir() {
        return Ok(Found::Directory);
    }
    if !checked.is_file() {
        return Err(ResolveError::NotFound);
    }

    let file = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(&canonical)?;
    let metadata = file.metadata()?;
    if !metadata.is_file() {
        return Err(ResolveError::NotFound);
    }
    match opened_path(&file) {
        Some(real) if real.starts_with(root) => {}
        Some(real) => return Err(ResolveError::Outside(real)),
        None if (metadata.dev(), metadata.ino()) == (checked.dev(), checked.ino()) => {}
        None => return Err(ResolveError::NotFound),
    }
    let real_name = canonical.file_name().unwrap_or_default().to_os_string();
    Ok(Found::File(Box::new(Opened {
        file,
        metadata,
        real_name,
    })))
}

/// The path the kernel opened for `file` (Linux `/proc`); `None` where that is not available.
fn opened_path(file: &File) -> Option<PathBuf> {
    std::fs::read_link(format!("/proc/self/fd/{}", file.as_raw_fd())).ok()
}

fn is_hidden(component: Component<'_>) -> bool {
    match component {
        Component::Normal(name) => name.as_encoded_bytes().first() == Some(&b'.'),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn tree() -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        std::fs::create_dir_all(root.join("sub")).unwrap();
        std::fs::write(root.join("a.txt"), "inside").unwrap();
        std::fs::write(root.join(".env"), "hidden").unwrap();
        std::fs::write(dir.path().join("secret.txt"), "outside").unwrap();
        symlink(root.join("a.txt"), root.join("link.txt")).unwrap();
        symlink(root.join(".env"), root.join("env-link")).unwrap();
        symlink(dir.path().join("secret.txt"), root.join("out.txt")).unwrap();
        symlink(dir.path(), root.join("outdir")).unwrap();
        let root = std::fs::canonicalize(root).unwrap();
        (dir, root)
    }

    #[test]
    fn opens_only_regular_files_inside_the_root() {
        let (_dir, root) = tree();
        let open = |rel: &str| open_inside_root(&root, &root.join(rel));
        assert!(matches!(open("a.txt"), Ok(Found::File(f)) if f.metadata.len() == 6));
        assert!(matches!(open("link.txt"), Ok(Found::File(_))));
        assert!(matches!(open("sub"), Ok(Found::Directory)));
        assert!(matches!(open(""), Ok(Found::Directory)));
        assert!(matches!(open("missing"), Err(ResolveError::NotFound)));
        assert!(matches!(open("a.txt/x"), Err(ResolveError::NotFound)));
        assert!(matches!(open("env-link"), Err(ResolveError::Hidden)));
        assert!(matches!(open("out.txt"), Err(ResolveError::Outside(_))));
        assert!(matches!(
            open("outdir/secret.txt"),
            Err(ResolveError::Outside(_))
        ));
        assert!(matches!(open("outdir"), Err(ResolveError::Outside(_))));
        assert!(matches!(open("/dev/null"), Err(ResolveError::Outside(_))));
    }
}
