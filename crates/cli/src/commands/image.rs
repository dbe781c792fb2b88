//! Image commands: `pull`, `images`, `rmi`, `load`, `save`, `import`, `image inspect`,
//! `system prune` (docker/podman flag names). Parsing and printing only; the work is in
//! berth-image.

use std::path::{Path, PathBuf};

use anyhow::Context;
use berth_image::{ArchiveFormat, Credentials, PullOptions, Reference, Store};

/// Where the image store lives; shared by every image command.
#[derive(clap::Args, Debug)]
pub struct StoreArgs {
    /// Image store directory (OCI layout, snapshots, container layers).
    #[arg(long, default_value = "/var/lib/berth", env = "BERTH_DATA_ROOT")]
    pub data_root: PathBuf,
}

impl StoreArgs {
    fn open(&self) -> anyhow::Result<Store> {
        Ok(Store::open(&self.data_root)?)
    }
}

#[derive(clap::Args, Debug)]
pub struct PullArgs {
    /// Image to pull, e.g. busybox, localhost:5000/app:1, name@sha256:...
    pub image: String,
    /// Registry reached over plain HTTP (repeatable); loopback registries always are.
    #[arg(long = "insecure-registry")]
    pub insecure_registry: Vec<String>,
    /// `--tls-verify=false` treats this image's registry as insecure (podman).
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    pub tls_verify: bool,
    /// Credentials as USERNAME:PASSWORD (otherwise from the auth file).
    #[arg(long)]
    pub creds: Option<String>,
    /// Docker-style auth file (default: $REGISTRY_AUTH_FILE, $DOCKER_CONFIG/config.json, ~/.docker/config.json).
    #[arg(long)]
    pub authfile: Option<PathBuf>,
    /// Platform to select from a multi-platform image, as os/arch (default: this host's).
    #[arg(long)]
    pub platform: Option<String>,
    /// Print only the image ID; no progress.
    #[arg(long, short = 'q')]
    pub quiet: bool,
    #[command(flatten)]
    pub store: StoreArgs,
}

pub fn pull(a: &PullArgs) -> anyhow::Result<u8> {
    let r: Reference = a.image.parse()?;
    let platform = a
        .platform
        .clone()
        .unwrap_or_else(|| format!("linux/{}", berth_image::oci::host_arch()));
    let (os, arch) = platform
        .split_once('/')
        .context("--platform: expected os/arch, e.g. linux/amd64")?;
    if os != "linux" {
        anyhow::bail!("--platform {platform}: only linux images can run here");
    }
    let credentials = match &a.creds {
        Some(c) => {
            let (u, p) = c
                .split_once(':')
                .context("--creds: expected USERNAME:PASSWORD")?;
            Some(Credentials {
                username: u.into(),
                password: p.into(),
            })
        }
        None => None,
    };
    let mut insecure = a.insecure_registry.clone();
    if !a.tls_verify {
        insecure.push(r.registry().to_string());
    }
    let opts = PullOptions {
        insecure_registries: insecure,
        credentials,
        auth_file: a.authfile.clone(),
        arch: arch.into(),
        progress: !a.quiet,
        ..Default::default()
    };
    let id = a.store.open()?.pull(&r, &opts)?;
    if !a.quiet {
        out!("Pulled {r}");
    }
    out!("{id}");
    Ok(0)
}

#[derive(clap::Args, Debug)]
pub struct LoginArgs {
    /// Registry host[:port] (default: Docker Hub).
    #[arg(default_value = berth_image::reference::DEFAULT_REGISTRY)]
    pub registry: String,
    #[arg(long, short = 'u')]
    pub username: String,
    /// Password on the command line (visible to other users in ps; prefer --password-stdin).
    #[arg(long, short = 'p', conflicts_with = "password_stdin")]
    pub password: Option<String>,
    /// Read the password from stdin (up to the first newline).
    #[arg(long)]
    pub password_stdin: bool,
    /// Registry reached over plain HTTP; loopback registries always are.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    pub tls_verify: bool,
    /// Docker-style auth file to write (default: $REGISTRY_AUTH_FILE, $DOCKER_CONFIG/config.json, ~/.docker/config.json).
    #[arg(long)]
    pub authfile: Option<PathBuf>,
}

