//! chatscale-sim: runs chatscale's autoscaling policy and the defaults of
//! the HorizontalPodAutoscaler and of KEDA side by side on the same sessions
//! of a load scenario (the model: `chatscale_operator::autoscaler::sim` and
//! docs/autoscaling-sim.md).
//!
//! A table per scenario and the targets of issue 15 (PASS or MISS, never a
//! failure); `--json` prints one JSON object per scenario instead, one per
//! line; `--plot F.svg` also writes an SVG (one per scenario with `--all`:
//! `F-<scenario>.svg`). The spec overrides (`--dead-zone`, `--shed-rate`,
//! `--after`, `--tolerance`, `--scale-down-window`, `--stagger`,
//! `--drain-rate`) are for sweeps; `--shed-only-above-band` is an
//! experiment with the policy, off by default.

use std::{fmt::Write as _, path::PathBuf};

use anyhow::Context as _;
use chatscale_operator::autoscaler::sim::{
    self, Balancer, Comparison, Model, Scenario, chatscale_spec, plot,
    targets::{self, Target},
};
use clap::{Parser, ValueEnum};

#[derive(Parser, Debug)]
#[command(
    name = "chatscale-sim",
    about = "Simulate chatscale's autoscaler against the HPA's and KEDA's defaults on sticky connections"
)]
struct Args {
    /// Load scenario: diurnal, flash-crowd, noisy-plateau, long-tail, or all.
    #[arg(long, value_parser = scenarios, required_unless_present = "all")]
    scenario: Option<Selection>,
    /// Every scenario (the same as `--scenario all`).
    #[arg(long)]
    all: bool,
    /// Print one JSON object per scenario (one per line) instead of tables.
    #[arg(long)]
    json: bool,
    /// Also write an SVG plot to this file.
    #[arg(long, value_name = "FILE.svg")]
    plot: Option<PathBuf>,
    /// How the load balancer places new connections.
    #[arg(long, value_enum, default_value_t = Model::default().balancer)]
    lb: Balancer,
    /// Seed of the sessions and of every other random draw.
    #[arg(long, default_value_t = Model::default().seed)]
    seed: u64,
    /// Seconds from creating a pod to its being ready.
    #[arg(long, default_value_t = Model::default().startup_seconds)]
    startup_seconds: u64,
    /// Clients a draining pod lets go per second (drain.rate).
    #[arg(long, default_value_t = Model::default().drain_rate,
          value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    drain_rate: u64,
    /// Seconds between the drains of one scale-down (drain.staggerSeconds).
    #[arg(long, default_value_t = Model::default().stagger_seconds,
          value_parser = clap::value_parser!(u64).range(0..=600))]
    stagger: u64,
    /// Model KEDA with `useCachedMetrics: true` (values refreshed every pollingInterval).
    #[arg(long)]
    keda_cached_metrics: bool,
    /// chatscale's autoscaling.tolerance (the HPA and KEDA keep 0.1).
    #[arg(long, value_parser = tolerance)]
    tolerance: Option<f64>,
    /// chatscale's rebalance.deadZonePercent.
    #[arg(long, value_parser = clap::value_parser!(i32).range(1..=1000))]
    dead_zone: Option<i32>,
    /// chatscale's rebalance.connectionsPerSecond.
    #[arg(long, value_parser = clap::value_parser!(i32).range(1..=10_000))]
    shed_rate: Option<i32>,
    /// chatscale's rebalance.afterSeconds.
    #[arg(long, value_parser = clap::value_parser!(i32).range(0..=3600))]
    after: Option<i32>,
    /// chatscale's behavior.scaleDown.stabilizationWindowSeconds.
    #[arg(long, value_parser = clap::value_parser!(i32).range(0..=3600))]
    scale_down_window: Option<i32>,
    /// Experiment (not the operator's policy): chatscale sheds only pods
    /// above target × (1 + tolerance).
    #[arg(long)]
    shed_only_above_band: bool,
}

/// The scenarios `--scenario` names.
#[derive(Debug, Clone)]
struct Selection(Vec<Scenario>);

fn scenarios(name: &str) -> Result<Selection, String> {
    if name == "all" {
        return Ok(Selection(Scenario::ALL.to_vec()));
    }
    Scenario::from_str(name, false)
        .map(|s| Selection(vec![s]))
        .map_err(|_| {
            format!(
                "unknown scenario {name:?}: one of diurnal, flash-crowd, noisy-plateau, long-tail, all"
            )
        })
}

