//! The OCI lifecycle (§3.1.1: creating, created, running, stopped; plus paused) with the
//! commands that move a container between states, as berth's runtime decides them
//! (crates/runtime/src/container.rs, exec.rs, cgroup.rs).

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

pub const COMMANDS: [Command; 9] = [
    Command::CreateCompletes,
    Command::Start,
    Command::Kill,
    Command::Pause,
    Command::Resume,
    Command::Delete,
    Command::DeleteForce,
    Command::Exec,
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
        (S::Created | S::Running, C::InitExits) => Some(S::Stopped),
        _ => None,
    }
}
