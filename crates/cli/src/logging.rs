//! `--log`, `--log-format` and `--debug`, as runc has them (containerd and podman read the
//! JSON log lines, `{"level":..,"msg":..,"time":..}`, to show runtime errors).

use std::fs::OpenOptions;
use std::sync::Mutex;

use tracing_subscriber::filter::LevelFilter;

use crate::{Cli, LogFormat};

/// Install the global subscriber. Returns nothing to keep; failures to open the log file
/// fall back to stderr.
pub fn setup(cli: &Cli) {
    let level = if cli.debug {
        LevelFilter::DEBUG
    } else {
        LevelFilter::WARN
    };
    let file = cli
        .log
        .as_ref()
        .and_then(|p| OpenOptions::new().create(true).append(true).open(p).ok());
    let builder = tracing_subscriber::fmt()
        .with_max_level(level)
        .with_target(false);
    match (file, cli.log_format) {
        (Some(f), LogFormat::Json) => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .with_span_list(false)
            .with_writer(Mutex::new(f))
            .init(),
        (Some(f), LogFormat::Text) => builder.with_ansi(false).with_writer(Mutex::new(f)).init(),
        (None, LogFormat::Json) => builder
            .json()
            .flatten_event(true)
            .with_writer(std::io::stderr)
            .init(),
        (None, LogFormat::Text) => builder.with_writer(std::io::stderr).init(),
    }
}
