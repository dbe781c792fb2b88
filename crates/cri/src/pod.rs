//! Pod sandboxes without a pause container: the pod's network, IPC and UTS namespaces
//! are created by a short-lived thread and pinned by bind-mounting their nsfs files
//! under `<pod dir>/ns/` (as CRI-O does); containers join them by path. The network
//! namespace is attached to the first CNI network (by file name) in the CNI config
//! directory through berth-net, or keeps loopback only when there is none.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::sched::{unshare, CloneFlags};

use crate::api;
use crate::error::{invalid, sys, Error, IoContext, Result};
use crate::meta::{now_nanos, random_id, Names, Pod, PodState};
use crate::Cri;

/// `NamespaceMode` of the CRI: POD = 0, CONTAINER = 1, NODE = 2, TARGET = 3.
pub(crate) const NS_POD: i32 = 0;
pub(crate) const NS_CONTAINER: i32 = 1;
pub(crate) const NS_NODE: i32 = 2;

/// Create new IPC and/or UTS namespaces on a thread (unshare moves only the calling
/// thread) and bind-mount each onto `dir/ipc`, `dir/uts`. Returns the pinned paths.
fn pin_ipc_uts(
    dir: &Path,
    ipc: bool,
    hostname: &str,
) -> Result<(Option<PathBuf>, Option<PathBuf>)> {
    let mut wanted = vec![("uts", CloneFlags::CLONE_NEWUTS)];
    if ipc {
        wanted.push(("ipc", CloneFlags::CLONE_NEWIPC));
    }
    let mut made = Vec::new();
    for (name, _) in &wanted {
        let p = dir.join(name);
        std::fs::File::options()
            .write(true)
            .create_new(true)
            .open(&p)
            .at(&p)?;
        made.push(p);
    }
    let targets = made.clone();
    let hostname = hostname.to_string();
    let pinned = std::thread::spawn(move || -> Result<()> {
        let flags = wanted.iter().fold(CloneFlags::empty(), |f, (_, c)| f | *c);
        unshare(flags).map_err(sys("unshare(CLONE_NEWUTS|CLONE_NEWIPC)"))?;
        nix::unistd::sethostname(&hostname).map_err(sys(format!("sethostname {hostname:?}")))?;
        for ((name, _), target) in wanted.iter().zip(&targets) {
            let me = format!("/proc/thread-self/ns/{name}");
            mount(
                Some(me.as_str()),
                target,
                None::<&str>,
                MsFlags::MS_BIND,
                None::<&str>,
            )
            .map_err(sys(format!("bind-mount {me} on {}", target.display())))?;
        }
        Ok(())
    })
    .join()
    .unwrap_or_else(|_| Err(sys("namespace thread")(nix::Error::EIO)));
    if let Err(e) = pinned {
        for p in &made {
            unpin(p);
        }
        return Err(e);
    }
    let uts = Some(made[0].clone());
    let ipc = made.get(1).cloned();
    Ok((ipc, uts))
}

/// Unmount and remove a pinned namespace file; one already gone is fine.
pub(crate) fn unpin(p: &Path) {
    let _ = umount2(p, MntFlags::MNT_DETACH);
    let _ = std::fs::remove_file(p);
}

/// The pod's resolv.conf: the request's DNS config, else the host's file.
fn resolv_conf(dns: Option<&api::DnsConfig>) -> Result<String> {
    match dns {
        Some(d) if !(d.servers.is_empty() && d.searches.is_empty() && d.options.is_empty()) => {
            let mut s = String::new();
            if !d.searches.is_empty() {
                s.push_str(&format!("search {}\n", d.searches.join(" ")));
            }
            for n in &d.servers {
                s.push_str(&format!("nameserver {n}\n"));
            }
            if !d.options.is_empty() {
                s.push_str(&format!("options {}\n", d.options.join(" ")));
            }
            Ok(s)
        }
        _ => Ok(std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default()),
    }
}

/// The pod's host ports as CNI's `portMappings` capability (for the portmap plugin);
/// mappings without a host port need no plumbing.
fn port_mappings(ports: &[api::PortMapping]) -> Vec<serde_json::Value> {
    ports
        .iter()
        .filter(|p| p.host_port > 0)
        .map(|p| {
            let protocol = match api::Protocol::try_from(p.protocol) {
                Ok(api::Protocol::Udp) => "udp",
                Ok(api::Protocol::Sctp) => "sctp",
                _ => "tcp",
            };
            let mut m = serde_json::json!({
                "hostPort": p.host_port, "containerPort": p.container_port, "protocol": protocol,
            });
            if !p.host_ip.is_empty() {
                m["hostIP"] = serde_json::json!(p.host_ip);
            }
            m
        })
        .collect()
}

