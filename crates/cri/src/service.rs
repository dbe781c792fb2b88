//! The gRPC services: each RPC runs the blocking work of [`Cri`] on tokio's blocking
//! pool and turns errors into statuses. RPCs berth does not implement answer
//! `Unimplemented` with a message saying so.

use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use tonic::{Request, Response, Status};

use crate::api;
use crate::api::image_service_server::ImageService;
use crate::api::runtime_service_server::RuntimeService;
use crate::error::{Error, Result};
use crate::Cri;

/// The CRI version this server speaks.
pub const RUNTIME_API_VERSION: &str = "v1";
/// ExecSync output beyond this is dropped (CRI's rule, CVE-2022-1708).
const MAX_EXEC_OUTPUT: usize = 16 << 20;

#[derive(Clone)]
pub struct Service {
    pub cri: Arc<Cri>,
    pub streaming: Arc<crate::streaming::Streaming>,
    pub(crate) events: Arc<crate::events::Events>,
}

type Reply<T> = std::result::Result<Response<T>, Status>;

impl Service {
    /// Run `f` on the blocking pool; log and convert its error.
    async fn run<T: Send + 'static>(
        &self,
        rpc: &'static str,
        f: impl FnOnce(&Cri) -> Result<T> + Send + 'static,
    ) -> std::result::Result<T, Status> {
        let cri = self.cri.clone();
        tracing::debug!(rpc, "request");
        match tokio::task::spawn_blocking(move || f(&cri)).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => {
                tracing::warn!(rpc, error = %e, "failed");
                Err(e.status())
            }
            Err(e) => Err(Status::internal(format!("{rpc}: {e}"))),
        }
    }
}

fn truncate(mut v: Vec<u8>) -> Vec<u8> {
    v.truncate(MAX_EXEC_OUTPUT);
    v
}

#[tonic::async_trait]
impl RuntimeService for Service {
    async fn version(&self, _r: Request<api::VersionRequest>) -> Reply<api::VersionResponse> {
        Ok(Response::new(api::VersionResponse {
            version: "0.1.0".into(),
            runtime_name: "berth".into(),
            runtime_version: env!("CARGO_PKG_VERSION").into(),
            runtime_api_version: RUNTIME_API_VERSION.into(),
        }))
    }

    async fn status(&self, r: Request<api::StatusRequest>) -> Reply<api::StatusResponse> {
        let verbose = r.into_inner().verbose;
        let (net, cfg) = self
            .run("Status", |c| Ok((c.cni_network()?, c.config.clone())))
            .await?;
        let mut info = std::collections::HashMap::new();
        if verbose {
            info.insert(
                "config".to_string(),
                serde_json::json!({
                    "root": cfg.root,
                    "runtimeRoot": cfg.runtime_root,
                    "cniConfDir": cfg.cni_conf_dir,
                    "cniPluginDirs": cfg.cni_plugin_dirs,
                    "network": net.as_ref().map(|n| n.name.clone()),
                })
                .to_string(),
            );
        }
        let network = match &net {
            Some(_) => api::RuntimeCondition {
                r#type: "NetworkReady".into(),
                status: true,
                ..Default::default()
            },
            None => api::RuntimeCondition {
                r#type: "NetworkReady".into(),
                status: false,
                reason: "NetworkPluginNotReady".into(),
                message: format!(
                    "no CNI network configuration in {}: pods get loopback only",
                    cfg.cni_conf_dir.display()
                ),
            },
        };
        Ok(Response::new(api::StatusResponse {
            status: Some(api::RuntimeStatus {
                conditions: vec![
                    api::RuntimeCondition {
                        r#type: "RuntimeReady".into(),
                        status: true,
                        ..Default::default()
                    },
                    network,
                ],
            }),
            info,
            ..Default::default()
        }))
    }

    async fn run_pod_sandbox(
        &self,
        r: Request<api::RunPodSandboxRequest>,
    ) -> Reply<api::RunPodSandboxResponse> {
        let r = r.into_inner();
        if !r.runtime_handler.is_empty() {
            return Err(Error::Unsupported(format!(
                "runtime_handler {:?}: berth has only the default handler",
                r.runtime_handler
            ))
            .status());
        }
        let config = r.config.unwrap_or_default();
        let id = self
            .run("RunPodSandbox", move |c| c.run_pod_sandbox(&config))
            .await?;
        Ok(Response::new(api::RunPodSandboxResponse {
            pod_sandbox_id: id,
        }))
    }

