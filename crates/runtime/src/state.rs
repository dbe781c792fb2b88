//! Container state on disk: one directory per container under the runtime root, holding
//! `state.json`, a copy of the config it was created from, and the socket `start` uses.
//! Every command takes an exclusive flock on the container directory, so concurrent
//! commands on one container are serialised and never see a half-written state.

use std::collections::HashMap;
use std::fs::{self, File};
use std::io::Write;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Error, IoContext, Result};

pub const STATE_FILE: &str = "state.json";
pub const CONFIG_FILE: &str = "config.json";
pub const START_SOCKET: &str = "start.sock";

/// OCI status of a container.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Creating,
    Created,
    Running,
    Paused,
    Stopped,
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Status::Creating => "creating",
            Status::Created => "created",
            Status::Running => "running",
            Status::Paused => "paused",
            Status::Stopped => "stopped",
        })
    }
}

/// What berth records about a container.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Record {
    pub id: String,
    /// Host pid of the container's init (0 before it exists).
    pub pid: i32,
    /// Start time of `pid` in clock ticks since boot, to detect pid reuse.
    pub pid_start_time: u64,
    pub bundle: PathBuf,
    pub rootfs: PathBuf,
    pub created: String,
    /// Effective uid of the creator; `state` shows its user name (resolved there, so
    /// `create` never waits on NSS).
    pub owner_uid: u32,
    #[serde(default)]
    pub annotations: HashMap<String, String>,
    /// Set once `start` has made init exec the user process.
    pub started: bool,
    /// The cgroup the container was placed in (serialized cgroup config).
    #[serde(default)]
    pub cgroup: Option<serde_json::Value>,
    /// Exit status, when berth itself waited for the container (`run`).
    #[serde(default)]
    pub exit_status: Option<i32>,
    /// Set while `create` runs: the record is saved before each step, so a `delete`
    /// after a create killed midway knows everything it may have made.
    #[serde(default)]
    pub creating: bool,
    /// The `create` process (pid and start time), to tell a create in progress from one
    /// that died.
    #[serde(default)]
    pub creator: Option<(i32, u64)>,
}

/// The `state` command's output: the OCI state plus runc's extra fields.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OciState {
    pub oci_version: String,
    pub id: String,
    pub pid: i32,
    pub status: Status,
    pub bundle: PathBuf,
    pub rootfs: PathBuf,
    pub created: String,
    pub owner: String,
    #[serde(skip_serializing_if = "HashMap::is_empty", default)]
    pub annotations: HashMap<String, String>,
}

/// The runtime root directory (`--root`).
#[derive(Debug, Clone)]
pub struct RuntimeRoot {
    path: PathBuf,
}

impl RuntimeRoot {
    pub fn new(path: impl Into<PathBuf>) -> RuntimeRoot {
        RuntimeRoot { path: path.into() }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn container_dir(&self, id: &str) -> PathBuf {
        self.path.join(id)
    }

    /// Create the root if missing (mode 0700), and refuse one that someone else could
    /// use against the caller: it must be a real directory owned by the caller, in a
    /// parent that others cannot rename it out of. Other users' access bits are removed
    /// (a state directory holds sockets that start containers, and hook definitions).
    fn ensure(&self) -> Result<()> {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&self.path)
            .at(&self.path)?;
        self.check()
    }

    /// The ownership checks of [`RuntimeRoot::ensure`], for a root that exists.
    fn check(&self) -> Result<()> {
        use std::os::unix::fs::{MetadataExt, PermissionsExt};
        let me = nix::unistd::geteuid().as_raw();
        let refuse = |why: String| {
            Err(Error::Unsupported(format!(
                "state root {}: {why}; pass --root with a directory of your own",
                self.path.display()
            )))
        };
        let meta = fs::symlink_metadata(&self.path).at(&self.path)?;
        if !meta.is_dir() {
            return refuse("is not a directory (a symlink?)".into());
        }
        if meta.uid() != me {
            return refuse(format!("is owned by uid {}, not by you ({me})", meta.uid()));
        }
        if let Some(parent) = self.path.parent() {
            if let Ok(p) = fs::metadata(parent) {
                let others_write = p.mode() & 0o022 != 0;
                let sticky = p.mode() & 0o1000 != 0;
                if p.uid() != me && p.uid() != 0 || others_write && !sticky {
                    return refuse(format!(
                        "its parent {} can be changed by other users",
                        parent.display()
                    ));
                }
            }
        }
        if meta.mode() & 0o077 != 0 {
            fs::set_permissions(&self.path, fs::Permissions::from_mode(0o700)).at(&self.path)?;
        }
        Ok(())
    }

