//! The autoscaling simulator (`autoscaler::sim`) on its three scenarios:
//! the report has the documented JSON shape, nothing beats the oracle, and
//! chatscale's policy does at least as well as the HPA's default behavior
//! where the brief expects it to. The numbers are printed (`--nocapture`).

use std::process::Command;

use chatscale_operator::autoscaler::sim::{self, Model, Scenario};
use serde_json::Value;

const POLICIES: [&str; 2] = ["chatscale", "hpa_default"];
const SCORES: [&str; 4] = [
    "overload_seconds",
    "pod_seconds",
    "scale_events",
    "reversals",
];

fn report(scenario: Scenario) -> Value {
    let comparison = sim::compare(scenario, &Model::default());
    let identical = comparison.chatscale == comparison.hpa_default;
    // As the binary prints it (fields in declaration order).
    eprintln!("{}", serde_json::to_string(&comparison.report).unwrap());
    let json = serde_json::to_value(&comparison.report).unwrap();
    eprintln!(
        "  {}: chatscale and hpa_default replicas identical every second: {identical}",
        scenario.name()
    );
    json
}

fn score(json: &Value, policy: &str, name: &str) -> u64 {
    json[policy][name].as_u64().unwrap()
}

#[test]
fn reports_have_the_documented_shape() {
    for scenario in Scenario::ALL {
        let json = report(scenario);
        let object = json.as_object().unwrap();
        let mut keys: Vec<&str> = object.keys().map(String::as_str).collect();
        keys.sort_unstable();
        assert_eq!(
            keys,
            ["chatscale", "hpa_default", "oracle_pod_seconds", "scenario"]
        );
        assert_eq!(json["scenario"], scenario.name());
        assert!(json["oracle_pod_seconds"].as_u64().unwrap() > 0);
        for policy in POLICIES {
            let scores = json[policy].as_object().unwrap();
            assert_eq!(scores.len(), SCORES.len(), "{policy}: {scores:?}");
            for name in SCORES {
                assert!(scores[name].is_u64(), "{policy}.{name}: {scores:?}");
            }
        }
    }
}

#[test]
fn no_policy_beats_the_oracle() {
    for scenario in Scenario::ALL {
        let json = report(scenario);
        let oracle = json["oracle_pod_seconds"].as_u64().unwrap();
        for policy in POLICIES {
            let pods = score(&json, policy, "pod_seconds");
            assert!(
                pods >= oracle,
                "{}: {policy} {pods} < oracle {oracle}",
                scenario.name()
            );
            eprintln!(
                "  {}: {policy} uses {:+.1}% pod-seconds over the oracle",
                scenario.name(),
                100.0 * (pods as f64 / oracle as f64 - 1.0)
            );
        }
    }
}

#[test]
fn flash_crowd_overload_no_worse_than_hpa_default() {
    let json = report(Scenario::FlashCrowd);
    let (chatscale, hpa) = (
        score(&json, "chatscale", "overload_seconds"),
        score(&json, "hpa_default", "overload_seconds"),
    );
    // A margin of one evaluation interval.
    assert!(
        chatscale <= hpa + 15,
        "chatscale {chatscale} s, hpa_default {hpa} s"
    );
    // Pods take 30 s to start and the crowd arrives within 60 s: some
    // overload is unavoidable without predicting the crowd.
    assert!(chatscale > 0);
}

#[test]
fn no_reversals_on_a_noisy_plateau() {
    let json = report(Scenario::NoisyPlateau);
    assert_eq!(score(&json, "chatscale", "reversals"), 0);
    // Nor with other noise.
    for seed in 0..20 {
        let model = Model {
            seed,
            ..Model::default()
        };
        let report = sim::compare(Scenario::NoisyPlateau, &model).report;
        assert_eq!(report.chatscale.reversals, 0, "seed {seed}: {report:?}");
        assert_eq!(
            report.chatscale.overload_seconds, 0,
            "seed {seed}: {report:?}"
        );
    }
}

#[test]
fn simulation_is_deterministic() {
    for scenario in Scenario::ALL {
        let model = Model::default();
        assert_eq!(
            sim::compare(scenario, &model),
            sim::compare(scenario, &model)
        );
    }
}

#[test]
fn the_binary_prints_the_library_report() {
    let bin = env!("CARGO_BIN_EXE_chatscale-sim");
    let output = Command::new(bin)
        .args(["--scenario", "flash-crowd", "--json"])
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    let stdout = String::from_utf8(output.stdout).unwrap();
    assert_eq!(stdout.lines().count(), 1, "one JSON object: {stdout}");
    let printed: Value = serde_json::from_str(&stdout).unwrap();
    let expected =
        serde_json::to_value(sim::compare(Scenario::FlashCrowd, &Model::default()).report).unwrap();
    assert_eq!(printed, expected);

    let plot = std::env::temp_dir().join(format!("chatscale-sim-{}.svg", std::process::id()));
    let output = Command::new(bin)
        .args(["--scenario", "diurnal", "--plot"])
        .arg(&plot)
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    let table = String::from_utf8(output.stdout).unwrap();
    assert!(
        table.contains("chatscale") && table.contains("hpa_default"),
        "{table}"
    );
    let svg = std::fs::read_to_string(&plot).unwrap();
    std::fs::remove_file(&plot).unwrap();
    assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
    assert!(svg.contains("chatscale ready") && svg.contains("hpa_default ready"));

    let output = Command::new(bin)
        .args(["--scenario", "no-such"])
        .output()
        .unwrap();
    assert!(!output.status.success());
}