    async fn stop_pod_sandbox(
        &self,
        r: Request<api::StopPodSandboxRequest>,
    ) -> Reply<api::StopPodSandboxResponse> {
        let id = r.into_inner().pod_sandbox_id;
        self.run("StopPodSandbox", move |c| c.stop_pod_sandbox(&id))
            .await?;
        Ok(Response::new(api::StopPodSandboxResponse {}))
    }

    async fn remove_pod_sandbox(
        &self,
        r: Request<api::RemovePodSandboxRequest>,
    ) -> Reply<api::RemovePodSandboxResponse> {
        let id = r.into_inner().pod_sandbox_id;
        self.run("RemovePodSandbox", move |c| c.remove_pod_sandbox(&id))
            .await?;
        Ok(Response::new(api::RemovePodSandboxResponse {}))
    }

    async fn pod_sandbox_status(
        &self,
        r: Request<api::PodSandboxStatusRequest>,
    ) -> Reply<api::PodSandboxStatusResponse> {
        let r = r.into_inner();
        let (status, verbose) = (
            self.run("PodSandboxStatus", {
                let id = r.pod_sandbox_id.clone();
                move |c| c.pod_sandbox_status(&id)
            })
            .await?,
            r.verbose,
        );
        let mut info = std::collections::HashMap::new();
        if verbose {
            info.insert(
                "info".to_string(),
                serde_json::json!({"id": status.id, "pinnedNamespaces": true}).to_string(),
            );
        }
        Ok(Response::new(api::PodSandboxStatusResponse {
            status: Some(status),
            info,
            ..Default::default()
        }))
    }

    async fn list_pod_sandbox(
        &self,
        r: Request<api::ListPodSandboxRequest>,
    ) -> Reply<api::ListPodSandboxResponse> {
        let filter = r.into_inner().filter;
        let items = self
            .run("ListPodSandbox", move |c| {
                c.list_pod_sandbox(filter.as_ref())
            })
            .await?;
        Ok(Response::new(api::ListPodSandboxResponse { items }))
    }

    async fn create_container(
        &self,
        r: Request<api::CreateContainerRequest>,
    ) -> Reply<api::CreateContainerResponse> {
        let r = r.into_inner();
        let config = r.config.unwrap_or_default();
        let pod = r.pod_sandbox_id;
        let id = self
            .run("CreateContainer", move |c| {
                c.create_container(&pod, &config)
            })
            .await?;
        Ok(Response::new(api::CreateContainerResponse {
            container_id: id,
        }))
    }

    async fn start_container(
        &self,
        r: Request<api::StartContainerRequest>,
    ) -> Reply<api::StartContainerResponse> {
        let id = r.into_inner().container_id;
        self.run("StartContainer", move |c| c.start_container(&id))
            .await?;
        Ok(Response::new(api::StartContainerResponse {}))
    }

    async fn stop_container(
        &self,
        r: Request<api::StopContainerRequest>,
    ) -> Reply<api::StopContainerResponse> {
        let r = r.into_inner();
        self.run("StopContainer", move |c| {
            c.stop_container(&r.container_id, r.timeout)
        })
        .await?;
        Ok(Response::new(api::StopContainerResponse {}))
    }

    async fn remove_container(
        &self,
        r: Request<api::RemoveContainerRequest>,
    ) -> Reply<api::RemoveContainerResponse> {
        let id = r.into_inner().container_id;
        self.run("RemoveContainer", move |c| c.remove_container(&id))
            .await?;
        Ok(Response::new(api::RemoveContainerResponse {}))
    }

    async fn list_containers(
        &self,
        r: Request<api::ListContainersRequest>,
    ) -> Reply<api::ListContainersResponse> {
        let filter = r.into_inner().filter;
        let containers = self
            .run("ListContainers", move |c| {
                c.list_containers(filter.as_ref())
            })
            .await?;
        Ok(Response::new(api::ListContainersResponse { containers }))
    }

    async fn container_status(
        &self,
        r: Request<api::ContainerStatusRequest>,
    ) -> Reply<api::ContainerStatusResponse> {
        let r = r.into_inner();
        let (status, info) = self
            .run("ContainerStatus", move |c| {
                c.container_status(&r.container_id, r.verbose)
            })
            .await?;
        Ok(Response::new(api::ContainerStatusResponse {
            status: Some(status),
            info,
        }))
    }

