use berth_runtime::{foreground, Runtime};

use super::create::CreateArgs;

#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    pub create: CreateArgs,
    /// Start the container and return; do not wait for it.
    #[arg(long, short = 'd')]
    pub detach: bool,
    /// Keep the container's state after it exits (do not delete it).
    #[arg(long)]
    pub keep: bool,
    /// Container ID.
    pub id: String,
}

pub fn run(rt: &Runtime, a: &Args) -> anyhow::Result<u8> {
    if a.detach {
        rt.create(&a.id, &a.create.options())?;
        if let Err(e) = rt.start(&a.id) {
            let _ = rt.delete(&a.id, true);
            return Err(e.into());
        }
        return Ok(0);
    }
    foreground::become_subreaper();
    let mask = foreground::signal_mask();
    let mut opts = a.create.options();
    // As runc: a terminal without --console-socket means berth itself holds the pty and
    // connects it to our stdio.
    let console = match opts.console_socket {
        None if wants_terminal(&opts.bundle) => {
            let socket = foreground::ConsoleSocket::bind(&a.id)?;
            opts.console_socket = Some(socket.path.clone());
            Some(socket)
        }
        _ => None,
    };
    // Signals are forwarded only once there is a container to forward them to: during
    // create, SIGTERM and Ctrl-C end berth (and `delete` undoes what create had done).
    let created = rt.create(&a.id, &opts)?;
    mask.thread_block()?;
    let pty = match console.as_ref().map(|socket| socket.receive()).transpose() {
        Ok(pty) => pty,
        Err(e) => {
            let _ = rt.delete(&a.id, true);
            return Err(e.into());
        }
    };
    if let Err(e) = rt.start(&a.id) {
        let _ = rt.delete(&a.id, true);
        return Err(e.into());
    }
    let code = foreground::wait_attached(created.pid, pty, true, &mask)?.unwrap_or(255);
    if !a.keep {
        rt.delete(&a.id, true)?;
    }
    Ok(code as u8)
}

/// Whether the bundle's process asks for a terminal (an unreadable bundle is left to
/// `create` to report).
fn wants_terminal(bundle: &std::path::Path) -> bool {
    berth_runtime::config::load_bundle_spec(bundle)
        .ok()
        .and_then(|s| s.process().as_ref().and_then(|p| p.terminal()))
        .unwrap_or(false)
}
