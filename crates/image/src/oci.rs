//! The subset of the OCI image-spec (and Docker schema 2) documents this crate reads and
//! writes. Unknown fields are ignored on read; the original bytes are what the store keeps.

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};

use crate::digest::Digest;
use crate::error::{Error, Result};

pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
pub const OCI_LAYER: &str = "application/vnd.oci.image.layer.v1.tar";
pub const OCI_LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
pub const OCI_LAYER_ZSTD: &str = "application/vnd.oci.image.layer.v1.tar+zstd";
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const DOCKER_MANIFEST_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
pub const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
pub const DOCKER_LAYER_GZIP: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";
/// Annotation holding the tag (or full reference) in an OCI layout's index.json.
pub const ANNOTATION_REF_NAME: &str = "org.opencontainers.image.ref.name";
/// Annotation holding the full normalised reference, as containerd writes it.
pub const ANNOTATION_IMAGE_NAME: &str = "io.containerd.image.name";

/// How a layer blob is compressed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Compression {
    None,
    Gzip,
    Zstd,
}

impl Compression {
    /// The compression a layer media type implies.
    pub fn from_media_type(mt: &str) -> Result<Compression> {
        match mt {
            OCI_LAYER | "application/vnd.docker.image.rootfs.diff.tar" => Ok(Compression::None),
            OCI_LAYER_GZIP
            | DOCKER_LAYER_GZIP
            | "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip" => {
                Ok(Compression::Gzip)
            }
            OCI_LAYER_ZSTD => Ok(Compression::Zstd),
            other => Err(Error::UnsupportedMediaType(other.to_string())),
        }
    }