    async fn exec_sync(&self, r: Request<api::ExecSyncRequest>) -> Reply<api::ExecSyncResponse> {
        let r = r.into_inner();
        let (id, cmd, timeout) = (r.container_id, r.cmd, r.timeout);
        let (exe, argv, result) = self
            .run("ExecSync", {
                let cmd = cmd.clone();
                move |c| {
                    let ctr = c.layout.container(&id)?;
                    let result = c
                        .layout
                        .container_dir(&ctr.id)
                        .join(format!("exec-{}.json", &crate::meta::random_id()?[..16]));
                    let (exe, argv) =
                        c.exec_helper(&ctr.id, &cmd, timeout, &result, &Default::default())?;
                    Ok((exe, argv, result))
                }
            })
            .await?;
        let child = tokio::process::Command::new(exe)
            .args(argv)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| Status::internal(format!("ExecSync: starting the exec helper: {e}")))?;
        // The helper enforces the timeout itself; this only guards against a process
        // that left the pipes open behind it.
        let guard = Duration::from_secs(if timeout > 0 {
            timeout as u64 + 30
        } else {
            24 * 3600
        });
        let out = tokio::time::timeout(guard, child.wait_with_output())
            .await
            .map_err(|_| {
                Error::Timeout {
                    cmd: cmd.join(" "),
                    secs: timeout,
                }
                .status()
            })?
            .map_err(|e| Status::internal(format!("ExecSync: waiting for the exec helper: {e}")))?;
        let res: Option<crate::monitor::ExecResult> =
            crate::meta::read(&result).map_err(|e| e.status())?;
        let _ = std::fs::remove_file(&result);
        match res {
            Some(crate::monitor::ExecResult {
                exit_code: Some(code),
                ..
            }) => Ok(Response::new(api::ExecSyncResponse {
                stdout: truncate(out.stdout),
                stderr: truncate(out.stderr),
                exit_code: code,
            })),
            Some(crate::monitor::ExecResult {
                timed_out: true, ..
            }) => Err(Error::Timeout {
                cmd: cmd.join(" "),
                secs: timeout,
            }
            .status()),
            Some(crate::monitor::ExecResult { error: Some(e), .. }) => Err(
                Status::failed_precondition(format!("ExecSync {cmd:?}: {e}")),
            ),
            _ => Err(Status::internal(format!(
                "ExecSync {cmd:?}: the exec helper exited ({}) without a result",
                out.status
            ))),
        }
    }

    async fn update_container_resources(
        &self,
        r: Request<api::UpdateContainerResourcesRequest>,
    ) -> Reply<api::UpdateContainerResourcesResponse> {
        let r = r.into_inner();
        self.run("UpdateContainerResources", move |c| {
            c.update_container_resources(&r.container_id, r.linux.as_ref())
        })
        .await?;
        Ok(Response::new(api::UpdateContainerResourcesResponse {}))
    }

    async fn reopen_container_log(
        &self,
        r: Request<api::ReopenContainerLogRequest>,
    ) -> Reply<api::ReopenContainerLogResponse> {
        let id = r.into_inner().container_id;
        self.run("ReopenContainerLog", move |c| c.reopen_container_log(&id))
            .await?;
        Ok(Response::new(api::ReopenContainerLogResponse {}))
    }

    async fn runtime_config(
        &self,
        _r: Request<api::RuntimeConfigRequest>,
    ) -> Reply<api::RuntimeConfigResponse> {
        Ok(Response::new(api::RuntimeConfigResponse {
            linux: Some(api::LinuxRuntimeConfiguration {
                cgroup_driver: api::CgroupDriver::Cgroupfs as i32,
            }),
        }))
    }

    /// kubelet sends the node's pod CIDR; addressing belongs to the CNI config here.
    async fn update_runtime_config(
        &self,
        _r: Request<api::UpdateRuntimeConfigRequest>,
    ) -> Reply<api::UpdateRuntimeConfigResponse> {
        Ok(Response::new(api::UpdateRuntimeConfigResponse {}))
    }

    /// Check the request, then hand out a URL on the streaming server (kubelet's rules:
    /// a command, at least one stream, no stderr stream with a terminal).
    async fn exec(&self, r: Request<api::ExecRequest>) -> Reply<api::ExecResponse> {
        let r = r.into_inner();
        if r.cmd.is_empty() {
            return Err(Status::invalid_argument("cmd: must not be empty"));
        }
        if !(r.stdin || r.stdout || r.stderr) {
            return Err(Status::invalid_argument(
                "one of stdin, stdout or stderr must be set",
            ));
        }
        if r.tty && r.stderr {
            return Err(Status::invalid_argument(
                "tty and stderr cannot both be set (a terminal has one output stream)",
            ));
        }
        let id = self
            .run("Exec", move |c| {
                let ctr = c.layout.container(&r.container_id)?;
                let o = c.observe(&ctr)?;
                if o.state != api::ContainerState::ContainerRunning {
                    return Err(Error::BadState(format!(
                        "container {}: is {}, exec needs a running container",
                        ctr.id,
                        crate::container::state_name(o.state)
                    )));
                }
                Ok(crate::streaming::ExecRequest {
                    container_id: ctr.id,
                    attach: false,
                    cmd: r.cmd,
                    tty: r.tty,
                    stdin: r.stdin,
                    stdout: r.stdout,
                    stderr: r.stderr,
                })
            })
            .await?;
        let url = self
            .streaming
            .url_for(crate::streaming::Request::Exec(id))
            .map_err(|e| e.status())?;
        Ok(Response::new(api::ExecResponse { url }))
    }

    async fn container_stats(
        &self,
        r: Request<api::ContainerStatsRequest>,
    ) -> Reply<api::ContainerStatsResponse> {
        let id = r.into_inner().container_id;
        let stats = self
            .run("ContainerStats", move |c| c.container_stats(&id))
            .await?;
        Ok(Response::new(api::ContainerStatsResponse {
            stats: Some(stats),
        }))
    }

    async fn list_container_stats(
        &self,
        r: Request<api::ListContainerStatsRequest>,
    ) -> Reply<api::ListContainerStatsResponse> {
        let f = r.into_inner().filter;
        let stats = self
            .run("ListContainerStats", move |c| {
                c.list_container_stats(f.as_ref())
            })
            .await?;
        Ok(Response::new(api::ListContainerStatsResponse { stats }))
    }

    async fn pod_sandbox_stats(
        &self,
        r: Request<api::PodSandboxStatsRequest>,
    ) -> Reply<api::PodSandboxStatsResponse> {
        let id = r.into_inner().pod_sandbox_id;
        let stats = self
            .run("PodSandboxStats", move |c| c.pod_sandbox_stats(&id))
            .await?;
        Ok(Response::new(api::PodSandboxStatsResponse {
            stats: Some(stats),
        }))
    }

    async fn list_pod_sandbox_stats(
        &self,
        r: Request<api::ListPodSandboxStatsRequest>,
    ) -> Reply<api::ListPodSandboxStatsResponse> {
        let f = r.into_inner().filter;
        let stats = self
            .run("ListPodSandboxStats", move |c| {
                c.list_pod_sandbox_stats(f.as_ref())
            })
            .await?;
        Ok(Response::new(api::ListPodSandboxStatsResponse { stats }))
    }

    async fn list_metric_descriptors(
        &self,
        _r: Request<api::ListMetricDescriptorsRequest>,
    ) -> Reply<api::ListMetricDescriptorsResponse> {
        Ok(Response::new(api::ListMetricDescriptorsResponse {
            descriptors: self.cri.list_metric_descriptors(),
        }))
    }

    async fn list_pod_sandbox_metrics(
        &self,
        _r: Request<api::ListPodSandboxMetricsRequest>,
    ) -> Reply<api::ListPodSandboxMetricsResponse> {
        let pod_metrics = self
            .run("ListPodSandboxMetrics", |c| c.list_pod_sandbox_metrics())
            .await?;
        Ok(Response::new(api::ListPodSandboxMetricsResponse {
            pod_metrics,
        }))
    }

    /// A stream of container events until the client goes away; a client too slow to
    /// keep up with 1024 pending events is told so and cut off.
    async fn get_container_events(
        &self,
        _r: Request<api::GetEventsRequest>,
    ) -> Reply<tonic::codegen::BoxStream<api::ContainerEventResponse>> {
        use tokio_stream::StreamExt;
        let stream =
            tokio_stream::wrappers::BroadcastStream::new(self.events.subscribe()).map(|e| {
                e.map_err(|_| {
                    Status::resource_exhausted("container events: the client fell behind")
                })
            });
        Ok(Response::new(Box::pin(stream)))
    }

    /// A URL attaching to the container's process: its output from now on, and its
    /// stdin when the container was created with `stdin`.
    async fn attach(&self, r: Request<api::AttachRequest>) -> Reply<api::AttachResponse> {
        let r = r.into_inner();
        if !(r.stdin || r.stdout || r.stderr) {
            return Err(Status::invalid_argument(
                "one of stdin, stdout or stderr must be set",
            ));
        }
        if r.tty {
            return Err(Error::Unsupported(
                "attach tty: container terminals are not supported".into(),
            )
            .status());
        }
        let req = self
            .run("Attach", move |c| {
                let ctr = c.layout.container(&r.container_id)?;
                let o = c.observe(&ctr)?;
                if o.state != api::ContainerState::ContainerRunning {
                    return Err(Error::BadState(format!(
                        "container {}: is {}, attach needs a running container",
                        ctr.id,
                        crate::container::state_name(o.state)
                    )));
                }
                if r.stdin && !ctr.stdin {
                    return Err(crate::error::invalid(
                        "stdin",
                        format!("container {} was not created with stdin", ctr.id),
                    ));
                }
                Ok(crate::streaming::ExecRequest {
                    container_id: ctr.id,
                    attach: true,
                    cmd: Vec::new(),
                    tty: false,
                    stdin: r.stdin,
                    stdout: r.stdout,
                    stderr: r.stderr,
                })
            })
            .await?;
        let url = self
            .streaming
            .url_for(crate::streaming::Request::Attach(req))
            .map_err(|e| e.status())?;
        Ok(Response::new(api::AttachResponse { url }))
    }

    /// A URL forwarding to the pod's ports (the ports come with each stream, as
    /// kubelet reads them); the pod must be ready.
    async fn port_forward(
        &self,
        r: Request<api::PortForwardRequest>,
    ) -> Reply<api::PortForwardResponse> {
        let r = r.into_inner();
        if let Some(p) = r.port.iter().find(|p| !(1..=65535).contains(*p)) {
            return Err(Status::invalid_argument(format!(
                "port {p}: not a TCP port"
            )));
        }
        let req = self
            .run("PortForward", move |c| {
                let pod = c.layout.pod(&r.pod_sandbox_id)?;
                if pod.state != crate::meta::PodState::Ready {
                    return Err(Error::BadState(format!(
                        "pod sandbox {}: is not ready",
                        pod.id
                    )));
                }
                Ok(crate::streaming::Request::PortForward {
                    pod_id: pod.id,
                    netns: pod.netns,
                })
            })
            .await?;
        let url = self.streaming.url_for(req).map_err(|e| e.status())?;
        Ok(Response::new(api::PortForwardResponse { url }))
    }
}

