//! Small helpers to read and write cgroup control files with errors that name the field.

use crate::error::{Error, Result};
use std::fs;
use std::io::{ErrorKind, Write as _};
use std::path::{Path, PathBuf};

/// One value to write into one control file, tagged with the OCI field it comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Write {
    /// The control file, relative to the cgroup directory (e.g. `memory.limit_in_bytes`).
    pub file: String,
    pub value: String,
    /// The OCI field this value came from (e.g. `memory.limit`), for error messages.
    pub field: &'static str,
    /// When the kernel rejects this write with EINVAL, retry it after the rest of the plan:
    /// some pairs (cfs period/quota, rt period/runtime) are validated against each other.
    pub retry_on_einval: bool,
}

impl Write {
    pub fn new(field: &'static str, file: impl Into<String>, value: impl ToString) -> Self {
        Write {
            file: file.into(),
            value: value.to_string(),
            field,
            retry_on_einval: false,
        }
    }

    pub fn retrying(mut self) -> Self {
        self.retry_on_einval = true;
        self
    }
}

/// Controller that owns a control file: the prefix before the first dot.
pub fn controller_of(file: &str) -> &str {
    file.split('.').next().unwrap_or(file)
}

/// Writes `value` to `dir/file`. A missing file means the controller is absent.
pub fn write_file(dir: &Path, file: &str, value: &str, field: &str) -> Result<()> {
    let path = dir.join(file);
    // Control files must exist already: never create a regular file in a cgroup dir
    // (on a fake root that would silently "succeed").
    let res = fs::OpenOptions::new()
        .write(true)
        .truncate(true)
        .open(&path)
        .and_then(|mut f| f.write_all(value.as_bytes()));
    match res {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == ErrorKind::NotFound => Err(Error::MissingController {
            field: field.to_string(),
            controller: controller_of(file).to_string(),
            file: path,
        }),
        Err(source) => Err(Error::Write {
            field: field.to_string(),
            file: path,
            value: value.to_string(),
            source,
        }),
    }
}

/// Runs a plan of writes in order, each into the directory `dir_for` picks for its file;
/// writes marked `retry_on_einval` that fail with EINVAL are retried once after the plan.
pub fn run_plan(plan: &[Write], dir_for: &dyn Fn(&Write) -> Result<PathBuf>) -> Result<()> {
    let mut retry = Vec::new();
    for w in plan {
        let dir = dir_for(w)?;
        match write_file(&dir, &w.file, &w.value, w.field) {
            Ok(()) => {}
            Err(Error::Write { ref source, .. })
                if w.retry_on_einval && source.raw_os_error() == Some(libc::EINVAL) =>
            {
                retry.push((dir, w))
            }
            Err(e) => return Err(e),
        }
    }
    for (dir, w) in retry {
        write_file(&dir, &w.file, &w.value, w.field)?;
    }
    Ok(())
}

pub fn read_string(path: &Path) -> Result<String> {
    fs::read_to_string(path).map_err(|source| Error::Read {
        file: path.to_path_buf(),
        source,
    })
}

/// Reads a single-number file; `max` reads as `u64::MAX`.
pub fn read_u64(path: &Path) -> Result<u64> {
    let s = read_string(path)?;
    parse_u64(path, s.trim())
}

/// Like `read_u64` but a missing file reads as `None`.
pub fn read_u64_opt(path: &Path) -> Result<Option<u64>> {
    if !path.exists() {
        return Ok(None);
    }
    read_u64(path).map(Some)
}

pub fn parse_u64(path: &Path, s: &str) -> Result<u64> {
    if s == "max" {
        return Ok(u64::MAX);
    }
    s.parse().map_err(|_| Error::Parse {
        file: path.to_path_buf(),
        reason: format!("{s:?} is not a number"),
    })
}

/// Parses "key value" lines (memory.stat, cpu.stat, memory.events) into pairs.
pub fn read_keyed(path: &Path) -> Result<Vec<(String, u64)>> {
    let s = read_string(path)?;
    s.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let mut it = l.split_whitespace();
            let (Some(k), Some(v)) = (it.next(), it.next()) else {
                return Err(Error::Parse {
                    file: path.to_path_buf(),
                    reason: format!("line {l:?} is not \"key value\""),
                });
            };
            Ok((k.to_string(), parse_u64(path, v)?))
        })
        .collect()
}

/// Looks a key up in a "key value" file.
pub fn keyed_value(path: &Path, key: &str) -> Result<Option<u64>> {
    Ok(read_keyed(path)?
        .into_iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v))
}

/// Reads cgroup.procs (or tasks): one pid per line.
pub fn read_pids(path: &Path) -> Result<Vec<i32>> {
    let s = match fs::read_to_string(path) {
        Ok(s) => s,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => {
            return Err(Error::Read {
                file: path.to_path_buf(),
                source,
            })
        }
    };
    s.lines()
        .filter(|l| !l.is_empty())
        .map(|l| {
            l.trim().parse().map_err(|_| Error::Parse {
                file: path.to_path_buf(),
                reason: format!("{l:?} is not a pid"),
            })
        })
        .collect()
}

/// Removes one cgroup directory, retrying EBUSY (tasks still exiting). Missing is fine.
pub fn rmdir_retry(path: &Path) -> Result<()> {
    let mut delay = std::time::Duration::from_millis(1);
    for _ in 0..15 {
        match fs::remove_dir(path) {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(()),
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) => {
                std::thread::sleep(delay);
                delay = (delay * 2).min(std::time::Duration::from_millis(200));
            }
            Err(source) => {
                return Err(Error::Io {
                    op: "rmdir",
                    path: path.to_path_buf(),
                    source,
                })
            }
        }
    }
    fs::remove_dir(path).map_err(|source| Error::Io {
        op: "rmdir",
        path: path.to_path_buf(),
        source,
    })
}

/// `mkdir -p` that returns the directories it created, outermost first.
pub fn mkdir_all(path: &Path) -> Result<Vec<PathBuf>> {
    let mut missing = Vec::new();
    let mut cur = path;
    while !cur.exists() {
        missing.push(cur.to_path_buf());
        match cur.parent() {
            Some(p) => cur = p,
            None => break,
        }
    }
    missing.reverse();
    let mut created = Vec::new();
    for dir in missing {
        match fs::create_dir(&dir) {
            Ok(()) => created.push(dir),
            Err(e) if e.kind() == ErrorKind::AlreadyExists => {}
            Err(source) => {
                // Undo what this call made before reporting.
                for d in created.iter().rev() {
                    let _ = fs::remove_dir(d);
                }
                return Err(Error::Io {
                    op: "mkdir",
                    path: dir,
                    source,
                });
            }
        }
    }
    Ok(created)
}
