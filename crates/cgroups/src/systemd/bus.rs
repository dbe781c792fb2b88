//! The D-Bus side of the systemd driver: one blocking zbus connection to systemd's
//! `org.freedesktop.systemd1.Manager`, and jobs waited for through `JobRemoved`.
//!
//! The connection is opened for one operation and closed after it: the caller may fork
//! right afterwards (zbus runs an executor thread while a connection is open).

use super::props::{Prop, Props};
use crate::error::{Error, Result};
use futures_lite::{FutureExt, StreamExt};
use std::path::Path;
use std::time::Duration;
use zbus::zvariant::{OwnedObjectPath, Value};

const DEST: &str = "org.freedesktop.systemd1";
const PATH: &str = "/org/freedesktop/systemd1";
const MANAGER: &str = "org.freedesktop.systemd1.Manager";
/// systemd's private socket: PID 1 answers there without dbus-daemon (root only).
pub(crate) const PRIVATE_SOCKET: &str = "/run/systemd/private";
/// How long a method call or a job may take before berth gives up.
const TIMEOUT: Duration = Duration::from_secs(30);

/// A connection to systemd (PID 1).
pub(crate) struct Bus {
    conn: zbus::Connection,
}

fn sd_err(op: &'static str, unit: &str, reason: impl std::fmt::Display) -> Error {
    Error::Systemd {
        op,
        unit: unit.to_string(),
        reason: reason.to_string(),
    }
}

/// A D-Bus error reply as `Name: description`, other errors as zbus prints them.
fn reason(e: &zbus::Error) -> String {
    match e {
        zbus::Error::MethodError(name, desc, _) => match desc {
            Some(d) => format!("{}: {d}", name.as_str()),
            None => name.as_str().to_string(),
        },
        other => other.to_string(),
    }
}

fn is_no_such_unit(e: &zbus::Error) -> bool {
    matches!(e, zbus::Error::MethodError(name, ..)
        if matches!(name.as_str(), "org.freedesktop.systemd1.NoSuchUnit" | "org.freedesktop.systemd1.LoadFailed"))
}

fn variant(p: &Prop) -> Value<'static> {
    match p {
        Prop::U64(v) => Value::from(*v),
        Prop::Bool(b) => Value::from(*b),
        Prop::Str(s) => Value::from(s.clone()),
        Prop::U32s(v) => Value::from(v.clone()),
        Prop::Bytes(v) => Value::from(v.clone()),
    }
}

fn body(props: &Props) -> Vec<(&'static str, Value<'static>)> {
    props.iter().map(|(k, v)| (*k, variant(v))).collect()
}

impl Bus {
    /// The system bus (as runc and podman use it), else systemd's private socket.
    pub(crate) fn connect() -> Result<Bus> {
        zbus::block_on(async {
            let system = async {
                zbus::connection::Builder::system()?
                    .method_timeout(TIMEOUT)
                    .build()
                    .await
            };
            let system_err = match system.await {
                Ok(conn) => return Ok(Bus { conn }),
                Err(e) => e,
            };
            let private = async {
                let stream = std::os::unix::net::UnixStream::connect(PRIVATE_SOCKET)
                    .map_err(|e| zbus::Error::InputOutput(e.into()))?;
                zbus::connection::Builder::async_io_unix_stream(stream)
                    .p2p()
                    .method_timeout(TIMEOUT)
                    .build()
                    .await
            };
            match private.await {
                Ok(conn) => Ok(Bus { conn }),
                Err(e) => Err(Error::NoSystemd(format!(
                    "cannot reach systemd over D-Bus (system bus: {}; {PRIVATE_SOCKET}: {})",
                    reason(&system_err),
                    reason(&e)
                ))),
            }
        })
    }

    async fn call<B>(
        &self,
        op: &'static str,
        unit: &str,
        method: &str,
        body: &B,
    ) -> Result<zbus::Message>
    where
        B: serde::Serialize + zbus::zvariant::DynamicType,
    {
        self.conn
            .call_method(Some(DEST), PATH, Some(MANAGER), method, body)
            .await
            .map_err(|e| sd_err(op, unit, reason(&e)))
    }