pub fn login(a: &LoginArgs) -> anyhow::Result<u8> {
    let password = match (&a.password, a.password_stdin) {
        (Some(p), _) => p.clone(),
        (None, true) => {
            let mut line = String::new();
            std::io::stdin()
                .read_line(&mut line)
                .context("--password-stdin: reading stdin")?;
            line.trim_end_matches(['\n', '\r']).to_string()
        }
        (None, false) => {
            anyhow::bail!("login: give the password with --password-stdin (or --password)")
        }
    };
    if password.is_empty() {
        anyhow::bail!("login: the password is empty");
    }
    let creds = Credentials {
        username: a.username.clone(),
        password,
    };
    let opts = PullOptions {
        insecure_registries: if a.tls_verify {
            vec![]
        } else {
            vec![a.registry.clone()]
        },
        auth_file: a.authfile.clone(),
        ..Default::default()
    };
    let path = berth_image::login(&a.registry, &creds, &opts)?;
    out!(
        "Login Succeeded (credentials for {} stored in {})",
        a.registry,
        path.display()
    );
    Ok(0)
}

#[derive(clap::Args, Debug)]
pub struct LogoutArgs {
    /// Registry host[:port] (default: Docker Hub).
    #[arg(default_value = berth_image::reference::DEFAULT_REGISTRY)]
    pub registry: String,
    /// Docker-style auth file (default: as for login).
    #[arg(long)]
    pub authfile: Option<PathBuf>,
}

pub fn logout(a: &LogoutArgs) -> anyhow::Result<u8> {
    if berth_image::logout(&a.registry, a.authfile.as_deref())? {
        out!("Removed credentials for {}", a.registry);
        Ok(0)
    } else {
        anyhow::bail!("logout: not logged in to {}", a.registry)
    }
}

#[derive(clap::Args, Debug)]
pub struct ImagesArgs {
    /// Print only image IDs.
    #[arg(long, short = 'q')]
    pub quiet: bool,
    /// Do not truncate image IDs.
    #[arg(long)]
    pub no_trunc: bool,
    /// Output format.
    #[arg(long, value_parser = ["table", "json"], default_value = "table")]
    pub format: String,
    #[command(flatten)]
    pub store: StoreArgs,
}

fn short_id(id: &str, no_trunc: bool) -> String {
    if no_trunc {
        id.to_string()
    } else {
        id.trim_start_matches("sha256:").chars().take(12).collect()
    }
}

fn human_size(n: u64) -> String {
    let units = ["B", "kB", "MB", "GB", "TB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1000.0 && u < units.len() - 1 {
        v /= 1000.0;
        u += 1;
    }
    if u == 0 {
        format!("{n}B")
    } else {
        format!("{v:.3}{}", units[u]).replace(".000", "")
    }
}

/// A duration the way docker words it (go-units' HumanDuration): "3 minutes",
/// "About an hour", "2 days", "5 weeks".
pub(crate) fn human_duration(secs: i64) -> String {
    let hours = (secs + 1800) / 3600; // rounded, as Go's d.Round(time.Hour)
    match secs {
        i64::MIN..=0 => "Less than a second".into(),
        1 => "1 second".into(),
        2..=59 => format!("{secs} seconds"),
        60..=119 => "About a minute".into(),
        120..=3599 => format!("{} minutes", secs / 60),
        _ if hours == 1 => "About an hour".into(),
        _ if hours < 48 => format!("{hours} hours"),
        _ if hours < 24 * 7 * 2 => format!("{} days", hours / 24),
        _ if hours < 24 * 30 * 2 => format!("{} weeks", hours / 24 / 7),
        _ if hours < 24 * 365 * 2 => format!("{} months", hours / 24 / 30),
        _ => format!("{} years", secs / 3600 / 24 / 365),
    }
}

/// CREATED of `berth images`: "2 days ago", or "N/A" without a valid timestamp.
fn created_ago(created: Option<&str>, now: chrono::DateTime<chrono::Utc>) -> String {
    match created.and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok()) {
        Some(t) => format!(
            "{} ago",
            human_duration((now - t.with_timezone(&chrono::Utc)).num_seconds())
        ),
        None => "N/A".into(),
    }
}

pub fn images(a: &ImagesArgs) -> anyhow::Result<u8> {
    let list = a.store.open()?.list()?;
    if a.format == "json" {
        out!("{}", serde_json::to_string(&list)?);
        return Ok(0);
    }
    if a.quiet {
        for s in &list {
            out!("{}", short_id(&s.id.to_string(), a.no_trunc));
        }
        return Ok(0);
    }
    out!(
        "{:<40} {:<16} {:<14} {:<22} SIZE",
        "REPOSITORY",
        "TAG",
        "IMAGE ID",
        "CREATED"
    );
    for s in &list {
        let id = short_id(&s.id.to_string(), a.no_trunc);
        let created = created_ago(s.created.as_deref(), chrono::Utc::now());
        let size = human_size(s.size);
        let names: Vec<(String, String)> = s
            .names
            .iter()
            .filter_map(|n| n.parse::<Reference>().ok())
            .map(|r| {
                (
                    r.name(),
                    r.tag().map_or_else(|| "<none>".into(), str::to_string),
                )
            })
            .collect();
        if names.is_empty() {
            out!(
                "{:<40} {:<16} {id:<14} {created:<22} {size}",
                "<none>",
                "<none>"
            );
        }
        for (repo, tag) in names {
            out!("{repo:<40} {tag:<16} {id:<14} {created:<22} {size}");
        }
    }
    Ok(0)
}

