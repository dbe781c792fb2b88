//! The agent on the host, over a unix socket instead of vsock (no VM: the protocol, the
//! shims and the runtime are the same). Each test starts the real `berth-agent serve`
//! binary with a state directory of its own and runs real busybox containers. Root only.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use berth_agent::client::{collect_output, process};
use berth_agent::proto::{self, agent_client, rootfs::Source};
use berth_agent::{AgentClient, Error, Timeouts};
use tempfile::TempDir;

const TIMEOUTS: Timeouts = Timeouts {
    connect: Duration::from_secs(20),
    create: Duration::from_secs(60),
    call: Duration::from_secs(20),
};

/// A running agent; on drop its containers are deleted and the process killed.
struct Agent {
    dir: TempDir,
    child: Child,
}

impl Agent {
    fn start() -> Agent {
        let dir = tempfile::Builder::new()
            .prefix("agent-test")
            .tempdir_in(env!("CARGO_TARGET_TMPDIR"))
            .expect("temp dir");
        let rootfs = dir.path().join("rootfs");
        let built = Command::new("sh")
            .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/busybox-rootfs.sh"))
            .arg(&rootfs)
            .status()
            .expect("run busybox-rootfs.sh");
        assert!(built.success(), "busybox-rootfs.sh failed");
        let child = Command::new(env!("CARGO_BIN_EXE_berth-agent"))
            .arg("serve")
            .arg("--listen")
            .arg(format!("unix:{}", dir.path().join("agent.sock").display()))
            .arg("--state-dir")
            .arg(dir.path().join("state"))
            .stdin(Stdio::null())
            .spawn()
            .expect("spawn berth-agent");
        Agent { dir, child }
    }

    fn socket(&self) -> PathBuf {
        self.dir.path().join("agent.sock")
    }

    fn rootfs(&self) -> PathBuf {
        self.dir.path().join("rootfs")
    }

    fn runtime_root(&self) -> PathBuf {
        self.dir.path().join("state/runtime")
    }

    async fn client(&self) -> AgentClient {
        AgentClient::connect_unix(&self.socket(), TIMEOUTS)
            .await
            .expect("connect to the agent")
    }

