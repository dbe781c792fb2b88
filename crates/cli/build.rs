//! Link flags for the `berth` binary.
//!
//! `-z pack-relative-relocs` stores the position-independent binary's ~16,000 relative
//! relocations as a compact bitmap (DT_RELR, glibc >= 2.36, binutils >= 2.38) instead of
//! 24-byte entries: each of the two execs per container (the CLI, then the container's
//! init) reads a few KiB instead of ~390 KiB of relocation records at startup.
fn main() {
    println!("cargo:rustc-link-arg-bins=-Wl,-z,pack-relative-relocs");
}
