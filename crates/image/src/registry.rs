//! Pull over the OCI distribution API with a blocking HTTP client (no async runtime).
//!
//! Every response is untrusted: manifests are hashed and checked against the digest that
//! named them (and the reference's pinned digest), blobs are streamed into the store,
//! which checks digest and size before anything becomes visible; a registry that sends
//! more bytes than the descriptor's size is cut off at size + 1.
//!
//! Auth follows the registry's `WWW-Authenticate` challenge: `Basic` (credentials sent to
//! the registry) or `Bearer` (credentials, if any, sent to the token realm for a
//! `repository:<name>:pull` token). Credentials come from [`PullOptions::credentials`] or a
//! Docker-style `config.json`. Redirects (blob storage) never carry the Authorization
//! header to another host.

use std::collections::HashMap;
use std::io::{IsTerminal, Read};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use base64::Engine as _;

use crate::digest::Digest;
use crate::error::{from_json, Error, Result};
use crate::oci::{self, Compression, Descriptor, ImageConfig, Index, Manifest};
use crate::reference::Reference;
use crate::registries_conf::RegistriesConf;
use crate::store::{Image, ImageId, Store};

use crate::oci::MAX_MANIFEST_BYTES as MAX_MANIFEST;
const MANIFEST_ACCEPT: &str = "application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json, \
application/vnd.docker.distribution.manifest.v2+json, application/vnd.docker.distribution.manifest.list.v2+json";

/// A username and password (or identity token) for a registry.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    pub username: String,
    pub password: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("username", &self.username)
            .finish_non_exhaustive()
    }
}

impl Credentials {
    /// Look up `registry` in a Docker-style auth file (`{"auths": {"host": {"auth":
    /// base64("user:pass")}}}`); keys may be bare hosts or URLs.
    pub fn from_auth_file(path: &Path, registry: &str) -> Result<Option<Credentials>> {
        let bytes = match std::fs::read(path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => {
                return Err(Error::Io {
                    path: path.to_path_buf(),
                    source: e,
                })
            }
        };
        let v: serde_json::Value = from_json(&bytes, &path.display().to_string())?;
        let Some(auths) = v.get("auths").and_then(|a| a.as_object()) else {
            return Ok(None);
        };
        for (key, entry) in auths {
            if !auth_key_names(key, registry) {
                continue;
            }
            let bad = |reason: &str| Error::Registry {
                registry: registry.to_string(),
                reason: format!("{}: auths.{key}: {reason}", path.display()),
            };
            if let Some(auth) = entry
                .get("auth")
                .and_then(|a| a.as_str())
                .filter(|a| !a.is_empty())
            {
                let decoded = base64::engine::general_purpose::STANDARD
                    .decode(auth)
                    .map_err(|_| bad("auth is not base64"))?;
                let s = String::from_utf8(decoded).map_err(|_| bad("auth is not UTF-8"))?;
                let (u, p) = s
                    .split_once(':')
                    .ok_or_else(|| bad("auth is not user:password"))?;
                return Ok(Some(Credentials {
                    username: u.into(),
                    password: p.into(),
                }));
            }
            if let (Some(u), Some(p)) = (
                entry.get("username").and_then(|x| x.as_str()),
                entry.get("password").and_then(|x| x.as_str()),
            ) {
                return Ok(Some(Credentials {
                    username: u.into(),
                    password: p.into(),
                }));
            }
        }
        Ok(None)
    }
}

/// Whether an `auths` key of a Docker-style auth file (a bare host or a URL) names
/// `registry`; Docker Hub is known under several names.
fn auth_key_names(key: &str, registry: &str) -> bool {
    let host = key
        .trim_start_matches("https://")
        .trim_start_matches("http://");
    let host = host.split('/').next().unwrap_or(host);
    let wanted: &[&str] = if registry == crate::reference::DEFAULT_REGISTRY {
        &[
            "https://index.docker.io/v1/",
            "index.docker.io",
            "docker.io",
            "registry-1.docker.io",
        ]
    } else {
        &[registry]
    };
    wanted.iter().any(|w| *w == key || *w == host)
}

