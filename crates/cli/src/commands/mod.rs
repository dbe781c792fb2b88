//! One module per command, each with its clap `Args` and a `run` function.

/// `println!` for command output: a closed pipe (`berth state X | grep -q running`) ends
/// the command quietly with status 0, where `println!` would panic.
macro_rules! out {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        if let Err(e) = writeln!(std::io::stdout().lock(), $($arg)*) {
            if e.kind() == std::io::ErrorKind::BrokenPipe {
                return Ok(0);
            }
            return Err(e.into());
        }
    }};
}

pub mod check;
pub mod container;
pub mod create;
pub mod cri;
pub mod delete;
pub mod events;
pub mod exec;
pub mod features;
pub mod image;
pub mod kill;
pub mod list;
pub mod network;
pub mod pause;
pub mod policy;
pub mod ps;
pub mod run;
pub mod spec;
pub mod start;
pub mod state;
pub mod update;
pub mod verify;
pub mod vm;

use berth_runtime::Runtime;

use crate::{Cli, Command};

/// Run the chosen command; the result is the process exit code.
pub fn dispatch(cli: &Cli) -> anyhow::Result<u8> {
    // Only commands that use container state need (and check) the state root.
    let rt = || {
        cli.state_root()
            .map(|root| Runtime::new(root).with_systemd_cgroup(cli.systemd_cgroup))
    };
    match &cli.command {
        Command::Create(a) => create::run(&rt()?, a),
        Command::Start(a) => start::run(&rt()?, a),
        Command::Run(a) => run::run(&rt()?, a),
        Command::State(a) => state::run(&rt()?, a),
        Command::Kill(a) => kill::run(&rt()?, a),
        Command::Delete(a) => delete::run(&rt()?, a),
        Command::List(a) => list::run(&rt()?, a),
        Command::Spec(a) => spec::run(a),
        Command::Features => features::run(),
        Command::Exec(a) => exec::run(&rt()?, a),
        Command::Pause(a) => pause::pause(&rt()?, a),
        Command::Resume(a) => pause::resume(&rt()?, a),
        Command::Update(a) => update::run(&rt()?, a),
        Command::Events(a) => events::run(&rt()?, a),
        Command::Ps(a) => ps::run(&rt()?, a),
        Command::Checkpoint(_) | Command::Restore(_) => {
            anyhow::bail!("checkpoint/restore (CRIU) is not supported by berth")
        }
        Command::Vm(a) => vm::run(a),
        Command::Pull(a) => image::pull(a),
        Command::Login(a) => image::login(a),
        Command::Logout(a) => image::logout(a),
        Command::Images(a) => image::images(a),
        Command::Rmi(a) => image::rmi(a),
        Command::Load(a) => image::load(a),
        Command::Save(a) => image::save(a),
        Command::Import(a) => image::import(a),
        Command::Image(a) => image::image(a),
        Command::System(a) => image::system(&cli.state_root()?, a),
        Command::Container(a) => container::run(&cli.state_root()?, a),
        Command::Check(a) => check::run(&cli.state_root()?, a),
        Command::Verify(a) => verify::run(&cli.state_root()?, a),
        Command::Policy(a) => policy::run(a),
        Command::Network(a) => network::run(&cli.state_root()?, a),
        Command::Cri(a) => cri::run(cli, a),
    }
}
