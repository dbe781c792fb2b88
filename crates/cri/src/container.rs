//! Containers of a pod: the image's config plus the CRI `ContainerConfig` become an OCI
//! bundle; a monitor process (see [`crate::monitor`]) creates the container from it and
//! stays its parent, writing its output to the CRI log and recording its exit.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::str::FromStr;
use std::time::{Duration, Instant};

use berth_engine::spec::{ANNOTATION_STOP_SIGNAL, DEFAULT_CAPABILITIES};
use nix::sys::signal::Signal;
use serde_json::{json, Value};

use crate::api;
use crate::error::{invalid, Error, IoContext, Result};
use crate::meta::{now_nanos, random_id, Container, Exit, MountRecord, Names, PodState};
use crate::pod::{to_map, NS_NODE};
use crate::Cri;

/// How long stop and remove wait for the monitor to record an exit after SIGKILL.
const REAP_LIMIT: Duration = Duration::from_secs(10);

/// A container's state as CRI reports it.
#[derive(Clone, Debug)]
pub(crate) struct Observed {
    pub state: api::ContainerState,
    pub pid: i32,
    pub exit: Option<Exit>,
    /// Why the exit is unknown (monitor gone before recording it).
    pub lost: bool,
}

/// `NET_ADMIN` / `CAP_NET_ADMIN` -> `CAP_NET_ADMIN`, checked against the kernel's list.
fn cap_name(field: &str, c: &str) -> Result<String> {
    let up = c.to_ascii_uppercase();
    if up == "ALL" {
        return Ok(up);
    }
    let full = if up.starts_with("CAP_") {
        up
    } else {
        format!("CAP_{up}")
    };
    caps::Capability::from_str(&full)
        .map_err(|_| invalid(field, format!("unknown capability {c:?}")))?;
    Ok(full)
}

/// The default set with drops applied first, then adds (`ALL` allowed in both).
fn capabilities(c: Option<&api::Capability>) -> Result<Vec<String>> {
    let (add, drop) = match c {
        Some(c) => (&c.add_capabilities[..], &c.drop_capabilities[..]),
        None => (&[][..], &[][..]),
    };
    let f = "security_context.capabilities";
    let add: Vec<String> = add.iter().map(|c| cap_name(f, c)).collect::<Result<_>>()?;
    let drop: Vec<String> = drop.iter().map(|c| cap_name(f, c)).collect::<Result<_>>()?;
    let mut out: Vec<String> = if drop.iter().any(|c| c == "ALL") {
        Vec::new()
    } else {
        DEFAULT_CAPABILITIES
            .iter()
            .map(|c| c.to_string())
            .filter(|c| !drop.contains(c))
            .collect()
    };
    if add.iter().any(|c| c == "ALL") {
        let mut all: Vec<String> = caps::all().iter().map(|c| c.to_string()).collect();
        all.sort();
        return Ok(all);
    }
    for c in add {
        if !out.contains(&c) {
            out.push(c);
        }
    }
    Ok(out)
}

/// `-u` for the image crate: uid (or user name) and optional gid.
fn user_of(sc: &api::LinuxContainerSecurityContext) -> Option<String> {
    let user = match (&sc.run_as_user, sc.run_as_username.as_str()) {
        (Some(u), _) => u.value.to_string(),
        (None, "") => return None,
        (None, name) => name.to_string(),
    };
    Some(match &sc.run_as_group {
        Some(g) => format!("{user}:{}", g.value),
        None => user,
    })
}

/// The seccomp profile for the security context: RuntimeDefault is berth's default
/// profile for the final capability set; Unconfined (and no profile) is none. The
/// deprecated `seccomp_profile_path` is still read: older kubelets send only it.
#[allow(deprecated)]
fn seccomp_of(sc: &api::LinuxContainerSecurityContext, caps: &[String]) -> Result<Option<Value>> {
    use api::security_profile::ProfileType;
    let profile = match &sc.seccomp {
        Some(p) => match ProfileType::try_from(p.profile_type) {
            Ok(ProfileType::RuntimeDefault) => Some(berth_seccomp::default_profile_for(caps)),
            Ok(ProfileType::Unconfined) => None,
            Ok(ProfileType::Localhost) => {
                let path = Path::new(&p.localhost_ref);
                Some(berth_seccomp::parse_profile(
                    &std::fs::read_to_string(path).at(path)?,
                )?)
            }
            Err(_) => return Err(invalid("security_context.seccomp.profile_type", "unknown")),
        },
        None => match sc.seccomp_profile_path.as_str() {
            "runtime/default" | "docker/default" => Some(berth_seccomp::default_profile_for(caps)),
            "" | "unconfined" => None,
            p => match p.strip_prefix("localhost/") {
                Some(file) => Some(berth_seccomp::parse_profile(
                    &std::fs::read_to_string(file).at(file)?,
                )?),
                None => {
                    return Err(invalid(
                        "security_context.seccomp_profile_path",
                        format!("{p:?}"),
                    ))
                }
            },
        },
    };
    Ok(profile.map(|p| serde_json::to_value(p).expect("profile serializes")))
}