/// The auth file `login` writes: the explicit one, else the default lookup order.
fn auth_file_for(registry: &str, explicit: Option<&Path>) -> Result<PathBuf> {
    explicit
        .map(Path::to_path_buf)
        .or_else(default_auth_file)
        .ok_or_else(|| Error::Registry {
            registry: registry.to_string(),
            reason: "no auth file: set HOME or DOCKER_CONFIG, or pass --authfile".into(),
        })
}

/// `berth login`: checks `creds` against the registry's /v2/ endpoint (answering its Basic
/// or Bearer challenge with them), then stores them in the Docker-style auth file, keeping
/// its other entries. Returns the file written.
pub fn login(registry: &str, creds: &Credentials, opts: &PullOptions) -> Result<PathBuf> {
    let path = auth_file_for(registry, opts.auth_file.as_deref())?;
    let check = PullOptions {
        credentials: Some(creds.clone()),
        ..opts.clone()
    };
    let client = Client::connect(registry, "", &check)?;
    client.get_url(&format!("{}/v2/", client.base), "application/json")?;
    let key = if registry == crate::reference::DEFAULT_REGISTRY {
        "https://index.docker.io/v1/"
    } else {
        registry
    };
    let auth = base64::engine::general_purpose::STANDARD
        .encode(format!("{}:{}", creds.username, creds.password));
    edit_auth_file(&path, registry, |auths| {
        auths.retain(|k, _| !auth_key_names(k, registry));
        auths.insert(key.to_string(), serde_json::json!({ "auth": auth }));
    })?;
    Ok(path)
}

/// `berth logout`: removes the registry's credentials; false when it had none.
pub fn logout(registry: &str, auth_file: Option<&Path>) -> Result<bool> {
    let path = auth_file_for(registry, auth_file)?;
    if !path.exists() {
        return Ok(false);
    }
    let mut removed = false;
    edit_auth_file(&path, registry, |auths| {
        let before = auths.len();
        auths.retain(|k, _| !auth_key_names(k, registry));
        removed = auths.len() != before;
    })?;
    Ok(removed)
}

/// Rewrites the `auths` object of a Docker-style auth file (created if missing) and keeps
/// every other key; atomic (temp file, fsync, rename) and readable only by its owner.
fn edit_auth_file(
    path: &Path,
    registry: &str,
    edit: impl FnOnce(&mut serde_json::Map<String, serde_json::Value>),
) -> Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _};
    let io = |e: std::io::Error| Error::Io {
        path: path.to_path_buf(),
        source: e,
    };
    let mut doc: serde_json::Value = match std::fs::read(path) {
        Ok(b) => from_json(&b, &path.display().to_string())?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => serde_json::json!({}),
        Err(e) => return Err(io(e)),
    };
    let bad = || Error::Registry {
        registry: registry.to_string(),
        reason: format!(
            "{}: not a JSON object with an \"auths\" object",
            path.display()
        ),
    };
    let top = doc.as_object_mut().ok_or_else(bad)?;
    let auths = top
        .entry("auths")
        .or_insert_with(|| serde_json::json!({}))
        .as_object_mut()
        .ok_or_else(bad)?;
    edit(auths);
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(io)?;
    let tmp = dir.join(format!(
        ".{}.berth-tmp",
        path.file_name().unwrap_or_default().to_string_lossy()
    ));
    let write = || -> std::io::Result<()> {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(&serde_json::to_vec_pretty(&doc).expect("JSON serializes"))?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    };
    write().map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        io(e)
    })
}