fn valid_hostname(h: &str) -> bool {
    !h.is_empty()
        && h.len() <= 64
        && h.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
}

pub(crate) fn to_map(m: &std::collections::HashMap<String, String>) -> BTreeMap<String, String> {
    m.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
}

impl Cri {
    fn cni_request(&self, pod: &Pod) -> berth_net::Request {
        berth_net::Request {
            container_id: pod.id.clone(),
            netns: pod.netns.clone(),
            ifname: "eth0".into(),
            args: vec![
                ("IgnoreUnknown".into(), "1".into()),
                ("K8S_POD_NAMESPACE".into(), pod.names.namespace.clone()),
                ("K8S_POD_NAME".into(), pod.names.name.clone()),
                ("K8S_POD_INFRA_CONTAINER_ID".into(), pod.id.clone()),
                ("K8S_POD_UID".into(), pod.names.uid.clone()),
            ],
            capabilities: Default::default(),
        }
    }

    /// The CNI network pods join: the first configuration file by name, as kubelet's
    /// other runtimes pick it. `None` when the directory holds none.
    pub(crate) fn cni_network(&self) -> Result<Option<berth_net::Network>> {
        let mut nets = berth_net::Network::list(std::slice::from_ref(&self.config.cni_conf_dir))?;
        nets.sort_by(|a, b| a.source.cmp(&b.source));
        Ok(nets.into_iter().next())
    }

    pub fn run_pod_sandbox(&self, config: &api::PodSandboxConfig) -> Result<String> {
        let md = config
            .metadata
            .as_ref()
            .ok_or_else(|| invalid("config.metadata", "missing"))?;
        if md.name.is_empty() {
            return Err(invalid("config.metadata.name", "must not be empty"));
        }
        let linux = config.linux.clone().unwrap_or_default();
        let sc = linux.security_context.clone().unwrap_or_default();
        if sc.privileged {
            return Err(Error::Unsupported(
                "config.linux.security_context.privileged: privileged pods are not supported"
                    .into(),
            ));
        }
        // proto3 cannot tell POD (0) from unset: no options at all means the defaults
        // kubelet sends (pod network and IPC, a PID namespace per container).
        let ns = sc
            .namespace_options
            .clone()
            .unwrap_or(api::NamespaceOption {
                network: NS_POD,
                pid: NS_CONTAINER,
                ipc: NS_POD,
                ..Default::default()
            });
        if ns.pid == NS_POD {
            return Err(Error::Unsupported(
                "namespace_options.pid POD (shareProcessNamespace) is not supported: without a pause process there is no pod-wide PID namespace to pin".into(),
            ));
        }
        if ns
            .userns_options
            .as_ref()
            .is_some_and(|u| u.mode != NS_NODE)
        {
            return Err(Error::Unsupported(
                "namespace_options.userns_options: user namespaces are not supported".into(),
            ));
        }
        let hostname = if config.hostname.is_empty() {
            md.name.clone()
        } else {
            config.hostname.clone()
        };
        if ns.network != NS_NODE && !valid_hostname(&hostname) {
            return Err(invalid(
                "config.hostname",
                format!("{hostname:?} is not a valid host name"),
            ));
        }
        let _lock = self.lock();
        let names = Names {
            name: md.name.clone(),
            uid: md.uid.clone(),
            namespace: md.namespace.clone(),
            attempt: md.attempt,
        };
        if let Some(p) = self.layout.pods()?.into_iter().find(|p| {
            p.names.name == names.name
                && p.names.namespace == names.namespace
                && p.names.uid == names.uid
                && p.names.attempt == names.attempt
        }) {
            return Err(Error::NameInUse {
                what: "pod sandbox",
                name: format!(
                    "{}_{}_{}_{}",
                    names.name, names.namespace, names.uid, names.attempt
                ),
                id: p.id,
            });
        }
        let id = random_id()?;
        let dir = self.layout.pod_dir(&id);
        std::fs::create_dir(&dir).at(&dir)?;
        let mut pod = Pod {
            id: id.clone(),
            names,
            created_at: now_nanos(),
            state: PodState::Ready,
            labels: to_map(&config.labels),
            annotations: to_map(&config.annotations),
            hostname,
            log_directory: config.log_directory.clone(),
            netns: None,
            ipcns: None,
            utsns: None,
            network: None,
            ip: None,
            cgroup_parent: linux.cgroup_parent.clone(),
            sysctls: to_map(&linux.sysctls),
            resolv_conf: None,
        };
        let made = self.set_up_pod(&mut pod, &ns, config);
        if let Err(e) = made {
            tracing::warn!(pod = id, error = %e, "pod sandbox set-up failed; undoing");
            self.tear_down_pod(&pod);
            let _ = std::fs::remove_dir_all(&dir);
            return Err(e);
        }
        tracing::info!(
            pod = id,
            name = pod.names.name,
            ip = pod.ip,
            "pod sandbox ready"
        );
        Ok(id)
    }