#[tonic::async_trait]
impl ImageService for Service {
    async fn list_images(
        &self,
        r: Request<api::ListImagesRequest>,
    ) -> Reply<api::ListImagesResponse> {
        let filter = r.into_inner().filter.and_then(|f| f.image).map(|i| i.image);
        let images = self
            .run("ListImages", move |c| c.list_images(filter.as_deref()))
            .await?;
        Ok(Response::new(api::ListImagesResponse { images }))
    }

    async fn image_status(
        &self,
        r: Request<api::ImageStatusRequest>,
    ) -> Reply<api::ImageStatusResponse> {
        let image = r.into_inner().image.map(|i| i.image).unwrap_or_default();
        let image = self
            .run("ImageStatus", move |c| c.image_status(&image))
            .await?;
        Ok(Response::new(api::ImageStatusResponse {
            image,
            info: Default::default(),
        }))
    }

    async fn pull_image(&self, r: Request<api::PullImageRequest>) -> Reply<api::PullImageResponse> {
        let r = r.into_inner();
        let image = r.image.map(|i| i.image).unwrap_or_default();
        let auth = r.auth;
        let image_ref = self
            .run("PullImage", move |c| c.pull_image(&image, auth.as_ref()))
            .await?;
        Ok(Response::new(api::PullImageResponse { image_ref }))
    }

    async fn remove_image(
        &self,
        r: Request<api::RemoveImageRequest>,
    ) -> Reply<api::RemoveImageResponse> {
        let image = r.into_inner().image.map(|i| i.image).unwrap_or_default();
        self.run("RemoveImage", move |c| c.remove_image(&image))
            .await?;
        Ok(Response::new(api::RemoveImageResponse {}))
    }

    async fn image_fs_info(
        &self,
        _r: Request<api::ImageFsInfoRequest>,
    ) -> Reply<api::ImageFsInfoResponse> {
        Ok(Response::new(
            self.run("ImageFsInfo", |c| c.image_fs_info()).await?,
        ))
    }
}
