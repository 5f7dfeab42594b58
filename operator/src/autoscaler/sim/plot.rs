//! The `--plot` figure: one panel per policy (small multiples, same axes)
//! with the pods the offered load needs, the replicas and ready pods, and
//! the hottest ready pod's load against the target with the overload line.
//! Hand-written SVG, no dependency; about 1000 px wide for a README.

use std::fmt::Write as _;

use super::{Comparison, Sample};

const W: f64 = 1000.0;
const PANEL_W: f64 = 500.0;
const PANEL_H: f64 = 250.0;
const LEFT: f64 = 42.0;
const RIGHT: f64 = 40.0;
const TOP: f64 = 42.0;
const BOTTOM: f64 = 28.0;
const HEADER: f64 = 34.0;
const LEGEND: f64 = 30.0;
/// At most this many points per line.
const POINTS: usize = 500;

const BLUE: &str = "#1f77b4";
const RED: &str = "#d62728";
const GREY: &str = "#888";

/// The SVG for `comparison`.
pub fn svg(comparison: &Comparison) -> String {
    let report = &comparison.report;
    let seconds = comparison.offered.len().max(1);
    let target = f64::from(comparison.spec.target_connections_per_pod.max(1));
    let overload = comparison.model.overload_percent as f64 / 100.0;
    let needed: Vec<f64> = comparison
        .offered
        .iter()
        .map(|c| *c as f64 / target)
        .collect();
    let samples = || comparison.runs.iter().flat_map(|(_, run)| &run.samples);
    let top_pods = samples()
        .map(|s| f64::from(s.replicas))
        .chain(needed.iter().copied())
        .fold(1.0, f64::max)
        .ceil()
        + 1.0;
    let top_ratio = (samples()
        .map(|s| s.hottest as f64 / target)
        .fold(2.0, f64::max)
        * 2.0)
        .ceil()
        / 2.0;
    let rows = comparison.runs.len().div_ceil(2);
    let height = HEADER + PANEL_H * rows as f64 + LEGEND;

    let mut out = format!(
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{height}" viewBox="0 0 {W} {height}" font-family="sans-serif" font-size="11">
<rect width="100%" height="100%" fill="white"/>
<text x="10" y="20" font-size="13">chatscale-sim: {} ({} s, {} sessions, peak {} connections, {}; oracle {} pod-s)</text>
"#,
        report.scenario,
        report.seconds,
        report.sessions,
        report.peak_connections,
        report.model.balancer.name(),
        report.oracle_pod_seconds,
    );
    for (i, (name, run)) in comparison.runs.iter().enumerate() {
        let panel = Panel {
            x0: PANEL_W * (i % 2) as f64,
            y0: HEADER + PANEL_H * (i / 2) as f64,
            seconds,
            top_pods,
            top_ratio,
        };
        let m = &run.metrics;
        let title = format!(
            "{name}: {} s over, {} pod-s ({:+.1}%), {} moved",
            m.overload_seconds,
            m.pod_seconds,
            100.0 * (m.pod_seconds as f64 / report.oracle_pod_seconds.max(1) as f64 - 1.0),
            m.reconnections
        );
        panel.frame(&mut out, &title, overload);
        let line = |out: &mut String, points: String, color: &str, width: f64, dash: &str| {
            let _ = writeln!(
                out,
                r#"<polyline fill="none" stroke="{color}" stroke-width="{width}" stroke-dasharray="{dash}" points="{points}"/>"#
            );
        };
        line(&mut out, panel.smooth(&needed, false), GREY, 1.5, "none");
        let hottest: Vec<f64> = run
            .samples
            .iter()
            .map(|s| s.hottest as f64 / target)
            .collect();
        line(&mut out, panel.smooth(&hottest, true), RED, 1.0, "none");
        line(
            &mut out,
            panel.steps(&run.samples, |s| s.ready as i32),
            BLUE,
            2.0,
            "none",
        );
        line(
            &mut out,
            panel.steps(&run.samples, |s| s.replicas),
            BLUE,
            1.2,
            "5 3",
        );
    }
    // Legend.
    let y = height - LEGEND / 2.0;
    let items = [
        (GREY, "none", "pods needed (offered / target)".to_owned()),
        (BLUE, "none", "ready pods".to_owned()),
        (BLUE, "5 3", "replicas".to_owned()),
        (RED, "none", "hottest pod / target (right axis)".to_owned()),
        (RED, "2 2", format!("overload line ({overload})")),
    ];
    let mut x = 10.0;
    for (color, dash, label) in items {
        let _ = writeln!(
            out,
            r#"<line x1="{x}" y1="{y}" x2="{:.0}" y2="{y}" stroke="{color}" stroke-width="2" stroke-dasharray="{dash}"/><text x="{:.0}" y="{:.0}">{label}</text>"#,
            x + 22.0,
            x + 27.0,
            y + 4.0
        );
        x += 40.0 + 6.0 * label.len() as f64;
    }
    out.push_str("</svg>\n");
    out
}

