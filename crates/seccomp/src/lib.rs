//! seccomp: compile an OCI seccomp profile into a classic BPF program and install it.
