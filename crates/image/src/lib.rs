//! image: OCI content store, archives, registry pull, safe layer unpack, OverlayFS
//! snapshots. It knows no containers: consumers that build root filesystems on its
//! snapshots (the engine) hold a [`Lease`] while they do, and tell `remove`, `prune` and
//! `prune_images` what they still use ([`InUse`]).
//!
//! Invariants:
//! * Every blob in `<root>/blobs/sha256/` hashes to its file name: blobs are written to a
//!   temp file, verified, fsynced and renamed into place; a crash leaves at most a temp
//!   file under `ingest/`, removed by `prune`.
//! * index.json only names manifests whose blobs (config, layers) are all present: blobs
//!   are stored before the index is updated, under `index.lock`.
//! * Layer content never lands outside the directory it is unpacked into: every path is
//!   resolved with openat2 below that directory without following symlinks, and hostile
//!   entries are rejected by name (see [`unpack`]).
//! * A snapshot directory exists only complete and verified against its diff_id; it is
//!   keyed by chain ID and shared by all images with the same layer prefix.
//! * `prune` never removes what an image in the index or the caller's [`InUse`] needs; it
//!   runs under the exclusive GC lock ([`GcLock`]), which waits for every [`Lease`].
//! * Registry responses are untrusted: every manifest and blob is checked against its
//!   digest and size before it is stored; a transfer that stalls fails (per-read timeout).
//! * The data root and its directories are private to their owner (0700): no other host
//!   user can reach a rootfs, a snapshot or a blob (`Store::open` enforces it).
//! * Archive and layout inputs are read only from regular files, never beyond their
//!   descriptor's size; configs, manifests and process arguments have documented limits
//!   (`oci::MAX_*`), checked before anything is made.

pub mod archive;
pub mod digest;
pub mod error;
pub mod oci;
pub mod reference;
pub mod registries_conf;
pub mod registry;
pub mod snapshot;
pub mod store;
pub mod unpack;

pub use archive::ArchiveFormat;
pub use digest::Digest;
pub use error::{Error, Result};
pub use reference::Reference;
pub use registry::{login, logout, Credentials, PullOptions};
pub use store::{
    private_dir, write_atomic, GcLock, Image, ImageId, ImageInfo, ImageSummary, InUse, Lease,
    PruneReport, Store, TempPath, PRIVATE_MODE,
};
pub use unpack::{open_in_root, unpack_layer, UnpackStats, WhiteoutMode};
