use std::time::Duration;

use berth_runtime::cgroup::OomEvent;
use berth_runtime::{Runtime, Status};
use serde_json::json;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Print one stats event and exit.
    #[arg(long)]
    pub stats: bool,
    /// Interval between stats events (e.g. 5s, 500ms).
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    pub interval: Duration,
    /// Container ID.
    pub id: String,
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    let (num, unit) = s
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .map(|i| s.split_at(i))
        .unwrap_or((s, "s"));
    let n: f64 = num.parse().map_err(|_| format!("invalid duration {s:?}"))?;
    let secs = match unit {
        "ms" => n / 1000.0,
        "s" | "" => n,
        "m" => n * 60.0,
        _ => return Err(format!("invalid duration unit in {s:?} (use ms, s or m)")),
    };
    if secs <= 0.0 {
        return Err("duration must be positive".into());
    }
    Ok(Duration::from_secs_f64(secs))
}

/// One event per line. Called from the OOM thread too, so a closed pipe ends the whole
/// stream here: quietly, as the reader has gone.
fn emit(kind: &str, id: &str, data: serde_json::Value) {
    use std::io::Write as _;
    let line = json!({"type": kind, "id": id, "data": data});
    if let Err(e) = writeln!(std::io::stdout().lock(), "{line}") {
        std::process::exit(i32::from(e.kind() != std::io::ErrorKind::BrokenPipe));
    }
}

/// runc's event stream: a stats event every interval, an oom event when the kernel kills
/// a process of the container for memory, until the container stops.
pub fn run(rt: &Runtime, a: &Args) -> anyhow::Result<u8> {
    if a.stats {
        emit("stats", &a.id, serde_json::to_value(rt.stats(&a.id)?)?);
        return Ok(0);
    }
    if let Ok(mut watcher) = rt.oom_watcher(&a.id) {
        let id = a.id.clone();
        std::thread::spawn(move || {
            while let Ok(OomEvent::Oom { .. }) = watcher.wait() {
                emit("oom", &id, json!(null));
            }
        });
    }
    loop {
        match rt.stats(&a.id) {
            Ok(stats) => emit("stats", &a.id, serde_json::to_value(stats)?),
            Err(_)
                if rt
                    .state(&a.id)
                    .map(|s| s.status == Status::Stopped)
                    .unwrap_or(true) =>
            {
                return Ok(0)
            }
            Err(e) => return Err(e.into()),
        }
        std::thread::sleep(a.interval);
    }
}
