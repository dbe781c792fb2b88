//! Image references with Docker's normalisation rules:
//! `busybox` -> `docker.io/library/busybox:latest`, `localhost:5000/x` keeps its registry,
//! `name@sha256:...` pins a digest.

use std::fmt;
use std::str::FromStr;

use crate::digest::Digest;
use crate::error::Error;

/// The registry used when a reference names none.
pub const DEFAULT_REGISTRY: &str = "docker.io";
const DEFAULT_TAG: &str = "latest";
const MAX_NAME_LEN: usize = 255;

/// A fully normalised image reference: registry, repository path, and a tag and/or digest.
/// A reference parsed without either gets the tag `latest`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Reference {
    registry: String,
    repository: String,
    tag: Option<String>,
    digest: Option<Digest>,
}

impl Reference {
    /// Registry host (and port), e.g. `docker.io` or `127.0.0.1:5000`.
    pub fn registry(&self) -> &str {
        &self.registry
    }
    /// Repository path inside the registry, e.g. `library/busybox`.
    pub fn repository(&self) -> &str {
        &self.repository
    }
    pub fn tag(&self) -> Option<&str> {
        self.tag.as_deref()
    }
    pub fn digest(&self) -> Option<&Digest> {
        self.digest.as_ref()
    }
    /// `registry/repository`, without tag or digest.
    pub fn name(&self) -> String {
        format!("{}/{}", self.registry, self.repository)
    }
    /// The same repository with another tag and no digest.
    pub fn with_tag(&self, tag: &str) -> Result<Reference, Error> {
        format!("{}:{tag}", self.name()).parse()
    }
    /// The same repository pinned to `digest`, without tag.
    pub fn with_digest(&self, digest: Digest) -> Reference {
        Reference {
            digest: Some(digest),
            tag: None,
            ..self.clone()
        }
    }
    /// Docker's short form: `busybox:latest` for `docker.io/library/busybox:latest`.
    pub fn familiar(&self) -> String {
        let full = self.to_string();
        let short = full.strip_prefix("docker.io/").unwrap_or(&full);
        short.strip_prefix("library/").unwrap_or(short).to_string()
    }
    /// What to ask the registry for: the digest when pinned, else the tag.
    pub fn manifest_selector(&self) -> String {
        match (&self.digest, &self.tag) {
            (Some(d), _) => d.to_string(),
            (None, Some(t)) => t.clone(),
            (None, None) => DEFAULT_TAG.to_string(),
        }
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.name())?;
        if let Some(t) = &self.tag {
            write!(f, ":{t}")?;
        }
        if let Some(d) = &self.digest {
            write!(f, "@{d}")?;
        }
        Ok(())
    }
}

fn is_alnum(b: u8) -> bool {
    b.is_ascii_lowercase() || b.is_ascii_digit()
}

/// `[a-z0-9]+(?:(?:[._]|__|[-]*)[a-z0-9]+)*`
fn valid_path_component(c: &str) -> bool {
    let b = c.as_bytes();
    if b.is_empty() || !is_alnum(b[0]) || !is_alnum(b[b.len() - 1]) {
        return false;
    }
    let mut i = 0;
    while i < b.len() {
        if is_alnum(b[i]) {
            i += 1;
            continue;
        }
        let start = i;
        while i < b.len() && !is_alnum(b[i]) {
            i += 1;
        }
        let sep = &c[start..i];
        let ok = sep == "." || sep == "_" || sep == "__" || sep.bytes().all(|x| x == b'-');
        if !ok {
            return false;
        }
    }
    true
}

/// `[\w][\w.-]{0,127}`
fn valid_tag(t: &str) -> bool {
    let word = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
    let b = t.as_bytes();
    !b.is_empty()
        && b.len() <= 128
        && word(b[0])
        && b.iter().all(|&x| word(x) || x == b'.' || x == b'-')
}

