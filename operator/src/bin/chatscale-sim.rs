//! chatscale-sim: runs chatscale's autoscaling policy and the
//! HorizontalPodAutoscaler's default behavior side by side on a load
//! scenario (see `chatscale_operator::autoscaler::sim` for the model).
//!
//! `--json` prints one JSON object; otherwise a short table. `--plot F.svg`
//! also writes an SVG of pods over time (hand-written SVG, no dependency).

use std::{fmt::Write as _, path::PathBuf};

use anyhow::Context as _;
use chatscale_operator::autoscaler::sim::{self, Comparison, Metrics, Model, Sample, Scenario};
use clap::Parser;

#[derive(Parser, Debug)]
#[command(
    name = "chatscale-sim",
    about = "Simulate chatscale's autoscaler against the HPA's default behavior"
)]
struct Args {
    /// Load scenario.
    #[arg(long, value_enum)]
    scenario: Scenario,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    json: bool,
    /// Also write an SVG plot of pods over time to this file.
    #[arg(long, value_name = "FILE.svg")]
    plot: Option<PathBuf>,
    /// Seconds from adding a pod to its being ready.
    #[arg(long, default_value_t = Model::default().startup_seconds)]
    startup_seconds: u64,
    /// Seconds a removed pod keeps running while it drains.
    #[arg(long, default_value_t = Model::default().drain_seconds)]
    drain_seconds: u64,
    /// Seed of the noisy-plateau noise.
    #[arg(long, default_value_t = Model::default().seed)]
    seed: u64,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let model = Model {
        startup_seconds: args.startup_seconds,
        drain_seconds: args.drain_seconds,
        seed: args.seed,
        ..Model::default()
    };
    let comparison = sim::compare(args.scenario, &model);
    if let Some(path) = &args.plot {
        std::fs::write(path, svg(&comparison))
            .with_context(|| format!("writing {}", path.display()))?;
    }
    if args.json {
        println!("{}", serde_json::to_string(&comparison.report)?);
    } else {
        print!("{}", table(&comparison));
    }
    Ok(())
}

fn table(comparison: &Comparison) -> String {
    let report = &comparison.report;
    let oracle = report.oracle_pod_seconds;
    let mut out = format!(
        "scenario {} ({} s simulated), oracle {} pod-seconds\n",
        report.scenario,
        comparison.load.len(),
        oracle
    );
    let _ = writeln!(
        out,
        "{:<12} {:>10} {:>11} {:>10} {:>7} {:>9}",
        "policy", "overload_s", "pod_seconds", "vs_oracle", "scales", "reversals"
    );
    let mut row = |name: &str, m: &Metrics| {
        let _ = writeln!(
            out,
            "{:<12} {:>10} {:>11} {:>9.1}% {:>7} {:>9}",
            name,
            m.overload_seconds,
            m.pod_seconds,
            100.0 * (m.pod_seconds as f64 / oracle.max(1) as f64 - 1.0),
            m.scale_events,
            m.reversals
        );
    };
    row("chatscale", &report.chatscale);
    row("hpa_default", &report.hpa_default);
    out
}

