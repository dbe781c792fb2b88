//! image: OCI content store, layer unpack, OverlayFS snapshots.