    /// A CreateContainer request for busybox running `args`.
    fn request(&self, id: &str, args: &[&str], stdin: bool) -> proto::CreateContainerRequest {
        let mut spec = berth_runtime::spec::default_spec(false);
        spec["process"]["terminal"] = false.into();
        spec["process"]["args"] = args.into();
        proto::CreateContainerRequest {
            id: id.into(),
            spec_json: serde_json::to_vec(&spec).expect("spec"),
            rootfs: Some(proto::Rootfs {
                source: Some(Source::Path(self.rootfs().display().to_string())),
            }),
            stdin,
        }
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let runtime = berth_runtime::Runtime::new(self.runtime_root());
        for s in runtime.list().unwrap_or_default() {
            let _ = runtime.delete(&s.id, true);
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[tokio::test]
async fn container_output_and_exit_code() {
    let agent = Agent::start();
    let c = agent.client().await;
    assert_eq!(c.version().protocol, berth_agent::PROTOCOL);
    let cmd = [
        "sh",
        "-c",
        "echo hello from $(hostname); echo oops >&2; exit 3",
    ];
    c.create(agent.request("c1", &cmd, false))
        .await
        .expect("create");
    let out = c.output(process("c1", None)).await.expect("output");
    c.start("c1").await.expect("start");
    let (stdout, stderr) = collect_output(out).await.expect("read output");
    assert_eq!(text(&stdout), "hello from berth\n");
    assert_eq!(text(&stderr), "oops\n");
    assert_eq!(c.wait(process("c1", None)).await.expect("wait"), 3);
    // The container ran in the runtime's state root with its own pid namespace.
    assert!(agent.runtime_root().join("c1").exists());
    c.remove("c1").await.expect("remove");
    assert!(
        !agent.runtime_root().join("c1").exists(),
        "runtime state left"
    );
    assert!(
        !agent.dir.path().join("state/bundles/c1").exists(),
        "bundle left"
    );
}

#[tokio::test]
async fn exec_signal_and_stdin() {
    let agent = Agent::start();
    let c = agent.client().await;
    // Init traps SIGTERM: the signal reaches it and its handler decides the exit code.
    let init = [
        "sh",
        "-c",
        "trap 'echo got TERM; exit 42' TERM; echo ready; while :; do sleep 0.1; done",
    ];
    c.create(agent.request("svc", &init, false))
        .await
        .expect("create");
    let mut init_out = c.output(process("svc", None)).await.expect("output");
    c.start("svc").await.expect("start");
    let first = init_out.message().await.expect("read").expect("a chunk");
    assert_eq!(text(&first.data), "ready\n");

    // exec with its own environment, user and working directory.
    let mut p = berth_runtime::spec::default_spec(false)["process"].clone();
    p["terminal"] = false.into();
    p["args"] = serde_json::json!(["sh", "-c", "echo $GREETING; id -u; pwd; exit 7"]);
    p["env"] = serde_json::json!(["PATH=/bin", "GREETING=hi"]);
    p["user"] = serde_json::json!({"uid": 1000, "gid": 1000});
    p["cwd"] = "/tmp".into();
    let exec = proto::ExecRequest {
        container_id: "svc".into(),
        exec_id: "e1".into(),
        process_json: serde_json::to_vec(&p).expect("process"),
        stdin: false,
    };
    c.exec(exec.clone()).await.expect("exec");
    let (out, _) = collect_output(c.output(process("svc", Some("e1"))).await.expect("output"))
        .await
        .expect("read");
    assert_eq!(text(&out), "hi\n1000\n/tmp\n");
    assert_eq!(c.wait(process("svc", Some("e1"))).await.expect("wait"), 7);
    // The same exec id again is refused; so is a second reader of an output.
    assert!(c.exec(exec).await.is_err());
    assert!(c.output(process("svc", Some("e1"))).await.is_err());

    // stdin of an exec'd process: cat echoes it, then ends at EOF.
    p["args"] = serde_json::json!(["cat"]);
    let exec = proto::ExecRequest {
        container_id: "svc".into(),
        exec_id: "cat".into(),
        process_json: serde_json::to_vec(&p).expect("process"),
        stdin: true,
    };
    c.exec(exec).await.expect("exec cat");
    let cat = process("svc", Some("cat"));
    let out = c.output(cat.clone()).await.expect("output");
    c.write_stdin(cat.clone(), b"piped in\n".to_vec())
        .await
        .expect("stdin");
    c.close_stdin(cat.clone()).await.expect("close stdin");
    let (out, _) = collect_output(out).await.expect("read");
    assert_eq!(text(&out), "piped in\n");
    assert_eq!(c.wait(cat).await.expect("wait"), 0);

    // A signal to an exec'd process, then to the container's init.
    p["args"] = serde_json::json!(["sleep", "100"]);
    let exec = proto::ExecRequest {
        container_id: "svc".into(),
        exec_id: "sleeper".into(),
        process_json: serde_json::to_vec(&p).expect("process"),
        stdin: false,
    };
    c.exec(exec).await.expect("exec sleep");
    let sleeper = process("svc", Some("sleeper"));
    c.signal(sleeper.clone(), libc::SIGKILL, false)
        .await
        .expect("signal exec");
    assert_eq!(c.wait(sleeper).await.expect("wait"), 128 + libc::SIGKILL);
    // Resize has no terminal to act on: one clear line.
    let err = c.resize(process("svc", None), 24, 80).await.unwrap_err();
    assert!(err.to_string().contains("no terminal"), "{err}");

    c.signal(process("svc", None), libc::SIGTERM, false)
        .await
        .expect("signal init");
    assert_eq!(c.wait(process("svc", None)).await.expect("wait"), 42);
    let (rest, _) = collect_output(init_out).await.expect("read");
    assert_eq!(text(&rest), "got TERM\n");
    c.remove("svc").await.expect("remove");
}

#[tokio::test]
async fn bad_requests_are_refused_in_one_line_and_leave_nothing() {
    let agent = Agent::start();
    let c = agent.client().await;
    // A program that does not exist: create fails with the runtime's reason (as runc,
    // it is looked up before `created`), and the id is free again.
    let e = c
        .create(agent.request("nocmd", &["/no/such/program"], false))
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("/no/such/program") && !e.contains('\n'), "{e}");
    c.create(agent.request("nocmd", &["true"], false))
        .await
        .expect("the id is free after a failed create");
    c.remove("nocmd").await.expect("remove");

    // The same id twice at once: exactly one create wins, the other is told why.
    let (a, b) = tokio::join!(
        c.create(agent.request("dup", &["sleep", "10"], false)),
        c.create(agent.request("dup", &["sleep", "10"], false))
    );
    let lost = match (a, b) {
        (Ok(()), Err(e)) | (Err(e), Ok(())) => e.to_string(),
        other => panic!("expected one create to win: {other:?}"),
    };
    assert!(lost.contains("already exists"), "{lost}");
    c.remove("dup").await.expect("remove");

    // A rootfs that is not a directory, a bad id, a bad spec: refused, nothing made.
    let mut r = agent.request("badroot", &["true"], false);
    r.rootfs = Some(proto::Rootfs {
        source: Some(Source::Path("/no/such/dir".into())),
    });
    let e = c.create(r).await.unwrap_err().to_string();
    assert!(e.contains("/no/such/dir") && !e.contains('\n'), "{e}");
    let e = c
        .create(agent.request("../escape", &["true"], false))
        .await
        .unwrap_err();
    assert!(e.to_string().contains("invalid container id"), "{e}");
    let mut r = agent.request("badspec", &["true"], false);
    r.spec_json = br#"{"process": {"args": 5}}"#.to_vec();
    assert!(c.create(r).await.is_err());
    let mut r = agent.request("nosuchfield", &["true"], false);
    r.spec_json = b"[1]".to_vec();
    assert!(c.create(r).await.is_err());
    let left: Vec<_> = std::fs::read_dir(agent.dir.path().join("state/bundles"))
        .map(|d| d.flatten().map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "bundles left: {left:?}");
    assert!(berth_runtime::Runtime::new(agent.runtime_root())
        .list()
        .unwrap_or_default()
        .is_empty());
    // Calls on what does not exist.
    assert!(c.start("ghost").await.is_err());
    assert!(c.wait(process("ghost", None)).await.is_err());
    assert!(c.remove("ghost").await.is_err());
}

#[tokio::test]
async fn version_first_and_a_mismatch_is_refused() {
    // A fresh agent, talked to with the raw generated client once its socket exists.
    let agent = Agent::start();
    for _ in 0..400 {
        if agent.socket().exists() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let path = agent.socket();
    let channel = tonic::transport::Endpoint::from_static("http://agent")
        .connect_with_connector(tower::service_fn(move |_| {
            let path = path.clone();
            async move {
                Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(
                    tokio::net::UnixStream::connect(path).await?,
                ))
            }
        }))
        .await
        .expect("channel");
    let mut raw = agent_client::AgentClient::new(channel);
    let before = raw
        .create_container(agent.request("early", &["true"], false))
        .await
        .unwrap_err();
    assert_eq!(before.code(), tonic::Code::FailedPrecondition);
    assert!(before.message().contains("Version first"), "{before:?}");
    let mismatch = raw
        .version(proto::VersionRequest { protocol: 999 })
        .await
        .unwrap_err();
    assert_eq!(mismatch.code(), tonic::Code::FailedPrecondition);
    assert!(
        mismatch
            .message()
            .contains("speaks protocol 1, the host speaks 999"),
        "{mismatch:?}"
    );
    // Still refused: a mismatched Version does not open the door.
    assert!(raw
        .start(proto::ContainerRef { id: "x".into() })
        .await
        .is_err());
    // Shutdown ends the agent (not PID 1 here: it stops serving and exits 0).
    let c = agent.client().await;
    c.shutdown().await.expect("shutdown");
    // It exits although clients still hold connections (they get a short grace).
    let mut agent = agent;
    let until = std::time::Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(st) = agent.child.try_wait().expect("agent exit") {
            break st;
        }
        assert!(
            std::time::Instant::now() < until,
            "the agent did not exit after Shutdown"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(status.success(), "{status:?}");
    drop((raw, c));
    assert!(!agent.socket().exists(), "socket left");
}

/// The VMM's hybrid vsock handshake, played by a stand-in for the VMM (no guest can boot
/// on this host's /dev/kvm): the first connections are closed as an unlistened port is,
/// then `OK` and a splice to the agent.
#[tokio::test]
async fn hybrid_vsock_handshake_retries_until_the_guest_listens() {
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
    let agent = Agent::start();
    let _ = agent.client().await;
    let uds = agent.dir.path().join("vsock.sock");
    let listener = tokio::net::UnixListener::bind(&uds).expect("bind");
    let target = agent.socket();
    tokio::spawn(async move {
        let mut refused = 0;
        loop {
            let (s, _) = listener.accept().await.expect("accept");
            let mut s = BufReader::new(s);
            let mut line = String::new();
            s.read_line(&mut line).await.expect("handshake line");
            assert_eq!(line, format!("CONNECT {}\n", berth_agent::VSOCK_PORT));
            if refused < 3 {
                refused += 1;
                continue; // dropped: EOF, as the VMM does on a guest RST
            }
            let mut s = s.into_inner();
            s.write_all(b"OK 1073741824\n").await.expect("ok");
            let target = target.clone();
            tokio::spawn(async move {
                let mut agent = tokio::net::UnixStream::connect(target)
                    .await
                    .expect("agent");
                let _ = tokio::io::copy_bidirectional(&mut s, &mut agent).await;
            });
        }
    });
    let c = AgentClient::connect_vsock(&uds, berth_agent::VSOCK_PORT, TIMEOUTS)
        .await
        .expect("connect through the handshake");
    assert_eq!(c.version().protocol, berth_agent::PROTOCOL);

    // Nobody answering in time: one line naming the socket and port.
    let dead = agent.dir.path().join("dead.sock");
    let _l = std::os::unix::net::UnixListener::bind(&dead).expect("bind");
    let short = Timeouts {
        connect: Duration::from_millis(300),
        ..TIMEOUTS
    };
    let e = AgentClient::connect_vsock(&dead, 1024, short)
        .await
        .unwrap_err();
    assert!(
        matches!(e, Error::Handshake { .. } | Error::Timeout { .. }),
        "{e}"
    );
}
