//! Docker-style commands: `berth container run|ps|logs|stop|kill|rm|exec|inspect`, with
//! `berth run IMAGE`, `ps`, `logs`, `stop`, `rm` and `inspect` routed here by [`route`].
//! Parsing and printing only; the work is in berth-engine.

use std::ffi::OsString;
use std::io::{Read, Write};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use berth_engine::{options, Bind, Container, Engine, ExecRequest, RunOptions, Seccomp, Status};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Image store and container directory.
    #[arg(
        long,
        global = true,
        default_value = "/var/lib/berth",
        env = "BERTH_DATA_ROOT"
    )]
    pub data_root: PathBuf,
    #[command(flatten)]
    pub net: NetFlags,
    #[command(subcommand)]
    pub command: Cmd,
}

/// Where CNI plugins and network configurations are.
#[derive(clap::Args, Debug)]
pub struct NetFlags {
    /// CNI network configurations besides berth's own (read only).
    #[arg(long, global = true, default_value = berth_engine::cni::DEFAULT_CONFIG_DIR, env = "BERTH_CNI_CONFIG_DIR")]
    pub cni_config_dir: PathBuf,
    /// CNI plugin directories, ':'-separated.
    #[arg(
        long,
        global = true,
        default_value = "/usr/lib/cni:/opt/cni/bin",
        env = "BERTH_CNI_PATH"
    )]
    pub cni_path: String,
    /// Seconds each CNI plugin may run before it is killed.
    #[arg(long, global = true, default_value_t = 60.0, env = "BERTH_CNI_TIMEOUT")]
    pub cni_timeout: f64,
}

/// The engine with the network flags applied, after reclaiming what a crashed berth
/// left (attachments of dead containers, orphaned cache entries and namespaces), so no
/// command sees them.
pub fn open_engine(
    data_root: &std::path::Path,
    root: &std::path::Path,
    net: &NetFlags,
) -> anyhow::Result<Engine> {
    let engine = engine_with_flags(data_root, root, net)?;
    match engine.reclaim_network(false) {
        Ok(ids) if !ids.is_empty() => tracing::info!(?ids, "reclaimed network leftovers"),
        Ok(_) => {}
        Err(e) => tracing::warn!(error = %e, "reclaiming network leftovers"),
    }
    Ok(engine)
}

/// The engine with the network flags applied.
pub fn engine_with_flags(
    data_root: &std::path::Path,
    root: &std::path::Path,
    net: &NetFlags,
) -> anyhow::Result<Engine> {
    let mut engine = Engine::open(data_root, root)?;
    let s = engine.net_settings_mut();
    s.networks.cni_config_dir = net.cni_config_dir.clone();
    s.cni.plugin_dirs = berth_engine::cni::plugin_dirs_from(&net.cni_path);
    s.cni.timeout = Duration::try_from_secs_f64(net.cni_timeout)
        .ok()
        .filter(|t| !t.is_zero())
        .with_context(|| {
            format!(
                "--cni-timeout {}: expected a positive number of seconds",
                net.cni_timeout
            )
        })?;
    Ok(engine)
}

#[derive(clap::Subcommand, Debug)]
pub enum Cmd {
    /// Create and start a container from an image.
    Run(Box<RunArgs>),
    /// List containers.
    Ps(PsArgs),
    /// Print a container's output (detached containers).
    Logs(LogsArgs),
    /// Stop containers: the image's stop signal, then SIGKILL after a timeout.
    Stop(StopArgs),
    /// Send a signal to containers.
    Kill(KillArgs),
    /// Remove containers.
    Rm(RmArgs),
    /// Run a command in a running container.
    Exec(ExecArgs),
    /// Print containers' details as JSON.
    Inspect(InspectArgs),
}

