use std::path::PathBuf;

use anyhow::Context;
use berth_runtime::oci::Process;
use berth_runtime::{ExecOptions, ExecOverrides, Runtime};

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
    let (uid, gid) = match &a.user {
        None => (None, None),
        Some(user) => {
            let (u, g) = user
                .split_once(':')
                .map_or((user.as_str(), None), |(u, g)| (u, Some(g)));
            let uid = u.parse::<u32>().context("--user: uid must be numeric")?;
            let gid = g
                .map(|g| g.parse::<u32>().context("--user: gid must be numeric"))
                .transpose()?;
            (Some(uid), gid)
        }
    };
    Ok(rt.exec_process(
        &a.id,
        &ExecOverrides {
            args: a.command.clone(),
            terminal: a.tty,
            cwd: a.cwd.clone(),
            env: a.env.clone(),
            uid,
            gid,
            additional_gids: a.additional_gids.clone(),
            capabilities: a.cap.clone(),
            no_new_privileges: a.no_new_privs,
            apparmor_profile: a.apparmor.clone(),
            selinux_label: a.process_label.clone(),
        },
    )?)
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
