//! vmm: a KVM microVM monitor built from rust-vmm crates.