/// One policy's panel and its coordinates.
struct Panel {
    x0: f64,
    y0: f64,
    seconds: usize,
    top_pods: f64,
    top_ratio: f64,
}

impl Panel {
    fn x(&self, t: usize) -> f64 {
        self.x0 + LEFT + (PANEL_W - LEFT - RIGHT) * t as f64 / self.seconds as f64
    }

    fn y_fraction(&self, fraction: f64) -> f64 {
        self.y0 + PANEL_H - BOTTOM - (PANEL_H - TOP - BOTTOM) * fraction
    }

    fn y(&self, pods: f64) -> f64 {
        self.y_fraction(pods / self.top_pods)
    }

    fn y_ratio(&self, ratio: f64) -> f64 {
        self.y_fraction(ratio / self.top_ratio)
    }

    fn frame(&self, out: &mut String, title: &str, overload: f64) {
        let (left, right) = (self.x0 + LEFT, self.x0 + PANEL_W - RIGHT);
        let (top, bottom) = (self.y(self.top_pods), self.y(0.0));
        let _ = writeln!(
            out,
            r##"<text x="{left}" y="{:.1}" font-size="12">{title}</text><rect x="{left}" y="{top:.1}" width="{:.1}" height="{:.1}" fill="none" stroke="#ccc"/>"##,
            self.y0 + TOP - 12.0,
            right - left,
            bottom - top
        );
        let step = match self.top_pods as i32 {
            ..=12 => 2,
            13..=30 => 5,
            _ => 10,
        };
        for pods in (0..=self.top_pods as i32).step_by(step) {
            let y = self.y(f64::from(pods));
            let _ = writeln!(
                out,
                r##"<line x1="{left}" y1="{y:.1}" x2="{right}" y2="{y:.1}" stroke="#eee"/><text x="{:.1}" y="{:.1}" text-anchor="end">{pods}</text>"##,
                left - 4.0,
                y + 4.0
            );
        }
        let mut ratio = 0.0;
        while ratio <= self.top_ratio + 1e-9 {
            let _ = writeln!(
                out,
                r#"<text x="{:.1}" y="{:.1}" fill="{RED}">{ratio:.1}</text>"#,
                right + 4.0,
                self.y_ratio(ratio) + 4.0
            );
            ratio += 0.5;
        }
        let y = self.y_ratio(overload);
        let _ = writeln!(
            out,
            r#"<line x1="{left}" y1="{y:.1}" x2="{right}" y2="{y:.1}" stroke="{RED}" stroke-dasharray="2 2"/>"#
        );
        let minutes = self.seconds / 60;
        let every = if minutes > 90 { 30 } else { 15 };
        for minute in (0..=minutes).step_by(every) {
            let x = self.x(minute * 60);
            let _ = writeln!(
                out,
                r#"<text x="{x:.1}" y="{:.1}" text-anchor="middle">{minute} min</text>"#,
                bottom + 14.0
            );
        }
        let _ = writeln!(
            out,
            r#"<text x="{:.1}" y="{:.1}" transform="rotate(-90 {:.1} {:.1})" text-anchor="middle">pods</text>"#,
            self.x0 + 10.0,
            (top + bottom) / 2.0,
            self.x0 + 10.0,
            (top + bottom) / 2.0
        );
    }

    /// A line through `values`, at most [`POINTS`] points: pods on the left
    /// axis, each point the mean of its stretch; with `peaks`, a ratio on
    /// the right axis, each point the maximum of its stretch.
    fn smooth(&self, values: &[f64], peaks: bool) -> String {
        let stride = values.len().div_ceil(POINTS).max(1);
        values
            .chunks(stride)
            .enumerate()
            .map(|(i, chunk)| {
                let v = if peaks {
                    chunk.iter().copied().fold(0.0, f64::max)
                } else {
                    chunk.iter().sum::<f64>() / chunk.len() as f64
                };
                let y = if peaks { self.y_ratio(v) } else { self.y(v) };
                format!("{:.1},{:.1}", self.x(i * stride + chunk.len() / 2), y)
            })
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// A step line of a per-second count.
    fn steps(&self, samples: &[Sample], pick: fn(&Sample) -> i32) -> String {
        let mut points = Vec::new();
        let mut previous = None;
        for (t, sample) in samples.iter().enumerate() {
            let v = f64::from(pick(sample));
            if previous != Some(v) {
                if let Some(p) = previous {
                    points.push(format!("{:.1},{:.1}", self.x(t), self.y(p)));
                }
                points.push(format!("{:.1},{:.1}", self.x(t), self.y(v)));
                previous = Some(v);
            }
        }
        if let Some(p) = previous {
            points.push(format!("{:.1},{:.1}", self.x(samples.len()), self.y(p)));
        }
        points.join(" ")
    }
}
