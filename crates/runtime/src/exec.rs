//! `exec`: run another process in a running container — same namespaces, cgroup,
//! capabilities rules, no_new_privs and seccomp filter as the container's own process.

use std::os::fd::AsRawFd;
use std::path::PathBuf;

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use oci_spec::runtime::Process;

use crate::container::{load_spec_copy, state_json, Runtime};
use crate::error::{Error, IoContext, Result};
use crate::init::ExecConfig;
use crate::sync::{ChildMsg, ParentMsg};

#[derive(Debug, Clone)]
pub struct ExecOptions {
    pub process: Process,
    pub console_socket: Option<PathBuf>,
    pub preserve_fds: u32,
    pub pid_file: Option<PathBuf>,
}

/// runc's `exec` flags, applied to the container's own process to make the one `exec`
/// runs (env entries replace those of the same name; capabilities are added to the
/// bounding, effective and permitted sets).
#[derive(Debug, Clone, Default)]
pub struct ExecOverrides {
    pub args: Vec<String>,
    pub terminal: bool,
    pub cwd: Option<PathBuf>,
    pub env: Vec<String>,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    pub additional_gids: Vec<u32>,
    pub capabilities: Vec<String>,
    pub no_new_privileges: bool,
    pub apparmor_profile: Option<String>,
    pub selinux_label: Option<String>,
}

/// `KEY=VALUE` entries of `base` with those named in `over` replaced, in order.
pub fn merge_env(base: &[String], over: &[String]) -> Vec<String> {
    let key = |e: &str| e.split_once('=').map_or(e, |(k, _)| k).to_string();
    let replaced: std::collections::HashSet<String> = over.iter().map(|e| key(e)).collect();
    base.iter()
        .filter(|e| !replaced.contains(&key(e)))
        .chain(over)
        .cloned()
        .collect()
}

impl Runtime {
    /// The process `exec` runs: the container's own with `o` applied.
    pub fn exec_process(&self, id: &str, o: &ExecOverrides) -> Result<Process> {
        if o.args.is_empty() {
            return Err(Error::Config("exec: give a command or --process".into()));
        }
        let mut p = self.base_process(id)?;
        p.set_args(Some(o.args.clone()));
        p.set_terminal(Some(o.terminal));
        if let Some(cwd) = &o.cwd {
            p.set_cwd(cwd.clone());
        }
        if !o.env.is_empty() {
            p.set_env(Some(merge_env(
                &p.env().clone().unwrap_or_default(),
                &o.env,
            )));
        }
        let mut user = p.user().clone();
        if let Some(uid) = o.uid {
            user.set_uid(uid);
        }
        if let Some(gid) = o.gid {
            user.set_gid(gid);
        }
        if !o.additional_gids.is_empty() {
            user.set_additional_gids(Some(o.additional_gids.clone()));
        }
        p.set_user(user);
        if !o.capabilities.is_empty() {
            let mut v = serde_json::to_value(p.capabilities()).expect("capabilities serialize");
            if v.is_null() {
                v = serde_json::json!({});
            }
            for cap in &o.capabilities {
                let upper = cap.to_ascii_uppercase();
                let name = if upper.starts_with("CAP_") {
                    upper
                } else {
                    format!("CAP_{upper}")
                };
                for set in ["bounding", "effective", "permitted"] {
                    match v[set].as_array_mut() {
                        Some(list) => list.push(serde_json::json!(name)),
                        None => v[set] = serde_json::json!([name]),
                    }
                }
            }
            p.set_capabilities(Some(
                serde_json::from_value(v).map_err(|e| Error::Config(format!("exec --cap: {e}")))?,
            ));
        }
        if o.no_new_privileges {
            p.set_no_new_privileges(Some(true));
        }
        if let Some(profile) = &o.apparmor_profile {
            p.set_apparmor_profile(Some(profile.clone()));
        }
        if let Some(label) = &o.selinux_label {
            p.set_selinux_label(Some(label.clone()));
        }
        Ok(p)
    }

    /// The container's own process description: the base `exec` modifies.
    pub fn base_process(&self, id: &str) -> Result<Process> {
        let dir = self.root().container_dir(id);
        crate::config::validate_id(id)?;
        if !dir.join(crate::state::STATE_FILE).exists() {
            return Err(Error::NotFound(id.into()));
        }
        load_spec_copy(&dir)?
            .process()
            .clone()
            .ok_or_else(|| Error::Config("field process: missing".into()))
    }