#[derive(clap::Args, Debug)]
pub struct RunArgs {
    /// Run in the background and print the container ID.
    #[arg(long, short = 'd')]
    pub detach: bool,
    /// Remove the container when it exits.
    #[arg(long)]
    pub rm: bool,
    /// Keep stdin open (otherwise the container reads /dev/null).
    #[arg(long, short = 'i')]
    pub interactive: bool,
    /// Allocate a pseudo-terminal.
    #[arg(long, short = 't')]
    pub tty: bool,
    #[arg(long)]
    pub name: Option<String>,
    /// Set an environment variable (KEY=VALUE, or KEY to copy the caller's).
    #[arg(long, short = 'e')]
    pub env: Vec<String>,
    /// Read environment variables from a file.
    #[arg(long)]
    pub env_file: Vec<PathBuf>,
    /// Bind mount a host path: SRC:DST[:ro|rw].
    #[arg(long, short = 'v')]
    pub volume: Vec<String>,
    #[arg(long, short = 'w')]
    pub workdir: Option<String>,
    /// user[:group], names or numbers.
    #[arg(long, short = 'u')]
    pub user: Option<String>,
    #[arg(long)]
    pub entrypoint: Option<String>,
    #[arg(long)]
    pub hostname: Option<String>,
    /// Memory limit, e.g. 64m.
    #[arg(long, short = 'm')]
    pub memory: Option<String>,
    /// CPU limit, e.g. 1.5.
    #[arg(long)]
    pub cpus: Option<String>,
    #[arg(long, allow_hyphen_values = true)]
    pub pids_limit: Option<String>,
    /// Mount the root filesystem read-only.
    #[arg(long)]
    pub read_only: bool,
    #[arg(long)]
    pub cap_add: Vec<String>,
    #[arg(long)]
    pub cap_drop: Vec<String>,
    /// seccomp=unconfined or seccomp=PROFILE.json.
    #[arg(long)]
    pub security_opt: Vec<String>,
    /// bridge (berth's default network `berth`), none (loopback only), host,
    /// container:NAME|ID (share its namespace), ns:PATH, or a network's name.
    #[arg(long, alias = "net", default_value = "bridge", env = "BERTH_NETWORK")]
    pub network: String,
    /// process (namespaces, the default) or vm (inside a berth microVM; see docs/vmm.md).
    #[arg(long, default_value = "process", env = "BERTH_ISOLATION")]
    pub isolation: String,
    /// Publish a container port: [IP:][HOSTPORT:]CONTAINERPORT[/tcp|udp].
    #[arg(long = "publish", short = 'p')]
    pub publish: Vec<String>,
    /// Publish every port the image exposes on a free host port.
    #[arg(long = "publish-all", short = 'P')]
    pub publish_all: bool,
    /// The container's IPv4 address on its network.
    #[arg(long)]
    pub ip: Option<String>,
    /// The MAC address of the container's eth0.
    #[arg(long)]
    pub mac_address: Option<String>,
    /// Nameserver for the container's resolv.conf (replaces the host's).
    #[arg(long)]
    pub dns: Vec<String>,
    /// Add a line to /etc/hosts: NAME:IP.
    #[arg(long)]
    pub add_host: Vec<String>,
    /// IMAGE [COMMAND [ARG...]].
    #[arg(required = true, trailing_var_arg = true, allow_hyphen_values = true)]
    pub image_and_cmd: Vec<String>,
}

#[derive(clap::Args, Debug)]
pub struct PsArgs {
    /// Show all containers (default: running ones).
    #[arg(long, short = 'a')]
    pub all: bool,
    /// Only print IDs.
    #[arg(long, short = 'q')]
    pub quiet: bool,
    /// Do not truncate IDs and commands.
    #[arg(long)]
    pub no_trunc: bool,
}

#[derive(clap::Args, Debug)]
pub struct LogsArgs {
    /// Keep printing new output until the container exits.
    #[arg(long, short = 'f')]
    pub follow: bool,
    pub container: String,
}

#[derive(clap::Args, Debug)]
pub struct StopArgs {
    /// Seconds to wait before SIGKILL.
    #[arg(long, short = 't', alias = "time", default_value_t = 10)]
    pub timeout: u64,
    #[arg(required = true)]
    pub containers: Vec<String>,
}