#[derive(clap::Args, Debug)]
pub struct RmiArgs {
    /// Images to remove (names untag one name; IDs remove every name).
    #[arg(required = true)]
    pub images: Vec<String>,
    /// Remove even if a container was created from the image.
    #[arg(long, short = 'f')]
    pub force: bool,
    #[command(flatten)]
    pub store: StoreArgs,
}

pub fn rmi(a: &RmiArgs) -> anyhow::Result<u8> {
    let bundles = berth_engine::Bundles::new(&a.store.open()?)?;
    for i in &a.images {
        for name in bundles.remove_image(i, a.force)? {
            out!("Untagged: {name}");
        }
    }
    Ok(0)
}

#[derive(clap::Args, Debug)]
pub struct LoadArgs {
    /// Archive to load (oci-archive, docker-archive, OCI layout dir); stdin when omitted.
    #[arg(long, short = 'i')]
    pub input: Option<PathBuf>,
    /// Print only the image ID.
    #[arg(long, short = 'q')]
    pub quiet: bool,
    #[command(flatten)]
    pub store: StoreArgs,
}

/// Load `path`, or stdin copied to a temp file (archives are read twice).
fn import_from(
    store: &Store,
    path: Option<&Path>,
    name: Option<&Reference>,
) -> anyhow::Result<berth_image::ImageId> {
    match path {
        Some(p) => Ok(store.import(p, name)?),
        None => {
            let tmp = store
                .root()
                .join("tmp")
                .join(format!("stdin-{}", std::process::id()));
            let copied = std::fs::File::create(&tmp)
                .and_then(|mut f| std::io::copy(&mut std::io::stdin().lock(), &mut f))
                .with_context(|| format!("{}: copying stdin", tmp.display()));
            let result = copied.and_then(|_| Ok(store.import(&tmp, name)?));
            let _ = std::fs::remove_file(&tmp);
            result
        }
    }
}

pub fn load(a: &LoadArgs) -> anyhow::Result<u8> {
    let store = a.store.open()?;
    let id = import_from(&store, a.input.as_deref(), None)?;
    if a.quiet {
        out!("{id}");
    } else {
        out!("Loaded image: {id}");
    }
    Ok(0)
}

#[derive(clap::Args, Debug)]
pub struct SaveArgs {
    /// Image to save.
    pub image: String,
    /// File to write.
    #[arg(long, short = 'o', required = true)]
    pub output: PathBuf,
    /// Archive format (podman's names).
    #[arg(long, value_parser = ["oci-archive", "docker-archive"], default_value = "docker-archive")]
    pub format: String,
    #[command(flatten)]
    pub store: StoreArgs,
}

pub fn save(a: &SaveArgs) -> anyhow::Result<u8> {
    let format = if a.format == "oci-archive" {
        ArchiveFormat::OciArchive
    } else {
        ArchiveFormat::DockerArchive
    };
    a.store.open()?.save(&a.image, &a.output, format)?;
    Ok(0)
}

#[derive(clap::Args, Debug)]
pub struct ImportArgs {
    /// Rootfs tarball or directory (or any archive `load` accepts); `-` for stdin.
    pub source: String,
    /// Name for the new image.
    pub reference: Option<String>,
    #[command(flatten)]
    pub store: StoreArgs,
}

pub fn import(a: &ImportArgs) -> anyhow::Result<u8> {
    let store = a.store.open()?;
    let name = a
        .reference
        .as_deref()
        .map(str::parse::<Reference>)
        .transpose()?;
    let path = (a.source != "-").then(|| PathBuf::from(&a.source));
    out!("{}", import_from(&store, path.as_deref(), name.as_ref())?);
    Ok(0)
}

#[derive(clap::Args, Debug)]
pub struct ImageArgs {
    #[command(subcommand)]
    pub command: ImageCommand,
}

#[derive(clap::Subcommand, Debug)]
pub enum ImageCommand {
    /// Print images' configuration as JSON.
    Inspect(InspectArgs),
    /// List images (same as `images`).
    Ls(ImagesArgs),
    /// Remove images (same as `rmi`).
    Rm(RmiArgs),
    /// Remove dangling (or with -a unused) images, then unused blobs and snapshots.
    Prune(PruneArgs),
}

