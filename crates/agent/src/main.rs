//! `berth-agent`: as the guest's PID 1 it sets the guest up and serves the agent protocol
//! on vsock; `berth-agent serve --listen unix:PATH` serves it on a unix socket (host
//! tests). `shim` and `init` are the agent re-running itself.

use std::path::PathBuf;
use std::process::ExitCode;

use berth_agent::proto::agent_server::AgentServer;
use berth_agent::server::AgentService;
use tokio_stream::wrappers::UnixListenerStream;

const USAGE: &str = "usage: berth-agent [serve --listen unix:PATH|vsock:PORT [--state-dir DIR]]";

enum Listen {
    Unix(PathBuf),
    Vsock(u32),
}

struct Options {
    listen: Listen,
    state_dir: PathBuf,
}

fn parse(args: &[String]) -> Result<Options, String> {
    let mut opts = Options {
        listen: Listen::Vsock(berth_agent::VSOCK_PORT),
        state_dir: PathBuf::from("/run/berth-agent"),
    };
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut value = || it.next().ok_or(format!("{a}: needs a value"));
        match a.as_str() {
            "--listen" => {
                let v = value()?;
                opts.listen = if let Some(p) = v.strip_prefix("unix:") {
                    Listen::Unix(p.into())
                } else if let Some(p) = v.strip_prefix("vsock:") {
                    Listen::Vsock(p.parse().map_err(|_| format!("--listen {v}: bad port"))?)
                } else {
                    return Err(format!("--listen {v}: expected unix:PATH or vsock:PORT"));
                }
            }
            "--state-dir" => opts.state_dir = value()?.into(),
            _ => return Err(format!("unknown argument {a:?}")),
        }
    }
    Ok(opts)
}

async fn serve(opts: Options) -> Result<(), String> {
    let exe = std::env::current_exe().map_err(|e| format!("current_exe: {e}"))?;
    std::fs::create_dir_all(&opts.state_dir)
        .map_err(|e| format!("{}: {e}", opts.state_dir.display()))?;
    let service = AgentService::new(exe, opts.state_dir);
    let mut done = service.shutdown_signal();
    let mut hard = service.shutdown_signal();
    let stopped = async move {
        let _ = done.wait_for(|d| *d).await;
    };
    // Graceful shutdown waits for clients to hang up; after Shutdown they get 2 s.
    let deadline = async move {
        let _ = hard.wait_for(|d| *d).await;
        tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    };
    let router = tonic::transport::Server::builder().add_service(AgentServer::new(service));
    match opts.listen {
        Listen::Unix(path) => {
            let listener = tokio::net::UnixListener::bind(&path)
                .map_err(|e| format!("{}: {e}", path.display()))?;
            let serving =
                router.serve_with_incoming_shutdown(UnixListenerStream::new(listener), stopped);
            let served = tokio::select! {
                r = serving => r,
                () = deadline => Ok(()),
            };
            let _ = std::fs::remove_file(&path);
            served.map_err(|e| e.to_string())
        }
        Listen::Vsock(port) => {
            let addr = tokio_vsock::VsockAddr::new(tokio_vsock::VMADDR_CID_ANY, port);
            let listener = tokio_vsock::VsockListener::bind(addr)
                .map_err(|e| format!("vsock port {port}: {e}"))?;
            let serving = router.serve_with_incoming_shutdown(listener.incoming(), stopped);
            tokio::select! {
                r = serving => r.map_err(|e| e.to_string()),
                () = deadline => Ok(()),
            }
        }
    }
}

fn run_server(opts: Options) -> Result<(), String> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| format!("tokio: {e}"))?
        .block_on(serve(opts))
}

/// As PID 1: set the guest up, serve until Shutdown, power off (also on failure: PID 1
/// must not exit).
fn pid1() -> ! {
    let setup = berth_agent::guest::mount_all().and_then(|()| berth_agent::guest::load_modules());
    match setup {
        Ok(n) => {
            berth_agent::guest::loopback_up();
            eprintln!(
                "berth-agent: ready ({n} modules loaded), protocol {}",
                berth_agent::PROTOCOL
            );
            if let Err(e) = run_server(Options {
                listen: Listen::Vsock(berth_agent::VSOCK_PORT),
                state_dir: PathBuf::from("/run/berth-agent"),
            }) {
                eprintln!("berth-agent: {e}");
            }
        }
        Err(e) => eprintln!("berth-agent: setup: {e}"),
    }
    berth_agent::guest::power_off()
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    // The runtime re-runs this binary as a container's init.
    if args.get(1).map(String::as_str) == Some("init") {
        if let Some(fd) = std::env::var(berth_runtime::spawn::INIT_FD_ENV)
            .ok()
            .and_then(|v| v.parse().ok())
        {
            berth_runtime::init::main(fd);
        }
    }
    if args.get(1).map(String::as_str) == Some("shim") {
        if let [_, _, root, id, task] = args.as_slice() {
            berth_agent::shim::main(root, id, task);
        }
        eprintln!("berth-agent shim: internal command, expects ROOT ID TASK");
        return ExitCode::from(2);
    }
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("BERTH_AGENT_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .init();
    if std::process::id() == 1 {
        pid1();
    }
    let opts = match args.get(1).map(String::as_str) {
        Some("serve") => parse(&args[2..]),
        _ => Err(USAGE.to_string()),
    };
    let result = opts.and_then(run_server);
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("berth-agent: {e}");
            ExitCode::FAILURE
        }
    }
}
