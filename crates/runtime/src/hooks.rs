//! OCI hooks: each runs with the container state JSON on stdin, its own args and env, and
//! an optional timeout. A failing createRuntime/createContainer/startContainer/prestart hook
//! fails the operation; poststart and poststop failures are only logged (as the spec says).

use std::io::Write;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use oci_spec::runtime::Hook;

use crate::error::{Error, Result};

/// Run every hook of one kind in order; stop at the first failure.
pub fn run(kind: &'static str, hooks: &[Hook], state: &serde_json::Value) -> Result<()> {
    let input = serde_json::to_vec(state).expect("state serializes");
    for (index, hook) in hooks.iter().enumerate() {
        run_one(hook, &input).map_err(|why| Error::Hook {
            kind,
            index,
            path: hook.path().display().to_string(),
            why,
        })?;
    }
    Ok(())
}

/// Run hooks whose failure must not fail the operation (poststart, poststop): a failing
/// hook is logged as a warning and the remaining hooks still run, as the spec says.
pub fn run_logged(kind: &'static str, hooks: &[Hook], state: &serde_json::Value) {
    let input = serde_json::to_vec(state).expect("state serializes");
    for (index, hook) in hooks.iter().enumerate() {
        if let Err(why) = run_one(hook, &input) {
            let e = Error::Hook {
                kind,
                index,
                path: hook.path().display().to_string(),
                why,
            };
            tracing::warn!("{e}");
        }
    }
}

fn run_one(hook: &Hook, input: &[u8]) -> std::result::Result<(), String> {
    let mut cmd = Command::new(hook.path());
    if let Some(args) = hook.args() {
        if let Some((first, rest)) = args.split_first() {
            cmd.arg0(first).args(rest);
        }
    }
    cmd.env_clear();
    for kv in hook.env().iter().flatten() {
        if let Some((k, v)) = kv.split_once('=') {
            cmd.env(k, v);
        }
    }
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::inherit())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().map_err(|e| e.to_string())?;
    if let Some(mut stdin) = child.stdin.take() {
        // A hook may not read its stdin; a broken pipe is not an error.
        let _ = stdin.write_all(input);
    }
    let deadline = hook
        .timeout()
        .map(|t| Instant::now() + Duration::from_secs(t.max(1) as u64));
    loop {
        if let Some(status) = child.try_wait().map_err(|e| e.to_string())? {
            if status.success() {
                return Ok(());
            }
            let mut err = String::new();
            if let Some(mut e) = child.stderr.take() {
                use std::io::Read;
                let _ = e.read_to_string(&mut err);
            }
            let err = err.trim().lines().last().unwrap_or("").to_string();
            return Err(format!(
                "{status}{}",
                if err.is_empty() {
                    String::new()
                } else {
                    format!(": {err}")
                }
            ));
        }
        if deadline.is_some_and(|d| Instant::now() >= d) {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!("timed out after {}s", hook.timeout().unwrap_or(0)));
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}