#[derive(clap::Args, Debug)]
pub struct KillArgs {
    #[arg(long, short = 's', default_value = "KILL")]
    pub signal: String,
    #[arg(required = true)]
    pub containers: Vec<String>,
}

#[derive(clap::Args, Debug)]
pub struct RmArgs {
    /// Kill and remove running containers.
    #[arg(long, short = 'f')]
    pub force: bool,
    #[arg(required = true)]
    pub containers: Vec<String>,
}

#[derive(clap::Args, Debug)]
pub struct ExecArgs {
    /// Keep stdin open (otherwise the process reads /dev/null).
    #[arg(long, short = 'i')]
    pub interactive: bool,
    #[arg(long, short = 't')]
    pub tty: bool,
    #[arg(long, short = 'd')]
    pub detach: bool,
    #[arg(long, short = 'e')]
    pub env: Vec<String>,
    #[arg(long, short = 'w')]
    pub workdir: Option<String>,
    #[arg(long, short = 'u')]
    pub user: Option<String>,
    pub container: String,
    #[arg(required = true, trailing_var_arg = true, allow_hyphen_values = true)]
    pub command: Vec<String>,
}

#[derive(clap::Args, Debug)]
pub struct InspectArgs {
    #[arg(required = true)]
    pub containers: Vec<String>,
}

/// Global flags taking a value, skipped while looking for the subcommand.
const GLOBAL_WITH_VALUE: &[&str] = &["--root", "--log", "--log-format", "--criu"];
/// Flags only runc's `run --bundle B ID` has.
const RUNC_RUN_FLAGS: &[&str] = &[
    "-b",
    "--bundle",
    "--pid-file",
    "--console-socket",
    "--no-pivot",
    "--no-new-keyring",
    "--preserve-fds",
    "--keep",
    "--no-subreaper",
];
/// Flags (docker's, runc ps's `--format`, globals) whose value is not a positional.
const WITH_VALUE: &[&str] = &[
    "--data-root",
    "-e",
    "--env",
    "--env-file",
    "-v",
    "--volume",
    "-w",
    "--workdir",
    "-u",
    "--user",
    "--name",
    "--entrypoint",
    "--hostname",
    "-m",
    "--memory",
    "--cpus",
    "--pids-limit",
    "--cap-add",
    "--cap-drop",
    "--security-opt",
    "--network",
    "--net",
    "-p",
    "--publish",
    "--dns",
    "--add-host",
    "--ip",
    "--mac-address",
    "--cni-config-dir",
    "--cni-path",
    "--cni-timeout",
    "-f",
    "--format",
    "--root",
    "--log",
    "--log-format",
];

/// The name of a flag argument (`--memory=1g` -> `--memory`), `None` for a positional.
fn flag_name(a: &str) -> Option<&str> {
    a.starts_with('-')
        .then(|| a.split_once('=').map_or(a, |(f, _)| f))
}

/// Rewrite the command line so docker-style commands reach `berth container ...`:
/// * `logs`, `stop`, `rm`, `inspect` (no runc command has these names);
/// * `ps` with no positional argument (runc's `ps` needs a container ID);
/// * `run`, unless it has a runc-only flag (`--bundle`/`-b`, `--pid-file`, `--keep`, ...)
///   or is runc's `run [-d] ID` with a bundle in the current directory: exactly one
///   positional argument, without ':' or '/', no docker-only flag, and `./config.json`.
pub fn route(mut args: Vec<OsString>) -> Vec<OsString> {
    let mut i = 1;
    while i < args.len() {
        let a = args[i].to_string_lossy();
        if !a.starts_with('-') {
            break;
        }
        i += if GLOBAL_WITH_VALUE.contains(&a.as_ref()) {
            2
        } else {
            1
        };
    }
    let Some(cmd) = args.get(i).map(|a| a.to_string_lossy().into_owned()) else {
        return args;
    };
    let rest: Vec<String> = args[i + 1..]
        .iter()
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    let mut positionals = Vec::new();
    let mut flags = Vec::new();
    let mut it = rest.iter();
    while let Some(a) = it.next() {
        match flag_name(a) {
            Some(f) => {
                if f.len() == a.len() && WITH_VALUE.contains(&f) {
                    it.next();
                }
                flags.push(f);
            }
            None => positionals.push(a.as_str()),
        }
    }
    let docker = match cmd.as_str() {
        "logs" | "stop" | "rm" | "inspect" => true,
        "ps" => positionals.is_empty(),
        "run" => {
            let runc_flag = flags.iter().any(|f| RUNC_RUN_FLAGS.contains(f));
            let runc_id_here = positionals.len() == 1
                && !positionals[0].contains([':', '/'])
                && flags
                    .iter()
                    .all(|f| ["-d", "--detach", "--debug"].contains(f))
                && std::path::Path::new("config.json").exists();
            !runc_flag && !runc_id_here
        }
        _ => false,
    };
    if docker {
        args.insert(i, "container".into());
    }
    args
}