    /// Start `opts.process` inside the container; returns its host pid once it has exec'd.
    pub fn exec(&self, id: &str, opts: &ExecOptions) -> Result<Pid> {
        let (dir, rec) = self.open(id)?;
        let status = self.status_of(&rec);
        crate::lifecycle::check(id, crate::lifecycle::Operation::Exec, status)?;
        let spec = load_spec_copy(&dir.path)?;
        drop(dir); // exec runs concurrently with other commands on the container
        let p = &opts.process;
        if p.args().as_ref().is_none_or(|a| a.is_empty()) {
            return Err(Error::Config("exec: no command given".into()));
        }
        if !p.cwd().is_absolute() {
            return Err(Error::Config(format!(
                "exec: cwd {} is not absolute",
                p.cwd().display()
            )));
        }
        if p.apparmor_profile()
            .as_deref()
            .is_some_and(|s| !s.is_empty())
            && !crate::lsm::apparmor_enabled()
        {
            return Err(Error::Config(
                "exec: --apparmor: AppArmor is not enabled on this host".into(),
            ));
        }
        if p.selinux_label().as_deref().is_some_and(|s| !s.is_empty())
            && !crate::lsm::selinux_enabled()
        {
            return Err(Error::Config(
                "exec: --process-label: SELinux is not enabled on this host".into(),
            ));
        }
        let (seccomp, console) = seccomp_and_console(&spec, &opts.console_socket)?;
        if let Some(c) = &console {
            // SAFETY: fcntl on an fd we own; it must survive the exec into berth init.
            unsafe { libc::fcntl(c.as_raw_fd(), libc::F_SETFD, 0) };
        }
        let exe = crate::sealed_exe::sealed_self()?;
        let spawned = crate::spawn::spawn_exec(&exe)?;
        let joiner = spawned.pid;
        let cfg = ExecConfig {
            target: rec.pid,
            process: p.clone(),
            seccomp,
            preserve_fds: opts.preserve_fds,
            console_socket: console.as_ref().map(|c| c.as_raw_fd()),
            state: state_json(&rec, status),
        };
        let ch = &spawned.channel;
        let sent = ch.send(&ParentMsg::Exec(Box::new(cfg)));
        drop(console);
        let joined = sent.and_then(|_| ch.recv::<ChildMsg>());
        // The joiner exits once it has forked into the container, dissolving the overlay
        // mount it was executed from (an RCU grace period) meanwhile: reap it last.
        let placed = self.place_joined(joined, &rec, p, ch);
        let _ = nix::sys::wait::waitpid(joiner, None);
        let pid = placed?;
        if let Some(f) = &opts.pid_file {
            crate::container::write_pid_file(f, pid.as_raw())?;
        }
        Ok(pid)
    }

    /// Put the process that joined the container in its cgroup, set its oom score, let it
    /// exec; returns its pid once it has.
    fn place_joined(
        &self,
        joined: Result<Option<ChildMsg>>,
        rec: &crate::state::Record,
        p: &Process,
        ch: &crate::sync::Channel,
    ) -> Result<Pid> {
        let pid = match joined? {
            Some(ChildMsg::InitPid { pid }) => Pid::from_raw(pid),
            Some(ChildMsg::Failed(msg)) => return Err(Error::Reported(msg)),
            _ => {
                return Err(Error::Init(
                    "the process joining the container exited unexpectedly".into(),
                ))
            }
        };
        let fail = |e: Error| {
            let _ = kill(pid, Signal::SIGKILL);
            e
        };
        if let Some(m) = crate::cgroup::manager_of(rec) {
            m.add_process(pid.as_raw()).map_err(|e| fail(e.into()))?;
        }
        if let Some(adj) = p.oom_score_adj() {
            crate::fs::ProcFs::open(std::path::Path::new("/proc"))
                .and_then(|proc| proc.write(&format!("{pid}/oom_score_adj"), &adj.to_string()))
                .map_err(fail)?;
        }
        ch.send(&ParentMsg::Continue {
            state: serde_json::Value::Null,
        })
        .map_err(fail)?;
        match ch.recv::<ChildMsg>().map_err(fail)? {
            None => Ok(pid),
            Some(ChildMsg::Failed(msg)) => Err(fail(Error::Reported(msg))),
            Some(other) => Err(fail(Error::Init(format!("unexpected message {other:?}")))),
        }
    }
}

/// What both `create` and `exec` prepare before forking: the compiled seccomp filter of
/// `spec` and a connection to the `--console-socket`.
pub(crate) fn seccomp_and_console(
    spec: &oci_spec::runtime::Spec,
    console_socket: &Option<std::path::PathBuf>,
) -> Result<(
    Option<crate::seccomp::Compiled>,
    Option<std::os::unix::net::UnixStream>,
)> {
    let seccomp = match spec.linux().as_ref().and_then(|l| l.seccomp().as_ref()) {
        Some(s) => Some(crate::seccomp::compile(s)?),
        None => None,
    };
    let console = match console_socket {
        Some(path) => Some(std::os::unix::net::UnixStream::connect(path).at(path)?),
        None => None,
    };
    Ok((seccomp, console))
}

#[cfg(test)]
mod tests {
    use super::merge_env;

    #[test]
    fn env_entries_replace_those_of_the_same_name_in_order() {
        let base = ["PATH=/bin", "A=1", "B=2"].map(String::from);
        let over = ["A=x", "C=3"].map(String::from);
        assert_eq!(merge_env(&base, &over), ["PATH=/bin", "B=2", "A=x", "C=3"]);
        assert_eq!(merge_env(&base, &[]), base);
    }
}