    /// Guess from the first bytes of a stream (gzip and zstd magic numbers).
    pub fn sniff(head: &[u8]) -> Compression {
        if head.starts_with(&[0x1f, 0x8b]) {
            Compression::Gzip
        } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
            Compression::Zstd
        } else {
            Compression::None
        }
    }

    pub fn oci_media_type(self) -> &'static str {
        match self {
            Compression::None => OCI_LAYER,
            Compression::Gzip => OCI_LAYER_GZIP,
            Compression::Zstd => OCI_LAYER_ZSTD,
        }
    }

    /// Wrap `r` in the matching decoder; the result streams.
    pub fn decoder<'a, R: std::io::Read + 'a>(
        self,
        r: R,
    ) -> std::io::Result<Box<dyn std::io::Read + 'a>> {
        Ok(match self {
            Compression::None => Box::new(r),
            Compression::Gzip => Box::new(flate2::read::MultiGzDecoder::new(r)),
            Compression::Zstd => Box::new(zstd::stream::read::Decoder::new(r)?),
        })
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Platform {
    pub architecture: String,
    pub os: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    pub media_type: String,
    pub digest: Digest,
    pub size: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<Platform>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

impl Descriptor {
    pub fn new(media_type: &str, digest: Digest, size: u64) -> Descriptor {
        Descriptor {
            media_type: media_type.to_string(),
            digest,
            size,
            platform: None,
            annotations: BTreeMap::new(),
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Manifest {
    pub schema_version: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    pub config: Descriptor,
    pub layers: Vec<Descriptor>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Index {
    pub schema_version: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    pub manifests: Vec<Descriptor>,
}

impl Index {
    pub fn empty() -> Index {
        Index {
            schema_version: 2,
            media_type: Some(OCI_INDEX.to_string()),
            manifests: Vec::new(),
        }
    }

    /// The manifest for linux/`arch` (GOARCH naming), preferring an exact match.
    pub fn select_platform(&self, arch: &str) -> Option<&Descriptor> {
        self.manifests.iter().find(|d| {
            d.platform
                .as_ref()
                .is_some_and(|p| p.os == "linux" && p.architecture == arch)
        })
    }
}

/// The host architecture in GOARCH naming, as image platforms use it.
pub fn host_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        "powerpc64" => "ppc64le",
        other => other,
    }
}

/// The image configuration's `config` object (what a container runs).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct RunConfig {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exposed_ports: Option<HashMap<String, serde_json::Value>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub env: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entrypoint: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cmd: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volumes: Option<HashMap<String, serde_json::Value>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub working_dir: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub labels: Option<HashMap<String, String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop_signal: Option<String>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RootFs {
    #[serde(rename = "type")]
    pub kind: String,
    pub diff_ids: Vec<Digest>,
}

/// An image configuration document (OCI or Docker; same fields).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ImageConfig {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub author: Option<String>,
    pub architecture: String,
    pub os: String,
    #[serde(default)]
    pub config: RunConfig,
    pub rootfs: RootFs,
}

/// Largest manifest, index or token response read (from a registry or an archive).
pub const MAX_MANIFEST_BYTES: u64 = 4 << 20;
/// Largest image config accepted (the limit containers/image applies too). Configs are
/// parsed whole and their labels become runtime annotations, so the bound matters.
pub const MAX_CONFIG_BYTES: u64 = 4 << 20;
/// Most `Env` entries an image config may have.
pub const MAX_ENV_ENTRIES: usize = 10_000;
/// Most bytes of `Env` + `Entrypoint` + `Cmd` strings together (each counted with its NUL
/// terminator and pointer, as execve counts them): half of the 2 MiB execve allows with the
/// default 8 MiB stack, so the process can still start.
pub const MAX_ARGS_ENV_BYTES: usize = 1 << 20;
/// Longest single `Env`/`Entrypoint`/`Cmd` string: execve's MAX_ARG_STRLEN (32 pages).
pub const MAX_ARG_STRLEN: usize = 128 << 10;
/// Most image `Volumes`: each is a directory, a copy and a bind mount per container.
pub const MAX_VOLUMES: usize = 256;

/// Check process environment and arguments against the limits above; `Err` gives the reason.
pub fn check_process_limits<'a>(
    env: &'a [String],
    args: impl IntoIterator<Item = &'a String>,
) -> std::result::Result<(), String> {
    if env.len() > MAX_ENV_ENTRIES {
        return Err(format!(
            "{} Env entries, more than the limit of {MAX_ENV_ENTRIES}",
            env.len()
        ));
    }
    let mut total = 0usize;
    for s in env.iter().chain(args) {
        if s.len() >= MAX_ARG_STRLEN {
            let key: String = s.chars().take(32).collect();
            return Err(format!(
                "string {key:?}... is {} bytes, execve's limit is {MAX_ARG_STRLEN}",
                s.len()
            ));
        }
        total += s.len() + 1 + std::mem::size_of::<usize>();
    }
    if total > MAX_ARGS_ENV_BYTES {
        return Err(format!(
            "Env, Entrypoint and Cmd take {total} bytes, more than the limit of {MAX_ARGS_ENV_BYTES}"
        ));
    }
    Ok(())
}

impl ImageConfig {
    /// Enforce the documented limits (docs/images.md) on a config named by `digest`.
    pub fn check_limits(&self, digest: &Digest) -> Result<()> {
        let c = &self.config;
        let refuse = |reason: String| Error::ConfigTooLarge {
            digest: digest.clone(),
            reason,
        };
        let args = c.entrypoint.iter().flatten().chain(c.cmd.iter().flatten());
        check_process_limits(c.env.as_deref().unwrap_or_default(), args).map_err(refuse)?;
        let volumes = c.volumes.as_ref().map_or(0, |v| v.len());
        if volumes > MAX_VOLUMES {
            return Err(refuse(format!(
                "{volumes} Volumes, more than the limit of {MAX_VOLUMES}"
            )));
        }
        Ok(())
    }
}

/// Refuse a config descriptor larger than [`MAX_CONFIG_BYTES`] before reading it.
pub fn check_config_size(d: &Descriptor) -> Result<()> {
    if d.size > MAX_CONFIG_BYTES {
        return Err(Error::ConfigTooLarge {
            digest: d.digest.clone(),
            reason: format!(
                "{} bytes, more than the limit of {MAX_CONFIG_BYTES}",
                d.size
            ),
        });
    }
    Ok(())
}