fn tolerance(value: &str) -> Result<f64, String> {
    let t: f64 = value.parse().map_err(|e| format!("{e}"))?;
    if (0.0..1.0).contains(&t) {
        Ok(t)
    } else {
        Err("tolerance must be in [0, 1)".into())
    }
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let model = Model {
        startup_seconds: args.startup_seconds,
        seed: args.seed,
        balancer: args.lb,
        drain_rate: args.drain_rate,
        stagger_seconds: args.stagger,
        keda_cached_metrics: args.keda_cached_metrics,
        shed_only_above_band: args.shed_only_above_band,
        ..Model::default()
    };
    let mut spec = chatscale_spec();
    if let Some(tolerance) = args.tolerance {
        spec.tolerance = tolerance;
    }
    let rebalance = &mut spec.rebalance;
    rebalance.dead_zone_percent = args.dead_zone.unwrap_or(rebalance.dead_zone_percent);
    rebalance.connections_per_second = args.shed_rate.unwrap_or(rebalance.connections_per_second);
    rebalance.after_seconds = args.after.unwrap_or(rebalance.after_seconds);
    if let Some(window) = args.scale_down_window {
        spec.behavior.scale_down.stabilization_window_seconds = window;
    }

    let selected = if args.all {
        Scenario::ALL.to_vec()
    } else {
        args.scenario.map(|s| s.0).unwrap_or_default()
    };
    let mut all_targets = Vec::new();
    for (i, scenario) in selected.iter().enumerate() {
        let comparison = sim::compare(*scenario, &model, &spec);
        if let Some(path) = &args.plot {
            let path = if selected.len() > 1 {
                per_scenario(path, scenario.name())
            } else {
                path.clone()
            };
            std::fs::write(&path, plot::svg(&comparison))
                .with_context(|| format!("writing {}", path.display()))?;
        }
        if args.json {
            println!("{}", serde_json::to_string(&comparison.report)?);
        } else {
            if i > 0 {
                println!();
            }
            print!("{}", table(&comparison));
        }
        all_targets.extend(targets::targets(&comparison.report));
    }
    if !args.json && !all_targets.is_empty() {
        print!("\n{}", targets_section(&all_targets));
    }
    Ok(())
}

/// `dir/name.svg` → `dir/name-<scenario>.svg`.
fn per_scenario(path: &std::path::Path, scenario: &str) -> PathBuf {
    let stem = path.file_stem().and_then(|s| s.to_str()).unwrap_or("plot");
    let name = match path.extension().and_then(|e| e.to_str()) {
        Some(ext) => format!("{stem}-{scenario}.{ext}"),
        None => format!("{stem}-{scenario}"),
    };
    path.with_file_name(name)
}

fn table(comparison: &Comparison) -> String {
    let report = &comparison.report;
    let oracle = report.oracle_pod_seconds;
    let mut out = format!(
        "scenario {}: {} s, {} sessions, connections mean {} / peak {}, {} balancer; oracle {} pod-seconds\n",
        report.scenario,
        report.seconds,
        report.sessions,
        report.mean_connections,
        report.peak_connections,
        report.model.balancer.name(),
        oracle
    );
    let _ = writeln!(
        out,
        "{:<23} {:>10} {:>12} {:>11} {:>9} {:>10} {:>9} {:>7} {:>7} {:>6} {:>9} {:>7}",
        "policy",
        "overload_s",
        "over_conn_s",
        "pod_seconds",
        "vs_oracle",
        "reconnects",
        "rebalance",
        "drain",
        "peak/s",
        "scales",
        "reversals",
        "no_pod"
    );
    for (name, m) in report.policies() {
        let _ = writeln!(
            out,
            "{:<23} {:>10} {:>12} {:>11} {:>8.1}% {:>10} {:>9} {:>7} {:>7} {:>6} {:>9} {:>7}",
            name,
            m.overload_seconds,
            m.overload_connection_seconds,
            m.pod_seconds,
            100.0 * (m.pod_seconds as f64 / oracle.max(1) as f64 - 1.0),
            m.reconnections,
            m.rebalance_reconnections,
            m.drain_reconnections,
            m.peak_reconnects_per_second,
            m.scale_events,
            m.reversals,
            m.no_pod_retries
        );
    }
    out
}

fn targets_section(targets: &[Target]) -> String {
    let mut out = String::from("targets (reported, not enforced)\n");
    for t in targets {
        let _ = writeln!(
            out,
            "  {:<4} {:<14} {:<58} {}",
            if t.pass { "PASS" } else { "MISS" },
            t.scenario,
            t.goal,
            t.got
        );
    }
    out
}
