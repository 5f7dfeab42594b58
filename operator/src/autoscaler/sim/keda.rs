//! KEDA with its defaults, as a second baseline: a ScaledObject whose
//! trigger reports the cluster's total connections (for example a
//! Prometheus query `sum(chat_connected_sockets)`). KEDA creates an HPA on
//! an `External` metric; the trigger's default `metricType` is
//! `AverageValue`, so the HPA computes
//!
//! - `usageRatio = total / (target × statusReplicas)` (`statusReplicas`:
//!   the pods of the Deployment that are not being deleted, ready or not:
//!   no readiness set-aside and no missing-metric logic for an external
//!   metric), and
//! - within the tolerance (0.1) it keeps `statusReplicas`, otherwise it
//!   recommends `ceil(total / target)`;
//!
//! then the HPA's default behavior ([`HpaDefault::behave`]).
//!
//! Freshness: by default KEDA's metrics server asks the scaler for the
//! value on every request of the HPA (every 15 s); `pollingInterval` (30 s)
//! is the operator's own loop, which matters for activation (0 ↔ 1 pods)
//! and, only with the trigger's `useCachedMetrics: true`, for the value the
//! HPA reads, then refreshed every `pollingInterval`. `keda_default` reads
//! fresh values; [`KedaDefault::cached`] models `useCachedMetrics`.
//! Sources are listed in docs/autoscaling-sim.md.

use super::{
    hpa::HpaDefault,
    policy::{Action, PodState, Policy, Removal, View},
};
use crate::api::AutoscalingSpec;

/// The pods whose connections the trigger's query sums: every pod that
/// still runs and exports its gauge, terminating ones included.
const COUNTED: [PodState; 3] = [PodState::Ready, PodState::Draining, PodState::Terminating];

#[derive(Debug, Clone)]
pub struct KedaDefault {
    hpa: HpaDefault,
    /// `useCachedMetrics`: the polling interval and the last polled value.
    cache: Option<(u64, Option<u64>)>,
}

impl KedaDefault {
    /// KEDA's defaults: the value is read on every HPA request.
    pub fn new(spec: &AutoscalingSpec) -> Self {
        Self {
            hpa: HpaDefault::new(spec),
            cache: None,
        }
    }

    /// With `useCachedMetrics: true`: the HPA reads the value KEDA polled
    /// last, every `polling_seconds` (the first at second 0).
    pub fn cached(spec: &AutoscalingSpec, polling_seconds: u64) -> Self {
        Self {
            hpa: HpaDefault::new(spec),
            cache: Some((polling_seconds.max(1), None)),
        }
    }

    /// The `External` `AverageValue` replica calculation on `total`.
    pub fn recommend(&self, total: u64, status_replicas: i32) -> i32 {
        let target_milli = self.hpa.target() as f64 * 1000.0;
        let usage_milli = total as f64 * 1000.0;
        let ratio = usage_milli / (target_milli * f64::from(status_replicas));
        if (1.0 - ratio).abs() > self.hpa.tolerance() {
            (usage_milli / target_milli).ceil() as i32
        } else {
            status_replicas
        }
    }

    /// The value the HPA reads now.
    fn total(&self, view: &View) -> u64 {
        match self.cache {
            Some((_, Some(polled))) => polled,
            _ => view.connections(&COUNTED),
        }
    }
}

impl Policy for KedaDefault {
    fn removal(&self) -> Removal {
        Removal::Delete
    }

    fn observe(&mut self, now: u64, view: &View) {
        if let Some((polling, _)) = self.cache
            && now.is_multiple_of(polling)
        {
            self.cache = Some((polling, Some(view.connections(&COUNTED))));
        }
    }

    fn evaluate(&mut self, now: u64, view: &View) -> Action {
        let status_replicas = (view.count(PodState::Starting) + view.count(PodState::Ready)) as i32;
        let recommendation = self.recommend(self.total(view), status_replicas);
        Action {
            replicas: self.hpa.behave(now, view.replicas, Some(recommendation)),
            sheds: Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::autoscaler::sim::{chatscale_spec, policy::PodView};

    fn pods(connections: &[u64], starting: usize) -> Vec<PodView> {
        let ready = connections.iter().map(|c| (PodState::Ready, *c));
        let starting = std::iter::repeat_n((PodState::Starting, 0), starting);
        ready
            .chain(starting)
            .enumerate()
            .map(|(id, (state, connections))| PodView {
                id: id as u32,
                state,
                connections,
                shedding: false,
            })
            .collect()
    }

    fn view(pods: &[PodView]) -> View<'_> {
        View {
            replicas: pods.len() as i32,
            pods,
            draining: false,
        }
    }

    #[test]
    fn external_average_value_counts_starting_pods_and_no_readiness() {
        let keda = KedaDefault::new(&chatscale_spec());
        // 20000 on 4 pods of which 2 start: ratio 1.0, keep 4 (the Pods
        // metric would see 10000 per ready pod and ask for more).
        assert_eq!(keda.recommend(20_000, 4), 4);
        assert_eq!(keda.recommend(21_000, 4), 4, "within the tolerance");
        assert_eq!(keda.recommend(30_000, 4), 6);
        assert_eq!(keda.recommend(9000, 4), 2);
    }

    #[test]
    fn default_reads_fresh_values_and_cached_metrics_lag_the_polling_interval() {
        let spec = chatscale_spec();
        let low = pods(&[5000, 5000], 0);
        let high = pods(&[15_000, 15_000], 0);
        let mut fresh = KedaDefault::new(&spec);
        let mut cached = KedaDefault::cached(&spec, 30);
        // The load triples at second 31; evaluations every 15 s.
        let mut seen = Vec::new();
        for t in 0..=60 {
            let pods = if t < 31 { &low } else { &high };
            let view = view(pods);
            fresh.observe(t, &view);
            cached.observe(t, &view);
            if t % 15 == 0 {
                let a = fresh.evaluate(t, &view).replicas;
                let b = cached.evaluate(t, &view).replicas;
                seen.push((t, a, b));
            }
        }
        // Fresh: sees it at 45. Cached: still the poll of second 30 at 45,
        // the poll of second 60 at 60.
        assert_eq!(
            seen,
            [(0, 2, 2), (15, 2, 2), (30, 2, 2), (45, 6, 2), (60, 6, 6)]
        );
    }
}
