//! `--log`, `--log-format` and `--debug`, as runc has them. Clients read the JSON lines
//! with runc's keys — `{"level":"error","msg":"...","time":"<RFC 3339>"}` — to show why
//! the runtime failed (containerd's shim keeps the last `"level":"error"` line), so the
//! JSON format is runc's (logrus's), not tracing's own.

use std::fmt;
use std::fs::OpenOptions;
use std::sync::Mutex;

use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::filter::LevelFilter;
use tracing_subscriber::fmt::format::{FormatEvent, FormatFields, Writer};
use tracing_subscriber::fmt::FmtContext;
use tracing_subscriber::registry::LookupSpan;

use crate::{Cli, LogFormat};

/// The message and `key=value` pairs of an event, as one string.
#[derive(Default)]
struct Message(String);

impl Visit for Message {
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        if field.name() == "message" {
            self.0.insert_str(0, &format!("{value:?}"));
        } else {
            self.0.push_str(&format!(" {}={value:?}", field.name()));
        }
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.0.insert_str(0, value);
        } else {
            self.0.push_str(&format!(" {}={value}", field.name()));
        }
    }
}

/// One logrus-style JSON object per line.
struct RuncJson;

impl<S, N> FormatEvent<S, N> for RuncJson
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        _ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let mut msg = Message::default();
        event.record(&mut msg);
        let line = serde_json::json!({
            "level": event.metadata().level().as_str().to_lowercase(),
            "msg": msg.0,
            "time": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true),
        });
        writeln!(writer, "{line}")
    }
}

/// Install the global subscriber; failure to open the log file falls back to stderr.
pub fn setup(cli: &Cli) {
    let cri_level = match &cli.command {
        crate::Command::Cri(a) => crate::commands::cri::log_level(a),
        _ => None,
    };
    let level = if cli.debug {
        LevelFilter::DEBUG
    } else if let Some(l) = cri_level.and_then(|l| l.parse::<LevelFilter>().ok()) {
        l
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
            .event_format(RuncJson)
            .with_writer(Mutex::new(f))
            .init(),
        (Some(f), LogFormat::Text) => builder.with_ansi(false).with_writer(Mutex::new(f)).init(),
        (None, LogFormat::Json) => builder
            .event_format(RuncJson)
            .with_writer(std::io::stderr)
            .init(),
        (None, LogFormat::Text) => builder
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .with_writer(std::io::stderr)
            .init(),
    }
}
