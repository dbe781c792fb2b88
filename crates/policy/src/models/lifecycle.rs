//! The OCI lifecycle (§3.1.1: creating, created, running, stopped; plus paused) with the
//! commands that move a container between states, written from the runtime spec
//! ("Lifecycle", "Operations") independently of the runtime's own table
//! (`berth_runtime::lifecycle`); `tests/models.rs` model-checks this one with stateright
//! and compares it with the runtime's in every reachable state, so the two cannot drift.
//!
//! Where berth follows runc rather than the spec's letter (and says so):
//! * `delete` of a *created* container succeeds (it kills the waiting init), as runc and
//!   crun do; the spec asks for an error on anything not stopped.
//! * `pause`/`resume` are runc extensions the spec does not define; `kill` of a paused
//!   container is admitted (runc's rule) and takes effect when it is resumed.

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum State {
    Creating,
    Created,
    Running,
    Paused,
    Stopped,
    /// Deleted: no state left.
    Gone,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Command {
    /// `create` finishes: init waits for start.
    CreateCompletes,
    Start,
    /// `kill KILL` (the signal cannot be caught).
    Kill,
    Pause,
    Resume,
    Delete,
    DeleteForce,
    Exec,
    /// update, stats, ps, events: read or tune the live cgroup; no state change.
    Observe,
    /// The container's init exits by itself.
    InitExits,
}

pub const STATES: [State; 6] = [
    State::Creating,
    State::Created,
    State::Running,
    State::Paused,
    State::Stopped,
    State::Gone,
];

pub const COMMANDS: [Command; 10] = [
    Command::CreateCompletes,
    Command::Start,
    Command::Kill,
    Command::Pause,
    Command::Resume,
    Command::Delete,
    Command::DeleteForce,
    Command::Exec,
    Command::Observe,
    Command::InitExits,
];

/// The state after `cmd` in `state`, or None if the runtime refuses it.
pub fn step(state: State, cmd: Command) -> Option<State> {
    use Command as C;
    use State as S;
    match (state, cmd) {
        (S::Gone, _) => None,
        (_, C::DeleteForce) => Some(S::Gone),
        (S::Creating, C::CreateCompletes) => Some(S::Created),
        (S::Created, C::Start) => Some(S::Running),
        (S::Created | S::Running, C::Kill) => Some(S::Stopped),
        // a frozen process only dies once thawed
        (S::Paused, C::Kill) => Some(S::Paused),
        (S::Running, C::Pause) => Some(S::Paused),
        // berth freezes a created container but reports it as created until started
        (S::Created, C::Pause) => Some(S::Created),
        (S::Paused, C::Resume) => Some(S::Running),
        (S::Created | S::Stopped, C::Delete) => Some(S::Gone),
        (S::Created | S::Running, C::Exec) => Some(state),
        (S::Created | S::Running | S::Paused, C::Observe) => Some(state),
        (S::Created | S::Running, C::InitExits) => Some(S::Stopped),
        _ => None,
    }
}
