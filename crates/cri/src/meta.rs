//! What the server records on disk, so a restarted server (and the monitors, which
//! outlive it) find every pod and container again:
//!
//! * `<root>/pods/<id>/pod.json`: a pod sandbox ([`Pod`]); `ns/` holds its pinned
//!   namespaces, `resolv.conf` and `hostname` its files.
//! * `<root>/containers/<id>/container.json`: a container ([`Container`]), written by the
//!   server only; `exit.json` ([`Exit`]) is written by the container's monitor only, so
//!   the two never race. `bundle/` is the OCI bundle.
//!
//! Every record is replaced atomically (temp file + rename): readers never see half.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::error::{Error, IoContext, Result};

pub const POD: &str = "pod.json";
pub const CONTAINER: &str = "container.json";
pub const EXIT: &str = "exit.json";

/// Nanoseconds since the epoch, as CRI timestamps are.
pub fn now_nanos() -> i64 {
    chrono::Utc::now().timestamp_nanos_opt().unwrap_or(0)
}

/// A fresh 64-hex-digit ID.
pub fn random_id() -> Result<String> {
    let mut b = [0u8; 32];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut b))
        .at("/dev/urandom")?;
    Ok(b.iter().map(|x| format!("{x:02x}")).collect())
}

pub fn write_atomic(path: &Path, value: &impl Serialize) -> Result<()> {
    let json = serde_json::to_vec_pretty(value).expect("records serialize");
    Ok(berth_fsutil::replace_file(path, &json)?)
}

/// Read a record; `None` when the file does not exist (yet, or any more).
pub fn read<T: DeserializeOwned>(path: &Path) -> Result<Option<T>> {
    let mut text = Vec::new();
    match std::fs::File::open(path) {
        Ok(f) => f.take(16 << 20).read_to_end(&mut text).at(path)?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).at(path),
    };
    serde_json::from_slice(&text)
        .map(Some)
        .map_err(|source| Error::Record {
            path: path.to_path_buf(),
            source,
        })
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PodState {
    Ready,
    NotReady,
}

/// The CRI metadata of a pod or container (name, uid, namespace, attempt).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Names {
    pub name: String,
    pub uid: String,
    pub namespace: String,
    pub attempt: u32,
}

/// One pod sandbox.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Pod {
    pub id: String,
    pub names: Names,
    pub created_at: i64,
    pub state: PodState,
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
    pub hostname: String,
    pub log_directory: String,
    /// Pinned namespaces containers join (`None`: the host's).
    pub netns: Option<PathBuf>,
    pub ipcns: Option<PathBuf>,
    pub utsns: Option<PathBuf>,
    /// The CNI network the pod is attached to, and its address there.
    pub network: Option<String>,
    pub ip: Option<String>,
    pub cgroup_parent: String,
    /// The pod's sysctls, applied to each container.
    pub sysctls: BTreeMap<String, String>,
    /// The pod's resolv.conf, bind-mounted into its containers.
    pub resolv_conf: Option<PathBuf>,
}

/// One container.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Container {
    pub id: String,
    pub pod_id: String,
    pub names: Names,
    /// The image as the request named it, and the image ID it resolved to.
    pub image: String,
    pub image_id: String,
    pub created_at: i64,
    pub started_at: i64,
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
    /// Where the monitor writes the CRI-format log (`None`: discarded).
    pub log_path: Option<PathBuf>,
    pub bundle: PathBuf,
    pub stop_signal: String,
    /// The monitor's pid (it records the exit).
    pub monitor_pid: i32,
    pub mounts: Vec<MountRecord>,
    /// The container's stdin is a pipe its monitor holds for Attach (else /dev/null);
    /// with `stdin_once` it closes when the first attached client detaches.
    #[serde(default)]
    pub stdin: bool,
    #[serde(default)]
    pub stdin_once: bool,
}

/// The monitor's attach socket in a container directory (reach it through
/// [`attach_socket_path`]: the full path may be over the 108 bytes of a socket name).
pub const ATTACH_SOCKET: &str = "attach.sock";

/// A short name for `dir/attach.sock`: through `/proc/self/fd/N` of `dir_fd`, an fd of
/// the directory that the caller keeps open while binding or connecting.
pub fn attach_socket_path(dir_fd: &impl std::os::fd::AsRawFd) -> PathBuf {
    PathBuf::from(format!(
        "/proc/self/fd/{}/{ATTACH_SOCKET}",
        dir_fd.as_raw_fd()
    ))
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct MountRecord {
    pub container_path: String,
    pub host_path: String,
    pub readonly: bool,
}

/// How the container's process ended, as its monitor saw it.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Exit {
    /// Exit code, 128 + signal when killed.
    pub code: i32,
    pub finished_at: i64,
    /// The cgroup's OOM killer ran while the container lived.
    pub oom_killed: bool,
}

