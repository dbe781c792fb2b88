//! Nothing left behind and nothing hangs: create killed at random moments, large
//! configs as Kubernetes sends them.

use std::time::Duration;

use serde_json::json;

use crate::common::*;

/// kill -9 of `create` at random moments: `delete --force` undoes whatever it did (every
/// step is recorded before it is taken), and the id can be used again.
#[test]
fn create_killed_at_random_moments_is_undone_by_delete() {
    let mut b = Bundle::with_own_rootfs();
    b.spec["process"]["args"] = json!(["sleep", "1000"]);
    b.write();
    let bundle = b.path().to_str().unwrap().to_owned();
    // A cheap pseudo-random sequence of delays from 0 to ~40 ms, covering every stage.
    let mut seed: u64 = 0x9e37_79b9_7f4a_7c15 ^ u64::from(std::process::id());
    for round in 0..50 {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let delay = Duration::from_micros(seed % 40_000);
        let id = unique_id("killed");
        let mut child = b
            .cmd(&["create", "--bundle", &bundle, &id])
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(delay);
        let _ = child.kill();
        let _ = child.wait();
        let out = b.berth(&["delete", "--force", &id]);
        assert!(
            out.code == 0 || out.stderr.contains("does not exist"),
            "round {round} ({delay:?}): delete failed: {out:?}"
        );
        assert_nothing_left(&b, &id);
        // The id is free again.
        b.berth(&["create", "--bundle", &bundle, &id]).ok();
        b.berth(&["delete", "--force", &id]).ok();
        assert_nothing_left(&b, &id);
    }
}

/// A 350 KB config (10,000 env vars, as Kubernetes sends for big services) and 300 KB of
/// annotations run: init's configuration travels in fragments, not one packet.
#[test]
fn large_configs_run() {
    let mut b = Bundle::new();
    let mut env: Vec<String> = (0..10_000)
        .map(|i| {
            format!(
                "SERVICE_{i:05}_PORT=tcp://10.0.{}.{}:8080",
                i / 256,
                i % 256
            )
        })
        .collect();
    env.push("PATH=/bin".into());
    b.spec["process"]["env"] = json!(env);
    let annotations: serde_json::Map<String, serde_json::Value> = (0..3_000)
        .map(|i| (format!("example.com/key-{i}"), json!("v".repeat(90))))
        .collect();
    b.spec["annotations"] = serde_json::Value::Object(annotations);
    b.sh("echo $SERVICE_09999_PORT");
    let size = serde_json::to_vec(&b.spec).unwrap().len();
    assert!(size > 600_000, "config is only {size} bytes");
    let out = b.run().ok();
    assert_eq!(out.stdout.trim(), "tcp://10.0.39.15:8080", "{out:?}");
}
