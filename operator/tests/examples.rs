//! The CRD and the examples users apply: `crds/` is exactly what the binary
//! prints; every example passes the CRD's schema and CEL rules, every invalid
//! example is refused; each example renders to its golden YAML, and every
//! rendered object is a valid Kubernetes object (k8s-openapi types, and the
//! Kubernetes 1.33 OpenAPI schemas through `kubernetes-validate`).

use std::{fs, path::PathBuf};

use chatscale_operator::{api::ChatCluster, render::render};
use chatscale_tests::workspace_root;
use kube::CustomResourceExt;
use serde_json::Value;

fn yaml_files(dir: &str) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = fs::read_dir(workspace_root().join(dir))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no YAML in {dir}");
    files
}

/// The CRD's schema of a ChatCluster object, as JSON Schema.
fn crd_schema() -> Value {
    let crd = serde_json::to_value(ChatCluster::crd()).unwrap();
    crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"].clone()
}

/// Schema and CEL check, as the API server would do it on create.
fn admit(path: &PathBuf) -> Result<(), String> {
    let text = fs::read_to_string(path).unwrap();
    let value: Value = serde_saphyr::from_str(&text).map_err(|e| e.to_string())?;
    let validator = jsonschema::validator_for(&crd_schema()).unwrap();
    let errors: Vec<String> = validator
        .iter_errors(&value)
        .map(|e| e.to_string())
        .collect();
    if !errors.is_empty() {
        return Err(errors.join("; "));
    }
    let cc: ChatCluster = serde_json::from_value(value).map_err(|e| e.to_string())?;
    cc.validate_cel().map_err(|e| e.to_string())
}

#[test]
fn crds_dir_holds_exactly_what_the_binary_prints() {
    let printed = serde_saphyr::to_string(&ChatCluster::crd()).unwrap();
    let stored = fs::read_to_string(workspace_root().join("crds/chatcluster.yaml")).unwrap();
    assert!(
        printed == stored,
        "crds/chatcluster.yaml is stale: run `cargo run -p chatscale-operator -- crd > crds/chatcluster.yaml`"
    );
}

#[test]
fn every_example_is_admitted() {
    for path in yaml_files("examples") {
        admit(&path).unwrap_or_else(|e| panic!("{} refused: {e}", path.display()));
    }
}

#[test]
fn every_invalid_example_is_refused_with_a_reason() {
    let expected = [
        (
            "both-redis-modes.yaml",
            "exactly one of redis.managed and redis.external",
        ),
        (
            "drain-timeout-too-long.yaml",
            "drain.timeoutSeconds must be 1..3600",
        ),
        ("host-too-long.yaml", "is longer than 253 characters"),
        (
            "ingress-and-gateway.yaml",
            "at most one of routing.ingress and routing.gateway",
        ),
        ("min-above-max.yaml", "1 <= minReplicas <= maxReplicas"),
        (
            "name-too-long.yaml",
            "ChatCluster names are at most 46 characters",
        ),
        (
            "rebalance-rate-zero.yaml",
            "rebalance.connectionsPerSecond must be 1..10000",
        ),
        ("wrong-type.yaml", "\"two\" is not of type \"integer\""),
    ];
    let files = yaml_files("examples/invalid");
    assert_eq!(
        files.len(),
        expected.len(),
        "every invalid example has an expected reason"
    );
    for (path, (name, reason)) in files.iter().zip(expected) {
        assert!(path.ends_with(name), "{} vs {name}", path.display());
        let error = admit(path).expect_err(name);
        assert!(error.contains(reason), "{name}: {error}");
    }
}

