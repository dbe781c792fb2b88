//! image: OCI content store, archives, registry pull, safe layer unpack, OverlayFS
//! snapshots, and image config -> runtime bundle.
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
//! * Everything `create_bundle` makes (mount, upper/work, volumes) is undone on failure
//!   and by `remove_bundle`; `prune` never removes what an image or container uses.
//! * Registry responses are untrusted: every manifest and blob is checked against its
//!   digest and size before it is stored; a transfer that stalls fails (per-read timeout).
//! * The data root and its directories are private to their owner (0700): no other host
//!   user can reach a rootfs, a snapshot or a blob (`Store::open` enforces it).
//! * Archive and layout inputs are read only from regular files, never beyond their
//!   descriptor's size; configs, manifests and process arguments have documented limits
//!   (`oci::MAX_*`), checked before anything is made.
//! * A bundle is "being created" (its directory flocked by the creator) until
//!   [`Bundle::commit`]; one whose creator is gone is abandoned, listed by
//!   `Store::abandoned_bundles` and removed by `prune`, mount included.

pub mod archive;
pub mod bundle;
pub mod digest;
pub mod error;
pub mod oci;
pub mod reference;
pub mod registries_conf;
pub mod registry;
pub mod snapshot;
pub mod spec;
pub mod store;
pub mod unpack;

pub use archive::ArchiveFormat;
pub use bundle::{AbandonedBundle, Bundle};
pub use digest::Digest;
pub use error::{Error, Result};
pub use reference::Reference;
pub use registry::{login, logout, Credentials, PullOptions};
pub use spec::RunOverrides;
pub use store::{Image, ImageId, ImageInfo, ImageSummary, PruneReport, Store};
pub use unpack::{unpack_layer, UnpackStats, WhiteoutMode};
