//! Drain-aware scale-down: pick the pods with the fewest connections, mark
//! them with `controller.kubernetes.io/pod-deletion-cost` (so the ReplicaSet
//! removes exactly them), drain them through their admin API, wait until they
//! report `drained` (or the drain timeout), and only then lower replicas. A
//! scale-up while draining cancels the drains and clears the marks. The
//! orchestration talks to two small traits, so tests drive it with real
//! chat-server processes and no Kubernetes.

use std::time::Duration;

use async_trait::async_trait;
use chatscale_contract::admin::DrainState;

use super::collect::Scrape;

/// Deletion cost of pods chosen for removal: lower than any default (0).
pub const DELETION_COST: i32 = -1000;

/// The workload: marks pods and sets the replica count.
#[async_trait]
pub trait Workload: Send + Sync {
    async fn mark_for_deletion(&self, pod: &str) -> anyhow::Result<()>;
    async fn unmark(&self, pod: &str) -> anyhow::Result<()>;
    async fn set_replicas(&self, replicas: i32) -> anyhow::Result<()>;
    /// Replaces a pod that finished draining but is wanted after all (delete it; the ReplicaSet starts a fresh one).
    async fn replace(&self, pod: &str) -> anyhow::Result<()>;
}

/// One pod's drain API (`/drain` on its admin port).
#[async_trait]
pub trait DrainApi: Send + Sync {
    async fn start(&self, admin_url: &str) -> anyhow::Result<()>;
    async fn state(&self, admin_url: &str) -> anyhow::Result<DrainState>;
    /// False when the pod had already finished draining (it cannot serve again).
    async fn cancel(&self, admin_url: &str) -> anyhow::Result<bool>;
}

/// The `count` pods with the fewest connections (only pods that reported).
pub fn pick(scrapes: &[Scrape], count: usize) -> Vec<&Scrape> {
    let mut reported: Vec<&Scrape> = scrapes.iter().filter(|s| s.metrics.is_ok()).collect();
    // Pods that are not Ready first: the ReplicaSet controller deletes them
    // before any Ready pod, whatever their deletion cost (docs/architecture.md,
    // "Which pods go"), so draining a Ready pod instead would leave it drained
    // and running.
    reported.sort_by_key(|s| {
        (
            s.target.ready,
            s.metrics
                .as_ref()
                .map(|m| m.connections)
                .unwrap_or(u64::MAX),
            s.target.pod.clone(),
        )
    });
    reported.truncate(count);
    reported
}

/// How many pods a scale-down to `desired` must drain: pods that are not
/// Ready and do not answer go first without a drain (as replicas not yet
/// started do), so they count against the excess.
pub fn to_drain(scrapes: &[Scrape], desired: i32) -> usize {
    let silent = scrapes
        .iter()
        .filter(|s| !s.target.ready && s.metrics.is_err())
        .count();
    scrapes
        .len()
        .saturating_sub(silent)
        .saturating_sub(desired.max(0) as usize)
}

#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Every victim drained; replicas lowered.
    Completed,
    /// The drain timeout ran out; replicas lowered anyway (their answers end "interrupted").
    TimedOut,
    /// Cancelled (a scale-up came): marks cleared, drains cancelled, replicas unchanged.
    Cancelled,
}

/// How a scale-down's drains are timed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pacing {
    /// Longest one pod's drain may take: the last pod's drain ends at the
    /// latest this long after it started.
    pub timeout: Duration,
    /// Between two checks of the pods' progress.
    pub poll: Duration,
    /// Between the starts of two pods' drains, so that their clients do not
    /// all reconnect at once.
    pub stagger: Duration,
}

/// Drains `victims` (pod name, admin base URL), `pacing.stagger` apart, and
/// then sets `replicas`. `cancelled` is polled between checks: true means a
/// scale-up wants the pods back.
pub async fn scale_down(
    workload: &dyn Workload,
    drains: &dyn DrainApi,
    victims: &[(String, String)],
    replicas: i32,
    pacing: Pacing,
    cancelled: &(dyn Fn() -> bool + Send + Sync),
) -> anyhow::Result<Outcome> {
    for (pod, _) in victims {
        workload.mark_for_deletion(pod).await?;
    }
    let first = tokio::time::Instant::now();
    let start_of = |k: usize| first + pacing.stagger * k as u32;
    let deadline = start_of(victims.len().saturating_sub(1)) + pacing.timeout;
    let mut started = 0;
    loop {
        while started < victims.len() && tokio::time::Instant::now() >= start_of(started) {
            drains.start(&victims[started].1).await?;
            started += 1;
        }
        if cancelled() {
            for (k, (pod, admin)) in victims.iter().enumerate() {
                if k >= started || drains.cancel(admin).await? {
                    workload.unmark(pod).await?;
                } else {
                    workload.replace(pod).await?;
                }
            }
            return Ok(Outcome::Cancelled);
        }
        let mut all_drained = started == victims.len();
        for (_, admin) in &victims[..started] {
            // A pod that no longer answers has gone: count it as drained.
            all_drained &= drains
                .state(admin)
                .await
                .map_or(true, |state| state == DrainState::Drained);
        }
        let now = tokio::time::Instant::now();
        if all_drained || now >= deadline {
            workload.set_replicas(replicas).await?;
            return Ok(if all_drained {
                Outcome::Completed
            } else {
                Outcome::TimedOut
            });
        }
        let next_start = (started < victims.len()).then(|| start_of(started));
        let wake = next_start.map_or(now + pacing.poll, |at| at.min(now + pacing.poll));
        tokio::time::sleep_until(wake).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::autoscaler::collect::{PodMetrics, Target};

    fn scrape(pod: &str, connections: Option<u64>) -> Scrape {
        scrape_of(pod, connections, true)
    }

    fn scrape_of(pod: &str, connections: Option<u64>, ready: bool) -> Scrape {
        Scrape {
            target: Target {
                pod: pod.into(),
                admin: String::new(),
                ready,
            },
            metrics: connections
                .map(|c| PodMetrics {
                    connections: c,
                    shedding: false,
                })
                .ok_or_else(|| "down".to_owned()),
        }
    }

    #[test]
    fn picks_the_emptiest_pods_that_reported() {
        let scrapes = [
            scrape("a", Some(50)),
            scrape("b", Some(5)),
            scrape("c", None),
            scrape("d", Some(20)),
        ];
        let picked: Vec<&str> = pick(&scrapes, 2)
            .iter()
            .map(|s| s.target.pod.as_str())
            .collect();
        assert_eq!(picked, ["b", "d"]);
    }

    #[test]
    fn pods_that_are_not_ready_go_first_as_the_replicaset_deletes_them() {
        // b is starting (not Ready yet) and already answers: draining a, the
        // emptiest Ready pod, would leave a drained when b is deleted.
        let scrapes = [
            scrape_of("a", Some(0), true),
            scrape_of("b", Some(3), false),
            scrape_of("c", Some(9), true),
        ];
        let picked: Vec<&str> = pick(&scrapes, to_drain(&scrapes, 2))
            .iter()
            .map(|s| s.target.pod.as_str())
            .collect();
        assert_eq!(picked, ["b"]);
    }

    #[test]
    fn silent_pods_that_are_not_ready_go_without_a_drain() {
        let scrapes = [
            scrape_of("a", Some(0), true),
            scrape_of("b", None, false),
            scrape_of("c", Some(9), true),
        ];
        assert_eq!(to_drain(&scrapes, 2), 0, "b goes first, nothing to drain");
        assert_eq!(to_drain(&scrapes, 1), 1);
        assert_eq!(to_drain(&scrapes, 5), 0);
    }
}
