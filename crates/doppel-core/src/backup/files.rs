//! Files and folders put in place whole: written beside their destination, flushed to disk,
//! then renamed over it; two folders swapped in one step.
//!
//! A kill at any moment leaves the old file (or folder) or the new one, never a mix: only a
//! stray temporary beside it, named after the destination, which the next try removes. The
//! crate's only `unsafe` for the file system is the `renameat2` call below.

use std::fs::File;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// A temporary path beside `dest`: hidden, named after it, with `suffix`.
pub(crate) fn beside(dest: &Path, suffix: &str) -> Result<PathBuf> {
    let name = dest.file_name().and_then(|n| n.to_str()).ok_or_else(|| {
        Error::InvalidInput(format!("{} does not name a file or folder", dest.display()))
    })?;
    Ok(parent_of(dest).join(format!(".{name}.{suffix}")))
}

/// The folder that holds `path` (the current folder for a bare name).
pub(crate) fn parent_of(path: &Path) -> PathBuf {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// Flushes a file's contents to disk.
pub(crate) fn sync_file(path: &Path) -> Result<()> {
    File::open(path).and_then(|f| f.sync_all()).map_err(|e| Error::io(path, e))
}

/// Flushes a folder's entries (a rename in it) to disk.
pub(crate) fn sync_dir(path: &Path) -> Result<()> {
    File::open(path).and_then(|f| f.sync_all()).map_err(|e| Error::io(path, e))
}

/// Renames `from` to `to` (replacing a file, or an empty folder) and makes the rename durable.
pub(crate) fn rename_durably(from: &Path, to: &Path) -> Result<()> {
    std::fs::rename(from, to).map_err(|e| Error::io(to, e))?;
    sync_dir(&parent_of(to))
}

/// Removes whatever is at `path` (a file or a folder), if anything.
pub(crate) fn remove_any(path: &Path) -> Result<()> {
    let result = match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.is_dir() => std::fs::remove_dir_all(path),
        Ok(_) => std::fs::remove_file(path),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    };
    result.map_err(|e| Error::io(path, e))
}

/// Removes the paths it holds when dropped, unless kept: the temporaries of a step that
/// failed or was cancelled.
pub(crate) struct Cleanup(pub Vec<PathBuf>);

impl Cleanup {
    /// Keeps the paths: the step succeeded.
    pub(crate) fn keep(mut self) {
        self.0.clear();
    }
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        for path in &self.0 {
            if let Err(e) = remove_any(path) {
                tracing::warn!(error = %e, "a temporary file could not be removed");
            }
        }
    }
}

/// Swaps two folders in one step: afterwards `a` holds what `b` held and the reverse. A kill
/// leaves both as they were or both swapped.
#[cfg(target_os = "linux")]
pub(crate) fn exchange(a: &Path, b: &Path) -> Result<()> {
    use std::ffi::CString;
    use std::os::unix::ffi::OsStrExt;
    let c = |p: &Path| {
        CString::new(p.as_os_str().as_bytes())
            .map_err(|_| Error::InvalidInput(format!("{} has a NUL byte", p.display())))
    };
    let (ca, cb) = (c(a)?, c(b)?);
    // SAFETY: both are valid NUL-terminated paths that live across the call; renameat2 only
    // reads them.
    let rc = unsafe {
        libc::renameat2(
            libc::AT_FDCWD,
            ca.as_ptr(),
            libc::AT_FDCWD,
            cb.as_ptr(),
            libc::RENAME_EXCHANGE,
        )
    };
    if rc != 0 {
        let e = std::io::Error::last_os_error();
        return Err(Error::Io {
            path: b.to_path_buf(),
            source: std::io::Error::new(
                e.kind(),
                format!("could not swap it with the restored folder in one step: {e}"),
            ),
        });
    }
    sync_dir(&parent_of(b))
}

#[cfg(not(target_os = "linux"))]
pub(crate) fn exchange(_a: &Path, b: &Path) -> Result<()> {
    Err(Error::InvalidInput(format!(
        "{} cannot be replaced in one step on this system: restore into an empty folder",
        b.display()
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_folders_swap_in_one_step() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("a"), dir.path().join("b"));
        std::fs::create_dir(&a).unwrap();
        std::fs::create_dir(&b).unwrap();
        std::fs::write(a.join("new"), "new").unwrap();
        std::fs::write(b.join("old"), "old").unwrap();
        exchange(&a, &b).unwrap();
        assert!(b.join("new").exists() && !b.join("old").exists());
        assert!(a.join("old").exists() && !a.join("new").exists());
    }
}