/// How to pull.
#[derive(Clone, Debug)]
pub struct PullOptions {
    /// Registries (`host[:port]`) reached over plain HTTP. Loopback registries
    /// (`localhost`, `127.0.0.0/8`, `::1`) are always treated as insecure, as Docker does.
    pub insecure_registries: Vec<String>,
    /// Explicit credentials; otherwise looked up in `auth_file`.
    pub credentials: Option<Credentials>,
    /// Docker-style auth file; defaults to `$REGISTRY_AUTH_FILE`, then
    /// `$DOCKER_CONFIG/config.json`, then `~/.docker/config.json`.
    pub auth_file: Option<PathBuf>,
    /// Architecture to select from a multi-platform index (GOARCH name).
    pub arch: String,
    /// Layers downloaded at once.
    pub parallel: usize,
    /// Draw progress bars (only ever when stderr is a terminal).
    pub progress: bool,
    /// A transfer that receives nothing for this long fails (naming the blob) instead
    /// of waiting forever; default 30 s, or `BERTH_PULL_STALL_TIMEOUT` seconds.
    pub stall_timeout: Duration,
    /// Mirrors, locations and blocks; `None` reads registries.conf
    /// ([`RegistriesConf::load_default`]) at each pull.
    pub registries_conf: Option<RegistriesConf>,
}

/// Default of [`PullOptions::stall_timeout`].
pub const DEFAULT_STALL_TIMEOUT: Duration = Duration::from_secs(30);
/// Environment variable overriding [`DEFAULT_STALL_TIMEOUT`] (seconds, fractions allowed).
pub const STALL_TIMEOUT_ENV: &str = "BERTH_PULL_STALL_TIMEOUT";

/// The stall timeout from [`STALL_TIMEOUT_ENV`], else the default; a value that is not a
/// positive number of seconds is ignored with a warning.
pub fn stall_timeout_from_env() -> Duration {
    let Ok(v) = std::env::var(STALL_TIMEOUT_ENV) else {
        return DEFAULT_STALL_TIMEOUT;
    };
    match v.trim().parse::<f64>() {
        Ok(secs) if secs > 0.0 && secs.is_finite() => Duration::from_secs_f64(secs),
        _ => {
            tracing::warn!(
                value = v,
                "{STALL_TIMEOUT_ENV}: not a positive number of seconds; using 30"
            );
            DEFAULT_STALL_TIMEOUT
        }
    }
}

impl Default for PullOptions {
    fn default() -> Self {
        PullOptions {
            insecure_registries: Vec::new(),
            credentials: None,
            auth_file: None,
            arch: oci::host_arch().to_string(),
            parallel: 3,
            progress: true,
            stall_timeout: stall_timeout_from_env(),
            registries_conf: None,
        }
    }
}

fn default_auth_file() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("REGISTRY_AUTH_FILE") {
        return Some(PathBuf::from(p));
    }
    if let Some(d) = std::env::var_os("DOCKER_CONFIG") {
        return Some(PathBuf::from(d).join("config.json"));
    }
    std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".docker/config.json"))
}