pub fn run(root: &std::path::Path, a: &Args) -> anyhow::Result<u8> {
    let engine = open_engine(&a.data_root, root, &a.net)?;
    match &a.command {
        Cmd::Run(r) => run_container(&engine, r),
        Cmd::Ps(p) => ps(&engine, p),
        Cmd::Logs(l) => logs(&engine, l),
        Cmd::Stop(s) => each(&s.containers, |c| {
            engine.stop(c, Duration::from_secs(s.timeout))
        }),
        Cmd::Kill(k) => {
            let sig = berth_runtime::signal::parse(&k.signal)?;
            each(&k.containers, |c| engine.kill(c, sig))
        }
        Cmd::Rm(r) => each(&r.containers, |c| engine.remove(c, r.force)),
        Cmd::Exec(e) => exec(&engine, e),
        Cmd::Inspect(i) => {
            let all: Vec<serde_json::Value> = i
                .containers
                .iter()
                .map(|c| engine.inspect(c))
                .collect::<Result<_, _>>()?;
            out!("{}", serde_json::to_string_pretty(&all)?);
            Ok(0)
        }
    }
}

/// Apply `f` to each reference, printing what the user typed on success (as docker does);
/// every failure is reported, and the exit code is 1 if any failed.
fn each(
    refs: &[String],
    f: impl Fn(&str) -> berth_engine::Result<Container>,
) -> anyhow::Result<u8> {
    let mut code = 0;
    for r in refs {
        match f(r) {
            Ok(_) => out!("{r}"),
            Err(e) => {
                eprintln!("berth: {e}");
                code = 1;
            }
        }
    }
    Ok(code)
}

fn run_options(r: &RunArgs) -> anyhow::Result<RunOptions> {
    let (image, cmd) = r
        .image_and_cmd
        .split_first()
        .context("an IMAGE is required")?;
    let mut env = Vec::new();
    for f in &r.env_file {
        env.extend(options::read_env_file(f)?);
    }
    for e in &r.env {
        match e.split_once('=') {
            Some(_) => env.push(e.clone()),
            None => env.extend(std::env::var(e).ok().map(|v| format!("{e}={v}"))),
        }
    }
    let mut seccomp = Seccomp::Default;
    for s in &r.security_opt {
        seccomp = Seccomp::from_security_opt(s)?;
    }
    let isolation: berth_engine::Isolation = r.isolation.parse()?;
    Ok(RunOptions {
        image: image.clone(),
        cmd: cmd.to_vec(),
        name: r.name.clone(),
        detach: r.detach,
        auto_remove: r.rm,
        interactive: r.interactive,
        tty: r.tty,
        env,
        binds: r
            .volume
            .iter()
            .map(|v| v.parse::<Bind>())
            .collect::<Result<_, _>>()?,
        workdir: r.workdir.clone(),
        user: r.user.clone(),
        entrypoint: r.entrypoint.clone(),
        hostname: r.hostname.clone(),
        memory: r.memory.as_deref().map(options::parse_memory).transpose()?,
        cpus: r.cpus.as_deref().map(options::parse_cpus).transpose()?,
        pids_limit: match &r.pids_limit {
            Some(p) => options::parse_pids_limit(p)?,
            None => None,
        },
        read_only: r.read_only,
        cap_add: r.cap_add.clone(),
        cap_drop: r.cap_drop.clone(),
        seccomp,
        // A VM container has no network yet: the default bridge means none there.
        network: match isolation {
            berth_engine::Isolation::Vm if r.network == "bridge" => berth_engine::Network::None,
            _ => r.network.parse()?,
        },
        isolation,
        ports: r
            .publish
            .iter()
            .map(|p| berth_engine::cni::parse_publish(p))
            .collect::<Result<Vec<_>, _>>()?
            .concat(),
        publish_all: r.publish_all,
        ip: r
            .ip
            .as_deref()
            .map(|ip| {
                ip.parse()
                    .map_err(|_| anyhow::anyhow!("--ip {ip:?}: not an IP address"))
            })
            .transpose()?,
        mac: r
            .mac_address
            .as_deref()
            .map(options::parse_mac)
            .transpose()?,
        dns: r
            .dns
            .iter()
            .map(|d| berth_engine::cni::files::parse_dns(d))
            .collect::<Result<_, _>>()?,
        add_hosts: r
            .add_host
            .iter()
            .map(|h| berth_engine::cni::files::parse_add_host(h))
            .collect::<Result<_, _>>()?,
    })
}

