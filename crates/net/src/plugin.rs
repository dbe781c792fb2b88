//! One CNI plugin execution: the CNI_* environment, the config on stdin, the result or
//! error JSON on stdout, and a deadline after which the plugin (and anything it started,
//! e.g. iptables) is killed as a process group.

use std::io::{Read, Write};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::error::{one_line, Error, IoContext, Result};

/// CNI_COMMAND values.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verb {
    Add,
    Del,
    Check,
    Version,
}

impl Verb {
    pub fn as_str(self) -> &'static str {
        match self {
            Verb::Add => "ADD",
            Verb::Del => "DEL",
            Verb::Check => "CHECK",
            Verb::Version => "VERSION",
        }
    }
}

/// What the runtime tells a plugin about the container (CNI_CONTAINERID, CNI_NETNS,
/// CNI_IFNAME, CNI_ARGS).
#[derive(Clone, Debug, Default)]
pub struct Invocation {
    pub container_id: String,
    /// Empty for DEL when the namespace is already gone (the spec allows it).
    pub netns: Option<PathBuf>,
    pub ifname: String,
    /// CNI_ARGS as `K=V` pairs, joined with `;`.
    pub args: Vec<(String, String)>,
}

/// Find the executable of plugin `kind` in `dirs` (the CNI_PATH search).
pub fn find(kind: &str, dirs: &[PathBuf], network: &str) -> Result<PathBuf> {
    let bad = kind.is_empty() || kind.contains('/') || kind == "." || kind == "..";
    if !bad {
        for d in dirs {
            let p = d.join(kind);
            if is_executable(&p) {
                return Ok(p);
            }
        }
    }
    Err(Error::PluginNotFound {
        plugin: kind.to_string(),
        network: network.to_string(),
        dirs: dirs
            .iter()
            .map(|d| d.display().to_string())
            .collect::<Vec<_>>()
            .join(":"),
    })
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// Run `exe` for `verb` with `config` on stdin; returns its stdout parsed as JSON
/// (`Value::Null` when a DEL or CHECK printed nothing, as the spec allows).
pub fn exec(
    exe: &Path,
    verb: Verb,
    inv: &Invocation,
    dirs: &[PathBuf],
    config: &Value,
    network: &str,
    timeout: Duration,
) -> Result<Value> {
    let plugin = exe
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let fail = |message: String| Error::Plugin {
        plugin: plugin.clone(),
        command: verb.as_str(),
        network: network.to_string(),
        message,
    };
    let cni_path = std::env::join_paths(dirs)
        .map_err(|e| fail(format!("CNI_PATH: {e}")))?
        .into_string()
        .unwrap_or_default();
    let mut cmd = Command::new(exe);
    cmd.env("CNI_COMMAND", verb.as_str())
        .env("CNI_PATH", &cni_path)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // Its own process group: the deadline kills iptables & co. with the plugin.
        .process_group(0);
    if verb != Verb::Version {
        let args = inv
            .args
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(";");
        cmd.env("CNI_CONTAINERID", &inv.container_id)
            .env("CNI_NETNS", inv.netns.as_deref().unwrap_or(Path::new("")))
            .env("CNI_IFNAME", &inv.ifname)
            .env("CNI_ARGS", args);
    }
    let mut child = cmd.spawn().at(exe)?;
    let stdin_bytes = serde_json::to_vec(config).expect("config serializes");
    let mut stdin = child.stdin.take().expect("piped");
    let writer = std::thread::spawn(move || {
        let _ = stdin.write_all(&stdin_bytes);
    });
    let mut stdout = child.stdout.take().expect("piped");
    let reader = std::thread::spawn(move || {
        let mut b = Vec::new();
        let _ = stdout.by_ref().take(16 << 20).read_to_end(&mut b);
        b
    });
    let mut stderr = child.stderr.take().expect("piped");
    let err_reader = std::thread::spawn(move || {
        let mut b = Vec::new();
        let _ = stderr.by_ref().take(1 << 20).read_to_end(&mut b);
        b
    });
    let deadline = Instant::now() + timeout;
    let status = loop {
        match child.try_wait().at(exe)? {
            Some(s) => break s,
            None if Instant::now() >= deadline => {
                // The group id is the plugin's pid (process_group(0) above).
                let _ = nix::sys::signal::killpg(
                    nix::unistd::Pid::from_raw(child.id() as i32),
                    nix::sys::signal::Signal::SIGKILL,
                );
                let _ = child.wait();
                // Readers end once every holder of the pipes is gone; a grandchild that
                // left the group could keep them open, so do not wait for them.
                return Err(Error::Timeout {
                    plugin,
                    command: verb.as_str(),
                    network: network.to_string(),
                    secs: timeout.as_secs_f64(),
                });
            }
            None => std::thread::sleep(Duration::from_millis(2)),
        }
    };
    tracing::debug!(
        plugin,
        command = verb.as_str(),
        network,
        ms = (timeout.saturating_sub(deadline.saturating_duration_since(Instant::now())))
            .as_millis() as u64,
        "CNI plugin finished"
    );
    let _ = writer.join();
    let out = reader.join().unwrap_or_default();
    let err = err_reader.join().unwrap_or_default();
    let text = String::from_utf8_lossy(&out);
    let parsed: Option<Value> = serde_json::from_str(text.trim()).ok();
    if !status.success() {
        // The spec's error: {"cniVersion", "code", "msg", "details"} on stdout.
        let message = match parsed.as_ref().filter(|v| v.get("msg").is_some()) {
            Some(v) => {
                let msg = v["msg"].as_str().unwrap_or_default();
                match v.get("details").and_then(Value::as_str) {
                    Some(d) if !d.is_empty() && d != msg => format!("{msg}: {d}"),
                    _ => msg.to_string(),
                }
            }
            None => {
                let e = String::from_utf8_lossy(&err);
                let said = if text.trim().is_empty() {
                    e.trim()
                } else {
                    text.trim()
                };
                if said.is_empty() {
                    format!("exited with {status}")
                } else {
                    said.to_string()
                }
            }
        };
        return Err(fail(one_line(&message)));
    }
    match parsed {
        Some(v) => Ok(v),
        None if text.trim().is_empty() && verb != Verb::Add => Ok(Value::Null),
        None => Err(fail(format!(
            "printed no JSON result: {}",
            one_line(&text.chars().take(200).collect::<String>())
        ))),
    }
}
