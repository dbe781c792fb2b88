use std::path::PathBuf;

use anyhow::{bail, Context};
use berth_runtime::oci::Process;
use berth_runtime::{ExecOptions, Runtime};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Path to a process.json (the `process` object of config.json) describing the process.
    #[arg(long, short = 'p')]
    pub process: Option<PathBuf>,
    /// Allocate a pseudo-terminal (needs --console-socket).
    #[arg(long, short = 't')]
    pub tty: bool,
    /// Unix socket that receives the pty master.
    #[arg(long)]
    pub console_socket: Option<PathBuf>,
    /// Return once the process has started instead of waiting for it.
    #[arg(long, short = 'd')]
    pub detach: bool,
    /// Write the process's host pid to this file.
    #[arg(long)]
    pub pid_file: Option<PathBuf>,
    /// Working directory inside the container.
    #[arg(long)]
    pub cwd: Option<PathBuf>,
    /// Set an environment variable (repeatable).
    #[arg(long, short = 'e')]
    pub env: Vec<String>,
    /// UID[:GID] to run as (numeric).
    #[arg(long, short = 'u')]
    pub user: Option<String>,
    /// Additional group ids (repeatable).
    #[arg(long, short = 'g')]
    pub additional_gids: Vec<u32>,
    /// Add a capability to the bounding, effective and permitted sets (repeatable).
    #[arg(long, short = 'c')]
    pub cap: Vec<String>,
    /// Set no_new_privs for the process.
    #[arg(long)]
    pub no_new_privs: bool,
    /// AppArmor profile for the process.
    #[arg(long)]
    pub apparmor: Option<String>,
    /// SELinux label for the process.
    #[arg(long)]
    pub process_label: Option<String>,
    /// Pass this many extra fds (3, 4, ...) to the process.
    #[arg(long, default_value_t = 0)]
    pub preserve_fds: u32,
    /// Accepted for runc compatibility (berth always ignores the parent's cgroup).
    #[arg(long, hide = true)]
    pub ignore_paused: bool,
    /// Container ID.
    pub id: String,
    /// Command and arguments (unless --process is given).
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub command: Vec<String>,
}

fn process_of(rt: &Runtime, a: &Args) -> anyhow::Result<Process> {
    if let Some(path) = &a.process {
        let text = std::fs::read(path).with_context(|| format!("{}", path.display()))?;
        return serde_json::from_slice(&text)
            .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()));
    }
    if a.command.is_empty() {
        bail!("exec: give a command or --process");
    }
    let mut p = rt.base_process(&a.id)?;
    let mut v = serde_json::to_value(&p)?;
    v["args"] = serde_json::json!(a.command);
    v["terminal"] = serde_json::json!(a.tty);
    if let Some(cwd) = &a.cwd {
        v["cwd"] = serde_json::json!(cwd);
    }
    if !a.env.is_empty() {
        let env = v["env"]
            .as_array_mut()
            .map(std::mem::take)
            .unwrap_or_default();
        let mut env: Vec<serde_json::Value> = env
            .into_iter()
            .filter(|e| {
                let key = e
                    .as_str()
                    .and_then(|s| s.split_once('='))
                    .map(|(k, _)| k)
                    .unwrap_or("");
                !a.env
                    .iter()
                    .any(|n| n.split_once('=').map(|(k, _)| k) == Some(key))
            })
            .collect();
        env.extend(a.env.iter().map(|e| serde_json::json!(e)));
        v["env"] = serde_json::json!(env);
    }
    if let Some(user) = &a.user {
        let (uid, gid) = user
            .split_once(':')
            .map(|(u, g)| (u, Some(g)))
            .unwrap_or((user, None));
        v["user"]["uid"] =
            serde_json::json!(uid.parse::<u32>().context("--user: uid must be numeric")?);
        if let Some(g) = gid {
            v["user"]["gid"] =
                serde_json::json!(g.parse::<u32>().context("--user: gid must be numeric")?);
        }
    }
    if !a.additional_gids.is_empty() {
        v["user"]["additionalGids"] = serde_json::json!(a.additional_gids);
    }
    for cap in &a.cap {
        let name = if cap.to_ascii_uppercase().starts_with("CAP_") {
            cap.to_ascii_uppercase()
        } else {
            format!("CAP_{}", cap.to_ascii_uppercase())
        };
        for set in ["bounding", "effective", "permitted"] {
            let list = v["capabilities"][set].as_array_mut();
            match list {
                Some(l) => l.push(serde_json::json!(name)),
                None => v["capabilities"][set] = serde_json::json!([name]),
            }
        }
    }
    if a.no_new_privs {
        v["noNewPrivileges"] = serde_json::json!(true);
    }
    if let Some(p) = &a.apparmor {
        v["apparmorProfile"] = serde_json::json!(p);
    }
    if let Some(l) = &a.process_label {
        v["selinuxLabel"] = serde_json::json!(l);
    }
    p = serde_json::from_value(v).map_err(|e| anyhow::anyhow!("exec: {e}"))?;
    Ok(p)
}

pub fn run(rt: &Runtime, a: &Args) -> anyhow::Result<u8> {
    let process = process_of(rt, a)?;
    let opts = ExecOptions {
        process,
        console_socket: a.console_socket.clone(),
        preserve_fds: a.preserve_fds,
        pid_file: a.pid_file.clone(),
    };
    if a.detach {
        rt.exec(&a.id, &opts)?;
        return Ok(0);
    }
    // The exec'd process is a grandchild: become its subreaper to collect its status.
    berth_runtime::foreground::become_subreaper();
    let mask = berth_runtime::foreground::signal_mask();
    mask.thread_block()?;
    let pid = rt.exec(&a.id, &opts)?;
    Ok(berth_runtime::foreground::wait_for(pid, Some(&mask), None)?.unwrap_or(255) as u8)
}