fn run_container(engine: &Engine, r: &RunArgs) -> anyhow::Result<u8> {
    let opts = run_options(r)?;
    let mut c = engine.create(&opts)?;
    if opts.detach {
        engine.start_detached(&mut c)?;
        out!("{}", c.id);
        return Ok(0);
    }
    let code = engine.run_attached(&mut c)?;
    Ok(u8::try_from(code).unwrap_or(255))
}

/// Time since an RFC 3339 timestamp, as docker words it ("5 seconds").
fn since(t: &Option<String>) -> String {
    let Some(t) = t
        .as_deref()
        .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
    else {
        return String::new();
    };
    let s = (chrono::Utc::now() - t.with_timezone(&chrono::Utc))
        .num_seconds()
        .max(0);
    match s {
        0..=1 => "Less than a second".into(),
        2..=59 => format!("{s} seconds"),
        60..=3599 => format!("{} minutes", s / 60),
        3600..=86399 => format!("{} hours", s / 3600),
        _ => format!("{} days", s / 86400),
    }
}

/// "Up 3 seconds", "Exited (0) 2 minutes ago", as docker prints them.
fn status_text(c: &Container) -> String {
    match c.state.status {
        Status::Created => "Created".into(),
        Status::Running => format!("Up {}", since(&c.state.started_at)),
        Status::Paused => format!("Up {} (Paused)", since(&c.state.started_at)),
        Status::Exited => match c.state.exit_code {
            Some(code) => format!("Exited ({code}) {} ago", since(&c.state.finished_at)),
            None => "Exited (unknown)".into(),
        },
        Status::Dead => "Dead".into(),
    }
}