/// The CRI resources into an OCI `linux.resources` object (zero means unset).
fn set_resources(r: &mut Value, res: &api::LinuxContainerResources) {
    if res.memory_limit_in_bytes > 0 {
        r["memory"] = json!({"limit": res.memory_limit_in_bytes});
    }
    let mut cpu = serde_json::Map::new();
    for (k, v) in [
        ("period", res.cpu_period),
        ("quota", res.cpu_quota),
        ("shares", res.cpu_shares),
    ] {
        if v > 0 {
            cpu.insert(k.into(), json!(v));
        }
    }
    for (k, v) in [("cpus", &res.cpuset_cpus), ("mems", &res.cpuset_mems)] {
        if !v.is_empty() {
            cpu.insert(k.into(), json!(v));
        }
    }
    if !cpu.is_empty() {
        r["cpu"] = Value::Object(cpu);
    }
}

fn propagation(p: i32) -> &'static str {
    match api::MountPropagation::try_from(p) {
        Ok(api::MountPropagation::PropagationHostToContainer) => "rslave",
        Ok(api::MountPropagation::PropagationBidirectional) => "rshared",
        _ => "rprivate",
    }
}

impl Cri {
    /// The spec the image crate built, with the pod's namespaces and the CRI config.
    fn apply(
        &self,
        spec: &oci_spec::runtime::Spec,
        id: &str,
        pod: &crate::meta::Pod,
        config: &api::ContainerConfig,
    ) -> Result<(oci_spec::runtime::Spec, Vec<MountRecord>)> {
        let mut v = serde_json::to_value(spec).expect("spec serializes");
        let linux_cfg = config.linux.clone().unwrap_or_default();
        let sc = linux_cfg.security_context.clone().unwrap_or_default();
        let pid_mode = sc.namespace_options.as_ref().map_or(1, |n| n.pid);
        // POD cannot reach here from kubelet (such pods are refused), and proto3 makes it
        // the value of options that leave `pid` out: a PID namespace per container.
        if pid_mode == 3 {
            return Err(Error::Unsupported(
                "namespace_options.pid TARGET: only CONTAINER and NODE are supported".into(),
            ));
        }
        // Namespaces: join the pod's pinned ones; the host's where the pod has none.
        let joined = |t: &str| -> Option<Option<&PathBuf>> {
            match t {
                "network" => Some(pod.netns.as_ref()),
                "ipc" => Some(pod.ipcns.as_ref()),
                "uts" => Some(pod.utsns.as_ref()),
                _ => None,
            }
        };
        let ns = v["linux"]["namespaces"].as_array_mut().expect("namespaces");
        ns.retain(|n| !(n["type"] == "pid" && pid_mode == NS_NODE));
        let mut kept = Vec::new();
        for n in ns.drain(..) {
            let t = n["type"].as_str().unwrap_or_default().to_string();
            match joined(&t) {
                Some(Some(path)) => kept.push(json!({"type": t, "path": path})),
                Some(None) => {}
                None => kept.push(n),
            }
        }
        *ns = kept;
        // The pinned UTS namespace already has the pod's hostname.
        v.as_object_mut().expect("object").remove("hostname");

        let process = &mut v["process"];
        if let Some(env) = process["env"].as_array_mut() {
            if !env
                .iter()
                .any(|e| e.as_str().is_some_and(|e| e.starts_with("HOSTNAME=")))
            {
                env.push(json!(format!("HOSTNAME={}", pod.hostname)));
            }
        }
        let caps = capabilities(sc.capabilities.as_ref())?;
        process["capabilities"] = json!({"bounding": caps, "effective": caps, "permitted": caps});
        process["noNewPrivileges"] = json!(sc.no_new_privs);
        if !sc.supplemental_groups.is_empty() {
            let gids = process["user"]["additionalGids"]
                .as_array_mut()
                .map(std::mem::take)
                .unwrap_or_default();
            let mut gids: Vec<Value> = gids;
            for g in &sc.supplemental_groups {
                let g = u32::try_from(*g).map_err(|_| {
                    invalid(
                        "security_context.supplemental_groups",
                        format!("{g} is not a gid"),
                    )
                })?;
                gids.push(json!(g));
            }
            process["user"]["additionalGids"] = json!(gids);
        }
        let res = linux_cfg.resources.clone().unwrap_or_default();
        if res.oom_score_adj != 0 {
            process["oomScoreAdj"] = json!(res.oom_score_adj);
        }
        v["root"]["readonly"] = json!(sc.readonly_rootfs);

        // Mounts: the pod's files, then the request's (which win on the same path).
        let mut records = Vec::new();
        let wanted: Vec<&str> = config
            .mounts
            .iter()
            .map(|m| m.container_path.as_str())
            .collect();
        let mounts = v["mounts"].as_array_mut().expect("mounts");
        let pod_dir = self.layout.pod_dir(&pod.id);
        for (dest, src) in [
            ("/etc/resolv.conf", pod.resolv_conf.clone()),
            ("/etc/hostname", Some(pod_dir.join("hostname"))),
        ] {
            if let Some(src) = src.filter(|_| !wanted.contains(&dest)) {
                let mode = if sc.readonly_rootfs { "ro" } else { "rw" };
                mounts.push(json!({"destination": dest, "type": "bind", "source": src, "options": ["rbind", "rprivate", mode]}));
            }
        }
        for m in &config.mounts {
            if !m.container_path.starts_with('/') {
                return Err(invalid(
                    "mounts.container_path",
                    format!("{:?} must be absolute", m.container_path),
                ));
            }
            if !m.host_path.starts_with('/') {
                return Err(invalid(
                    "mounts.host_path",
                    format!("{:?} must be absolute", m.host_path),
                ));
            }
            if m.image.as_ref().is_some_and(|i| !i.image.is_empty()) {
                return Err(Error::Unsupported(
                    "mounts.image: image volumes are not supported".into(),
                ));
            }
            // As containerd does: a missing host path becomes a directory.
            if std::fs::symlink_metadata(&m.host_path).is_err() {
                std::fs::create_dir_all(&m.host_path).at(&m.host_path)?;
            }
            let mode = if m.readonly { "ro" } else { "rw" };
            mounts.push(json!({"destination": m.container_path, "type": "bind", "source": m.host_path, "options": ["rbind", propagation(m.propagation), mode]}));
            records.push(MountRecord {
                container_path: m.container_path.clone(),
                host_path: m.host_path.clone(),
                readonly: m.readonly,
            });
        }

        let linux = &mut v["linux"];
        if !sc.masked_paths.is_empty() {
            linux["maskedPaths"] = json!(sc.masked_paths);
        }
        if !sc.readonly_paths.is_empty() {
            linux["readonlyPaths"] = json!(sc.readonly_paths);
        }
        if !pod.sysctls.is_empty() {
            linux["sysctl"] = json!(pod.sysctls);
        }
        set_resources(&mut linux["resources"], &res);
        if let Some(profile) = seccomp_of(&sc, &caps)? {
            linux["seccomp"] = profile;
        }
        if pod.cgroup_parent.starts_with('/') {
            linux["cgroupsPath"] = json!(format!(
                "{}/berth-{id}",
                pod.cgroup_parent.trim_end_matches('/')
            ));
        }
        let spec = serde_json::from_value(v)
            .map_err(|e| invalid("config", format!("gives an invalid OCI spec: {e}")))?;
        Ok((spec, records))
    }