    /// Namespaces, network, files; each recorded in `pod` as soon as it exists so
    /// [`Cri::tear_down_pod`] undoes exactly what was made.
    fn set_up_pod(
        &self,
        pod: &mut Pod,
        ns: &api::NamespaceOption,
        config: &api::PodSandboxConfig,
    ) -> Result<()> {
        let dir = self.layout.pod_dir(&pod.id);
        let nsdir = dir.join("ns");
        std::fs::create_dir(&nsdir).at(&nsdir)?;
        if ns.network != NS_NODE {
            let (ipc, uts) = pin_ipc_uts(&nsdir, ns.ipc != NS_NODE, &pod.hostname)?;
            pod.ipcns = ipc;
            pod.utsns = uts;
            self.layout.save_pod(pod)?;
            let netns = berth_net::NetNs::create(&nsdir, "net")?;
            pod.netns = Some(netns.path);
            self.layout.save_pod(pod)?;
            if let Some(net) = self.cni_network()? {
                pod.network = Some(net.name.clone());
                self.layout.save_pod(pod)?;
                let mut req = self.cni_request(pod);
                let ports = port_mappings(&config.port_mappings);
                if !ports.is_empty() {
                    req.capabilities
                        .insert("portMappings".into(), serde_json::Value::Array(ports));
                }
                let att = self.cni.attach(&net, &req)?;
                pod.ip = att.ipv4().map(|(a, _)| a.to_string());
            } else {
                tracing::warn!(
                    pod = pod.id,
                    dir = %self.config.cni_conf_dir.display(),
                    "no CNI network configured: the pod has loopback only"
                );
            }
        } else if ns.ipc != NS_NODE {
            let (ipc, _) = pin_ipc_uts(&nsdir, true, &pod.hostname)?;
            pod.ipcns = ipc;
        }
        let resolv = dir.join("resolv.conf");
        std::fs::write(&resolv, resolv_conf(config.dns_config.as_ref())?).at(&resolv)?;
        pod.resolv_conf = Some(resolv);
        std::fs::write(dir.join("hostname"), format!("{}\n", pod.hostname))
            .at(dir.join("hostname"))?;
        self.layout.save_pod(pod)
    }

    /// Detach from CNI and unpin the namespaces (idempotent).
    fn tear_down_pod(&self, pod: &Pod) {
        if let (Some(net), Some(_)) = (&pod.network, &pod.netns) {
            let fallback = self.cni_network().ok().flatten().filter(|n| &n.name == net);
            if let Err(e) = self
                .cni
                .detach(net, &self.cni_request(pod), fallback.as_ref())
            {
                tracing::warn!(pod = pod.id, error = %e, "CNI DEL failed");
            }
        }
        if let Some(p) = &pod.netns {
            let _ = berth_net::NetNs { path: p.clone() }.remove();
        }
        for p in [&pod.ipcns, &pod.utsns].into_iter().flatten() {
            unpin(p);
        }
    }

    /// Stop every container of the pod, detach its network, release its namespaces.
    /// Stopping a stopped or unknown pod succeeds.
    pub fn stop_pod_sandbox(&self, id: &str) -> Result<()> {
        let Some(mut pod) = self.layout.find_pod(id)? else {
            return Ok(());
        };
        for c in self
            .layout
            .containers()?
            .iter()
            .filter(|c| c.pod_id == pod.id)
        {
            self.stop_container(&c.id, 0)?;
        }
        let _lock = self.lock();
        if pod.state == PodState::Ready || pod.netns.is_some() {
            self.tear_down_pod(&pod);
            pod.state = PodState::NotReady;
            pod.netns = None;
            pod.ipcns = None;
            pod.utsns = None;
            pod.ip = None;
            self.layout.save_pod(&pod)?;
        }
        tracing::info!(pod = pod.id, "pod sandbox stopped");
        Ok(())
    }

