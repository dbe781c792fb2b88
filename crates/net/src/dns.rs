//! Name resolution between containers of a network with aardvark-dns, driven the way
//! netavark drives it: one file per network in a config directory (first line: the
//! addresses to listen on, the bridge's gateway; then `ID IPV4S IPV6S NAMES` per
//! container), one daemon for all networks (it forks itself and writes `aardvark.pid`
//! there), SIGHUP after each change. The daemon exits by itself on a reload that finds
//! no network file left.

use std::fs::File;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use nix::fcntl::{Flock, FlockArg};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use crate::error::{one_line, sys, Error, IoContext, Result};

/// Where Debian's (and Fedora's) podman packages put it.
pub const AARDVARK_PATHS: &[&str] = &[
    "/usr/lib/podman/aardvark-dns",
    "/usr/libexec/podman/aardvark-dns",
];

/// The DNS server of `berth` networks other than the default one.
#[derive(Clone, Debug)]
pub struct Aardvark {
    pub binary: PathBuf,
    /// The config directory (`<runtime-root>/aardvark-dns`).
    pub dir: PathBuf,
    pub port: u16,
}

/// One container's record on a network.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    pub id: String,
    pub ip: Ipv4Addr,
    pub names: Vec<String>,
}

impl Aardvark {
    /// The installed aardvark-dns, if any.
    pub fn find(dir: &Path) -> Option<Aardvark> {
        AARDVARK_PATHS
            .iter()
            .map(PathBuf::from)
            .find(|p| p.is_file())
            .map(|binary| Aardvark {
                binary,
                dir: dir.to_path_buf(),
                port: 53,
            })
    }

    /// A file beside the config directory: aardvark-dns reads every file in it as a
    /// network (and dies on one it cannot parse), so nothing else may live there.
    fn beside(&self, suffix: &str) -> PathBuf {
        let mut name = self.dir.file_name().unwrap_or_default().to_os_string();
        name.push(suffix);
        self.dir.with_file_name(name)
    }

    fn lock(&self) -> Result<Flock<File>> {
        std::fs::create_dir_all(&self.dir).at(&self.dir)?;
        let p = self.beside(".lock");
        let f = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&p)
            .at(&p)?;
        Flock::lock(f, FlockArg::LockExclusive)
            .map_err(|(_, e)| sys(format!("flock {}", p.display()))(e))
    }

    fn file(&self, network: &str) -> PathBuf {
        self.dir.join(network)
    }

    fn read(&self, network: &str) -> Result<(Option<String>, Vec<String>)> {
        let p = self.file(network);
        match std::fs::read_to_string(&p) {
            Ok(t) => {
                let mut lines = t.lines().map(String::from);
                let head = lines.next();
                Ok((head, lines.filter(|l| !l.trim().is_empty()).collect()))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok((None, Vec::new())),
            Err(e) => Err(e).at(p),
        }
    }

    fn write(&self, network: &str, gateway: &str, entries: &[String]) -> Result<()> {
        let p = self.file(network);
        if entries.is_empty() {
            return match std::fs::remove_file(&p) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e).at(p),
                _ => Ok(()),
            };
        }
        let tmp = self.beside(&format!(".{network}.tmp"));
        let mut text = format!("{gateway}\n");
        for e in entries {
            text += e;
            text.push('\n');
        }
        std::fs::write(&tmp, text).at(&tmp)?;
        std::fs::rename(&tmp, &p).at(&p)
    }

    /// Add `r` to `network` (served on `gateway`) and make the daemon serve it.
    pub fn add(&self, network: &str, gateway: Ipv4Addr, r: &Record) -> Result<()> {
        let _lock = self.lock()?;
        let (_, mut entries) = self.read(network)?;
        entries.retain(|e| e.split(' ').next() != Some(r.id.as_str()));
        // An empty IPv6 list leaves two spaces, as netavark writes it.
        entries.push(format!("{} {}  {}", r.id, r.ip, r.names.join(",")));
        self.write(network, &gateway.to_string(), &entries)?;
        self.reload()
    }

    /// Drop container `id` from `network`; the daemon exits once nothing is left.
    pub fn remove(&self, network: &str, id: &str) -> Result<()> {
        let _lock = self.lock()?;
        let (head, mut entries) = self.read(network)?;
        let Some(head) = head else { return Ok(()) };
        let before = entries.len();
        entries.retain(|e| e.split(' ').next() != Some(id));
        if entries.len() == before {
            return Ok(());
        }
        self.write(network, &head, &entries)?;
        self.reload()
    }

    fn pid(&self) -> Option<Pid> {
        let pid: i32 = std::fs::read_to_string(self.dir.join("aardvark.pid"))
            .ok()?
            .trim()
            .parse()
            .ok()?;
        let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).ok()?;
        (comm.trim() == "aardvark-dns").then_some(Pid::from_raw(pid))
    }

    /// SIGHUP the running daemon, or start one when a network file exists.
    fn reload(&self) -> Result<()> {
        if let Some(pid) = self.pid() {
            return kill(pid, Signal::SIGHUP).map_err(sys(format!("SIGHUP aardvark-dns {pid}")));
        }
        let any = std::fs::read_dir(&self.dir)
            .at(&self.dir)?
            .flatten()
            .any(|e| e.file_name() != "aardvark.pid");
        if !any {
            return Ok(());
        }
        // `run` forks the server and returns once it listens.
        let out = Command::new(&self.binary)
            .arg("--config")
            .arg(&self.dir)
            .arg("-p")
            .arg(self.port.to_string())
            .arg("run")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .output()
            .at(&self.binary)?;
        if !out.status.success() {
            return Err(Error::Invalid {
                what: "aardvark-dns",
                value: self.dir.display().to_string(),
                reason: one_line(&String::from_utf8_lossy(&out.stderr)),
            });
        }
        Ok(())
    }

    /// Stop the daemon (tests, and `network rm` of the last network).
    pub fn stop(&self) {
        if let Some(pid) = self.pid() {
            let _ = kill(pid, Signal::SIGTERM);
        }
    }
}