    pub fn create_container(&self, pod_id: &str, config: &api::ContainerConfig) -> Result<String> {
        let pod = self.layout.pod(pod_id)?;
        if pod.state != PodState::Ready {
            return Err(Error::BadState(format!(
                "pod sandbox {} is not ready (stopped): create a new pod",
                pod.id
            )));
        }
        let md = config
            .metadata
            .as_ref()
            .ok_or_else(|| invalid("config.metadata", "missing"))?;
        if md.name.is_empty() {
            return Err(invalid("config.metadata.name", "must not be empty"));
        }
        let image = config
            .image
            .as_ref()
            .map(|i| i.image.clone())
            .unwrap_or_default();
        if image.is_empty() {
            return Err(invalid("config.image.image", "must not be empty"));
        }
        if config.tty {
            return Err(Error::Unsupported(
                "config.tty: container terminals are not supported (exec -t is)".into(),
            ));
        }
        let sc = config
            .linux
            .as_ref()
            .and_then(|l| l.security_context.clone())
            .unwrap_or_default();
        if sc.privileged {
            return Err(Error::Unsupported(
                "security_context.privileged: privileged containers are not supported".into(),
            ));
        }
        if !config.devices.is_empty() || !config.cdi_devices.is_empty() {
            return Err(Error::Unsupported(
                "config.devices: host devices are not supported".into(),
            ));
        }
        let img = match self.store.find(&image) {
            Err(berth_image::Error::ImageNotFound(_)) => {
                return Err(Error::Image(berth_image::Error::ImageNotFound(format!(
                    "{image} (pull it first)"
                ))))
            }
            r => r?,
        };
        let _lock = self.lock();
        let names = Names {
            name: md.name.clone(),
            uid: String::new(),
            namespace: String::new(),
            attempt: md.attempt,
        };
        if let Some(c) = self.layout.containers()?.into_iter().find(|c| {
            c.pod_id == pod.id && c.names.name == names.name && c.names.attempt == names.attempt
        }) {
            return Err(Error::NameInUse {
                what: "container",
                name: format!("{}_{}", names.name, names.attempt),
                id: c.id,
            });
        }
        let id = random_id()?;
        let overrides = berth_engine::RunOverrides {
            entrypoint: (!config.command.is_empty()).then(|| config.command.clone()),
            cmd: config.args.clone(),
            env: config
                .envs
                .iter()
                .map(|kv| format!("{}={}", kv.key, kv.value))
                .collect(),
            user: user_of(&sc),
            workdir: (!config.working_dir.is_empty()).then(|| config.working_dir.clone()),
            tty: false,
            hostname: None,
        };
        let dir = self.layout.container_dir(&id);
        std::fs::create_dir(&dir).at(&dir)?;
        let undo = |e: Error| {
            let _ = self.runtime.delete(&id, true);
            let _ = self.bundles.remove(&id);
            let _ = std::fs::remove_dir_all(&dir);
            e
        };
        let bundle = self
            .bundles
            .create(&image, &id, &overrides, &dir.join("bundle"))
            .map_err(|e| undo(e.into()))?;
        let made = (|| -> Result<String> {
            let (spec, mounts) = self.apply(&bundle.spec, &id, &pod, config)?;
            let cfg = bundle.dir.join("config.json");
            crate::meta::write_atomic(&cfg, &spec)?;
            let log_path = (!pod.log_directory.is_empty() && !config.log_path.is_empty())
                .then(|| Path::new(&pod.log_directory).join(&config.log_path));
            let mut c = Container {
                id: id.clone(),
                pod_id: pod.id.clone(),
                names,
                image: image.clone(),
                image_id: img.id.to_string(),
                created_at: now_nanos(),
                started_at: 0,
                labels: to_map(&config.labels),
                annotations: to_map(&config.annotations),
                log_path,
                bundle: bundle.dir.clone(),
                stop_signal: spec
                    .annotations()
                    .as_ref()
                    .and_then(|a| a.get(ANNOTATION_STOP_SIGNAL).cloned())
                    .unwrap_or_else(|| "SIGTERM".into()),
                monitor_pid: 0,
                mounts,
                stdin: config.stdin,
                stdin_once: config.stdin_once,
            };
            self.layout.save_container(&c)?;
            c.monitor_pid = self.spawn_monitor(&c)?;
            self.layout.save_container(&c)?;
            Ok(c.id)
        })();
        made.map_err(undo)
    }