    /// Runs a job-returning method and waits for its JobRemoved; `Ok(false)` when the
    /// method said the unit does not exist and `missing_ok` is set. `accepted` runs once
    /// systemd has queued the job (from then on the unit is the caller's to clean up).
    async fn job<B>(
        &self,
        op: &'static str,
        unit: &str,
        method: &str,
        body: &B,
        missing_ok: bool,
        accepted: &dyn Fn(),
    ) -> Result<bool>
    where
        B: serde::Serialize + zbus::zvariant::DynamicType,
    {
        // Signals reach a client only after Subscribe (on the private socket and, when
        // nobody else subscribed, on the system bus too).
        match self
            .conn
            .call_method(Some(DEST), PATH, Some(MANAGER), "Subscribe", &())
            .await
        {
            Err(zbus::Error::MethodError(name, ..))
                if name.as_str() == "org.freedesktop.systemd1.AlreadySubscribed" => {}
            Err(e) => return Err(sd_err(op, unit, reason(&e))),
            Ok(_) => {}
        }
        let rule = zbus::MatchRule::builder()
            .msg_type(zbus::message::Type::Signal)
            .interface(MANAGER)
            .and_then(|b| b.member("JobRemoved"))
            .map_err(|e| sd_err(op, unit, e))?
            .build();
        // The stream exists before the call, so a job that ends at once is not missed.
        let mut stream = zbus::MessageStream::for_match_rule(rule, &self.conn, Some(256))
            .await
            .map_err(|e| sd_err(op, unit, reason(&e)))?;
        let reply = match self
            .conn
            .call_method(Some(DEST), PATH, Some(MANAGER), method, body)
            .await
        {
            Ok(r) => r,
            Err(e) if missing_ok && is_no_such_unit(&e) => return Ok(false),
            Err(e) => return Err(sd_err(op, unit, reason(&e))),
        };
        let job: OwnedObjectPath = reply
            .body()
            .deserialize()
            .map_err(|e| sd_err(op, unit, format!("unexpected reply: {e}")))?;
        accepted();
        let wait = async {
            while let Some(msg) = stream.next().await {
                let Ok(msg) = msg else { continue };
                let Ok((_id, path, _unit, result)) =
                    msg.body()
                        .deserialize::<(u32, OwnedObjectPath, String, String)>()
                else {
                    continue;
                };
                if path == job {
                    return Ok(result);
                }
            }
            Err(sd_err(
                op,
                unit,
                "the D-Bus connection closed while waiting for the job",
            ))
        };
        let timeout = async {
            async_io::Timer::after(TIMEOUT).await;
            Err(sd_err(
                op,
                unit,
                format!("job {} did not finish within {TIMEOUT:?}", job.as_str()),
            ))
        };
        let result = wait.or(timeout).await?;
        if result != "done" {
            return Err(sd_err(
                op,
                unit,
                format!("job finished with result {result:?} (see journalctl -u {unit})"),
            ));
        }
        Ok(true)
    }

    /// StartTransientUnit(name, "fail", properties, no aux units), then waits for the job.
    /// `accepted` runs when the unit exists (a refusal such as UnitExists never runs it).
    pub(crate) fn start_transient(
        &self,
        unit: &str,
        props: &Props,
        accepted: &dyn Fn(),
    ) -> Result<()> {
        let aux: Vec<(&str, Vec<(&str, Value)>)> = Vec::new();
        zbus::block_on(self.job(
            "StartTransientUnit",
            unit,
            "StartTransientUnit",
            &(unit, "fail", body(props), aux),
            false,
            accepted,
        ))
        .map(|_| ())
    }

    /// SetUnitProperties(name, runtime=true, properties): systemd writes the files now and
    /// keeps the values until the unit goes away.
    pub(crate) fn set_properties(&self, unit: &str, props: &Props) -> Result<()> {
        if props.is_empty() {
            return Ok(());
        }
        zbus::block_on(self.call(
            "SetUnitProperties",
            unit,
            "SetUnitProperties",
            &(unit, true, body(props)),
        ))
        .map(|_| ())
    }

    /// StopUnit(name, "replace") and wait; a unit that no longer exists is fine. Then
    /// ResetFailedUnit, so a scope whose processes were killed leaves no failed unit.
    pub(crate) fn stop(&self, unit: &str) -> Result<()> {
        zbus::block_on(async {
            self.job(
                "StopUnit",
                unit,
                "StopUnit",
                &(unit, "replace"),
                true,
                &|| {},
            )
            .await?;
            match self
                .conn
                .call_method(Some(DEST), PATH, Some(MANAGER), "ResetFailedUnit", &(unit,))
                .await
            {
                Ok(_) => Ok(()),
                Err(e) if is_no_such_unit(&e) => Ok(()),
                Err(e) => Err(sd_err("ResetFailedUnit", unit, reason(&e))),
            }
        })
    }
}

/// Whether systemd is PID 1 here (sd_booted(): /run/systemd/system exists).
pub(crate) fn booted() -> bool {
    Path::new("/run/systemd/system").is_dir()
}
