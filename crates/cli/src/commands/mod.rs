//! One module per command, each with its clap `Args` and a `run` function.

pub mod create;
pub mod delete;
pub mod features;
pub mod kill;
pub mod list;
pub mod run;
pub mod spec;
pub mod start;
pub mod state;
pub mod vm;

use berth_runtime::Runtime;

use crate::{Cli, Command};

/// Run the chosen command; the result is the process exit code.
pub fn dispatch(cli: &Cli) -> anyhow::Result<u8> {
    if cli.systemd_cgroup {
        anyhow::bail!("--systemd-cgroup: the systemd cgroup driver is not supported; berth manages cgroupfs directly (drop the flag)");
    }
    let rt = Runtime::new(&cli.root);
    match &cli.command {
        Command::Create(a) => create::run(&rt, a),
        Command::Start(a) => start::run(&rt, a),
        Command::Run(a) => run::run(&rt, a),
        Command::State(a) => state::run(&rt, a),
        Command::Kill(a) => kill::run(&rt, a),
        Command::Delete(a) => delete::run(&rt, a),
        Command::List(a) => list::run(&rt, a),
        Command::Spec(a) => spec::run(a),
        Command::Features => features::run(),
        Command::Vm(a) => vm::run(a),
    }
}