    /// Start the monitor (`berth cri monitor`): it creates the container (init waits
    /// for start) and reports `ok <init pid> <monitor pid>` or the error on stdout.
    fn spawn_monitor(&self, c: &Container) -> Result<i32> {
        let out = Command::new(&self.exe)
            .args(["cri", "monitor", "--runtime-root"])
            .arg(&self.config.runtime_root)
            .arg("--dir")
            .arg(self.layout.container_dir(&c.id))
            .arg(&c.id)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .output()
            .at(&self.exe)?;
        let msg = String::from_utf8_lossy(&out.stdout);
        let msg = msg.trim();
        match msg.strip_prefix("ok ") {
            Some(rest) => {
                let mut it = rest.split_whitespace();
                let _init: i32 = it.next().and_then(|p| p.parse().ok()).unwrap_or(0);
                Ok(it.next().and_then(|p| p.parse().ok()).unwrap_or(0))
            }
            None => Err(Error::Monitor {
                id: c.id.clone(),
                reason: match msg.strip_prefix("error ") {
                    Some(e) => e.to_string(),
                    None if msg.is_empty() => "the monitor died before reporting".into(),
                    None => msg.to_string(),
                },
            }),
        }
    }

    /// Combine the monitor's record with the runtime's view.
    pub(crate) fn observe(&self, c: &Container) -> Result<Observed> {
        if let Some(exit) = self.layout.exit_of(&c.id)? {
            return Ok(Observed {
                state: api::ContainerState::ContainerExited,
                pid: 0,
                exit: Some(exit),
                lost: false,
            });
        }
        let state = match self.runtime.state(&c.id) {
            Ok(s) => Some(s),
            Err(berth_runtime::Error::NotFound(_)) => None,
            Err(e) => return Err(e.into()),
        };
        use berth_runtime::Status as S;
        let monitor_alive = crate::monitor::is_monitor(c.monitor_pid, &c.id);
        let (st, pid) = match state.as_ref().map(|s| (s.status, s.pid)) {
            Some((S::Created | S::Creating, pid)) => (api::ContainerState::ContainerCreated, pid),
            Some((S::Running | S::Paused, pid)) => (api::ContainerState::ContainerRunning, pid),
            // Exited, the monitor is about to record it.
            _ if monitor_alive => (api::ContainerState::ContainerRunning, 0),
            _ => {
                return Ok(Observed {
                    state: api::ContainerState::ContainerExited,
                    pid: 0,
                    exit: None,
                    lost: true,
                })
            }
        };
        Ok(Observed {
            state: st,
            pid,
            exit: None,
            lost: false,
        })
    }