#[test]
fn examples_render_to_their_golden_yaml() {
    for path in yaml_files("examples") {
        let rendered = render(&fs::read_to_string(&path).unwrap()).unwrap();
        let golden = workspace_root()
            .join("examples/golden")
            .join(path.file_name().unwrap());
        if std::env::var_os("UPDATE_GOLDEN").is_some() {
            fs::create_dir_all(golden.parent().unwrap()).unwrap();
            fs::write(&golden, &rendered).unwrap();
        }
        let expected = fs::read_to_string(&golden)
            .unwrap_or_else(|_| panic!("{} missing: run with UPDATE_GOLDEN=1", golden.display()));
        assert!(
            rendered == expected,
            "{} changed; review the diff and run with UPDATE_GOLDEN=1:\n{rendered}",
            path.display()
        );
    }
}

#[test]
fn rendered_objects_are_valid_kubernetes_objects() {
    for path in yaml_files("examples") {
        let rendered = render(&fs::read_to_string(&path).unwrap()).unwrap();
        let mut builtin = String::new();
        for doc in rendered.split("\n---\n").skip(1) {
            let value: Value = serde_saphyr::from_str(doc).unwrap();
            let kind = value["kind"].as_str().unwrap().to_owned();
            typed_round_trip(&kind, &value);
            if kind != "HTTPRoute" {
                builtin.push_str("---\n");
                builtin.push_str(doc);
                builtin.push('\n');
            }
        }
        let name = path.file_name().unwrap().to_string_lossy();
        if let Err(error) = chatscale_tests::kubernetes_validate(&name, &builtin) {
            panic!("{error}");
        }
    }
}

/// The object deserializes as its k8s-openapi type and serializes back unchanged.
fn typed_round_trip(kind: &str, value: &Value) {
    use k8s_openapi::api::{apps::v1::*, core::v1::*, networking::v1::*, policy::v1::*};
    fn check<K: serde::de::DeserializeOwned + serde::Serialize>(kind: &str, value: &Value) {
        let typed: K =
            serde_json::from_value(value.clone()).unwrap_or_else(|e| panic!("{kind}: {e}"));
        assert_eq!(
            &serde_json::to_value(typed).unwrap(),
            value,
            "{kind} loses fields"
        );
    }
    match kind {
        "Secret" => check::<Secret>(kind, value),
        "Service" => check::<Service>(kind, value),
        "StatefulSet" => check::<StatefulSet>(kind, value),
        "Deployment" => check::<Deployment>(kind, value),
        "Ingress" => check::<Ingress>(kind, value),
        "PodDisruptionBudget" => check::<PodDisruptionBudget>(kind, value),
        "NetworkPolicy" => check::<NetworkPolicy>(kind, value),
        "HTTPRoute" => {}
        other => panic!("unexpected kind {other}"),
    }
}

#[test]
fn the_rbac_cluster_role_is_a_valid_kubernetes_object() {
    let yaml = serde_saphyr::to_string(&chatscale_operator::rbac::cluster_role()).unwrap();
    if let Err(error) = chatscale_tests::kubernetes_validate("rbac.yaml", &yaml) {
        panic!("{error}");
    }
}

#[test]
fn the_manual_scaling_example_leaves_replicas_to_the_user() {
    let text = fs::read_to_string(workspace_root().join("examples/manual-scaling.yaml")).unwrap();
    let cc: ChatCluster = serde_saphyr::from_str(&text).unwrap();
    assert!(!cc.spec.autoscaling.enabled, "autoscaling is off");
    let rendered = render(&text).unwrap();
    let deployment: Value = rendered
        .split("\n---\n")
        .skip(1)
        .map(|doc| serde_saphyr::from_str::<Value>(doc).unwrap())
        .find(|o| o["kind"] == "Deployment")
        .unwrap();
    assert_eq!(deployment["spec"]["replicas"], cc.spec.replicas);
    // `kubectl scale` goes through the CRD's scale subresource, on spec.replicas.
    let crd = serde_json::to_value(ChatCluster::crd()).unwrap();
    let scale = &crd["spec"]["versions"][0]["subresources"]["scale"];
    assert_eq!(scale["specReplicasPath"], ".spec.replicas");
}
