//! engine: docker-style container management (`berth run IMAGE`, `ps`, `logs`, `stop`,
//! `rm`, `exec`, `inspect`) on top of the image store (`berth-image`) and the OCI runtime
//! (`berth-runtime`).
//!
//! Invariants:
//! * A container is the directory `<data-root>/containers/<id>/` holding its overlay
//!   upper/work dirs and rootfs record ([`bundle`]), `bundle/` (config.json + overlay rootfs), `log`
//!   and the engine metadata `config.json`. The metadata exists only once the bundle is
//!   complete; a failed `create` removes everything it made, and one killed half way
//!   (after the mount, before the metadata) is listed as `Dead` for `rm` to remove (the
//!   bundle is committed only after the metadata is saved).
//! * The runtime ID is the engine ID (64 hex digits); names are unique, checked and
//!   created under `containers.lock`.
//! * Exactly one process records a container's exit: the foreground CLI, or the detached
//!   monitor (forked twice, subreaper of init). Metadata is replaced atomically, so
//!   readers never see half a file. When nobody could record the exit (monitor killed),
//!   a container whose init is gone reads as exited with an unknown code.
//! * Once the exit is recorded, the runtime state (cgroup, state dir) is released; the
//!   rootfs stays until `remove` (or at once with `--rm`).
//! * The image config and the docker-style overrides make the base spec ([`spec`]); flags
//!   beyond those are applied to its spec in one place
//!   ([`RunOptions::apply`]): capabilities (Docker's 14 defaults +/-), Docker's seccomp
//!   profile for the final capability set, resources, binds, read-only root, network.
//! * `--network bridge|NAME` attaches a persistent netns (`<runtime-root>/netns/<id>`)
//!   through CNI before the metadata exists, and detaches it (CNI DEL from the result
//!   cache, netns unmounted) when the exit is recorded, on `rm`, and when `create` fails:
//!   a container that is not running holds no address, veth or port map.

pub mod bundle;
mod container;
mod engine;
pub mod error;
pub mod net;
pub mod options;
pub mod spec;
pub mod tty;
pub mod vm;

pub use berth_net as cni;
pub use bundle::{AbandonedBundle, Bundle, Bundles};
pub use container::{Container, State, Status};
pub use engine::{Engine, ExecRequest};
pub use error::{Error, Result};
pub use net::{NetSettings, NetState};
pub use options::{Bind, Network, RunOptions, Seccomp};
pub use spec::RunOverrides;
pub use vm::{Isolation, VmSettings};