    pub fn start_container(&self, id: &str) -> Result<()> {
        let mut c = self.layout.container(id)?;
        let o = self.observe(&c)?;
        if o.state != api::ContainerState::ContainerCreated {
            return Err(Error::BadState(format!(
                "container {}: is {}, only a created container can be started",
                c.id,
                state_name(o.state)
            )));
        }
        self.runtime.start(&c.id)?;
        c.started_at = now_nanos();
        self.layout.save_container(&c)?;
        tracing::info!(container = c.id, "started");
        Ok(())
    }

    /// Wait until the exit is recorded or nobody can record it any more.
    fn wait_exited(&self, c: &Container, limit: Duration) -> Result<bool> {
        let until = Instant::now() + limit;
        loop {
            if self.observe(c)?.state == api::ContainerState::ContainerExited {
                return Ok(true);
            }
            if Instant::now() >= until {
                return Ok(false);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The stop signal, then after `timeout` seconds SIGKILL to every process; returns
    /// once the exit is recorded. Stopping a stopped or unknown container succeeds.
    pub fn stop_container(&self, id: &str, timeout: i64) -> Result<()> {
        let Some(c) = self.layout.find_container(id)? else {
            return Ok(());
        };
        let o = self.observe(&c)?;
        if o.state == api::ContainerState::ContainerExited {
            return Ok(());
        }
        if o.state == api::ContainerState::ContainerRunning && timeout > 0 {
            let sig = berth_runtime::signal::parse(&c.stop_signal).unwrap_or(Signal::SIGTERM);
            let _ = self.runtime.kill(&c.id, sig, false);
            if self.wait_exited(&c, Duration::from_secs(timeout as u64))? {
                return Ok(());
            }
        }
        let _ = self.runtime.kill(&c.id, Signal::SIGKILL, true);
        if !self.wait_exited(&c, REAP_LIMIT)? {
            return Err(Error::BadState(format!(
                "container {}: still running {} s after SIGKILL",
                c.id,
                REAP_LIMIT.as_secs()
            )));
        }
        tracing::info!(container = c.id, "stopped");
        Ok(())
    }

    /// Kill (if running) and remove everything of the container but its log file
    /// (kubelet owns the log directory). Removing an unknown container succeeds.
    pub fn remove_container(&self, id: &str) -> Result<()> {
        let Some(c) = self.layout.find_container(id)? else {
            return Ok(());
        };
        self.stop_container(&c.id, 0)?;
        let _lock = self.lock();
        match self.runtime.delete(&c.id, true) {
            Ok(()) | Err(berth_runtime::Error::NotFound(_)) => {}
            Err(e) => return Err(e.into()),
        }
        self.bundles.remove(&c.id)?;
        let dir = self.layout.container_dir(&c.id);
        std::fs::remove_file(dir.join(crate::meta::CONTAINER))
            .at(dir.join(crate::meta::CONTAINER))?;
        std::fs::remove_dir_all(&dir).at(&dir)?;
        tracing::info!(container = c.id, "removed");
        Ok(())
    }

    /// Change a live container's cgroup limits (in-place pod resize).
    pub fn update_container_resources(
        &self,
        id: &str,
        res: Option<&api::LinuxContainerResources>,
    ) -> Result<()> {
        let c = self.layout.container(id)?;
        let Some(res) = res else { return Ok(()) };
        if !res.hugepage_limits.is_empty() || !res.unified.is_empty() {
            return Err(Error::Unsupported(
                "resources: hugepage_limits and unified are not supported".into(),
            ));
        }
        let mut v = json!({});
        set_resources(&mut v, res);
        let resources = serde_json::from_value(v)
            .map_err(|e| invalid("linux", format!("invalid resources: {e}")))?;
        self.runtime.update(&c.id, &resources)?;
        tracing::info!(container = c.id, "resources updated");
        Ok(())
    }

    /// After kubelet renamed the log file away: create it anew and have the monitor
    /// write there (SIGUSR1). A container that is not running has nothing to reopen.
    pub fn reopen_container_log(&self, id: &str) -> Result<()> {
        let c = self.layout.container(id)?;
        if self.observe(&c)?.state != api::ContainerState::ContainerRunning {
            return Err(Error::BadState(format!(
                "container {}: is not running, its log is not written any more",
                c.id
            )));
        }
        let Some(path) = &c.log_path else {
            return Ok(());
        };
        std::fs::File::options()
            .create(true)
            .append(true)
            .open(path)
            .at(path)?;
        if crate::monitor::is_monitor(c.monitor_pid, &c.id) {
            nix::sys::signal::kill(nix::unistd::Pid::from_raw(c.monitor_pid), Signal::SIGUSR1)
                .map_err(crate::error::sys(format!(
                    "signal the monitor {}",
                    c.monitor_pid
                )))?;
        }
        Ok(())
    }

    fn to_api(&self, c: &Container, o: &Observed) -> api::Container {
        api::Container {
            id: c.id.clone(),
            pod_sandbox_id: c.pod_id.clone(),
            metadata: Some(api::ContainerMetadata {
                name: c.names.name.clone(),
                attempt: c.names.attempt,
            }),
            image: Some(api::ImageSpec {
                image: c.image.clone(),
                ..Default::default()
            }),
            image_ref: c.image_id.clone(),
            state: o.state as i32,
            created_at: c.created_at,
            labels: c.labels.clone().into_iter().collect(),
            annotations: c.annotations.clone().into_iter().collect(),
            image_id: c.image_id.clone(),
        }
    }

    pub fn list_containers(
        &self,
        filter: Option<&api::ContainerFilter>,
    ) -> Result<Vec<api::Container>> {
        let mut out = Vec::new();
        for c in self.layout.containers()? {
            if let Some(f) = filter {
                if !c.id.starts_with(&f.id)
                    || !c.pod_id.starts_with(&f.pod_sandbox_id)
                    || !f
                        .label_selector
                        .iter()
                        .all(|(k, v)| c.labels.get(k) == Some(v))
                {
                    continue;
                }
            }
            let o = self.observe(&c)?;
            if filter
                .and_then(|f| f.state.as_ref())
                .is_some_and(|s| s.state != o.state as i32)
            {
                continue;
            }
            out.push(self.to_api(&c, &o));
        }
        Ok(out)
    }

    pub fn container_status(
        &self,
        id: &str,
        verbose: bool,
    ) -> Result<(
        api::ContainerStatus,
        std::collections::HashMap<String, String>,
    )> {
        let c = self.layout.container(id)?;
        let o = self.observe(&c)?;
        let (exit_code, finished_at, reason, message) = match (&o.exit, o.lost) {
            (Some(e), _) => (
                e.code,
                e.finished_at,
                if e.oom_killed {
                    "OOMKilled"
                } else if e.code == 0 {
                    "Completed"
                } else {
                    "Error"
                },
                String::new(),
            ),
            (None, true) => (
                255,
                0,
                "Unknown",
                "the container's monitor exited before recording how the container ended".into(),
            ),
            (None, false) => (0, 0, "", String::new()),
        };
        let status = api::ContainerStatus {
            id: c.id.clone(),
            metadata: Some(api::ContainerMetadata {
                name: c.names.name.clone(),
                attempt: c.names.attempt,
            }),
            state: o.state as i32,
            created_at: c.created_at,
            started_at: c.started_at,
            finished_at,
            exit_code,
            image: Some(api::ImageSpec {
                image: c.image.clone(),
                ..Default::default()
            }),
            image_ref: c.image_id.clone(),
            image_id: c.image_id.clone(),
            reason: reason.into(),
            message,
            labels: c.labels.clone().into_iter().collect(),
            annotations: c.annotations.clone().into_iter().collect(),
            mounts: c
                .mounts
                .iter()
                .map(|m| api::Mount {
                    container_path: m.container_path.clone(),
                    host_path: m.host_path.clone(),
                    readonly: m.readonly,
                    ..Default::default()
                })
                .collect(),
            log_path: c
                .log_path
                .as_ref()
                .map(|p| p.display().to_string())
                .unwrap_or_default(),
            ..Default::default()
        };
        let mut info = std::collections::HashMap::new();
        if verbose {
            let spec: Value = std::fs::read(c.bundle.join("config.json"))
                .ok()
                .and_then(|b| serde_json::from_slice(&b).ok())
                .unwrap_or(Value::Null);
            info.insert(
                "info".to_string(),
                json!({
                    "sandboxID": c.pod_id,
                    "pid": o.pid,
                    "monitorPid": c.monitor_pid,
                    "bundle": c.bundle,
                    "runtimeSpec": spec,
                })
                .to_string(),
            );
        }
        Ok((status, info))
    }

    /// The argv of the ExecSync helper (`berth cri exec`), which runs `cmd` in the
    /// container with its stdout/stderr as the helper's and writes the result to `result`.
    pub(crate) fn exec_helper(
        &self,
        id: &str,
        cmd: &[String],
        timeout: i64,
        result: &Path,
        mode: &crate::monitor::ExecMode,
    ) -> Result<(PathBuf, Vec<String>)> {
        let c = self.layout.container(id)?;
        let o = self.observe(&c)?;
        if o.state != api::ContainerState::ContainerRunning {
            return Err(Error::BadState(format!(
                "container {}: is {}, exec needs a running container",
                c.id,
                state_name(o.state)
            )));
        }
        if cmd.is_empty() {
            return Err(invalid("cmd", "must not be empty"));
        }
        let mut argv = vec![
            "cri".to_string(),
            "exec".into(),
            "--runtime-root".into(),
            self.config.runtime_root.display().to_string(),
            "--timeout".into(),
            timeout.max(0).to_string(),
            "--result".into(),
            result.display().to_string(),
        ];
        argv.extend(mode.args());
        argv.extend([c.id.clone(), "--".into()]);
        argv.extend(cmd.iter().cloned());
        Ok((self.exe.clone(), argv))
    }
}

pub(crate) fn state_name(s: api::ContainerState) -> &'static str {
    match s {
        api::ContainerState::ContainerCreated => "created",
        api::ContainerState::ContainerRunning => "running",
        api::ContainerState::ContainerExited => "exited",
        api::ContainerState::ContainerUnknown => "unknown",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capability_arithmetic() {
        let c = capabilities(Some(&api::Capability {
            add_capabilities: vec!["NET_ADMIN".into()],
            drop_capabilities: vec!["chown".into(), "CAP_KILL".into()],
            ..Default::default()
        }))
        .unwrap();
        assert!(c.contains(&"CAP_NET_ADMIN".to_string()));
        assert!(!c.contains(&"CAP_CHOWN".to_string()) && !c.contains(&"CAP_KILL".to_string()));
        let c = capabilities(Some(&api::Capability {
            add_capabilities: vec!["SYS_TIME".into()],
            drop_capabilities: vec!["ALL".into()],
            ..Default::default()
        }))
        .unwrap();
        assert_eq!(c, ["CAP_SYS_TIME"]);
        assert!(capabilities(Some(&api::Capability {
            add_capabilities: vec!["BOGUS".into()],
            ..Default::default()
        }))
        .is_err());
        assert_eq!(
            capabilities(None).unwrap().len(),
            DEFAULT_CAPABILITIES.len()
        );
    }

    /// A Cri on temp dirs and a pod record with pinned namespaces at made-up paths.
    fn fixture(d: &Path, host_network: bool) -> (Cri, crate::meta::Pod) {
        let cfg = crate::Config::load(None, Some("unix:///nonexistent/cri.sock"), Some(d)).unwrap();
        let cri = Cri::open(cfg).unwrap();
        let ns = |n: &str| (!host_network).then(|| d.join("ns").join(n));
        let pod = crate::meta::Pod {
            id: "p".repeat(64),
            names: Names::default(),
            created_at: 0,
            state: PodState::Ready,
            labels: Default::default(),
            annotations: Default::default(),
            hostname: "podhost".into(),
            log_directory: String::new(),
            netns: ns("net"),
            ipcns: ns("ipc"),
            utsns: ns("uts"),
            network: None,
            ip: None,
            cgroup_parent: String::new(),
            sysctls: [("net.ipv4.ip_forward".to_string(), "1".to_string())].into(),
            resolv_conf: Some(d.join("resolv.conf")),
        };
        (cri, pod)
    }

    fn spec_for(cri: &Cri, pod: &crate::meta::Pod, config: &api::ContainerConfig) -> Result<Value> {
        let rootfs = tempfile::tempdir().unwrap();
        let image = berth_image::oci::RunConfig {
            cmd: Some(vec!["true".into()]),
            ..Default::default()
        };
        let base = berth_engine::spec::build_spec(
            &image,
            &berth_engine::RunOverrides::default(),
            rootfs.path(),
            "c1",
            &[],
        )
        .unwrap();
        let (spec, _) = cri.apply(&base, &"c".repeat(64), pod, config)?;
        Ok(serde_json::to_value(spec).unwrap())
    }

    #[test]
    fn the_container_config_reaches_the_spec() {
        let d = tempfile::tempdir().unwrap();
        let (cri, pod) = fixture(d.path(), false);
        let host = d.path().join("data");
        let config = api::ContainerConfig {
            mounts: vec![api::Mount {
                container_path: "/data".into(),
                host_path: host.display().to_string(),
                readonly: true,
                propagation: api::MountPropagation::PropagationHostToContainer as i32,
                ..Default::default()
            }],
            linux: Some(api::LinuxContainerConfig {
                resources: Some(api::LinuxContainerResources {
                    memory_limit_in_bytes: 64 << 20,
                    cpu_quota: 50_000,
                    cpu_period: 100_000,
                    oom_score_adj: 500,
                    ..Default::default()
                }),
                security_context: Some(api::LinuxContainerSecurityContext {
                    capabilities: Some(api::Capability {
                        add_capabilities: vec!["NET_BIND_SERVICE".into()],
                        drop_capabilities: vec!["ALL".into()],
                        ..Default::default()
                    }),
                    readonly_rootfs: true,
                    seccomp: Some(api::SecurityProfile::default()), // RuntimeDefault
                    namespace_options: Some(api::NamespaceOption {
                        pid: NS_NODE,
                        ..Default::default()
                    }),
                    ..Default::default()
                }),
            }),
            ..Default::default()
        };
        let v = spec_for(&cri, &pod, &config).unwrap();
        let ns = v["linux"]["namespaces"].as_array().unwrap();
        let path_of = |t: &str| {
            ns.iter()
                .find(|n| n["type"] == t)
                .map(|n| n["path"].clone())
        };
        assert_eq!(path_of("network"), Some(json!(d.path().join("ns/net"))));
        assert_eq!(path_of("ipc"), Some(json!(d.path().join("ns/ipc"))));
        assert_eq!(path_of("uts"), Some(json!(d.path().join("ns/uts"))));
        assert_eq!(
            path_of("mount"),
            Some(Value::Null),
            "a mount namespace of its own"
        );
        assert_eq!(path_of("pid"), None, "pid NODE: the host's");
        assert!(
            v.get("hostname").is_none(),
            "the pinned UTS namespace has it"
        );
        assert!(host.is_dir(), "a missing host path becomes a directory");
        let mounts = v["mounts"].as_array().unwrap();
        let dests: Vec<&str> = mounts
            .iter()
            .filter_map(|m| m["destination"].as_str())
            .collect();
        assert!(dests.contains(&"/etc/resolv.conf") && dests.contains(&"/etc/hostname"));
        let data = mounts.iter().find(|m| m["destination"] == "/data").unwrap();
        assert_eq!(data["options"], json!(["rbind", "rslave", "ro"]));
        assert_eq!(
            v["process"]["capabilities"]["bounding"],
            json!(["CAP_NET_BIND_SERVICE"])
        );
        assert_eq!(v["process"]["noNewPrivileges"], false);
        assert_eq!(v["process"]["oomScoreAdj"], 500);
        assert!(v["process"]["env"]
            .as_array()
            .unwrap()
            .contains(&json!("HOSTNAME=podhost")));
        assert_eq!(v["root"]["readonly"], true);
        assert_eq!(v["linux"]["resources"]["memory"]["limit"], 64 << 20);
        assert_eq!(v["linux"]["resources"]["cpu"]["quota"], 50_000);
        assert_eq!(v["linux"]["sysctl"]["net.ipv4.ip_forward"], "1");
        assert_eq!(v["linux"]["seccomp"]["defaultAction"], "SCMP_ACT_ERRNO");

        // Host network, no seccomp profile: no network namespace, no filter.
        let (cri, pod) = fixture(d.path(), true);
        let v = spec_for(&cri, &pod, &api::ContainerConfig::default()).unwrap();
        let ns = v["linux"]["namespaces"].as_array().unwrap();
        assert!(!ns
            .iter()
            .any(|n| n["type"] == "network" || n["type"] == "uts"));
        assert!(v["linux"].get("seccomp").is_none_or(|s| s.is_null()));
        assert_eq!(
            v["process"]["capabilities"]["bounding"]
                .as_array()
                .unwrap()
                .len(),
            DEFAULT_CAPABILITIES.len()
        );

        // Relative paths and unknown capabilities are refused.
        let bad = api::ContainerConfig {
            mounts: vec![api::Mount {
                container_path: "rel".into(),
                host_path: "/tmp".into(),
                ..Default::default()
            }],
            ..Default::default()
        };
        let e = spec_for(&cri, &pod, &bad).unwrap_err().to_string();
        assert!(e.contains("mounts.container_path"), "{e}");
    }

    #[test]
    fn users() {
        let mut sc = api::LinuxContainerSecurityContext::default();
        assert_eq!(user_of(&sc), None);
        sc.run_as_user = Some(api::Int64Value { value: 1000 });
        assert_eq!(user_of(&sc).as_deref(), Some("1000"));
        sc.run_as_group = Some(api::Int64Value { value: 50 });
        assert_eq!(user_of(&sc).as_deref(), Some("1000:50"));
    }
}