    /// Remove the pod and all its containers (killed first). Removing an unknown pod
    /// succeeds.
    pub fn remove_pod_sandbox(&self, id: &str) -> Result<()> {
        let Some(pod) = self.layout.find_pod(id)? else {
            return Ok(());
        };
        for c in self
            .layout
            .containers()?
            .iter()
            .filter(|c| c.pod_id == pod.id)
        {
            self.remove_container(&c.id)?;
        }
        let _lock = self.lock();
        self.tear_down_pod(&pod);
        let dir = self.layout.pod_dir(&pod.id);
        std::fs::remove_file(dir.join(crate::meta::POD)).at(dir.join(crate::meta::POD))?;
        std::fs::remove_dir_all(&dir).at(&dir)?;
        tracing::info!(pod = pod.id, "pod sandbox removed");
        Ok(())
    }

    pub(crate) fn pod_to_api(&self, p: &Pod) -> api::PodSandbox {
        api::PodSandbox {
            id: p.id.clone(),
            metadata: Some(metadata(&p.names)),
            state: pod_state(p),
            created_at: p.created_at,
            labels: p.labels.clone().into_iter().collect(),
            annotations: p.annotations.clone().into_iter().collect(),
            runtime_handler: String::new(),
        }
    }

    pub fn pod_sandbox_status(&self, id: &str) -> Result<api::PodSandboxStatus> {
        let p = self.layout.pod(id)?;
        let mode = |pinned: bool| if pinned { NS_POD } else { NS_NODE };
        Ok(api::PodSandboxStatus {
            id: p.id.clone(),
            metadata: Some(metadata(&p.names)),
            state: pod_state(&p),
            created_at: p.created_at,
            network: Some(api::PodSandboxNetworkStatus {
                ip: p.ip.clone().unwrap_or_default(),
                additional_ips: vec![],
            }),
            linux: Some(api::LinuxPodSandboxStatus {
                namespaces: Some(api::Namespace {
                    options: Some(api::NamespaceOption {
                        network: mode(p.netns.is_some() || p.state == PodState::NotReady),
                        pid: NS_CONTAINER,
                        ipc: mode(p.ipcns.is_some() || p.state == PodState::NotReady),
                        target_id: String::new(),
                        userns_options: None,
                    }),
                }),
            }),
            labels: p.labels.clone().into_iter().collect(),
            annotations: p.annotations.clone().into_iter().collect(),
            runtime_handler: String::new(),
        })
    }

    pub fn list_pod_sandbox(
        &self,
        filter: Option<&api::PodSandboxFilter>,
    ) -> Result<Vec<api::PodSandbox>> {
        let pods = self.layout.pods()?;
        Ok(pods
            .iter()
            .filter(|p| match filter {
                None => true,
                Some(f) => {
                    (f.id.is_empty() || p.id.starts_with(&f.id))
                        && f.state.as_ref().is_none_or(|s| s.state == pod_state(p))
                        && f.label_selector
                            .iter()
                            .all(|(k, v)| p.labels.get(k) == Some(v))
                }
            })
            .map(|p| self.pod_to_api(p))
            .collect())
    }
}

fn pod_state(p: &Pod) -> i32 {
    match p.state {
        PodState::Ready => api::PodSandboxState::SandboxReady as i32,
        PodState::NotReady => api::PodSandboxState::SandboxNotready as i32,
    }
}

fn metadata(n: &Names) -> api::PodSandboxMetadata {
    api::PodSandboxMetadata {
        name: n.name.clone(),
        uid: n.uid.clone(),
        namespace: n.namespace.clone(),
        attempt: n.attempt,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_ports_become_the_portmap_capability() {
        let m = port_mappings(&[
            api::PortMapping {
                protocol: api::Protocol::Udp as i32,
                container_port: 53,
                host_port: 5353,
                host_ip: "127.0.0.1".into(),
            },
            api::PortMapping {
                container_port: 80,
                ..Default::default()
            },
        ]);
        assert_eq!(
            m,
            [
                serde_json::json!({"hostPort": 5353, "containerPort": 53, "protocol": "udp", "hostIP": "127.0.0.1"})
            ]
        );
    }

    #[test]
    fn resolv_conf_from_the_dns_config() {
        let d = api::DnsConfig {
            servers: vec!["10.96.0.10".into()],
            searches: vec![
                "default.svc.cluster.local".into(),
                "svc.cluster.local".into(),
            ],
            options: vec!["ndots:5".into()],
        };
        assert_eq!(
            resolv_conf(Some(&d)).unwrap(),
            "search default.svc.cluster.local svc.cluster.local\nnameserver 10.96.0.10\noptions ndots:5\n"
        );
        assert!(valid_hostname("web-0.example") && !valid_hostname("a b") && !valid_hostname(""));
    }
}
