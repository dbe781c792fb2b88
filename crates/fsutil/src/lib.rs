//! fsutil: the two file helpers every berth crate needs, written once.
//!
//! * [`io_context!`] gives a crate the `.at(path)` adapter that turns an `io::Error` or an
//!   errno into that crate's own `Error::Io { path, source }`, so every I/O failure names
//!   the path it happened on (one line, as the project's errors are).
//! * [`replace_file`] and [`replace_file_durably`] replace a file whole: readers (other
//!   processes included) see the old content or the new, never a torn write.
//!
//! Invariants:
//! * A temp file is created beside its target (same filesystem, so the rename is atomic),
//!   under a name unique across processes and threads, with `O_EXCL`, and is removed when
//!   the write fails.
//! * The durable variant syncs the file before the rename and the directory after it, so
//!   after a crash the target holds either version in full.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

pub use nix::errno::Errno;

/// An I/O error and the path it happened on.
#[derive(Debug)]
pub struct PathError {
    pub path: PathBuf,
    pub source: io::Error,
}

impl std::fmt::Display for PathError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.path.display(), self.source)
    }
}

impl std::error::Error for PathError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.source)
    }
}

/// Define `IoContext` for this crate's error type `$error`, which must have a variant
/// `Io { path: PathBuf, source: std::io::Error }`: `.at(path)` on an `io::Result` or a
/// `nix::Result` attaches the path, and a [`PathError`] converts with `?`.
#[macro_export]
macro_rules! io_context {
    ($error:ident) => {
        /// Attach a path to an I/O error or an errno (see `berth_fsutil::io_context!`).
        pub(crate) trait IoContext<T> {
            fn at(self, path: impl Into<std::path::PathBuf>) -> std::result::Result<T, $error>;
        }

        impl<T> IoContext<T> for std::io::Result<T> {
            fn at(self, path: impl Into<std::path::PathBuf>) -> std::result::Result<T, $error> {
                self.map_err(|source| $error::Io {
                    path: path.into(),
                    source,
                })
            }
        }

        impl<T> IoContext<T> for std::result::Result<T, $crate::Errno> {
            fn at(self, path: impl Into<std::path::PathBuf>) -> std::result::Result<T, $error> {
                self.map_err(|errno| $error::Io {
                    path: path.into(),
                    source: errno.into(),
                })
            }
        }

        impl From<$crate::PathError> for $error {
            fn from(e: $crate::PathError) -> $error {
                $error::Io {
                    path: e.path,
                    source: e.source,
                }
            }
        }
    };
}

fn at<T>(r: io::Result<T>, path: &Path) -> Result<T, PathError> {
    r.map_err(|source| PathError {
        path: path.to_path_buf(),
        source,
    })
}

static TEMP_COUNTER: AtomicU64 = AtomicU64::new(0);

/// A name for a temp file or directory, unique across processes and threads: `prefix`,
/// then pid, a per-process counter and the time.
pub fn temp_name(prefix: &str) -> String {
    let n = TEMP_COUNTER.fetch_add(1, Ordering::Relaxed);
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!("{prefix}{}-{n}-{t}", std::process::id())
}

/// Removes a path (file or directory tree) on drop unless [`TempPath::keep`] is called:
/// temp files of failed writes never linger.
#[derive(Debug)]
pub struct TempPath {
    path: Option<PathBuf>,
}

impl TempPath {
    pub fn new(path: PathBuf) -> TempPath {
        TempPath { path: Some(path) }
    }

    pub fn path(&self) -> &Path {
        self.path.as_deref().unwrap_or(Path::new(""))
    }

    /// The path stays (it was renamed into place, or is wanted).
    pub fn keep(mut self) {
        self.path = None;
    }
}

impl Drop for TempPath {
    fn drop(&mut self) {
        if let Some(p) = &self.path {
            let _ = if p.is_dir() {
                fs::remove_dir_all(p)
            } else {
                fs::remove_file(p)
            };
        }
    }
}

fn replace(path: &Path, bytes: &[u8], mode: u32, durable: bool) -> Result<(), PathError> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let name = path
        .file_name()
        .map_or("file".into(), |n| n.to_string_lossy());
    let tmp = TempPath::new(dir.join(temp_name(&format!(".{name}.tmp-"))));
    let mut f = at(
        OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(tmp.path()),
        tmp.path(),
    )?;
    at(f.write_all(bytes), tmp.path())?;
    if durable {
        at(f.sync_all(), tmp.path())?;
    }
    at(fs::rename(tmp.path(), path), path)?;
    tmp.keep();
    if durable {
        at(File::open(dir).and_then(|d| d.sync_all()), dir)?;
    }
    Ok(())
}

/// Replace `path` with `bytes` (mode 0600 for a new file): readers see the old or the new
/// content, never part of it. Not synced: for state a crash may lose but must not tear.
pub fn replace_file(path: &Path, bytes: &[u8]) -> Result<(), PathError> {
    replace(path, bytes, 0o600, false)
}

/// [`replace_file`], and synced (file, then directory) so that after a crash the new
/// content is there in full: for records other data depends on (an image index).
pub fn replace_file_durably(path: &Path, bytes: &[u8]) -> Result<(), PathError> {
    replace(path, bytes, 0o600, true)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[derive(Debug)]
    pub(crate) enum Error {
        Io {
            path: PathBuf,
            #[allow(dead_code)]
            source: io::Error,
        },
    }
    io_context!(Error);

    #[test]
    fn replace_leaves_only_the_target() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("rec.json");
        replace_file(&p, b"one").unwrap();
        replace_file_durably(&p, b"two").unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"two");
        let names: Vec<_> = fs::read_dir(d.path()).unwrap().collect();
        assert_eq!(names.len(), 1, "temp files left: {names:?}");
    }

    #[test]
    fn failed_replace_names_the_path_and_leaves_nothing() {
        let d = tempfile::tempdir().unwrap();
        // The target is a directory: the rename fails after the temp file was written.
        let target = d.path().join("dir");
        fs::create_dir(&target).unwrap();
        fs::write(target.join("x"), b"x").unwrap();
        let e = replace_file(&target, b"data").unwrap_err();
        assert_eq!(e.path, target);
        assert_eq!(fs::read_dir(d.path()).unwrap().count(), 1);
    }

    #[test]
    fn at_attaches_the_path_for_io_and_errno() {
        let e = std::fs::read("/nonexistent/berth").at("/nonexistent/berth");
        assert!(
            matches!(e, Err(Error::Io { path, .. }) if path == Path::new("/nonexistent/berth"))
        );
        let e: Result<(), Error> = Err(Errno::EPERM).at("/x");
        assert!(matches!(e, Err(Error::Io { path, .. }) if path == Path::new("/x")));
        let e: Error = PathError {
            path: "/y".into(),
            source: io::Error::from(io::ErrorKind::NotFound),
        }
        .into();
        assert!(matches!(e, Error::Io { path, .. } if path == Path::new("/y")));
    }
}
