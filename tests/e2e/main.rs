//! End-to-end tests of the berth runtime: real containers from a busybox rootfs, probed
//! from inside (/proc/self/*, id, hostname, mountinfo). Run as root:
//! `cargo test -p berth --test e2e`.
//!
//! Every test gets its own bundle and state root (`--root`), unique container ids, and
//! guards that `delete --force` its containers and undo host-side fixtures on drop, so
//! tests may run concurrently and in any order.

mod common;

mod advisories;
mod corpus;
mod lifecycle;
mod mounts;
mod namespaces;
mod process;
mod runc_compat;
