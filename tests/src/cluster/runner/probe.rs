//! A container's probe, run the way the kubelet runs it: an HTTP GET to the
//! pod IP (2xx and 3xx pass), a TCP connect, or a command with the
//! container's environment (exit 0 passes), each within `timeoutSeconds`; and
//! the thresholds that turn results into a state.

use std::time::Duration;

use k8s_openapi::api::core::v1::{Container, Probe};

use super::launch::{Mapping, container_port};

/// One probe's settings with the kubelet's defaults.
#[derive(Clone, Debug)]
pub struct Schedule {
    pub initial_delay: Duration,
    pub period: Duration,
    pub timeout: Duration,
    pub success_threshold: u32,
    pub failure_threshold: u32,
}

impl Schedule {
    pub fn of(probe: &Probe) -> Self {
        let secs = |v: Option<i32>, default: i32| {
            Duration::from_secs(u64::try_from(v.unwrap_or(default)).unwrap_or(0))
        };
        let count = |v: Option<i32>, default: i32| u32::try_from(v.unwrap_or(default)).unwrap_or(1);
        Self {
            initial_delay: secs(probe.initial_delay_seconds, 0),
            period: secs(probe.period_seconds, 10).max(Duration::from_secs(1)),
            timeout: secs(probe.timeout_seconds, 1).max(Duration::from_secs(1)),
            success_threshold: count(probe.success_threshold, 1).max(1),
            failure_threshold: count(probe.failure_threshold, 3).max(1),
        }
    }
}

/// Consecutive results to a state, as the kubelet's prober counts them.
#[derive(Clone, Debug)]
pub struct Counter {
    passing: bool,
    streak: u32,
}

impl Counter {
    pub fn new(initially: bool) -> Self {
        Self {
            passing: initially,
            streak: 0,
        }
    }

    /// The state now.
    pub fn passing(&self) -> bool {
        self.passing
    }

    /// Adds one result; returns the state after it.
    pub fn record(&mut self, passed: bool, schedule: &Schedule) -> bool {
        if passed == self.passing {
            self.streak = 0;
            return self.passing;
        }
        self.streak += 1;
        let needed = if passed {
            schedule.success_threshold
        } else {
            schedule.failure_threshold
        };
        if self.streak >= needed {
            self.passing = passed;
            self.streak = 0;
        }
        self.passing
    }
}

/// Runs `probe` once against the container at `mapping.pod_ip`.
pub async fn run(
    http: &reqwest::Client,
    probe: &Probe,
    container: &Container,
    mapping: &Mapping,
    env: &[(String, String)],
) -> bool {
    let timeout = Schedule::of(probe).timeout;
    let attempt = async {
        if let Some(get) = &probe.http_get {
            let Ok(port) = container_port(container, &get.port) else {
                return false;
            };
            let host = get.host.clone().unwrap_or_else(|| mapping.pod_ip.clone());
            let path = get.path.as_deref().unwrap_or("/");
            let url = format!("http://{host}:{port}{path}");
            return http
                .get(url)
                .send()
                .await
                .is_ok_and(|r| r.status().is_success() || r.status().is_redirection());
        }
        if let Some(tcp) = &probe.tcp_socket {
            let Ok(port) = container_port(container, &tcp.port) else {
                return false;
            };
            return tokio::net::TcpStream::connect((mapping.pod_ip.as_str(), port))
                .await
                .is_ok();
        }
        if let Some(exec) = &probe.exec {
            let command: Vec<String> = exec
                .command
                .iter()
                .flatten()
                .map(|s| mapping.apply(s))
                .collect();
            let Some((program, args)) = command.split_first() else {
                return false;
            };
            return tokio::process::Command::new(program)
                .args(args)
                .env_clear()
                .env("PATH", super::PATH)
                .envs(env.iter().cloned())
                .stdin(std::process::Stdio::null())
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .kill_on_drop(true)
                .status()
                .await
                .is_ok_and(|s| s.success());
        }
        false
    };
    tokio::time::timeout(timeout, attempt)
        .await
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thresholds_turn_results_into_states() {
        let schedule = Schedule::of(&Probe {
            failure_threshold: Some(2),
            ..Default::default()
        });
        let mut ready = Counter::new(false);
        assert!(ready.record(true, &schedule), "one success is enough");
        assert!(ready.record(false, &schedule), "one failure is not");
        assert!(ready.record(true, &schedule));
        assert!(ready.record(false, &schedule));
        assert!(!ready.record(false, &schedule), "two in a row are");
    }
}
