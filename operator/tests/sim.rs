//! The chatscale-sim binary: its JSON has the documented shape (scripts
//! read these names) and is the library's report, `--all` prints a table per
//! scenario and the targets, `--plot` writes SVG. The policy's quality is
//! not asserted here: the targets are printed numbers (`make sim`).

use std::process::Command;

use chatscale_operator::autoscaler::sim::{self, Model, Scenario, chatscale_spec};
use serde_json::Value;

const POLICIES: [&str; 4] = [
    "chatscale",
    "hpa_default",
    "keda_default",
    "chatscale_no_rebalance",
];
const SCORES: [&str; 11] = [
    "overload_seconds",
    "overload_connection_seconds",
    "pod_seconds",
    "reconnections",
    "rebalance_reconnections",
    "drain_reconnections",
    "scale_events",
    "reversals",
    "peak_reconnects_per_second",
    "no_pod_retries",
    "sessions",
];

fn sim(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_chatscale-sim"))
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn json_reports_have_the_documented_shape_for_every_scenario() {
    let output = sim(&["--all", "--json"]);
    assert!(output.status.success(), "{output:?}");
    let stdout = String::from_utf8(output.stdout).unwrap();
    let reports: Vec<Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let names: Vec<&str> = reports
        .iter()
        .map(|r| r["scenario"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        ["diurnal", "flash-crowd", "noisy-plateau", "long-tail"]
    );
    for report in &reports {
        assert!(report["oracle_pod_seconds"].as_u64().unwrap() > 0);
        assert!(report["model"]["startup_seconds"].is_u64());
        assert_eq!(report["model"]["balancer"], "round-robin");
        assert!(report["spec"]["target_connections_per_pod"].is_i64());
        for policy in POLICIES {
            let scores = report[policy].as_object().unwrap();
            for name in SCORES {
                assert!(scores[name].is_u64(), "{policy}.{name}: {scores:?}");
            }
            assert!(scores["pod_seconds"].as_u64().unwrap() > 0, "{policy}");
            assert_eq!(scores["sessions"], report["sessions"]);
        }
    }
}

#[test]
fn the_binary_prints_the_library_report() {
    let output = sim(&[
        "--scenario",
        "flash-crowd",
        "--json",
        "--lb",
        "least-connections",
    ]);
    assert!(output.status.success(), "{output:?}");
    let stdout = String::from_utf8(output.stdout).unwrap();
    assert_eq!(stdout.lines().count(), 1, "one JSON object: {stdout}");
    let printed: Value = serde_json::from_str(&stdout).unwrap();
    let model = Model {
        balancer: sim::Balancer::LeastConnections,
        ..Model::default()
    };
    let expected =
        serde_json::to_value(sim::compare(Scenario::FlashCrowd, &model, &chatscale_spec()).report)
            .unwrap();
    assert_eq!(printed, expected);
}

#[test]
fn all_prints_every_table_and_the_targets_and_plots_each_scenario() {
    let dir = std::env::temp_dir().join(format!("chatscale-sim-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let plot = dir.join("sim.svg");
    let output = sim(&["--scenario", "all", "--plot", plot.to_str().unwrap()]);
    assert!(output.status.success(), "{output:?}");
    let table = String::from_utf8(output.stdout).unwrap();
    for scenario in Scenario::ALL {
        assert!(
            table.contains(&format!("scenario {}:", scenario.name())),
            "{table}"
        );
        let svg =
            std::fs::read_to_string(dir.join(format!("sim-{}.svg", scenario.name()))).unwrap();
        assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
        for policy in POLICIES {
            assert!(svg.contains(&format!("{policy}: ")), "{policy}");
        }
    }
    for policy in POLICIES {
        assert_eq!(table.matches(&format!("\n{policy} ")).count(), 4, "{table}");
    }
    assert!(
        table.contains("targets (reported, not enforced)"),
        "{table}"
    );
    assert!(table.contains("PASS") || table.contains("MISS"));
    std::fs::remove_dir_all(&dir).unwrap();

    assert!(!sim(&["--scenario", "no-such"]).status.success());
    assert!(
        !sim(&[]).status.success(),
        "a scenario or --all is required"
    );
    assert!(!sim(&["--all", "--tolerance", "1.5"]).status.success());
}