fn is_loopback(registry: &str) -> bool {
    let host = registry.rsplit_once(':').map_or(registry, |(h, p)| {
        if p.bytes().all(|b| b.is_ascii_digit()) {
            h
        } else {
            registry
        }
    });
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// Parse `Bearer realm="x",service="y"` into its scheme and parameters.
fn parse_challenge(h: &str) -> (String, HashMap<String, String>) {
    let (scheme, rest) = h.trim().split_once(' ').unwrap_or((h.trim(), ""));
    let mut params = HashMap::new();
    let mut rest = rest.trim();
    while !rest.is_empty() {
        let Some((k, v)) = rest.split_once('=') else {
            break;
        };
        let k = k.trim().trim_start_matches(',').trim().to_ascii_lowercase();
        let v = v.trim_start();
        let (val, after) = if let Some(q) = v.strip_prefix('"') {
            let end = q.find('"').unwrap_or(q.len());
            (q[..end].to_string(), q.get(end + 1..).unwrap_or(""))
        } else {
            let end = v.find(',').unwrap_or(v.len());
            (v[..end].trim().to_string(), &v[end..])
        };
        params.insert(k, val);
        rest = after.trim_start_matches([',', ' ']);
    }
    (scheme.to_ascii_lowercase(), params)
}

/// A registry connection for one repository.
struct Client {
    agent: ureq::Agent,
    base: String,
    registry: String,
    repository: String,
    creds: Option<Credentials>,
    /// The Authorization header value once a challenge was answered.
    authorization: Mutex<Option<String>>,
    stall_timeout: Duration,
}

type Response = ureq::http::Response<ureq::Body>;

impl Client {
    fn new(r: &Reference, opts: &PullOptions) -> Result<Client> {
        Client::connect(r.registry(), r.repository(), opts)
    }

    /// A client for `repository` on `registry` (an empty repository for registry-wide
    /// requests such as the /v2/ check of `login`).
    fn connect(registry: &str, repository: &str, opts: &PullOptions) -> Result<Client> {
        let insecure =
            is_loopback(registry) || opts.insecure_registries.iter().any(|i| i == registry);
        let host = if registry == crate::reference::DEFAULT_REGISTRY {
            "registry-1.docker.io"
        } else {
            registry
        };
        let creds = match &opts.credentials {
            Some(c) => Some(c.clone()),
            None => match opts.auth_file.clone().or_else(default_auth_file) {
                Some(p) => Credentials::from_auth_file(&p, registry)?,
                None => None,
            },
        };
        // Per read/write, not per transfer: a large blob may take as long as it needs
        // while bytes keep coming; a registry that stops sending trips it.
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_connect(Some(Duration::from_secs(30)))
            .timeout_per_read(Some(opts.stall_timeout))
            .timeout_per_write(Some(opts.stall_timeout))
            .user_agent("berth")
            .build()
            .into();
        Ok(Client {
            agent,
            base: format!("{}://{host}", if insecure { "http" } else { "https" }),
            registry: registry.to_string(),
            repository: repository.to_string(),
            creds,
            authorization: Mutex::new(None),
            stall_timeout: opts.stall_timeout,
        })
    }

    fn err(&self, reason: impl Into<String>) -> Error {
        Error::Registry {
            registry: self.registry.clone(),
            reason: reason.into(),
        }
    }

    fn send(&self, url: &str, accept: &str) -> Result<Response> {
        let mut req = self.agent.get(url).header("Accept", accept);
        if let Some(a) = self.authorization.lock().expect("auth lock").clone() {
            req = req.header("Authorization", a);
        }
        req.call().map_err(|e| self.err(format!("GET {url}: {e}")))
    }

    /// GET `path` under /v2/<repository>/, answering one auth challenge if needed.
    fn get(&self, path: &str, accept: &str) -> Result<Response> {
        self.get_url(
            &format!("{}/v2/{}/{path}", self.base, self.repository),
            accept,
        )
    }

    fn get_url(&self, url: &str, accept: &str) -> Result<Response> {
        let url = url.to_string();
        let resp = self.send(&url, accept)?;
        if resp.status().as_u16() != 401 {
            return self.check(resp, &url);
        }
        let challenge = resp
            .headers()
            .get("www-authenticate")
            .and_then(|h| h.to_str().ok())
            .ok_or_else(|| self.err(format!("GET {url}: 401 without WWW-Authenticate")))?
            .to_string();
        self.authenticate(&challenge)?;
        let resp = self.send(&url, accept)?;
        self.check(resp, &url)
    }

    fn check(&self, resp: Response, url: &str) -> Result<Response> {
        match resp.status().as_u16() {
            200..=299 => Ok(resp),
            401 | 403 => Err(self.err(format!(
                "GET {url}: access denied ({}); check credentials",
                resp.status()
            ))),
            404 => Err(self.err(format!("GET {url}: not found"))),
            s => Err(self.err(format!("GET {url}: HTTP {s}"))),
        }
    }

    fn basic(&self) -> Option<String> {
        self.creds.as_ref().map(|c| {
            format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD
                    .encode(format!("{}:{}", c.username, c.password))
            )
        })
    }

    fn authenticate(&self, challenge: &str) -> Result<()> {
        let (scheme, params) = parse_challenge(challenge);
        let header = match scheme.as_str() {
            "basic" => self.basic().ok_or_else(|| {
                self.err("registry requires credentials (basic auth); none configured")
            })?,
            "bearer" => {
                let realm = params
                    .get("realm")
                    .ok_or_else(|| self.err("bearer challenge without realm"))?;
                if !(realm.starts_with("https://") || realm.starts_with("http://")) {
                    return Err(self.err(format!("token realm {realm:?} is not an http(s) URL")));
                }
                // Registry-wide requests (login's /v2/ check) ask for no scope.
                let scope = params.get("scope").cloned().or_else(|| {
                    (!self.repository.is_empty())
                        .then(|| format!("repository:{}:pull", self.repository))
                });
                let mut req = self.agent.get(realm.as_str());
                if let Some(scope) = &scope {
                    req = req.query("scope", scope);
                }
                if let Some(service) = params.get("service") {
                    req = req.query("service", service);
                }
                if let Some(b) = self.basic() {
                    req = req.header("Authorization", b);
                }
                let mut resp = req
                    .call()
                    .map_err(|e| self.err(format!("token request to {realm}: {e}")))?;
                if !resp.status().is_success() {
                    return Err(self.err(format!(
                        "token request to {realm}: HTTP {}; check credentials",
                        resp.status()
                    )));
                }
                let body = resp
                    .body_mut()
                    .with_config()
                    .limit(MAX_MANIFEST)
                    .read_to_vec()
                    .map_err(|e| self.err(format!("token response: {e}")))?;
                let v: serde_json::Value = from_json(&body, "token response")?;
                let token = v
                    .get("token")
                    .or_else(|| v.get("access_token"))
                    .and_then(|t| t.as_str())
                    .ok_or_else(|| self.err("token response has no token"))?;
                format!("Bearer {token}")
            }
            other => return Err(self.err(format!("unsupported auth scheme {other:?}"))),
        };
        *self.authorization.lock().expect("auth lock") = Some(header);
        Ok(())
    }

    /// Fetch a manifest or index by tag or digest; verify it when a digest is known.
    fn manifest(
        &self,
        selector: &str,
        expected: Option<&Digest>,
    ) -> Result<(String, Vec<u8>, Digest)> {
        let mut resp = self.get(&format!("manifests/{selector}"), MANIFEST_ACCEPT)?;
        let content_type = resp
            .headers()
            .get("content-type")
            .and_then(|h| h.to_str().ok())
            .unwrap_or("")
            .to_string();
        let body = resp
            .body_mut()
            .with_config()
            .limit(MAX_MANIFEST)
            .read_to_vec()
            .map_err(|e| self.err(format!("manifest {selector}: {e}")))?;
        let digest = Digest::of(&body);
        if let Some(want) = expected {
            if &digest != want {
                return Err(Error::DigestMismatch {
                    expected: want.clone(),
                    actual: digest,
                });
            }
        }
        // Prefer the document's own mediaType; fall back to the Content-Type header.
        let media_type = serde_json::from_slice::<serde_json::Value>(&body)
            .ok()
            .and_then(|v| {
                v.get("mediaType")
                    .and_then(|m| m.as_str())
                    .map(str::to_string)
            })
            .unwrap_or_else(|| {
                content_type
                    .split(';')
                    .next()
                    .unwrap_or("")
                    .trim()
                    .to_string()
            });
        Ok((media_type, body, digest))
    }

    /// Stream a blob into the store, verified against its descriptor.
    fn blob(
        &self,
        store: &Store,
        d: &Descriptor,
        bar: Option<&indicatif::ProgressBar>,
    ) -> Result<()> {
        if store.has_blob(&d.digest) {
            if let Some(b) = bar {
                b.finish_with_message("exists");
            }
            return Ok(());
        }
        let resp = self.get(&format!("blobs/{}", d.digest), "*/*")?;
        let failed = std::cell::RefCell::new(None);
        let reader = ReadErrors {
            inner: resp.into_body().into_reader().take(d.size + 1),
            failed: &failed,
        };
        let mut reader: Box<dyn Read> = match bar {
            Some(b) => Box::new(b.wrap_read(reader)),
            None => Box::new(reader),
        };
        // The store removes its ingest temp file when this fails: nothing partial stays.
        let stored = store.write_blob(&mut reader, Some((&d.digest, d.size)));
        drop(reader);
        if let (Err(_), Some(e)) = (&stored, failed.into_inner()) {
            let timed_out = e.kind() == std::io::ErrorKind::TimedOut
                || e.get_ref()
                    .and_then(|i| i.downcast_ref::<ureq::Error>())
                    .is_some_and(|u| matches!(u, ureq::Error::Timeout(_)));
            let what = if timed_out {
                format!(
                    "stalled: nothing received for {:?} ({STALL_TIMEOUT_ENV} sets the limit)",
                    self.stall_timeout
                )
            } else {
                e.to_string()
            };
            return Err(self.err(format!("blob {}: {what}", d.digest)));
        }
        stored?;
        if let Some(b) = bar {
            b.finish_with_message("done");
        }
        Ok(())
    }
}

