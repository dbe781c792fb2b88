//! End-to-end tests of the berth runtime: real containers from a busybox rootfs, probed
//! from inside (/proc/self/*, id, hostname, mountinfo). Run as root:
//! `cargo test -p berth --test e2e`.
//!
//! Covered: lifecycle, namespaces, mounts, process settings, exec/pause/update/events/ps
//! (ops), a bad-input corpus, runc advisories replayed as attacks, and runc comparison.
//!
//! Every test gets its own bundle and state root (`--root`), unique container ids, and
//! guards that `delete --force` its containers and undo host-side fixtures on drop, so
//! tests may run concurrently and in any order.
#![allow(clippy::unwrap_used)] // tests unwrap freely; library code may not

mod common;

mod advisories;
mod client_configs;
mod corpus;
mod escapes;
mod lifecycle;
mod mounts;
mod namespaces;
mod ops;
mod peers;
mod process;
mod robustness;
mod runc_compat;