    /// Create the directory of a new container, failing if it exists, and lock it.
    pub fn create_container_dir(&self, id: &str) -> Result<ContainerDir> {
        self.ensure()?;
        let dir = self.container_dir(id);
        match fs::DirBuilder::new().mode(0o700).create(&dir) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                return Err(Error::Exists(id.into()))
            }
            Err(e) => return Err(e).at(&dir),
        }
        ContainerDir::lock(dir, id)
    }

    /// Lock the directory of an existing container.
    pub fn open_container_dir(&self, id: &str) -> Result<ContainerDir> {
        if self.path.exists() {
            self.check()?;
        }
        let dir = self.container_dir(id);
        let locked = ContainerDir::lock(dir, id)?;
        // The directory may have been deleted while we waited for the lock.
        if !locked.path.join(STATE_FILE).exists() {
            return Err(Error::NotFound(id.into()));
        }
        Ok(locked)
    }

    /// Remove the directory of a container whose `create` died before its first record
    /// (a directory without state.json): it holds nothing else.
    pub fn remove_unrecorded(&self, id: &str) -> Result<bool> {
        let dir = self.container_dir(id);
        if !dir.is_dir() {
            return Ok(false);
        }
        let locked = ContainerDir::lock(dir, id)?;
        if locked.path.join(STATE_FILE).exists() {
            return Ok(false);
        }
        locked.remove()?;
        Ok(true)
    }

    /// IDs of all containers under this root.
    pub fn list(&self) -> Result<Vec<String>> {
        if self.path.exists() {
            self.check()?;
        }
        let entries = match fs::read_dir(&self.path) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(vec![]),
            Err(e) => return Err(e).at(&self.path),
        };
        let mut ids: Vec<String> = entries
            .filter_map(|e| e.ok())
            .filter(|e| e.path().join(STATE_FILE).exists())
            .filter_map(|e| e.file_name().into_string().ok())
            .collect();
        ids.sort();
        Ok(ids)
    }
}

/// A locked container directory. The lock is released on drop.
pub struct ContainerDir {
    pub path: PathBuf,
    pub id: String,
    _lock: File,
}

impl ContainerDir {
    fn lock(path: PathBuf, id: &str) -> Result<ContainerDir> {
        let file = match File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(Error::NotFound(id.into()))
            }
            Err(e) => return Err(e).at(&path),
        };
        // SAFETY: flock on an fd we own.
        if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) } != 0 {
            return Err(std::io::Error::last_os_error()).at(&path);
        }
        Ok(ContainerDir {
            path,
            id: id.into(),
            _lock: file,
        })
    }

    pub fn load(&self) -> Result<Record> {
        let p = self.path.join(STATE_FILE);
        let text = fs::read(&p).at(&p)?;
        serde_json::from_slice(&text)
            .map_err(|e| Error::Init(format!("{}: corrupt state: {e}", p.display())))
    }

    /// Write state.json atomically (temp file + rename).
    pub fn save(&self, rec: &Record) -> Result<()> {
        let tmp = self.path.join(".state.json.tmp");
        let mut f = fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)
            .at(&tmp)?;
        f.write_all(&serde_json::to_vec(rec).expect("state serializes"))
            .at(&tmp)?;
        let dst = self.path.join(STATE_FILE);
        fs::rename(&tmp, &dst).at(&dst)
    }

    pub fn remove(self) -> Result<()> {
        match fs::remove_dir_all(&self.path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e).at(&self.path),
        }
    }
}

/// The start time (field 22 of /proc/PID/stat) and run state letter of a process.
pub fn proc_stat(pid: i32) -> Option<(u64, char)> {
    let text = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name is in parentheses and may contain spaces: split after the last ')'.
    let rest = &text[text.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let state = fields.first()?.chars().next()?;
    let start = fields.get(19)?.parse().ok()?;
    Some((start, state))
}

/// Whether the process `pid` that started at `start_time` still exists (not a zombie).
pub fn process_alive(pid: i32, start_time: u64) -> bool {
    pid > 0
        && matches!(proc_stat(pid), Some((start, state)) if start == start_time && state != 'Z' && state != 'X')
}

/// Whether the recorded init process still exists (and is not a zombie).
pub fn init_alive(rec: &Record) -> bool {
    process_alive(rec.pid, rec.pid_start_time)
}

/// Whether the `create` that wrote this record is still at work.
pub fn creator_alive(rec: &Record) -> bool {
    rec.creating
        && rec
            .creator
            .is_some_and(|(pid, start)| process_alive(pid, start))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_of_self() {
        let (start, state) = proc_stat(std::process::id() as i32).unwrap();
        assert!(start > 0);
        assert!(state == 'R' || state == 'S');
    }

    #[test]
    fn create_twice_is_refused_and_list_sees_it() {
        let dir = tempfile::tempdir().unwrap();
        let root = RuntimeRoot::new(dir.path().join("root"));
        let c = root.create_container_dir("a").unwrap();
        let rec = Record {
            id: "a".into(),
            pid: 0,
            pid_start_time: 0,
            bundle: "/b".into(),
            rootfs: "/b/rootfs".into(),
            created: "now".into(),
            owner_uid: 0,
            annotations: HashMap::new(),
            started: false,
            cgroup: None,
            exit_status: None,
            creating: false,
            creator: None,
        };
        c.save(&rec).unwrap();
        drop(c);
        assert!(matches!(
            root.create_container_dir("a"),
            Err(Error::Exists(_))
        ));
        assert_eq!(root.list().unwrap(), vec!["a".to_string()]);
        let c = root.open_container_dir("a").unwrap();
        assert_eq!(c.load().unwrap().bundle, PathBuf::from("/b"));
        c.remove().unwrap();
        assert!(matches!(
            root.open_container_dir("a"),
            Err(Error::NotFound(_))
        ));
    }
}
