//! Property tests of the policies under the simulator, on short random
//! session lists at a small scale (a target of 100 connections per pod):
//! replicas stay within bounds, chatscale orders no shed while a drain
//! runs, sessions are conserved, and after rebalancing settles on a flat
//! load the hottest pod is within the dead zone of the mean. Also the
//! determinism of a whole comparison.

use proptest::prelude::*;

use super::{Balancer, Model, Sessions, compare_sessions, rng::Rng, scenario::Lifetime};
use crate::api::AutoscalingSpec;

fn small_spec() -> AutoscalingSpec {
    AutoscalingSpec {
        target_connections_per_pod: 100,
        min_replicas: 2,
        max_replicas: 20,
        target_redis_ops_per_pod: 0,
        ..Default::default()
    }
}

fn model(seed: u64, balancer: Balancer) -> Model {
    Model {
        seed,
        balancer,
        // Small pods drain in a second or two at the default 500/s; a
        // lower rate keeps drains running across evaluations.
        drain_rate: 20,
        ..Model::default()
    }
}

fn balancer() -> impl Strategy<Value = Balancer> {
    prop_oneof![
        Just(Balancer::RoundRobin),
        Just(Balancer::LeastConnections),
        Just(Balancer::Random),
    ]
}

/// Sessions whose nominal count goes linearly from `from` to `to` over the
/// first half of `seconds` and stays there, with `lifetime`.
fn ramp(seed: u64, seconds: u64, from: f64, to: f64, lifetime: Lifetime) -> Sessions {
    let mut rng = Rng::new(seed);
    let curve = |t: u64| from + (to - from) * (t as f64 / (seconds as f64 / 2.0)).min(1.0);
    let mut spans = Vec::new();
    for _ in 0..from as u64 {
        spans.push((0, (lifetime.draw_remaining(&mut rng).round() as u64).max(1)));
    }
    for t in 1..seconds {
        let rate = (curve(t) / lifetime.mean_seconds + curve(t) - curve(t - 1)).max(0.0);
        for _ in 0..rng.poisson(rate) {
            spans.push((t, t + (lifetime.draw(&mut rng).round() as u64).max(1)));
        }
    }
    Sessions::new(seconds, spans)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn bounds_conservation_and_no_shed_while_draining(
        seed in any::<u64>(),
        from in 0.0f64..1500.0,
        to in 0.0f64..2500.0,
        mean in 60.0f64..1200.0,
        sigma in 0.3f64..1.8,
        balancer in balancer(),
    ) {
        let sessions = ramp(seed, 900, from, to, Lifetime { mean_seconds: mean, sigma });
        let spec = small_spec();
        let comparison = compare_sessions("ramp", &sessions, &model(seed, balancer), &spec);
        for (name, run) in &comparison.runs {
            let (low, high) = run.checks.replicas;
            prop_assert!(low >= spec.min_replicas && high <= spec.max_replicas, "{name}: {low}..{high}");
            prop_assert_eq!(run.checks.conservation_errors, 0, "{}", name);
            prop_assert_eq!(run.checks.shed_orders_while_draining, 0, "{}", name);
            if !name.starts_with("chatscale") || *name == "chatscale_no_rebalance" {
                prop_assert_eq!(run.metrics.rebalance_reconnections, 0, "{}", name);
            }
        }
    }

    #[test]
    fn after_rebalancing_settles_on_a_flat_load_the_hottest_pod_is_within_the_dead_zone(
        seed in any::<u64>(),
        base in 200u64..800,
        crowd in 200u64..1200,
        balancer in balancer(),
    ) {
        // Sessions that outlast the run: `base` from the start, `crowd`
        // more over a minute from second 120. The pods that exist then keep
        // what they took; nothing ends, so only rebalancing can even them out.
        let mut rng = Rng::new(seed);
        let spans = (0..base)
            .map(|_| (0, 100_000))
            .chain((0..crowd).map(|_| (120 + rng.below(60), 100_000)));
        let sessions = Sessions::new(1500, spans);
        let spec = small_spec();
        let comparison = compare_sessions("crowd", &sessions, &model(seed, balancer), &spec);
        let (_, run) = &comparison.runs[0];
        let last = run.samples.last().unwrap();
        let mean = sessions.offered.last().copied().unwrap() as f64 / f64::from(last.ready);
        let zone = 1.0 + f64::from(spec.rebalance.dead_zone_percent) / 100.0;
        prop_assert!(
            last.hottest as f64 <= mean * zone,
            "hottest {} over {} ready pods, mean {mean:.1}", last.hottest, last.ready
        );
    }
}

#[test]
fn a_comparison_is_deterministic() {
    let lifetime = Lifetime {
        mean_seconds: 300.0,
        sigma: 1.0,
    };
    let sessions = ramp(5, 600, 200.0, 1500.0, lifetime);
    let spec = small_spec();
    let run = |seed| compare_sessions("ramp", &sessions, &model(seed, Balancer::Random), &spec);
    let first = run(9);
    assert_eq!(first, run(9));
    assert_ne!(first.runs, run(10).runs, "the seed drives the balancer");
    // Rebalancing moved clients on this ramp; without it, none.
    let [chatscale, .., without] = first.report.policies();
    assert!(
        chatscale.1.rebalance_reconnections > 0,
        "{:?}",
        first.report
    );
    assert_eq!(without.1.rebalance_reconnections, 0);
}
