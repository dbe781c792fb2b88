//! The crate's error type: one variant per kind of failure, each message one line naming
//! the path, field or reference involved.

use std::io;
use std::path::PathBuf;

use crate::digest::Digest;

/// Result alias used throughout the crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in the image crate.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A filesystem operation on `path` failed.
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    /// An image reference could not be parsed.
    #[error("invalid reference {input:?}: {reason}")]
    InvalidReference { input: String, reason: String },
    /// A digest string could not be parsed.
    #[error("invalid digest {input:?}: {reason}")]
    InvalidDigest { input: String, reason: String },
    /// Content did not hash to the digest that named it.
    #[error("content of {expected}: hashes to {actual}")]
    DigestMismatch { expected: Digest, actual: Digest },
    /// Content had a different length than its descriptor said.
    #[error("content of {digest}: expected {expected} bytes, got {actual}")]
    SizeMismatch {
        digest: Digest,
        expected: u64,
        actual: u64,
    },
    /// A JSON document (manifest, index, config, ...) was malformed.
    #[error("{what}: invalid JSON: {source}")]
    Json {
        what: String,
        source: serde_json::Error,
    },
    /// No image in the store matches the name or ID.
    #[error("image {0:?}: not found in the store")]
    ImageNotFound(String),
    /// A name or ID prefix matches several images.
    #[error("image {0:?}: ambiguous, matches several images; use more of the ID")]
    AmbiguousImage(String),
    /// The image is the base of an existing container.
    #[error("image {image:?}: in use by container {container:?}; remove the container or force")]
    ImageInUse { image: String, container: String },
    /// A blob referenced by a manifest is missing from the store.
    #[error("blob {0}: not found in the store")]
    BlobNotFound(Digest),
    /// A layer tar entry was rejected (path escape, bad type, ...).
    #[error("layer entry {entry:?}: {reason}")]
    UnsafeEntry { entry: String, reason: String },
    /// An archive or layout being imported is malformed.
    #[error("archive {path}: {reason}")]
    Archive { path: PathBuf, reason: String },
    /// A manifest, config or layer has a media type this crate does not handle.
    #[error("media type {0:?}: not supported")]
    UnsupportedMediaType(String),
    /// A registry request failed.
    #[error("registry {registry}: {reason}")]
    Registry { registry: String, reason: String },
    /// The data root (or a directory in it) is reachable by other users and could not be
    /// made private.
    #[error("data root {path}: {reason}")]
    InsecureDataRoot { path: PathBuf, reason: String },
    /// An image config exceeds one of the documented limits (docs/images.md).
    #[error("image config {digest}: {reason}")]
    ConfigTooLarge { digest: Digest, reason: String },
    /// An input file (archive, archive member, layout blob) is not a regular file or is
    /// larger than its descriptor or limit says.
    #[error("{path}: {reason}")]
    InputFile { path: PathBuf, reason: String },
}

berth_fsutil::io_context!(Error);

/// Parse a JSON document, naming `what` in the error.
pub(crate) fn from_json<T: serde::de::DeserializeOwned>(bytes: &[u8], what: &str) -> Result<T> {
    serde_json::from_slice(bytes).map_err(|source| Error::Json {
        what: what.to_string(),
        source,
    })
}
