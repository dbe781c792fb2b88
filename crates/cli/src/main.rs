//! The `berth` binary: argument parsing and output only; the work happens in the crates.

mod commands;
mod logging;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};

#[derive(Parser, Debug)]
#[command(
    name = "berth",
    version,
    about = "Containers and microVMs from one runtime (runc-compatible CLI)"
)]
pub struct Cli {
    /// Directory for container state (runc's --root). Default: /run/berth for root,
    /// $XDG_RUNTIME_DIR/berth for other users.
    #[arg(long, global = true, env = "BERTH_ROOT")]
    pub root: Option<PathBuf>,
    /// Write log messages to this file instead of stderr.
    #[arg(long, global = true)]
    pub log: Option<PathBuf>,
    /// Format of log messages.
    #[arg(long, global = true, value_enum, default_value = "text")]
    pub log_format: LogFormat,
    /// Log debug messages.
    #[arg(long, global = true)]
    pub debug: bool,
    /// Create containers' cgroups as transient systemd scope units (cgroupsPath
    /// `slice:prefix:name`, default `system.slice:berth:<id>`); pure cgroup v2 hosts.
    #[arg(long, global = true)]
    pub systemd_cgroup: bool,
    /// Accepted for runc compatibility (rootless mode is detected from the caller's uid).
    #[arg(long, num_args = 0..=1, default_missing_value = "true")]
    pub rootless: Option<String>,
    /// Accepted for runc compatibility; checkpointing is not supported.
    #[arg(long, hide = true)]
    pub criu: Option<String>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Create a container from a bundle; it waits for `start`.
    Create(commands::create::Args),
    /// Start a created container.
    Start(commands::start::Args),
    /// Create and start a container, wait for it and delete it (unless --detach).
    Run(commands::run::Args),
    /// Print a container's state as JSON.
    State(commands::state::Args),
    /// Send a signal to a container's init (or all its processes).
    Kill(commands::kill::Args),
    /// Delete a container and everything it holds.
    Delete(commands::delete::Args),
    /// List containers.
    List(commands::list::Args),
    /// Write a default config.json.
    Spec(commands::spec::Args),
    /// Print the OCI features JSON: what this build of berth supports.
    Features,
    /// Run a process inside a running container.
    Exec(commands::exec::Args),
    /// Freeze every process of a container.
    Pause(commands::pause::Args),
    /// Thaw a paused container.
    Resume(commands::pause::Args),
    /// Change a container's resource limits.
    Update(commands::update::Args),
    /// Stream a container's stats and OOM events as JSON.
    Events(commands::events::Args),
    /// List a container's processes.
    Ps(commands::ps::Args),
    /// Not supported: berth has no CRIU integration.
    #[command(hide = true)]
    Checkpoint(CriuArgs),
    /// Not supported: berth has no CRIU integration.
    #[command(hide = true)]
    Restore(CriuArgs),
    /// Run a kernel in a KVM microVM.
    Vm(commands::vm::Args),
    /// Pull an image from a registry.
    Pull(commands::image::PullArgs),
    /// Check credentials against a registry and store them in the auth file.
    Login(commands::image::LoginArgs),
    /// Remove a registry's credentials from the auth file.
    Logout(commands::image::LogoutArgs),
    /// List images.
    Images(commands::image::ImagesArgs),
    /// Remove images.
    Rmi(commands::image::RmiArgs),
    /// Load images from an oci-archive, docker-archive or OCI layout.
    Load(commands::image::LoadArgs),
    /// Save an image to an archive.
    Save(commands::image::SaveArgs),
    /// Create an image from a rootfs tarball or directory.
    Import(commands::image::ImportArgs),
    /// Manage images (inspect, ls, rm, prune).
    Image(commands::image::ImageArgs),
    /// System-wide maintenance (prune).
    System(commands::image::SystemArgs),
    /// Report what isolates a bundle's or container's config, barrier by barrier.
    Check(commands::check::Args),
    /// Compare a live container's kernel state with its spec.
    Verify(commands::verify::Args),
    /// Generate policies from the isolation models (`policy blp LEVELS.toml`).
    Policy(commands::policy::Args),
    /// Kubernetes CRI server (`berth cri serve`) for kubelet and crictl.
    Cri(commands::cri::Args),
    /// Docker-style containers from images (run, ps, logs, stop, kill, rm, exec, inspect).
    Container(commands::container::Args),
    /// Container networks (create, ls, inspect, rm).
    Network(commands::network::Args),
}

/// Whatever a client passes to checkpoint/restore; refused with one clear line.
#[derive(clap::Args, Debug)]
pub struct CriuArgs {
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub rest: Vec<String>,
}

impl Cli {
    /// The state directory: --root, or the default for the calling user: /run/berth for
    /// root, $XDG_RUNTIME_DIR/berth (or /run/user/UID/berth) for other users. Never a
    /// predictable name in a shared directory such as /tmp, which another user could
    /// create first (the runtime also checks that the caller owns what it uses).
    pub fn state_root(&self) -> anyhow::Result<PathBuf> {
        if let Some(root) = &self.root {
            return Ok(root.clone());
        }
        // SAFETY: geteuid cannot fail.
        let uid = unsafe { libc::geteuid() };
        if uid == 0 {
            return Ok(PathBuf::from("/run/berth"));
        }
        if let Some(dir) = std::env::var_os("XDG_RUNTIME_DIR").filter(|d| !d.is_empty()) {
            return Ok(PathBuf::from(dir).join("berth"));
        }
        let user_run = PathBuf::from(format!("/run/user/{uid}"));
        if std::fs::symlink_metadata(&user_run).is_ok_and(|m| {
            use std::os::unix::fs::MetadataExt;
            m.is_dir() && m.uid() == uid && m.mode() & 0o077 == 0
        }) {
            return Ok(user_run.join("berth"));
        }
        anyhow::bail!(
            "no private state directory: set XDG_RUNTIME_DIR (or pass --root) to a directory only you can write"
        )
    }
}

fn main() -> ExitCode {
    // A re-executed berth inside a new container: no argument parsing, no logging setup.
    if std::env::args().nth(1).as_deref() == Some("init") {
        if let Some(fd) = std::env::var(berth_runtime::spawn::INIT_FD_ENV)
            .ok()
            .and_then(|v| v.parse().ok())
        {
            berth_runtime::init::main(fd);
        }
    }
    let cli = Cli::parse_from(commands::container::route(std::env::args_os().collect()));
    logging::setup(&cli);
    match commands::dispatch(&cli) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            let msg = e.to_string();
            if cli.log.is_some() {
                tracing::error!("{msg}");
            }
            eprintln!("berth: {msg}");
            ExitCode::from(1)
        }
    }
}
