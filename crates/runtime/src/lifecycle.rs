//! The OCI lifecycle (runtime-spec "Lifecycle" and "Operations") as one table: which
//! operation each status admits, and the status it leads to. Every command asks
//! [`admit`] before it acts, so this table *is* the runtime's rule; berth-policy checks
//! its model of the lifecycle exhaustively against [`transition`], so the two cannot drift.

use crate::state::Status;

/// Something that moves a container (or asks about it): the runtime's commands, and the
/// two events it does not command (create completing, init exiting on its own).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Operation {
    /// `create` finished: init waits for `start`.
    CreateCompletes,
    Start,
    /// `kill` with SIGKILL (a signal the process cannot catch).
    Kill,
    Pause,
    Resume,
    Delete,
    /// `delete --force`.
    DeleteForce,
    /// `exec` a new process: leaves the status as it is.
    Exec,
    /// `update`, `stats`, `ps`, `events`: need a live cgroup, admitted while paused too,
    /// and leave the status as it is.
    Observe,
    /// The container's init exits by itself.
    InitExits,
}

impl Operation {
    pub const ALL: [Operation; 10] = [
        Operation::CreateCompletes,
        Operation::Start,
        Operation::Kill,
        Operation::Pause,
        Operation::Resume,
        Operation::Delete,
        Operation::DeleteForce,
        Operation::Exec,
        Operation::Observe,
        Operation::InitExits,
    ];
}

/// Where a container is after an operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum After {
    Status(Status),
    /// Deleted: nothing of it is left.
    Gone,
}

/// Why `op` is refused in `status`, or `Ok` when it is admitted.
pub fn admit(op: Operation, status: Status) -> Result<(), &'static str> {
    use Operation as O;
    use Status as S;
    match (op, status) {
        (O::CreateCompletes, S::Creating) => Ok(()),
        (O::CreateCompletes, _) => Err("it is not being created"),
        (O::Start, S::Created) => Ok(()),
        (O::Start, _) => Err("only a created container can be started"),
        // The spec: a signal to a container neither created nor running MUST fail (runc
        // also admits paused: the signal waits for the thaw).
        (O::Kill, S::Created | S::Running | S::Paused) => Ok(()),
        (O::Kill, _) => Err("container not running"),
        (O::Pause, S::Created | S::Running) => Ok(()),
        (O::Pause, _) => Err("cannot pause it"),
        (O::Resume, S::Paused) => Ok(()),
        (O::Resume, _) => Err("cannot resume a container that is not paused"),
        (O::Delete, S::Created | S::Stopped) => Ok(()),
        (O::Delete, _) => Err("stop it first or use delete --force"),
        (O::DeleteForce, _) => Ok(()),
        (O::Exec, S::Created | S::Running) => Ok(()),
        (O::Exec, _) => Err("cannot exec in a container that is not running"),
        (O::Observe, S::Created | S::Running | S::Paused) => Ok(()),
        (O::Observe, _) => Err("it has no live cgroup"),
        (O::InitExits, S::Created | S::Running) => Ok(()),
        (O::InitExits, _) => Err("its init is not running"),
    }
}

/// The status after an admitted `op` in `status`; `None` when `op` is refused.
pub fn transition(op: Operation, status: Status) -> Option<After> {
    use Operation as O;
    use Status as S;
    admit(op, status).ok()?;
    Some(match (op, status) {
        (O::CreateCompletes, _) => After::Status(S::Created),
        (O::Start, _) => After::Status(S::Running),
        // A frozen process takes SIGKILL only once thawed: it stays paused.
        (O::Kill, S::Paused) => After::Status(S::Paused),
        (O::Kill | O::InitExits, _) => After::Status(S::Stopped),
        // A created container's init is frozen too, but berth reports it as created
        // until it is started (`status_of` asks "started?" before "frozen?").
        (O::Pause, S::Created) => After::Status(S::Created),
        (O::Pause, _) => After::Status(S::Paused),
        (O::Resume, _) => After::Status(S::Running),
        (O::Delete | O::DeleteForce, _) => After::Gone,
        (O::Exec | O::Observe, s) => After::Status(s),
    })
}

/// [`admit`] as the runtime's error for container `id`.
pub(crate) fn check(id: &str, op: Operation, status: Status) -> crate::Result<()> {
    admit(op, status).map_err(|why| crate::Error::BadState {
        id: id.into(),
        status: status.to_string(),
        why: why.into(),
    })
}
