//! `berth cri serve`: the Kubernetes CRI server; `monitor` and `exec` are the hidden
//! helper processes the server starts (one monitor per container, one exec per ExecSync).

use std::path::PathBuf;

use clap::Subcommand;

use crate::Cli;

#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(subcommand)]
    pub command: Cmd,
}

#[derive(Subcommand, Debug)]
pub enum Cmd {
    /// Serve the Kubernetes CRI v1 API (RuntimeService, ImageService) on a unix socket.
    /// The global --root is the CRI root (pods, containers, images; default
    /// /var/lib/berth/cri).
    Serve {
        /// TOML config file (see docs/kubernetes.md).
        #[arg(long)]
        config: Option<PathBuf>,
        /// Socket to listen on (default unix:///run/berth/cri.sock).
        #[arg(long)]
        listen: Option<String>,
    },
    /// A container's monitor (started by the server).
    #[command(hide = true)]
    Monitor {
        #[arg(long)]
        runtime_root: PathBuf,
        #[arg(long)]
        dir: PathBuf,
        id: String,
    },
    /// The ExecSync helper (started by the server).
    #[command(hide = true)]
    Exec {
        #[arg(long)]
        runtime_root: PathBuf,
        #[arg(long)]
        timeout: u64,
        #[arg(long)]
        result: PathBuf,
        /// Pass this process's stdin to the command (else /dev/null).
        #[arg(long)]
        stdin: bool,
        /// Give the command a terminal, proxied to this process's stdio.
        #[arg(long)]
        tty: bool,
        /// Terminal sizes ("WIDTH HEIGHT" lines) arrive on this fd.
        #[arg(long)]
        resize_fd: Option<i32>,
        /// The terminal's size at the start, `WIDTHxHEIGHT`.
        #[arg(long, value_parser = parse_size)]
        console_size: Option<(u16, u16)>,
        id: String,
        #[arg(last = true, required = true)]
        cmd: Vec<String>,
    },
}

fn parse_size(s: &str) -> Result<(u16, u16), String> {
    let (w, h) = s.split_once('x').ok_or("expected WIDTHxHEIGHT")?;
    Ok((
        w.parse().map_err(|e| format!("width: {e}"))?,
        h.parse().map_err(|e| format!("height: {e}"))?,
    ))
}

/// The log level `cri serve` logs at: `--debug`, else the config file's, else info.
pub fn log_level(a: &Args) -> Option<String> {
    match &a.command {
        Cmd::Serve { config, .. } => Some(
            config
                .as_deref()
                .and_then(berth_cri::Config::log_level_of)
                .unwrap_or_else(|| "info".into()),
        ),
        _ => None,
    }
}

pub fn run(cli: &Cli, a: &Args) -> anyhow::Result<u8> {
    match &a.command {
        Cmd::Serve { config, listen } => {
            let cfg =
                berth_cri::Config::load(config.as_deref(), listen.as_deref(), cli.root.as_deref())?;
            berth_cri::serve(cfg)?;
            Ok(0)
        }
        Cmd::Monitor {
            runtime_root,
            dir,
            id,
        } => Ok(berth_cri::monitor::run(runtime_root, dir, id) as u8),
        Cmd::Exec {
            runtime_root,
            timeout,
            result,
            stdin,
            tty,
            resize_fd,
            console_size,
            id,
            cmd,
        } => {
            let mode = berth_cri::monitor::ExecMode {
                stdin: *stdin,
                tty: *tty,
                resize_fd: *resize_fd,
                console_size: *console_size,
            };
            Ok(
                berth_cri::monitor::exec(runtime_root, id, cmd, *timeout, result, &mode)
                    .clamp(0, 255) as u8,
            )
        }
    }
}
