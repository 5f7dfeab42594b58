//! The clairvoyant lower bound the policies' pod-seconds are compared with.
//! It knows the offered connections of every second and has exactly
//! `clamp(ceil(C(t) / (1.2 × target)), min, max)` pods ready at every
//! second (it starts them early and never scales down a pod it still
//! needs, so start-up and drain time are not billed), with the load spread
//! evenly: `Σ_t` of that is the least any policy that is never overloaded
//! could spend. A policy that accepts overload can in principle go below it.
//!
//! A policy that sizes for the target (100%, not 120%) spends about 1.2 times
//! that bound even with no lag at all, so the report also gives the
//! clairvoyant at the target, `Σ_t clamp(ceil(C(t) / target), min, max)`.

use super::Model;
use crate::api::AutoscalingSpec;

/// Pods a clairvoyant policy needs at `load` connections.
pub fn oracle_pods(spec: &AutoscalingSpec, model: &Model, load: u64) -> i32 {
    let capacity = (spec.target_connections_per_pod.max(1) as u64 * model.overload_percent).max(1);
    ((load * 100).div_ceil(capacity).min(i32::MAX as u64) as i32)
        .clamp(spec.min_replicas, spec.max_replicas)
}

/// The least pod-seconds without overload: the sum of [`oracle_pods`] over
/// the offered connections of each second.
pub fn oracle_pod_seconds(offered: &[u64], spec: &AutoscalingSpec, model: &Model) -> u64 {
    offered
        .iter()
        .map(|l| oracle_pods(spec, model, *l) as u64)
        .sum()
}

/// Pod-seconds of the clairvoyant that runs `ceil(C(t) / target)` pods.
pub fn at_target_pod_seconds(offered: &[u64], spec: &AutoscalingSpec) -> u64 {
    let target = spec.target_connections_per_pod.max(1) as u64;
    offered
        .iter()
        .map(|l| {
            (l.div_ceil(target).min(i32::MAX as u64) as i32)
                .clamp(spec.min_replicas, spec.max_replicas) as u64
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::autoscaler::sim::chatscale_spec;

    #[test]
    fn oracle_is_ceil_at_120_percent() {
        let spec = chatscale_spec();
        let model = Model::default();
        assert_eq!(oracle_pods(&spec, &model, 0), 2);
        assert_eq!(oracle_pods(&spec, &model, 18_000), 3);
        assert_eq!(oracle_pods(&spec, &model, 18_001), 4);
        assert_eq!(oracle_pods(&spec, &model, 10_000_000), 50);
        assert_eq!(
            oracle_pod_seconds(&[0, 18_000, 18_001], &spec, &model),
            2 + 3 + 4
        );
        assert_eq!(
            at_target_pod_seconds(&[0, 15_000, 15_001], &spec),
            2 + 3 + 4
        );
    }
}