#[derive(clap::Args, Debug)]
pub struct InspectArgs {
    #[arg(required = true)]
    pub images: Vec<String>,
    #[command(flatten)]
    pub store: StoreArgs,
}

pub fn image(a: &ImageArgs) -> anyhow::Result<u8> {
    match &a.command {
        ImageCommand::Inspect(i) => {
            let store = i.store.open()?;
            let infos = i
                .images
                .iter()
                .map(|n| store.inspect(n))
                .collect::<Result<Vec<_>, _>>()?;
            out!("{}", serde_json::to_string_pretty(&infos)?);
            Ok(0)
        }
        ImageCommand::Ls(l) => images(l),
        ImageCommand::Rm(r) => rmi(r),
        ImageCommand::Prune(p) => prune(p),
    }
}

#[derive(clap::Args, Debug)]
pub struct SystemArgs {
    #[command(subcommand)]
    pub command: SystemCommand,
}

#[derive(clap::Subcommand, Debug)]
pub enum SystemCommand {
    /// Remove dangling (or with -a unused) images, then blobs and snapshots nothing uses.
    Prune(PruneArgs),
}

#[derive(clap::Args, Debug)]
pub struct PruneArgs {
    /// Remove every image no container was created from, not just dangling ones.
    #[arg(long, short = 'a')]
    pub all: bool,
    /// Do not prompt (berth never prompts; accepted for docker compatibility).
    #[arg(long, short = 'f')]
    pub force: bool,
    #[command(flatten)]
    pub store: StoreArgs,
    #[command(flatten)]
    pub net: super::container::NetFlags,
}

/// `system prune`: first the network state crashed containers left (`image prune`
/// passes no runtime root and skips it), then images, blobs and snapshots.
pub fn prune_all(root: &std::path::Path, a: &PruneArgs) -> anyhow::Result<u8> {
    let engine = super::container::engine_with_flags(&a.store.data_root, root, &a.net)?;
    for id in engine.reclaim_network(true)? {
        out!("Reclaimed network of: {id}");
    }
    prune(a)
}

pub fn prune(a: &PruneArgs) -> anyhow::Result<u8> {
    let bundles = berth_engine::Bundles::new(&a.store.open()?)?;
    for id in bundles.prune_images(a.all)? {
        out!("Deleted: {id}");
    }
    let (r, containers_removed) = bundles.prune()?;
    if containers_removed > 0 {
        out!("Deleted {containers_removed} containers whose creation was interrupted");
    }
    out!(
        "Deleted {} blobs and {} snapshots\nTotal reclaimed space: {}",
        r.blobs_removed,
        r.snapshots_removed,
        human_size(r.bytes_freed)
    );
    Ok(0)
}

pub fn system(root: &std::path::Path, a: &SystemArgs) -> anyhow::Result<u8> {
    match &a.command {
        SystemCommand::Prune(p) => prune_all(root, p),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_like_docker() {
        for (secs, want) in [
            (-5, "Less than a second"),
            (0, "Less than a second"),
            (1, "1 second"),
            (59, "59 seconds"),
            (60, "About a minute"),
            (119, "About a minute"),
            (180, "3 minutes"),
            (3599, "59 minutes"),
            (3600, "About an hour"),
            (5399, "About an hour"),
            (5400, "2 hours"),
            (47 * 3600, "47 hours"),
            (2 * 86400, "2 days"),
            (13 * 86400, "13 days"),
            (14 * 86400, "2 weeks"),
            (59 * 86400, "8 weeks"),
            (60 * 86400, "2 months"),
            (729 * 86400, "24 months"),
            (730 * 86400, "2 years"),
        ] {
            assert_eq!(human_duration(secs), want, "{secs} s");
        }
    }

    #[test]
    fn created_column() {
        let now = chrono::DateTime::parse_from_rfc3339("2026-01-03T00:03:00Z")
            .unwrap()
            .with_timezone(&chrono::Utc);
        assert_eq!(
            created_ago(Some("2026-01-03T00:00:00Z"), now),
            "3 minutes ago"
        );
        assert_eq!(
            created_ago(Some("2026-01-01T00:03:00+00:00"), now),
            "2 days ago"
        );
        assert_eq!(
            created_ago(Some("1970-01-01T00:00:00Z"), now),
            "56 years ago"
        );
        assert_eq!(created_ago(Some("yesterday"), now), "N/A");
        assert_eq!(created_ago(None, now), "N/A");
    }
}