/// Remembers the first error of the body reader, so a failed transfer is reported as
/// the registry's fault (which blob, why) rather than as a write to the ingest file.
struct ReadErrors<'a, R> {
    inner: R,
    failed: &'a std::cell::RefCell<Option<std::io::Error>>,
}

impl<R: Read> Read for ReadErrors<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.inner.read(buf).map_err(|e| {
            let copy = std::io::Error::new(e.kind(), e.to_string());
            self.failed.borrow_mut().get_or_insert(e);
            copy
        })
    }
}

impl Store {
    /// Pull `r` from its registry into the store and tag it; returns the image ID.
    /// Where it is pulled from follows registries.conf ([`crate::registries_conf`]):
    /// mirrors in order, then the location; the image is named `r` whichever served it.
    pub fn pull(&self, r: &Reference, opts: &PullOptions) -> Result<ImageId> {
        let _gc = self.gc_lock(false)?;
        let conf = match &opts.registries_conf {
            Some(c) => c.clone(),
            None => RegistriesConf::load_default()?,
        };
        let endpoints = conf.endpoints(r)?;
        let last = endpoints.len() - 1;
        for (i, ep) in endpoints.into_iter().enumerate() {
            let mut ep_opts = opts.clone();
            if ep.insecure {
                ep_opts
                    .insecure_registries
                    .push(ep.reference.registry().to_string());
            }
            match self.pull_from(&ep.reference, r, &ep_opts) {
                Err(e) if i < last => {
                    tracing::warn!(mirror = %ep.reference, error = %e, "mirror failed; trying the next");
                }
                done => return done,
            }
        }
        unreachable!("endpoints() returns at least the location")
    }

