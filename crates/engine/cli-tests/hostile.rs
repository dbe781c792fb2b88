//! Attacks on the engine and the image commands, performed for real: another host user
//! walking into the data root, an image config too large to run, a `run` killed half way,
//! archives that name themselves with a bare word, a FIFO given as a VM kernel.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::{layout, mounts_under, Env, IMAGE};

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p).unwrap().mode() & 0o7777
}

fn set_mode(p: &Path, m: u32) {
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(m)).unwrap();
}

/// Run `args` as the unprivileged user nobody (65534, no groups). setpriv drops its
/// capabilities only at the execve of `args[0]`, so that first path lookup is still
/// privileged: name a program outside the data root first.
fn as_nobody(args: &[&Path]) -> Output {
    Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run setpriv")
}

/// The directories of the unpacked layers (`snapshots/<chain>/fs`).
fn snapshot_fs_dirs(data: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(data.join("snapshots"))
        .unwrap()
        .map(|e| e.unwrap().path().join("fs"))
        .filter(|p| p.is_dir())
        .collect()
}

/// A copy of the test image's OCI layout at `dir`, its config edited by `edit`, and
/// index.json naming the new manifest with `ref_name` as its only annotation.
fn derived_layout(dir: &Path, ref_name: &str, edit: impl FnOnce(&mut Value)) {
    let st = Command::new("cp")
        .arg("-a")
        .arg(layout())
        .arg(dir)
        .status()
        .unwrap();
    assert!(st.success());
    let blob = |d: &str| {
        dir.join("blobs/sha256")
            .join(d.trim_start_matches("sha256:"))
    };
    let read =
        |p: PathBuf| -> Value { serde_json::from_slice(&std::fs::read(p).unwrap()).unwrap() };
    let put = |bytes: &[u8]| -> String {
        let d = berth_image::Digest::of(bytes).to_string();
        std::fs::write(blob(&d), bytes).unwrap();
        d
    };
    let index = read(dir.join("index.json"));
    let mut manifest = read(blob(index["manifests"][0]["digest"].as_str().unwrap()));
    let mut config = read(blob(manifest["config"]["digest"].as_str().unwrap()));
    edit(&mut config);
    let cb = serde_json::to_vec(&config).unwrap();
    manifest["config"]["digest"] = json!(put(&cb));
    manifest["config"]["size"] = json!(cb.len());
    let mb = serde_json::to_vec(&manifest).unwrap();
    let index = json!({
        "schemaVersion": 2,
        "manifests": [{
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": put(&mb),
            "size": mb.len(),
            "annotations": {"org.opencontainers.image.ref.name": ref_name},
        }],
    });
    std::fs::write(dir.join("index.json"), serde_json::to_vec(&index).unwrap()).unwrap();
}

fn one_line(s: &str) -> bool {
    s.trim_end().lines().count() == 1
}

