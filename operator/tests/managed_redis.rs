//! The managed Redis container's start and readiness scripts, run with the
//! real `sh` and `redis-server`: the password comes from the mounted file,
//! is required, and appears in no command line or environment; the readiness
//! probe passes with the file and fails without the right password; SIGTERM
//! reaches redis-server itself (the script `exec`s it) and it exits cleanly.

use std::{process::Stdio, time::Duration};

use chatscale_operator::resources::redis::{PASSWORD_FILE, readiness_script, start_script};
use chatscale_tests::{free_port, wait_until};
use tokio::process::Command;

const PASSWORD: &str = "Zq7managedRedisPassword";

/// The script as the pod runs it, with its paths and port moved into `dir`.
fn local(script: &str, dir: &std::path::Path, port: u16) -> String {
    script
        .replace(PASSWORD_FILE, dir.join("password").to_str().unwrap())
        .replace(
            "--dir /data",
            &format!("--dir {} --port {port}", dir.display()),
        )
        .replace("redis-cli ping", &format!("redis-cli -p {port} ping"))
}

async fn sh(script: &str) -> bool {
    Command::new("sh")
        .args(["-c", script])
        .status()
        .await
        .is_ok_and(|s| s.success())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_reads_its_password_from_the_file_only() -> anyhow::Result<()> {
    let dir = std::env::temp_dir().join(format!("chatscale-managed-redis-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    std::fs::write(dir.join("password"), PASSWORD)?;
    let port = free_port();
    let mut redis = Command::new("sh")
        .args(["-c", &local(&start_script(), &dir, port)])
        .stdout(Stdio::null())
        .kill_on_drop(true)
        .spawn()?;
    let pid = redis.id().expect("running");
    let probe = local(&readiness_script(), &dir, port);

    // Ready within 10 s (the probe is what Kubernetes runs every 5 s).
    wait_until(
        "the readiness probe to pass with the mounted password",
        Duration::from_secs(10),
        || sh(&probe),
    )
    .await?;

    let unauthenticated = Command::new("redis-cli")
        .args(["-p", &port.to_string(), "ping"])
        .output()
        .await?;
    assert!(String::from_utf8_lossy(&unauthenticated.stdout).contains("NOAUTH"));
    std::fs::write(dir.join("password"), "wrong")?;
    assert!(!sh(&probe).await, "a wrong password is not ready");
    std::fs::write(dir.join("password"), PASSWORD)?;

    // The shell exec'd redis-server: same pid, and no password in sight.
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline"))?;
    assert!(String::from_utf8_lossy(&cmdline).contains("redis-server"));
    let environ = std::fs::read(format!("/proc/{pid}/environ"))?;
    for (what, bytes) in [("command line", cmdline), ("environment", environ)] {
        assert!(
            !String::from_utf8_lossy(&bytes).contains(PASSWORD),
            "password in the {what}"
        );
    }
    let aof = Command::new("redis-cli")
        .args(["-p", &port.to_string(), "config", "get", "appendonly"])
        .env("REDISCLI_AUTH", PASSWORD)
        .output()
        .await?;
    assert!(String::from_utf8_lossy(&aof.stdout).contains("yes"));

    // SIGTERM, as the kubelet sends it: redis-server shuts down cleanly.
    assert!(sh(&format!("kill -TERM {pid}")).await);
    let status = tokio::time::timeout(Duration::from_secs(10), redis.wait()).await??;
    assert!(status.success(), "{status:?}");
    std::fs::remove_dir_all(&dir)?;
    Ok(())
}