    /// Pull `source` (one endpoint) and record it under the name `r`.
    fn pull_from(&self, source: &Reference, r: &Reference, opts: &PullOptions) -> Result<ImageId> {
        let client = Client::new(source, opts)?;
        let (mut media_type, mut body, mut digest) =
            client.manifest(&source.manifest_selector(), source.digest())?;
        if media_type == oci::OCI_INDEX || media_type == oci::DOCKER_MANIFEST_LIST {
            let index: Index = from_json(&body, &format!("index {digest}"))?;
            let chosen = index
                .select_platform(&opts.arch)
                .ok_or_else(|| {
                    client.err(format!(
                        "{r}: no image for linux/{} in the index",
                        opts.arch
                    ))
                })?
                .clone();
            (media_type, body, digest) =
                client.manifest(&chosen.digest.to_string(), Some(&chosen.digest))?;
        }
        if media_type != oci::OCI_MANIFEST && media_type != oci::DOCKER_MANIFEST {
            return Err(Error::UnsupportedMediaType(media_type));
        }
        let manifest: Manifest = from_json(&body, &format!("manifest {digest}"))?;
        for l in &manifest.layers {
            Compression::from_media_type(&l.media_type)?;
        }
        oci::check_config_size(&manifest.config)?;
        client.blob(self, &manifest.config, None)?;
        let config: ImageConfig = from_json(
            &self.read_blob(&manifest.config.digest)?,
            &format!("config {}", manifest.config.digest),
        )?;
        config.check_limits(&manifest.config.digest)?;
        if config.rootfs.diff_ids.len() != manifest.layers.len() {
            return Err(client.err(format!(
                "manifest {digest}: {} layers but config lists {} diff_ids",
                manifest.layers.len(),
                config.rootfs.diff_ids.len()
            )));
        }
        self.download_layers(&client, &manifest.layers, opts)?;
        let stored = self.write_blob_bytes(&body)?;
        debug_assert_eq!(stored, digest);
        self.record_image(
            &Descriptor::new(&media_type, digest, body.len() as u64),
            Some(r),
        )?;
        Ok(ImageId(manifest.config.digest))
    }