/// Pods over time: load at target and at overload, and the replicas and
/// ready pods of both policies.
fn svg(comparison: &Comparison) -> String {
    const W: f64 = 1000.0;
    const H: f64 = 480.0;
    const LEFT: f64 = 50.0;
    const RIGHT: f64 = 170.0;
    const TOP: f64 = 30.0;
    const BOTTOM: f64 = 40.0;
    let seconds = comparison.load.len().max(1);
    let target = f64::from(comparison.spec.target_connections_per_pod.max(1));
    let needed: Vec<f64> = comparison.load.iter().map(|l| *l as f64 / target).collect();
    let top_pods = comparison
        .chatscale
        .iter()
        .chain(&comparison.hpa_default)
        .map(|s| f64::from(s.replicas))
        .chain(needed.iter().copied())
        .fold(1.0, f64::max)
        .ceil()
        + 1.0;
    let x = |t: usize| LEFT + (W - LEFT - RIGHT) * t as f64 / seconds as f64;
    let y = |pods: f64| H - BOTTOM - (H - TOP - BOTTOM) * pods / top_pods;

    let mut out = format!(
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" viewBox="0 0 {W} {H}" font-family="sans-serif" font-size="11">
<rect width="100%" height="100%" fill="white"/>
<text x="{LEFT}" y="18" font-size="13">chatscale-sim: {} (oracle {} pod-seconds)</text>
"#,
        comparison.report.scenario, comparison.report.oracle_pod_seconds
    );
    // Axes and grid.
    let pod_step = match top_pods as i32 {
        ..=12 => 1,
        13..=40 => 5,
        _ => 10,
    };
    for pods in (0..=top_pods as i32).step_by(pod_step) {
        let py = y(f64::from(pods));
        let _ = writeln!(
            out,
            r##"<line x1="{LEFT}" y1="{py:.1}" x2="{:.1}" y2="{py:.1}" stroke="#ddd"/><text x="{:.1}" y="{:.1}" text-anchor="end">{pods}</text>"##,
            W - RIGHT,
            LEFT - 4.0,
            py + 4.0
        );
    }
    for minute in (0..=seconds / 60).step_by(10) {
        let px = x(minute * 60);
        let _ = writeln!(
            out,
            r##"<line x1="{px:.1}" y1="{TOP}" x2="{px:.1}" y2="{:.1}" stroke="#eee"/><text x="{px:.1}" y="{:.1}" text-anchor="middle">{minute} min</text>"##,
            H - BOTTOM,
            H - BOTTOM + 16.0
        );
    }
    let _ = writeln!(
        out,
        r#"<text x="12" y="{:.1}" transform="rotate(-90 12 {:.1})" text-anchor="middle">pods</text>"#,
        (H - BOTTOM + TOP) / 2.0,
        (H - BOTTOM + TOP) / 2.0
    );

    // chatscale is drawn wider, under hpa_default, so that both show where they coincide.
    let mut line = |points: String, color: &str, dash: &str, label: &str, row: usize| {
        let width = if label.starts_with("chatscale") {
            4.0
        } else {
            1.5
        };
        let _ = writeln!(
            out,
            r#"<polyline fill="none" stroke="{color}" stroke-width="{width}" stroke-dasharray="{dash}" points="{points}"/>"#
        );
        let ly = TOP + 10.0 + 18.0 * row as f64;
        let lx = W - RIGHT + 10.0;
        let _ = writeln!(
            out,
            r#"<line x1="{lx}" y1="{ly}" x2="{:.1}" y2="{ly}" stroke="{color}" stroke-width="{width}" stroke-dasharray="{dash}"/><text x="{:.1}" y="{:.1}">{label}</text>"#,
            lx + 24.0,
            lx + 30.0,
            ly + 4.0
        );
    };
    let smooth = |values: &[f64]| {
        let stride = (values.len() / 1000).max(1);
        values
            .iter()
            .enumerate()
            .filter(|(t, _)| t % stride == 0 || *t + 1 == values.len())
            .map(|(t, v)| format!("{:.1},{:.1}", x(t), y(*v)))
            .collect::<Vec<_>>()
            .join(" ")
    };
    let steps = |samples: &[Sample], pick: fn(&Sample) -> i32| {
        let mut points = Vec::new();
        let mut previous = None;
        for (t, sample) in samples.iter().enumerate() {
            let v = f64::from(pick(sample));
            if previous != Some(v) {
                if let Some(p) = previous {
                    points.push(format!("{:.1},{:.1}", x(t), y(p)));
                }
                points.push(format!("{:.1},{:.1}", x(t), y(v)));
                previous = Some(v);
            }
        }
        if let Some(p) = previous {
            points.push(format!("{:.1},{:.1}", x(samples.len()), y(p)));
        }
        points.join(" ")
    };
    line(smooth(&needed), "#888", "none", "load / target", 0);
    let factor = comparison.model.overload_percent as f64 / 100.0;
    let at_overload: Vec<f64> = needed.iter().map(|n| n / factor).collect();
    let label = format!("load / ({factor} target)");
    line(smooth(&at_overload), "#bbb", "2 3", &label, 1);
    line(
        steps(&comparison.chatscale, |s| s.ready),
        "#1f77b4",
        "none",
        "chatscale ready",
        2,
    );
    line(
        steps(&comparison.chatscale, |s| s.replicas),
        "#1f77b4",
        "5 3",
        "chatscale replicas",
        3,
    );
    line(
        steps(&comparison.hpa_default, |s| s.ready),
        "#ff7f0e",
        "none",
        "hpa_default ready",
        4,
    );
    line(
        steps(&comparison.hpa_default, |s| s.replicas),
        "#ff7f0e",
        "5 3",
        "hpa_default replicas",
        5,
    );
    out.push_str("</svg>\n");
    out
}