fn ps(engine: &Engine, p: &PsArgs) -> anyhow::Result<u8> {
    let list: Vec<Container> = engine
        .list()?
        .into_iter()
        .rev()
        .filter(|c| p.all || matches!(c.state.status, Status::Running | Status::Paused))
        .collect();
    if p.quiet {
        for c in &list {
            out!("{}", if p.no_trunc { &c.id } else { c.short_id() });
        }
        return Ok(0);
    }
    let mut rows = vec![[
        "CONTAINER ID".to_string(),
        "IMAGE".into(),
        "COMMAND".into(),
        "CREATED".into(),
        "STATUS".into(),
        "PORTS".into(),
        "NAMES".into(),
    ]];
    for c in &list {
        let mut cmd = format!("\"{}\"", c.command.join(" "));
        if !p.no_trunc && cmd.chars().count() > 22 {
            cmd = cmd.chars().take(20).collect::<String>() + "…\"";
        }
        let id = if p.no_trunc { &c.id } else { c.short_id() };
        rows.push([
            id.to_string(),
            c.options.image.clone(),
            cmd,
            format!("{} ago", since(&Some(c.created.clone()))),
            status_text(c),
            c.network
                .as_ref()
                .filter(|n| n.attached)
                .map(|n| {
                    n.ports
                        .iter()
                        .map(|p| p.to_string())
                        .collect::<Vec<_>>()
                        .join(", ")
                })
                .unwrap_or_default(),
            c.name.clone(),
        ]);
    }
    // Columns as wide as their widest cell, three spaces apart (docker's tabwriter).
    let widths: Vec<usize> = (0..7)
        .map(|i| rows.iter().map(|r| r[i].chars().count()).max().unwrap_or(0))
        .collect();
    for r in &rows {
        let mut line = String::new();
        for (i, cell) in r.iter().enumerate().take(6) {
            line += &format!("{cell:<w$}   ", w = widths[i]);
        }
        out!("{line}{}", r[6]);
    }
    Ok(0)
}

fn logs(engine: &Engine, l: &LogsArgs) -> anyhow::Result<u8> {
    let c = engine.get(&l.container)?;
    let mut f =
        std::fs::File::open(&c.log_path).with_context(|| format!("{}", c.log_path.display()))?;
    let mut stdout = std::io::stdout().lock();
    loop {
        std::io::copy(&mut f, &mut stdout)?;
        stdout.flush()?;
        if !l.follow {
            return Ok(0);
        }
        let running = engine
            .get(&c.id)
            .is_ok_and(|c| matches!(c.state.status, Status::Running | Status::Paused));
        if !running {
            // One last read: output written between the copy and the status check.
            let mut rest = Vec::new();
            f.read_to_end(&mut rest)?;
            stdout.write_all(&rest)?;
            return Ok(0);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn exec(engine: &Engine, e: &ExecArgs) -> anyhow::Result<u8> {
    let r = ExecRequest {
        args: e.command.clone(),
        env: e.env.clone(),
        workdir: e.workdir.clone(),
        user: e.user.clone(),
        tty: e.tty,
        interactive: e.interactive,
    };
    let code = engine.exec(&e.container, &r, e.detach)?;
    Ok(u8::try_from(code).unwrap_or(255))
}

#[cfg(test)]
mod tests {
    use super::route;

    fn routed(args: &[&str]) -> Vec<String> {
        route(args.iter().map(Into::into).collect())
            .into_iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect()
    }

    #[test]
    fn docker_commands_reach_container() {
        // The test's cwd (the crate dir) holds no config.json.
        assert_eq!(
            routed(&["berth", "run", "busybox"]),
            ["berth", "container", "run", "busybox"]
        );
        assert_eq!(
            routed(&["berth", "--root", "/r", "run", "-d", "img:1", "sh"]),
            [
                "berth",
                "--root",
                "/r",
                "container",
                "run",
                "-d",
                "img:1",
                "sh"
            ]
        );
        for cmd in ["logs", "stop", "rm", "inspect"] {
            assert_eq!(routed(&["berth", cmd, "x"])[1], "container");
        }
        assert_eq!(
            routed(&["berth", "ps", "-a"]),
            ["berth", "container", "ps", "-a"]
        );
    }

    #[test]
    fn runc_commands_stay() {
        for args in [
            &["berth", "run", "--bundle", "/b", "id"][..],
            &["berth", "run", "-b", "/b", "id"],
            &["berth", "run", "--bundle=/b", "id"],
            &["berth", "run", "--keep", "id"],
            &["berth", "--log", "/l", "run", "--pid-file", "/p", "id"],
            &["berth", "ps", "id"],
            &["berth", "ps", "-f", "json", "id"],
            &["berth", "ps", "--format=json", "id"],
            &["berth", "exec", "id", "true"],
            &["berth", "kill", "id"],
            &["berth", "container", "run", "img"],
            &["berth"],
        ] {
            assert_eq!(routed(args), args, "{args:?}");
        }
    }
}