#[test]
fn data_root_is_closed_to_other_users() {
    let env = Env::new();
    // Everyone may enter the test's own temp dir: the data root is the only barrier left.
    set_mode(env.dir.path(), 0o755);
    let id = env
        .ok(&["run", "-d", IMAGE, "sleep", "60"])
        .trim()
        .to_string();
    let cdir = env.data().join("containers").join(&id);
    let rootfs = cdir.join("bundle/rootfs");
    let busybox = rootfs.join("bin/busybox");
    let snaps = snapshot_fs_dirs(&env.data());
    assert!(
        busybox.is_file() && !snaps.is_empty(),
        "root sees the rootfs"
    );
    for d in [
        env.data(),
        env.data().join("containers"),
        env.data().join("snapshots"),
        env.data().join("volumes"),
        cdir.clone(),
    ] {
        assert_eq!(mode(&d), 0o700, "{}", d.display());
    }
    let stat = Path::new("/usr/bin/stat");
    // Control: the attacker does reach everything up to the data root.
    let o = as_nobody(&[stat, env.dir.path()]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let mut targets = vec![
        env.data().join("containers"),
        cdir,
        rootfs.clone(),
        busybox.clone(),
    ];
    targets.extend(snaps.iter().map(|s| s.join("bin/busybox")));
    for t in &targets {
        let o = as_nobody(&[stat, t]);
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(
            !o.status.success() && err.contains("Permission denied"),
            "nobody reached {}: {err}",
            t.display()
        );
    }
    // Nor can the attacker execute the image's binaries through the rootfs. Through a
    // shell: setpriv itself keeps root's capabilities until its own execve.
    let o = as_nobody(&[
        Path::new("/bin/sh"),
        Path::new("-c"),
        Path::new("exec \"$0\" true"),
        &busybox,
    ]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        !o.status.success() && err.contains("Permission denied"),
        "{err}"
    );
}

#[test]
fn loose_data_root_is_tightened_and_a_foreign_one_refused() {
    let env = Env::new();
    set_mode(&env.data(), 0o755);
    set_mode(&env.data().join("snapshots"), 0o777);
    env.ok(&["images"]);
    assert_eq!(mode(&env.data()), 0o700);
    assert_eq!(mode(&env.data().join("snapshots")), 0o700);

    // A data root that belongs to another user is refused, in one line naming it.
    nix::unistd::chown(&env.data(), Some(nix::unistd::Uid::from_raw(65534)), None).unwrap();
    let r = env.berth(&["images"]);
    nix::unistd::chown(&env.data(), Some(nix::unistd::Uid::from_raw(0)), None).unwrap();
    assert_ne!(r.code, 0);
    assert!(
        one_line(&r.stderr)
            && r.stderr.contains(env.data().to_str().unwrap())
            && r.stderr.contains("owned by uid 65534"),
        "{}",
        r.stderr
    );
}

/// No temp file, ingest file, container directory or mount left under the data root.
fn assert_clean(env: &Env) {
    assert!(
        env.container_dirs().is_empty(),
        "{:?}",
        env.container_dirs()
    );
    for d in ["tmp", "ingest"] {
        let n = std::fs::read_dir(env.data().join(d)).unwrap().count();
        assert_eq!(n, 0, "{d} not empty");
    }
    assert!(mounts_under(&env.data()).is_empty());
}

#[test]
fn oversized_image_config_is_refused_in_one_line() {
    let env = Env::new();
    let t = tempfile::tempdir().unwrap();
    // The reported attack: 100,000 Env entries.
    let big = t.path().join("big-env");
    derived_layout(&big, "latest", |c| {
        let env: Vec<String> = (0..100_000).map(|i| format!("V{i}=x")).collect();
        c["config"]["Env"] = json!(env);
    });
    let r = env.berth(&["import", big.to_str().unwrap(), "big-env"]);
    assert_ne!(r.code, 0);
    assert!(
        one_line(&r.stderr) && r.stderr.contains("100000 Env entries"),
        "{}",
        r.stderr
    );
    // Few entries, but one of them beyond what execve takes.
    let long = t.path().join("long-env");
    derived_layout(&long, "latest", |c| {
        c["config"]["Env"] = json!([format!("X={}", "y".repeat(200 << 10))]);
    });
    let r = env.berth(&["load", "-i", long.to_str().unwrap()]);
    assert!(
        r.code != 0 && one_line(&r.stderr) && r.stderr.contains("execve"),
        "{}",
        r.stderr
    );
    // A config blob above 4 MiB (labels), refused before it is read.
    let fat = t.path().join("fat");
    derived_layout(&fat, "latest", |c| {
        c["config"]["Labels"] = json!({"junk": "z".repeat(5 << 20)});
    });
    let r = env.berth(&["load", "-i", fat.to_str().unwrap()]);
    assert!(
        r.code != 0 && one_line(&r.stderr) && r.stderr.contains("limit of 4194304"),
        "{}",
        r.stderr
    );
    assert_eq!(
        env.ok(&["images", "-q"]).lines().count(),
        1,
        "only the test image"
    );
    assert_clean(&env);

    // Over the limit through the run flags: refused after the rootfs was mounted, and
    // the failed create undoes the mount and the container directory.
    let ef = t.path().join("env-file");
    let lines: String = (0..20_000).map(|i| format!("E{i}=1\n")).collect();
    std::fs::write(&ef, lines).unwrap();
    let r = env.berth(&[
        "run",
        "--rm",
        "--env-file",
        ef.to_str().unwrap(),
        IMAGE,
        "true",
    ]);
    assert!(
        r.code != 0 && one_line(&r.stderr) && r.stderr.contains("Env entries"),
        "{}",
        r.stderr
    );
    assert_clean(&env);
}

/// Just under the documented limits (9,990 entries, ~880 KiB: a spec far beyond one
/// 208 KiB SOCK_SEQPACKET message to the container's init) the container runs.
#[test]
fn large_env_within_the_limits_runs() {
    let env = Env::new();
    let t = tempfile::tempdir().unwrap();
    let dir = t.path().join("many-env");
    derived_layout(&dir, "latest", |c| {
        let mut e: Vec<String> = (0..9_990)
            .map(|i| format!("VAR_{i:05}={}", "v".repeat(70)))
            .collect();
        e.push("PATH=/bin".into());
        c["config"]["Env"] = json!(e);
    });
    env.ok(&["import", dir.to_str().unwrap(), "many-env"]);
    let out = env.ok(&["run", "--rm", "many-env", "sh", "-c", "env | grep -c ^VAR_"]);
    assert_eq!(out.trim(), "9990");
    assert_clean(&env);
}

/// Kill `berth run` while it waits on a FIFO seccomp profile, which it reads after the
/// rootfs is mounted and before the container is recorded: the state a Ctrl-C during
/// a slow create leaves. Returns the dead container's ID as `ps -a` lists it.
fn interrupted_run(env: &Env, fifo: &Path) -> String {
    let profile = format!("seccomp={}", fifo.display());
    let mut child = env
        .command(&["run", "--security-opt", &profile, IMAGE, "true"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let until = Instant::now() + Duration::from_secs(60);
    while mounts_under(&env.data()).is_empty() {
        if Instant::now() > until || child.try_wait().unwrap().is_some() {
            let _ = child.kill();
            let _ = child.wait();
            panic!("berth run never mounted the rootfs");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(
        !mounts_under(&env.data()).is_empty(),
        "the kill leaves the mount"
    );
    let ps = env.ok(&["ps", "-a", "--no-trunc"]);
    let line = ps
        .lines()
        .find(|l| l.contains("Dead"))
        .unwrap_or_else(|| panic!("ps -a does not show the dead container:\n{ps}"));
    line.split_whitespace().next().unwrap().to_string()
}

#[test]
fn interrupted_create_is_seen_and_removed_by_rm_and_prune() {
    let env = Env::new();
    let fifo = env.dir.path().join("profile.fifo");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();

    let id = interrupted_run(&env, &fifo);
    assert_eq!(env.container_dirs(), std::slice::from_ref(&id));
    assert_eq!(env.inspect(&id)["State"]["Status"], "dead");
    env.ok(&["rm", "-f", &id]);
    assert_clean(&env);
    assert_eq!(env.ok(&["ps", "-aq"]), "");

    interrupted_run(&env, &fifo);
    let out = env.ok(&["system", "prune"]);
    assert!(out.contains("Deleted 1 containers"), "{out}");
    assert_clean(&env);
    assert_eq!(env.ok(&["ps", "-aq"]), "");
    // The image is still there and runs.
    assert_eq!(env.ok(&["run", "--rm", IMAGE, "echo", "ok"]), "ok\n");
}

#[test]
fn load_names_archives_the_way_podman_does() {
    let env = Env::new();
    let t = tempfile::tempdir().unwrap();
    let dir = t.path().join("big");
    derived_layout(&dir, "big", |c| {
        c["created"] = json!((chrono::Utc::now() - chrono::Duration::days(2)).to_rfc3339());
    });
    let tar = t.path().join("big.tar");
    let st = Command::new("tar")
        .arg("-C")
        .arg(&dir)
        .arg("-cf")
        .arg(&tar)
        .arg(".")
        .status()
        .unwrap();
    assert!(st.success());
    env.ok(&["load", "-i", tar.to_str().unwrap()]);
    let images = env.ok(&["images"]);
    let row = images
        .lines()
        .find(|l| l.starts_with("localhost/big "))
        .unwrap_or_else(|| panic!("no localhost/big:\n{images}"));
    assert!(
        row.contains(" latest ") && row.contains("2 days ago"),
        "{row}"
    );
    assert_eq!(env.ok(&["run", "--rm", "big", "echo", "hi"]), "hi\n");
    // A bare tag as the name (what umoci and skopeo write) is a name too, as in podman.
    env.ok(&["load", "-i", layout().to_str().unwrap()]);
    let images = env.ok(&["images"]);
    assert!(
        images.lines().any(|l| l.starts_with("localhost/latest ")),
        "{images}"
    );
    assert!(!images.contains("<none>"), "{images}");
}

/// `vm run` given a FIFO (or a device) as kernel or initrd returns at once with one line.
#[test]
fn vm_run_refuses_a_fifo_kernel_or_initrd() {
    let t = tempfile::tempdir().unwrap();
    let fifo = t.path().join("kernel.fifo");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
    let fifo = fifo.to_str().unwrap();
    let kernel = std::fs::read_dir("/boot")
        .ok()
        .into_iter()
        .flatten()
        .map(|e| e.unwrap().path())
        .find(|p| p.to_string_lossy().contains("vmlinuz"));
    let mut cases = vec![
        (vec!["--kernel", fifo], "a FIFO"),
        (vec!["--kernel", "/dev/zero"], "a character device"),
    ];
    let kernel = kernel.map(|k| k.to_string_lossy().into_owned());
    if let Some(k) = &kernel {
        cases.push((vec!["--kernel", k, "--initrd", fifo], "a FIFO"));
    }
    for (args, kind) in cases {
        let mut child = Command::new(env!("CARGO_BIN_EXE_berth"))
            .args(["vm", "run", "--memory", "64"])
            .args(&args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let until = Instant::now() + Duration::from_secs(30);
        while child.try_wait().unwrap().is_none() {
            if Instant::now() > until {
                let _ = child.kill();
                let _ = child.wait();
                panic!("vm run {args:?} hangs");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let out = child.wait_with_output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success() && one_line(&err) && err.contains(kind),
            "{args:?}: {err}"
        );
    }
}

/// `pull` and `run` read the registries.conf that `BERTH_REGISTRIES_CONF` names: a
/// blocked prefix is refused in one line before any connection is made.
#[test]
fn registries_conf_from_the_environment_blocks_a_prefix() {
    let env = Env::new();
    let conf = env.dir.path().join("registries.conf");
    std::fs::write(
        &conf,
        "[[registry]]\nprefix = \"blocked.example.invalid\"\nblocked = true\n",
    )
    .unwrap();
    for args in [
        &["pull", "blocked.example.invalid/app:1"][..],
        &["run", "--rm", "blocked.example.invalid/app:1", "true"],
    ] {
        let r: super::Run = env
            .command(args)
            .env("BERTH_REGISTRIES_CONF", &conf)
            .output()
            .unwrap()
            .into();
        assert!(
            r.code != 0 && one_line(&r.stderr) && r.stderr.contains("blocked by registries.conf"),
            "{args:?}: {}",
            r.stderr
        );
    }
    // A malformed file is one line naming it.
    std::fs::write(&conf, "[[registry]]\nlocation = 3\n").unwrap();
    let r: super::Run = env
        .command(&["pull", "x.example.invalid/app:1"])
        .env("BERTH_REGISTRIES_CONF", &conf)
        .output()
        .unwrap()
        .into();
    assert!(
        r.code != 0 && one_line(&r.stderr) && r.stderr.contains(conf.to_str().unwrap()),
        "{}",
        r.stderr
    );
    assert_clean(&env);
}