/// `host[:port]` where host is DNS labels or an IPv4 address (IPv6 literals in brackets).
fn valid_registry(r: &str) -> bool {
    let (host, port) = match r.rsplit_once(':') {
        Some((h, p)) if !h.ends_with(']') || r.starts_with('[') => (h, Some(p)),
        _ => (r, None),
    };
    if let Some(p) = port {
        if p.is_empty() || p.len() > 5 || !p.bytes().all(|b| b.is_ascii_digit()) {
            return false;
        }
    }
    if host.starts_with('[') && host.ends_with(']') {
        return host[1..host.len() - 1]
            .parse::<std::net::Ipv6Addr>()
            .is_ok();
    }
    !host.is_empty()
        && host.split('.').all(|l| {
            !l.is_empty()
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
}

impl FromStr for Reference {
    type Err = Error;
    fn from_str(input: &str) -> Result<Self, Error> {
        let bad = |reason: &str| Error::InvalidReference {
            input: input.to_string(),
            reason: reason.to_string(),
        };
        let (rest, digest) = match input.split_once('@') {
            Some((r, d)) => (
                r,
                Some(d.parse::<Digest>().map_err(|e| bad(&e.to_string()))?),
            ),
            None => (input, None),
        };
        let last_slash = rest.rfind('/').map_or(0, |i| i + 1);
        let (name, tag) = match rest[last_slash..].rfind(':') {
            Some(i) => (&rest[..last_slash + i], Some(&rest[last_slash + i + 1..])),
            None => (rest, None),
        };
        if let Some(t) = tag {
            if !valid_tag(t) {
                return Err(bad("tag must match [A-Za-z0-9_][A-Za-z0-9_.-]{0,127}"));
            }
        }
        if name.is_empty() {
            return Err(bad("empty repository name"));
        }
        let (registry, repository) = match name.split_once('/') {
            Some((first, rest))
                if first.contains('.')
                    || first.contains(':')
                    || first == "localhost"
                    || first.bytes().any(|b| b.is_ascii_uppercase()) =>
            {
                (first.to_string(), rest.to_string())
            }
            _ => (DEFAULT_REGISTRY.to_string(), name.to_string()),
        };
        let registry = if registry == "index.docker.io" {
            DEFAULT_REGISTRY.to_string()
        } else {
            registry
        };
        if !valid_registry(&registry) {
            return Err(bad("registry must be host[:port]"));
        }
        let repository = if registry == DEFAULT_REGISTRY && !repository.contains('/') {
            format!("library/{repository}")
        } else {
            repository
        };
        if !repository.split('/').all(valid_path_component) {
            return Err(bad(
                "repository components must be lowercase [a-z0-9] joined by '.', '_', '__' or '-'",
            ));
        }
        if registry.len() + 1 + repository.len() > MAX_NAME_LEN {
            return Err(bad("name longer than 255 characters"));
        }
        let tag = match (tag, &digest) {
            (Some(t), _) => Some(t.to_string()),
            (None, Some(_)) => None,
            (None, None) => Some(DEFAULT_TAG.to_string()),
        };
        Ok(Reference {
            registry,
            repository,
            tag,
            digest,
        })
    }
}

/// The registry podman gives names that carry none (`podman load`, `podman build`).
pub const LOCAL_REGISTRY: &str = "localhost";

/// Whether `input` names its registry (a first component with '.' or ':', or
/// `localhost`), as opposed to a short name such as `busybox` or `big:1`.
pub fn is_qualified(input: &str) -> bool {
    input
        .split_once('/')
        .is_some_and(|(first, _)| first.contains(['.', ':']) || first == LOCAL_REGISTRY)
}

/// A name found in an archive (an `org.opencontainers.image.ref.name` annotation) read
/// the way podman reads it: one without a registry is a local image, `big` ->
/// `localhost/big:latest`, even a bare `latest` -> `localhost/latest:latest`.
pub fn parse_local(input: &str) -> Result<Reference, Error> {
    if is_qualified(input) {
        input.parse()
    } else {
        format!("{LOCAL_REGISTRY}/{input}").parse()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn archive_names_without_registry_are_local() {
        for (input, want) in [
            ("big", "localhost/big:latest"),
            ("latest", "localhost/latest:latest"),
            ("big:1", "localhost/big:1"),
            ("library/x", "localhost/library/x:latest"),
            ("localhost/x:2", "localhost/x:2"),
            ("docker.io/alpine", "docker.io/library/alpine:latest"),
            ("127.0.0.1:5000/app:v", "127.0.0.1:5000/app:v"),
        ] {
            assert_eq!(parse_local(input).unwrap().to_string(), want, "{input}");
        }
        assert!(parse_local("Big").is_err());
        assert!(!is_qualified("busybox:1") && is_qualified("quay.io/x"));
    }

    fn norm(s: &str) -> String {
        s.parse::<Reference>().unwrap().to_string()
    }

    #[test]
    fn docker_normalisation() {
        let d = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
        assert_eq!(norm("busybox"), "docker.io/library/busybox:latest");
        assert_eq!(norm("busybox:1.36"), "docker.io/library/busybox:1.36");
        assert_eq!(norm("user/app"), "docker.io/user/app:latest");
        assert_eq!(
            norm("index.docker.io/library/alpine"),
            "docker.io/library/alpine:latest"
        );
        assert_eq!(norm("localhost/x"), "localhost/x:latest");
        assert_eq!(norm("localhost:5000/x"), "localhost:5000/x:latest");
        assert_eq!(norm("127.0.0.1:5000/a/b/c:v1"), "127.0.0.1:5000/a/b/c:v1");
        assert_eq!(norm("quay.io/org/img:tag"), "quay.io/org/img:tag");
        assert_eq!(
            norm(&format!("busybox@{d}")),
            format!("docker.io/library/busybox@{d}")
        );
        assert_eq!(
            norm(&format!("busybox:1@{d}")),
            format!("docker.io/library/busybox:1@{d}")
        );
        assert_eq!(
            "busybox".parse::<Reference>().unwrap().familiar(),
            "busybox:latest"
        );
        assert_eq!("a/b:1".parse::<Reference>().unwrap().familiar(), "a/b:1");
        let r: Reference = "localhost:5000/x/y:t".parse().unwrap();
        assert_eq!(
            (r.registry(), r.repository(), r.tag()),
            ("localhost:5000", "x/y", Some("t"))
        );
    }

    #[test]
    fn rejects_malformed() {
        for bad in [
            "",
            "Busybox",
            "busybox:",
            "busybox:-x",
            "a//b",
            "a/",
            "-a",
            "a--",
            "a..b",
            "busybox@sha256:abc",
            "busybox@md5:d41d8cd98f00b204e9800998ecf8427e",
            "host:99999999/x",
            "a/b:c:d",
            &"a".repeat(300),
        ] {
            assert!(bad.parse::<Reference>().is_err(), "{bad:?} accepted");
        }
        assert!("a-b__c/e---f.g".parse::<Reference>().is_ok());
    }
}