    /// The image `image` names, pulled first when the store lacks it (what `run` needs).
    pub fn find_or_pull(&self, image: &str, opts: &PullOptions) -> Result<Image> {
        match self.find(image) {
            Err(Error::ImageNotFound(_)) => {
                self.pull(&image.parse()?, opts)?;
                self.find(image)
            }
            found => found,
        }
    }

    /// Download layers with `opts.parallel` threads; the first error wins.
    fn download_layers(
        &self,
        client: &Client,
        layers: &[Descriptor],
        opts: &PullOptions,
    ) -> Result<()> {
        let multi =
            (opts.progress && std::io::stderr().is_terminal()).then(indicatif::MultiProgress::new);
        let style = indicatif::ProgressStyle::with_template(
            "{prefix} [{bar:30}] {bytes}/{total_bytes} {msg}",
        )
        .expect("static template")
        .progress_chars("=> ");
        let queue = Mutex::new(layers.iter().collect::<Vec<_>>());
        let first_err: Mutex<Option<Error>> = Mutex::new(None);
        std::thread::scope(|s| {
            for _ in 0..opts.parallel.clamp(1, 16).min(layers.len().max(1)) {
                s.spawn(|| loop {
                    if first_err.lock().expect("err lock").is_some() {
                        return;
                    }
                    let Some(d) = queue.lock().expect("queue lock").pop() else {
                        return;
                    };
                    let bar = multi.as_ref().map(|m| {
                        let b = m.add(indicatif::ProgressBar::new(d.size));
                        b.set_style(style.clone());
                        b.set_prefix(d.digest.hex()[..12].to_string());
                        b
                    });
                    if let Err(e) = client.blob(self, d, bar.as_ref()) {
                        first_err.lock().expect("err lock").get_or_insert(e);
                    }
                });
            }
        });
        match first_err.into_inner().expect("err lock") {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_auth_challenges() {
        let (s, p) = parse_challenge(
            r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/busybox:pull""#,
        );
        assert_eq!(s, "bearer");
        assert_eq!(p["realm"], "https://auth.docker.io/token");
        assert_eq!(p["service"], "registry.docker.io");
        assert_eq!(p["scope"], "repository:library/busybox:pull");
        let (s, p) = parse_challenge(r#"Basic realm="Registry Realm""#);
        assert_eq!(
            (s.as_str(), p["realm"].as_str()),
            ("basic", "Registry Realm")
        );
    }

    #[test]
    fn loopback_registries_are_insecure_by_default() {
        for r in [
            "localhost",
            "localhost:5000",
            "127.0.0.1:5000",
            "127.1.2.3",
            "[::1]:5000",
        ] {
            assert!(is_loopback(r), "{r}");
        }
        for r in ["docker.io", "10.0.0.1:5000", "example.com:443"] {
            assert!(!is_loopback(r), "{r}");
        }
    }

    #[test]
    fn reads_docker_auth_files() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("config.json");
        let enc = base64::engine::general_purpose::STANDARD.encode("alice:s3cret:x");
        std::fs::write(&p, format!(r#"{{"auths":{{"https://index.docker.io/v1/":{{"auth":"{enc}"}},"127.0.0.1:5000":{{"username":"bob","password":"pw"}},"bad.io":{{"auth":"!!"}}}}}}"#)).unwrap();
        let c = Credentials::from_auth_file(&p, "docker.io")
            .unwrap()
            .unwrap();
        assert_eq!(
            (c.username.as_str(), c.password.as_str()),
            ("alice", "s3cret:x")
        );
        assert_eq!(
            Credentials::from_auth_file(&p, "127.0.0.1:5000")
                .unwrap()
                .unwrap()
                .username,
            "bob"
        );
        assert!(Credentials::from_auth_file(&p, "quay.io")
            .unwrap()
            .is_none());
        assert!(Credentials::from_auth_file(&p, "bad.io").is_err());
        assert!(Credentials::from_auth_file(&d.path().join("missing"), "x")
            .unwrap()
            .is_none());
    }
}
