//! Pull against a real `docker-registry` (Debian's distribution 2.8) started by each test
//! on a free loopback port, with images pushed by skopeo. Bearer auth uses the registry's
//! real token verification; the token *issuer* is a small HTTP thread in the test that
//! signs JWTs with openssl (no token server package exists here).
#![allow(clippy::unwrap_used)] // tests unwrap freely; library code may not

mod common;

use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use base64::Engine as _;
use berth_image::oci::{self, Compression, Descriptor, Index, Manifest, Platform, RunConfig};
use berth_image::{Credentials, Digest, Error, PullOptions, Reference, Store};
use common::{tar, Entry};

const REGISTRY: &str = "/usr/bin/docker-registry";

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A registry process, killed and reaped on drop.
struct Registry {
    child: Child,
    addr: String,
    data: PathBuf,
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Start a registry with an optional `auth:` YAML block; None when the binary is missing.
fn start_registry(dir: &Path, auth_yaml: &str) -> Option<Registry> {
    if !Path::new(REGISTRY).exists() {
        eprintln!("SKIP: {REGISTRY} not installed (apt-get install docker-registry)");
        return None;
    }
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let data = dir.join("registry-data");
    let cfg = dir.join("registry.yml");
    fs::write(
        &cfg,
        format!(
            "version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: {addr}\n{auth_yaml}",
            data.display()
        ),
    )
    .unwrap();
    let child = Command::new(REGISTRY)
        .arg("serve")
        .arg(&cfg)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let reg = Registry { child, addr, data };
    // Readiness: wait until the port accepts connections (bounded; not a timing assertion).
    for _ in 0..600 {
        if TcpStream::connect(&reg.addr).is_ok() {
            return Some(reg);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("registry on {} never started listening", reg.addr);
}

fn skopeo_push(src: &str, dest: &str, extra: &[&str]) {
    let out = Command::new("skopeo")
        .args(["copy", "-q", "--dest-tls-verify=false"])
        .args(extra)
        .arg(src)
        .arg(dest)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "skopeo copy {src} {dest}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn opts() -> PullOptions {
    PullOptions {
        auth_file: Some(PathBuf::from("/nonexistent/berth-test-auth.json")),
        progress: false,
        ..Default::default()
    }
}

fn r(s: &str) -> Reference {
    s.parse().unwrap()
}

/// Turn a single-image layout into a two-platform index (amd64 = the real image, arm64 =
/// the same layers under another config) tagged `tag`.
fn make_multiarch(layout: &Path, tag: &str) -> Digest {
    let put = |b: &[u8]| {
        let d = Digest::of(b);
        fs::write(layout.join("blobs/sha256").join(d.hex()), b).unwrap();
        d
    };
    let index: Index =
        serde_json::from_slice(&fs::read(layout.join("index.json")).unwrap()).unwrap();
    let amd = index.manifests[0].clone();
    let m: Manifest = serde_json::from_slice(
        &fs::read(layout.join("blobs/sha256").join(amd.digest.hex())).unwrap(),
    )
    .unwrap();
    let mut cfg: serde_json::Value = serde_json::from_slice(
        &fs::read(layout.join("blobs/sha256").join(m.config.digest.hex())).unwrap(),
    )
    .unwrap();
    cfg["architecture"] = "arm64".into();
    let cb = serde_json::to_vec(&cfg).unwrap();
    let mut arm_m = m.clone();
    arm_m.config = Descriptor::new(oci::OCI_CONFIG, put(&cb), cb.len() as u64);
    let mb = serde_json::to_vec(&arm_m).unwrap();
    let plat = |a: &str| {
        Some(Platform {
            architecture: a.into(),
            os: "linux".into(),
            variant: None,
        })
    };
    let mut arm = Descriptor::new(oci::OCI_MANIFEST, put(&mb), mb.len() as u64);
    arm.platform = plat("arm64");
    let mut amd_d = Descriptor::new(oci::OCI_MANIFEST, amd.digest.clone(), amd.size);
    amd_d.platform = plat("amd64");
    // arm64 first, so picking the first entry would be wrong.
    let nested = Index {
        manifests: vec![arm, amd_d],
        ..Index::empty()
    };
    let nb = serde_json::to_vec(&nested).unwrap();
    let mut top = Descriptor::new(oci::OCI_INDEX, put(&nb), nb.len() as u64);
    top.annotations
        .insert(oci::ANNOTATION_REF_NAME.into(), tag.into());
    let mut new_index = index.clone();
    new_index.manifests.push(top);
    fs::write(
        layout.join("index.json"),
        serde_json::to_vec(&new_index).unwrap(),
    )
    .unwrap();
    m.config.digest
}

#[test]
fn anonymous_pull_of_oci_docker_index_and_every_compression() {
    let t = tempfile::tempdir().unwrap();
    let Some(reg) = start_registry(t.path(), "") else {
        return;
    };
    let layout = t.path().join("layout");
    common::busybox_layout(&layout, true);
    let amd_config = make_multiarch(&layout, "multi");
    let a = &reg.addr.clone();
    skopeo_push(
        &format!("oci:{}:latest", layout.display()),
        &format!("docker://{a}/test/busybox:oci"),
        &[],
    );
    skopeo_push(
        &format!("oci:{}:latest", layout.display()),
        &format!("docker://{a}/test/busybox:docker"),
        &["--format", "v2s2"],
    );
    skopeo_push(
        &format!("oci:{}:multi", layout.display()),
        &format!("docker://{a}/test/busybox:multi"),
        &["--all"],
    );
    let plain = t.path().join("plain");
    let raw1 = tar(&[Entry::file("zstd-file", b"from a zstd layer")]);
    let raw2 = tar(&[Entry::file("plain-file", b"from a plain layer")]);
    let cfg = RunConfig {
        cmd: Some(vec!["/x".into()]),
        ..Default::default()
    };
    common::build_layout(
        &plain,
        &[(raw1, Compression::Zstd), (raw2, Compression::None)],
        cfg,
        "latest",
    );
    // --preserve-digests: skopeo would otherwise gzip the plain layer.
    skopeo_push(
        &format!("oci:{}:latest", plain.display()),
        &format!("docker://{a}/test/mixed:1"),
        &["--preserve-digests"],
    );

    let store = Store::open(&t.path().join("store")).unwrap();
    let oci_id = store
        .pull(&r(&format!("{a}/test/busybox:oci")), &opts())
        .unwrap();
    assert_eq!(oci_id.0, amd_config);
    let docker_id = store
        .pull(&r(&format!("{a}/test/busybox:docker")), &opts())
        .unwrap();
    let docker_img = store.find(&format!("{a}/test/busybox:docker")).unwrap();
    assert_eq!(
        docker_img.manifest.media_type.as_deref(),
        Some(oci::DOCKER_MANIFEST)
    );
    assert_eq!(docker_img.id, docker_id);
    let multi_id = store
        .pull(&r(&format!("{a}/test/busybox:multi")), &opts())
        .unwrap();
    assert_eq!(multi_id.0, amd_config, "linux/amd64 chosen from the index");
    let arm = PullOptions {
        arch: "arm64".into(),
        ..opts()
    };
    assert_ne!(
        store
            .pull(&r(&format!("{a}/test/busybox:multi")), &arm)
            .unwrap()
            .0,
        amd_config
    );
    assert!(matches!(
        store.pull(
            &r(&format!("{a}/test/busybox:multi")),
            &PullOptions {
                arch: "s390x".into(),
                ..opts()
            }
        ),
        Err(Error::Registry { .. })
    ));

    // Pull by digest, verified against the reference.
    let by_digest = format!("{a}/test/busybox@{}", docker_img.manifest_digest);
    assert_eq!(store.pull(&r(&by_digest), &opts()).unwrap(), docker_id);

    store
        .pull(&r(&format!("{a}/test/mixed:1")), &opts())
        .unwrap();
    let out = t.path().join("mixed-rootfs");
    fs::create_dir(&out).unwrap();
    store
        .unpack_flat(&format!("{a}/test/mixed:1"), &out)
        .unwrap();
    assert_eq!(
        fs::read(out.join("zstd-file")).unwrap(),
        b"from a zstd layer"
    );
    assert_eq!(
        fs::read(out.join("plain-file")).unwrap(),
        b"from a plain layer"
    );

    // Pulled busybox runs from its unpacked layers.
    let rootfs = t.path().join("pulled-rootfs");
    fs::create_dir(&rootfs).unwrap();
    store
        .unpack_flat(&format!("{a}/test/busybox:oci"), &rootfs)
        .unwrap();
    let o = Command::new("chroot")
        .arg(&rootfs)
        .args(["/bin/busybox", "cat", "/opt/c"])
        .output()
        .unwrap();
    assert_eq!(o.stdout, b"c\n");
    assert!(matches!(
        store.pull(&r(&format!("{a}/test/missing:1")), &opts()),
        Err(Error::Registry { .. })
    ));

    // find_or_pull pulls what is missing, and afterwards needs no registry.
    let fresh = Store::open(&t.path().join("store2")).unwrap();
    let img = fresh
        .find_or_pull(&format!("{a}/test/busybox:oci"), &opts())
        .unwrap();
    assert_eq!(img.id.0, amd_config);
    drop(reg);
    assert_eq!(
        fresh
            .find_or_pull(&format!("{a}/test/busybox:oci"), &opts())
            .unwrap()
            .id,
        img.id
    );
}

#[test]
fn tampered_blob_in_registry_storage_is_rejected() {
    let t = tempfile::tempdir().unwrap();
    let Some(reg) = start_registry(t.path(), "") else {
        return;
    };
    let layout = t.path().join("layout");
    let raw = tar(&[Entry::file("f", &vec![b'a'; 4096])]);
    let layer = Digest::of(&raw);
    common::build_layout(
        &layout,
        &[(raw, Compression::None)],
        RunConfig::default(),
        "latest",
    );
    skopeo_push(
        &format!("oci:{}:latest", layout.display()),
        &format!("docker://{}/t/tamper:1", reg.addr),
        &["--preserve-digests"],
    );
    // The registry serves what is on its disk without checking it.
    let stored = reg
        .data
        .join("docker/registry/v2/blobs/sha256")
        .join(&layer.hex()[..2])
        .join(layer.hex())
        .join("data");
    let mut bytes = fs::read(&stored).unwrap();
    bytes[1000] = b'b';
    fs::write(&stored, bytes).unwrap();
    let store = Store::open(&t.path().join("store")).unwrap();
    let err = store
        .pull(&r(&format!("{}/t/tamper:1", reg.addr)), &opts())
        .unwrap_err();
    assert!(matches!(err, Error::DigestMismatch { .. }), "{err}");
    assert!(store.list().unwrap().is_empty());
    assert!(!store.has_blob(&layer));
}

fn htpasswd_line(user: &str, pass: &str) -> String {
    let out = Command::new("python3")
        .args(["-W", "ignore", "-c", "import crypt,sys; print(crypt.crypt(sys.argv[2], crypt.mksalt(crypt.METHOD_BLOWFISH)))", user, pass])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "bcrypt via python3 crypt: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    format!("{user}:{}", String::from_utf8(out.stdout).unwrap().trim())
}

#[test]
fn basic_auth_with_docker_config_credentials() {
    let t = tempfile::tempdir().unwrap();
    fs::write(
        t.path().join("htpasswd"),
        htpasswd_line("alice", "wonderland") + "\n",
    )
    .unwrap();
    let auth = format!(
        "auth:\n  htpasswd:\n    realm: berth-test\n    path: {}\n",
        t.path().join("htpasswd").display()
    );
    let Some(reg) = start_registry(t.path(), &auth) else {
        return;
    };
    let layout = t.path().join("layout");
    common::build_layout(
        &layout,
        &[(tar(&[Entry::file("secret", b"s")]), Compression::Gzip)],
        RunConfig::default(),
        "latest",
    );
    skopeo_push(
        &format!("oci:{}:latest", layout.display()),
        &format!("docker://{}/private/img:1", reg.addr),
        &["--dest-creds", "alice:wonderland"],
    );

    let store = Store::open(&t.path().join("store")).unwrap();
    let name = r(&format!("{}/private/img:1", reg.addr));
    let err = store.pull(&name, &opts()).unwrap_err();
    assert!(err.to_string().contains("credentials"), "{err}");
    let wrong = PullOptions {
        credentials: Some(Credentials {
            username: "alice".into(),
            password: "nope".into(),
        }),
        ..opts()
    };
    assert!(store.pull(&name, &wrong).is_err());

    let auth_file = t.path().join("config.json");
    let enc = base64::engine::general_purpose::STANDARD.encode("alice:wonderland");
    fs::write(
        &auth_file,
        format!(r#"{{"auths":{{"{}":{{"auth":"{enc}"}}}}}}"#, reg.addr),
    )
    .unwrap();
    store
        .pull(
            &name,
            &PullOptions {
                auth_file: Some(auth_file),
                ..opts()
            },
        )
        .unwrap();
    assert_eq!(store.list().unwrap()[0].names, [name.to_string()]);

    // `berth login` checks the credentials before storing them, keeps the file's other
    // entries and keys, and `logout` removes only this registry's entry.
    let login_file = t.path().join("login/config.json");
    let with_file = PullOptions {
        auth_file: Some(login_file.clone()),
        ..opts()
    };
    let alice = |password: &str| Credentials {
        username: "alice".into(),
        password: password.into(),
    };
    let err = berth_image::login(&reg.addr, &alice("nope"), &with_file).unwrap_err();
    assert!(err.to_string().contains("credentials"), "{err}");
    assert!(!login_file.exists(), "refused login wrote the auth file");
    fs::create_dir_all(login_file.parent().unwrap()).unwrap();
    fs::write(
        &login_file,
        r#"{"auths":{"other.example":{"auth":"eDp5"}},"credsStore":"none"}"#,
    )
    .unwrap();
    assert_eq!(
        berth_image::login(&reg.addr, &alice("wonderland"), &with_file).unwrap(),
        login_file
    );
    let doc: serde_json::Value = serde_json::from_slice(&fs::read(&login_file).unwrap()).unwrap();
    assert_eq!(doc["credsStore"], "none");
    assert_eq!(doc["auths"]["other.example"]["auth"], "eDp5");
    assert_eq!(doc["auths"][reg.addr.as_str()]["auth"], enc.as_str());
    use std::os::unix::fs::PermissionsExt as _;
    let mode = fs::metadata(&login_file).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    store.pull(&name, &with_file).unwrap();
    assert!(berth_image::logout(&reg.addr, Some(&login_file)).unwrap());
    assert!(!berth_image::logout(&reg.addr, Some(&login_file)).unwrap());
    let doc: serde_json::Value = serde_json::from_slice(&fs::read(&login_file).unwrap()).unwrap();
    assert_eq!(doc["auths"]["other.example"]["auth"], "eDp5");
    assert!(doc["auths"].get(reg.addr.as_str()).is_none());
}

/// Minimal token issuer: checks Basic credentials, returns a signed JWT granting
/// pull+push on `repo`.
fn serve_tokens(listener: TcpListener, token: String, expected_basic: String) {
    for conn in listener.incoming() {
        let Ok(mut conn) = conn else { return };
        let mut reader = BufReader::new(conn.try_clone().unwrap());
        let mut authorized = false;
        let mut line = String::new();
        while reader.read_line(&mut line).unwrap_or(0) > 0 && line != "\r\n" {
            if line.to_ascii_lowercase().starts_with("authorization:")
                && line.trim_end().ends_with(&expected_basic)
            {
                authorized = true;
            }
            line.clear();
        }
        let (status, body) = if authorized {
            ("200 OK", format!(r#"{{"token":"{token}"}}"#))
        } else {
            ("401 Unauthorized", "{}".into())
        };
        let _ = write!(conn, "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len());
    }
}

fn b64url(b: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b)
}

fn sign_jwt(dir: &Path, repo: &str) -> String {
    let ok = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=berth-token-issuer",
        ])
        .arg("-keyout")
        .arg(dir.join("key.pem"))
        .arg("-out")
        .arg(dir.join("cert.pem"))
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert!(ok.success());
    let der = Command::new("openssl")
        .args(["x509", "-outform", "DER", "-in"])
        .arg(dir.join("cert.pem"))
        .output()
        .unwrap()
        .stdout;
    let header = serde_json::json!({"alg": "RS256", "typ": "JWT", "x5c": [base64::engine::general_purpose::STANDARD.encode(der)]});
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let claims = serde_json::json!({
        "iss": "berth-test-issuer", "sub": "alice", "aud": "berth-registry", "jti": "1",
        "iat": now - 60, "nbf": now - 60, "exp": now + 3600,
        "access": [{"type": "repository", "name": repo, "actions": ["pull", "push"]}]
    });
    let signing_input = format!(
        "{}.{}",
        b64url(&serde_json::to_vec(&header).unwrap()),
        b64url(&serde_json::to_vec(&claims).unwrap())
    );
    fs::write(dir.join("input"), &signing_input).unwrap();
    let sig = Command::new("openssl")
        .args(["dgst", "-sha256", "-sign"])
        .arg(dir.join("key.pem"))
        .arg(dir.join("input"))
        .output()
        .unwrap();
    assert!(sig.status.success());
    format!("{signing_input}.{}", b64url(&sig.stdout))
}

#[test]
fn bearer_token_auth_against_real_token_verification() {
    let t = tempfile::tempdir().unwrap();
    let repo = "private/tok";
    let token = sign_jwt(t.path(), repo);
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let realm = format!("http://{}/token", listener.local_addr().unwrap());
    let basic = base64::engine::general_purpose::STANDARD.encode("alice:wonderland");
    std::thread::spawn(move || serve_tokens(listener, token, basic));
    let auth = format!(
        "auth:\n  token:\n    realm: {realm}\n    service: berth-registry\n    issuer: berth-test-issuer\n    rootcertbundle: {}\n",
        t.path().join("cert.pem").display()
    );
    let Some(reg) = start_registry(t.path(), &auth) else {
        return;
    };
    let layout = t.path().join("layout");
    common::build_layout(
        &layout,
        &[(tar(&[Entry::file("tok", b"t")]), Compression::Gzip)],
        RunConfig::default(),
        "latest",
    );
    skopeo_push(
        &format!("oci:{}:latest", layout.display()),
        &format!("docker://{}/{repo}:1", reg.addr),
        &["--dest-creds", "alice:wonderland"],
    );

    let store = Store::open(&t.path().join("store")).unwrap();
    let name = r(&format!("{}/{repo}:1", reg.addr));
    let err = store.pull(&name, &opts()).unwrap_err();
    assert!(
        err.to_string().contains("token request"),
        "anonymous token request is refused: {err}"
    );
    let creds = PullOptions {
        credentials: Some(Credentials {
            username: "alice".into(),
            password: "wonderland".into(),
        }),
        ..opts()
    };
    store.pull(&name, &creds).unwrap();
    assert_eq!(store.list().unwrap().len(), 1);
}

/// registries.conf v2: the mirrors of the matching prefix are tried in order (one with
/// nothing listening, then a real one), then the location; the image keeps the name that
/// was asked for; a tag the mirror lacks comes from the location; a blocked prefix is
/// refused before any request.
#[test]
fn registries_conf_mirrors_in_order_then_location() {
    let t = tempfile::tempdir().unwrap();
    for d in ["primary", "mirror"] {
        fs::create_dir_all(t.path().join(d)).unwrap();
    }
    let Some(primary) = start_registry(&t.path().join("primary"), "") else {
        return;
    };
    let Some(mirror) = start_registry(&t.path().join("mirror"), "") else {
        return;
    };
    // Three images told apart by their one plain layer.
    let push = |name: &str, content: &[u8], dest: String| -> Digest {
        let raw = tar(&[Entry::file("which", content)]);
        let dir = t.path().join(name);
        common::build_layout(
            &dir,
            &[(raw.clone(), Compression::None)],
            RunConfig::default(),
            "latest",
        );
        skopeo_push(
            &format!("oci:{}:latest", dir.display()),
            &dest,
            &["--preserve-digests"],
        );
        Digest::of(&raw)
    };
    let from_mirror = push(
        "m1",
        b"mirror",
        format!("docker://{}/cache/team/app:1", mirror.addr),
    );
    let from_primary = push(
        "p1",
        b"primary",
        format!("docker://{}/team/app:1", primary.addr),
    );
    let only_primary = push(
        "p2",
        b"primary 2",
        format!("docker://{}/team/app:2", primary.addr),
    );
    let conf_path = t.path().join("registries.conf");
    fs::write(
        &conf_path,
        format!(
            r#"unqualified-search-registries = ["docker.io"]
[[registry]]
prefix = "registry.example.invalid/team"
location = "{p}/team"
[[registry.mirror]]
location = "127.0.0.1:{dead}/nothing-here"
[[registry.mirror]]
location = "{m}/cache/team"
[[registry]]
prefix = "blocked.example.invalid"
blocked = true
"#,
            p = primary.addr,
            m = mirror.addr,
            dead = free_port()
        ),
    )
    .unwrap();
    let opts = PullOptions {
        registries_conf: Some(
            berth_image::registries_conf::RegistriesConf::load(&[conf_path]).unwrap(),
        ),
        ..opts()
    };
    let store = Store::open(&t.path().join("store")).unwrap();
    let layer_of = |name: &str| store.find(name).unwrap().manifest.layers[0].digest.clone();

    store
        .pull(&r("registry.example.invalid/team/app:1"), &opts)
        .unwrap();
    assert_eq!(layer_of("registry.example.invalid/team/app:1"), from_mirror);
    assert_ne!(from_mirror, from_primary);

    store
        .pull(&r("registry.example.invalid/team/app:2"), &opts)
        .unwrap();
    assert_eq!(
        layer_of("registry.example.invalid/team/app:2"),
        only_primary
    );

    let e = store
        .pull(&r("blocked.example.invalid/x:1"), &opts)
        .unwrap_err()
        .to_string();
    assert!(e.contains("blocked") && !e.contains('\n'), "{e}");
    // Outside every prefix the reference is pulled as written.
    store
        .pull(&r(&format!("{}/team/app:1", primary.addr)), &opts)
        .unwrap();
    assert_eq!(
        layer_of(&format!("{}/team/app:1", primary.addr)),
        from_primary
    );
}
