//! `berth-agent shim`: the monitor of one container process (its own init, or an exec).
//!
//! The agent starts it with the process's stdio as the shim's own fds 0-2 and a unix
//! socket as fd 3. The shim becomes the subreaper, makes the process with the runtime
//! (which hands fds 0-2 on to it), lets go of its own copies of them (so the agent sees
//! EOF when the process and its children are done), reports [`ShimMsg::Created`], waits,
//! and reports [`ShimMsg::Exited`]. Any failure is one [`ShimMsg::Failed`] line.

use std::io::Write;
use std::os::fd::{AsRawFd, FromRawFd};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;

use berth_runtime::{CreateOptions, ExecOptions, Runtime};
use serde::{Deserialize, Serialize};

/// The fd the agent passes the report socket on.
pub const REPORT_FD: i32 = 3;

/// One JSON line from the shim to the agent.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ShimMsg {
    Created { pid: i32 },
    Failed { error: String },
    Exited { code: i32 },
}

/// What the shim is asked to run.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ShimTask {
    /// Create the container from `bundle` (started later by the agent).
    Create { bundle: PathBuf },
    /// Run `process` (an OCI process) in the running container.
    Exec { process: serde_json::Value },
}

fn send(report: &mut UnixStream, msg: &ShimMsg) {
    let mut line = serde_json::to_vec(msg).unwrap_or_default();
    line.push(b'\n');
    let _ = report.write_all(&line);
}

fn make(runtime: &Runtime, id: &str, task: ShimTask) -> Result<i32, String> {
    let pid = match task {
        ShimTask::Create { bundle } => {
            let opts = CreateOptions {
                bundle,
                ..Default::default()
            };
            runtime.create(id, &opts).map_err(|e| e.to_string())?.pid
        }
        ShimTask::Exec { process } => {
            let process = serde_json::from_value(process)
                .map_err(|e| format!("exec: the process is not an OCI process: {e}"))?;
            let opts = ExecOptions {
                process,
                console_socket: None,
                preserve_fds: 0,
                pid_file: None,
            };
            runtime.exec(id, &opts).map_err(|e| e.to_string())?
        }
    };
    Ok(pid.as_raw())
}

/// Point fds 0-2 at /dev/null: the process has its own copies now.
fn drop_stdio() {
    if let Ok(null) = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/null")
    {
        for fd in 0..3 {
            // SAFETY: dup2 of an fd we own onto one of our standard fds.
            unsafe { libc::dup2(null.as_raw_fd(), fd) };
        }
    }
}

/// Entry point of `berth-agent shim ROOT ID TASK_JSON`. Never returns.
pub fn main(runtime_root: &str, id: &str, task: &str) -> ! {
    // SAFETY: the agent passes the report socket as fd 3, ours alone; close it on exec so
    // the container's init never holds it.
    let mut report = unsafe {
        libc::fcntl(REPORT_FD, libc::F_SETFD, libc::FD_CLOEXEC);
        UnixStream::from_raw_fd(REPORT_FD)
    };
    berth_runtime::foreground::become_subreaper();
    let runtime = Runtime::new(runtime_root);
    let made = serde_json::from_str::<ShimTask>(task)
        .map_err(|e| format!("shim: bad task: {e}"))
        .and_then(|t| make(&runtime, id, t));
    let pid = match made {
        Ok(pid) => pid,
        Err(error) => {
            send(&mut report, &ShimMsg::Failed { error });
            std::process::exit(1)
        }
    };
    drop_stdio();
    send(&mut report, &ShimMsg::Created { pid });
    let pid = nix::unistd::Pid::from_raw(pid);
    let code = match berth_runtime::foreground::wait_for(pid, None, None) {
        Ok(Some(code)) => code,
        // Not ours to reap (cannot happen as subreaper) or waitpid failed: unknown.
        _ => 255,
    };
    send(&mut report, &ShimMsg::Exited { code });
    std::process::exit(0)
}