/// The directories of the CRI root.
#[derive(Clone, Debug)]
pub struct Layout {
    pub root: PathBuf,
}

impl Layout {
    pub fn new(root: &Path) -> Result<Layout> {
        for d in ["pods", "containers", "images"] {
            let p = root.join(d);
            std::fs::create_dir_all(&p).at(&p)?;
        }
        Ok(Layout {
            root: root.to_path_buf(),
        })
    }

    pub fn pod_dir(&self, id: &str) -> PathBuf {
        self.root.join("pods").join(id)
    }

    pub fn container_dir(&self, id: &str) -> PathBuf {
        self.root.join("containers").join(id)
    }

    pub fn images(&self) -> PathBuf {
        self.root.join("images")
    }

    fn ids(&self, kind: &str, file: &str) -> Result<Vec<String>> {
        let dir = self.root.join(kind);
        let mut out = Vec::new();
        for e in std::fs::read_dir(&dir).at(&dir)? {
            let e = e.at(&dir)?;
            if e.path().join(file).exists() {
                out.push(e.file_name().to_string_lossy().into_owned());
            }
        }
        Ok(out)
    }

    pub fn pods(&self) -> Result<Vec<Pod>> {
        let mut out = Vec::new();
        for id in self.ids("pods", POD)? {
            if let Some(p) = read::<Pod>(&self.pod_dir(&id).join(POD))? {
                out.push(p);
            }
        }
        out.sort_by_key(|p| p.created_at);
        Ok(out)
    }

    pub fn containers(&self) -> Result<Vec<Container>> {
        let mut out = Vec::new();
        for id in self.ids("containers", CONTAINER)? {
            if let Some(c) = read::<Container>(&self.container_dir(&id).join(CONTAINER))? {
                out.push(c);
            }
        }
        out.sort_by_key(|c| c.created_at);
        Ok(out)
    }

    /// The one ID among `ids` equal to `wanted` or starting with it.
    fn resolve(kind: &'static str, ids: Vec<String>, wanted: &str) -> Result<Option<String>> {
        if wanted.is_empty() {
            return Ok(None);
        }
        if ids.iter().any(|i| i == wanted) {
            return Ok(Some(wanted.to_string()));
        }
        let mut hits = ids.into_iter().filter(|i| i.starts_with(wanted));
        match (hits.next(), hits.next()) {
            (Some(i), None) => Ok(Some(i)),
            (Some(_), Some(_)) => Err(Error::Ambiguous {
                kind,
                prefix: wanted.to_string(),
            }),
            _ => Ok(None),
        }
    }

    /// The pod `id` names (full ID or unique prefix), `None` if none.
    pub fn find_pod(&self, id: &str) -> Result<Option<Pod>> {
        match Self::resolve("pod sandbox", self.ids("pods", POD)?, id)? {
            Some(id) => read(&self.pod_dir(&id).join(POD)),
            None => Ok(None),
        }
    }

    pub fn pod(&self, id: &str) -> Result<Pod> {
        self.find_pod(id)?
            .ok_or_else(|| Error::PodNotFound(id.to_string()))
    }

    pub fn find_container(&self, id: &str) -> Result<Option<Container>> {
        match Self::resolve("container", self.ids("containers", CONTAINER)?, id)? {
            Some(id) => read(&self.container_dir(&id).join(CONTAINER)),
            None => Ok(None),
        }
    }

    pub fn container(&self, id: &str) -> Result<Container> {
        self.find_container(id)?
            .ok_or_else(|| Error::ContainerNotFound(id.to_string()))
    }

    pub fn save_pod(&self, p: &Pod) -> Result<()> {
        write_atomic(&self.pod_dir(&p.id).join(POD), p)
    }

    pub fn save_container(&self, c: &Container) -> Result<()> {
        write_atomic(&self.container_dir(&c.id).join(CONTAINER), c)
    }

    pub fn exit_of(&self, id: &str) -> Result<Option<Exit>> {
        read(&self.container_dir(id).join(EXIT))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_resolve_uniquely() {
        let ids = vec!["abc1".to_string(), "abc2".into(), "def".into()];
        assert_eq!(
            Layout::resolve("x", ids.clone(), "d").unwrap().as_deref(),
            Some("def")
        );
        assert_eq!(
            Layout::resolve("x", ids.clone(), "abc1")
                .unwrap()
                .as_deref(),
            Some("abc1")
        );
        assert!(Layout::resolve("x", ids.clone(), "abc").is_err());
        assert!(Layout::resolve("x", ids.clone(), "zz").unwrap().is_none());
        assert!(Layout::resolve("x", ids, "").unwrap().is_none());
        assert_eq!(random_id().unwrap().len(), 64);
    }
}
