//! The Helm chart (`charts/chatscale-operator`), rendered and linted by Helm's
//! own Go library (PyPI `helm-python-sdk`, through `scripts/helm.py`; see
//! scripts/install-test-deps.sh): with default values and with every optional
//! feature on (`ci/all-features-values.yaml`), every rendered object passes
//! the Kubernetes 1.33 OpenAPI schemas (`kubernetes-validate --strict`); the
//! chart's RBAC is exactly the operator's list (operator/src/rbac.rs); its
//! CRD is the root `crds/` file; and the generated docs are current.

use std::{collections::BTreeSet, fs, path::Path, process::Command};

use chatscale_operator::rbac;
use chatscale_tests::workspace_root;
use serde_json::{Value, json};

const CHART: &str = "charts/chatscale-operator";
const ALL_FEATURES: &str = "charts/chatscale-operator/ci/all-features-values.yaml";
/// Kinds from CRDs outside the Kubernetes schema set: checked here by hand.
const NOT_IN_SCHEMAS: [&str; 3] = ["ServiceMonitor", "PodMonitor", "PrometheusRule"];
/// The alerts, one rules file that the PrometheusRule ships.
const ALERTS: &str = "charts/chatscale-operator/rules/chatscale-alerts.yaml";

fn helm(args: &[&str]) -> std::process::Output {
    Command::new("python3")
        .arg(workspace_root().join("scripts/helm.py"))
        .args(args)
        .current_dir(workspace_root())
        .output()
        .expect("python3 is missing")
}

fn helm_ok(args: &[&str]) -> String {
    let output = helm(args);
    assert!(
        output.status.success(),
        "scripts/helm.py {args:?} failed (is helm-python-sdk installed? run `make deps`):\n{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

/// `helm template` as (source template, object) pairs.
fn render(values: Option<&str>, namespace: &str) -> Vec<(String, Value)> {
    let mut args = vec![
        "template",
        CHART,
        "--name",
        "chat-ops",
        "--namespace",
        namespace,
    ];
    if let Some(values) = values {
        args.extend(["-f", values]);
    }
    let text = helm_ok(&args);
    text.split("---\n")
        .filter(|doc| !doc.trim().is_empty())
        .map(|doc| {
            let source = doc
                .lines()
                .next()
                .and_then(|l| l.strip_prefix("# Source: "))
                .unwrap_or_else(|| panic!("no source line: {doc}"))
                .to_owned();
            let value: Value =
                serde_saphyr::from_str(doc).unwrap_or_else(|e| panic!("{source}: {e}\n{doc}"));
            (source, value)
        })
        .collect()
}

fn kinds(objects: &[(String, Value)]) -> BTreeSet<String> {
    objects
        .iter()
        .map(|(_, o)| o["kind"].as_str().unwrap().to_owned())
        .collect()
}

fn one<'a>(objects: &'a [(String, Value)], kind: &str) -> &'a Value {
    let found: Vec<&Value> = objects
        .iter()
        .map(|(_, o)| o)
        .filter(|o| o["kind"] == kind)
        .collect();
    assert_eq!(found.len(), 1, "one {kind}");
    found[0]
}

fn kubernetes_validate(name: &str, objects: &[&Value]) {
    let mut yaml = String::new();
    for object in objects {
        yaml.push_str("---\n");
        yaml.push_str(&serde_saphyr::to_string(object).unwrap());
    }
    if let Err(error) = chatscale_tests::kubernetes_validate(name, &yaml) {
        panic!("{error}");
    }
}

#[test]
fn the_chart_lints_strictly_with_default_and_all_feature_values() {
    for values in [None, Some(ALL_FEATURES)] {
        let mut args = vec!["lint", CHART, "--kube-version", "v1.33.0"];
        if let Some(values) = values {
            args.extend(["-f", values]);
        }
        let report = helm_ok(&args);
        assert!(
            report.contains("1 chart(s) linted, no failures"),
            "{report}"
        );
    }
}

#[test]
fn default_render_is_valid_and_complete() {
    let objects = render(None, "chatscale-system");
    assert_eq!(
        kinds(&objects),
        [
            "ClusterRole",
            "ClusterRoleBinding",
            "Deployment",
            "PodDisruptionBudget",
            "Role",
            "RoleBinding",
            "Service",
            "ServiceAccount",
        ]
        .map(String::from)
        .into(),
        "optional objects are off by default"
    );
    kubernetes_validate(
        "default.yaml",
        &objects.iter().map(|(_, o)| o).collect::<Vec<_>>(),
    );
}

#[test]
fn every_optional_feature_renders_valid_objects() {
    let objects = render(Some(ALL_FEATURES), "platform");
    let kinds = kinds(&objects);
    for kind in [
        "NetworkPolicy",
        "ConfigMap",
        "ServiceMonitor",
        "PodMonitor",
        "PrometheusRule",
        "Role",
        "PodDisruptionBudget",
    ] {
        assert!(kinds.contains(kind), "{kind} missing: {kinds:?}");
    }
    // ServiceMonitor, PodMonitor and PrometheusRule are Prometheus Operator CRDs, not in the
    // Kubernetes schemas: skipped there, their essentials checked here.
    let builtin: Vec<&Value> = objects
        .iter()
        .map(|(_, o)| o)
        .filter(|o| !NOT_IN_SCHEMAS.contains(&o["kind"].as_str().unwrap()))
        .collect();
    assert_eq!(builtin.len(), objects.len() - NOT_IN_SCHEMAS.len());
    kubernetes_validate("all-features.yaml", &builtin);

    let service_monitor = one(&objects, "ServiceMonitor");
    assert_eq!(service_monitor["apiVersion"], "monitoring.coreos.com/v1");
    assert_eq!(service_monitor["metadata"]["namespace"], "monitoring");
    let service = one(&objects, "Service");
    let endpoint = &service_monitor["spec"]["endpoints"][0];
    assert_eq!(endpoint["port"], service["spec"]["ports"][0]["name"]);
    assert_eq!(endpoint["path"], "/metrics");
    for (key, value) in service_monitor["spec"]["selector"]["matchLabels"]
        .as_object()
        .unwrap()
    {
        assert_eq!(
            &service["metadata"]["labels"][key], value,
            "selects the Service"
        );
    }

    let pod_monitor = one(&objects, "PodMonitor");
    assert_eq!(pod_monitor["apiVersion"], "monitoring.coreos.com/v1");
    let endpoint = &pod_monitor["spec"]["podMetricsEndpoints"][0];
    assert_eq!(endpoint["port"], "admin");
    assert_eq!(endpoint["path"], "/metrics");
    assert_eq!(
        pod_monitor["spec"]["namespaceSelector"]["matchNames"],
        json!(["chat", "chat-prod"])
    );
    // It selects the chat pods the operator runs, on the port they name admin.
    let chat = chat_deployment();
    let pod = &chat["spec"]["template"];
    for (key, value) in pod_monitor["spec"]["selector"]["matchLabels"]
        .as_object()
        .unwrap()
    {
        assert_eq!(&pod["metadata"]["labels"][key], value, "selects chat pods");
    }
    let ports = pod["spec"]["containers"][0]["ports"].as_array().unwrap();
    assert!(
        ports
            .iter()
            .any(|p| p["name"] == "admin" && p["containerPort"] == 9090)
    );

    // The PrometheusRule carries the rules file unchanged (its `{{ $labels }}`
    // templates are Prometheus's, not Helm's).
    let rule = one(&objects, "PrometheusRule");
    assert_eq!(rule["apiVersion"], "monitoring.coreos.com/v1");
    assert_eq!(rule["metadata"]["namespace"], "monitoring");
    assert_eq!(
        rule["metadata"]["labels"]["release"],
        "kube-prometheus-stack"
    );
    assert_eq!(rule["spec"], alert_rules());
    assert!(
        rule["spec"]["groups"][0]["rules"][0]["annotations"]["summary"]
            .as_str()
            .unwrap()
            .contains("{{ $labels.chatcluster }}")
    );

    let dashboard = one(&objects, "ConfigMap");
    assert_eq!(dashboard["metadata"]["labels"]["grafana_dashboard"], "1");
    let json: Value =
        serde_json::from_str(dashboard["data"]["chatscale.json"].as_str().unwrap()).unwrap();
    assert_eq!(json["uid"], "chatscale");

    let deployment = one(&objects, "Deployment");
    assert_eq!(deployment["spec"]["replicas"], 3);
    assert_eq!(
        deployment["spec"]["template"]["spec"]["containers"][0]["image"],
        "registry.example.com/chatscale/chatscale-operator@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
    );
}

/// The chat Deployment the operator renders for the minimal example.
fn chat_deployment() -> Value {
    let manifest = fs::read_to_string(workspace_root().join("examples/minimal.yaml")).unwrap();
    objects_of(&chatscale_operator::render::render(&manifest).unwrap())
        .into_iter()
        .find(|o| o["kind"] == "Deployment")
        .unwrap()
}

fn objects_of(rendered: &str) -> Vec<Value> {
    rendered
        .split("\n---\n")
        .skip(1)
        .map(|doc| serde_saphyr::from_str(doc).unwrap())
        .collect()
}

/// The object of `kind` in `namespace` (`None`: cluster-scoped).
fn in_namespace<'a>(
    objects: &'a [(String, Value)],
    kind: &str,
    namespace: Option<&str>,
) -> &'a Value {
    let found: Vec<&Value> = objects
        .iter()
        .map(|(_, o)| o)
        .filter(|o| o["kind"] == kind && o["metadata"]["namespace"].as_str() == namespace)
        .collect();
    assert_eq!(found.len(), 1, "one {kind} in {namespace:?}");
    found[0]
}

/// A Role's or ClusterRole's rules, normalized through the k8s-openapi type.
fn rules_of(role: &Value) -> Vec<String> {
    role["rules"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            let typed: k8s_openapi::api::rbac::v1::PolicyRule =
                serde_json::from_value(r.clone()).unwrap();
            serde_json::to_string(&typed).unwrap()
        })
        .collect()
}

#[test]
fn rbac_is_exactly_the_operators_list() {
    let expected = rbac::cluster_role();
    let stored =
        fs::read_to_string(workspace_root().join(CHART).join("files/clusterrole.yaml")).unwrap();
    assert!(
        stored == serde_saphyr::to_string(&expected).unwrap(),
        "{CHART}/files/clusterrole.yaml is stale: run `make crds`"
    );
    let expected: BTreeSet<String> = expected
        .rules
        .unwrap()
        .iter()
        .map(|r| serde_json::to_string(r).unwrap())
        .collect();

    let release = "platform";
    // Default: a ClusterRole; with watchNamespace (all-features): a Role there.
    for (values, watched) in [(None, None), (Some(ALL_FEATURES), Some("chat"))] {
        let objects = render(values, release);
        let (role_kind, binding_kind) = match watched {
            None => ("ClusterRole", "ClusterRoleBinding"),
            Some(_) => ("Role", "RoleBinding"),
        };
        if watched.is_some() {
            assert!(
                !kinds(&objects).contains("ClusterRole"),
                "no cluster-wide rights with watchNamespace"
            );
        }
        let main = rules_of(in_namespace(&objects, role_kind, watched));
        let lease = rules_of(in_namespace(&objects, "Role", Some(release)));
        let rendered: BTreeSet<String> = main.iter().chain(&lease).cloned().collect();
        assert_eq!(main.len() + lease.len(), rendered.len(), "no rule twice");
        assert_eq!(
            rendered, expected,
            "{values:?}: the chart grants exactly what rbac.rs lists"
        );
        // Leader election only in the operator's own namespace.
        assert!(lease.iter().all(|r| r.contains("coordination.k8s.io")));
        assert!(!main.iter().any(|r| r.contains("coordination.k8s.io")));

        // Every binding names the account the Deployment runs as, and its role.
        let deployment = one(&objects, "Deployment");
        let account = &deployment["spec"]["template"]["spec"]["serviceAccountName"];
        assert_eq!(
            &one(&objects, "ServiceAccount")["metadata"]["name"],
            account
        );
        for (kind, namespace) in [(binding_kind, watched), ("RoleBinding", Some(release))] {
            let binding = in_namespace(&objects, kind, namespace);
            assert_eq!(&binding["subjects"][0]["name"], account, "{kind}");
            assert_eq!(binding["subjects"][0]["namespace"], release, "{kind}");
            let role = in_namespace(
                &objects,
                binding["roleRef"]["kind"].as_str().unwrap(),
                namespace,
            );
            assert_eq!(
                binding["roleRef"]["name"], role["metadata"]["name"],
                "{kind}"
            );
        }
        // The operator is told which namespace its Role covers.
        let args = deployment["spec"]["template"]["spec"]["containers"][0]["args"].to_string();
        match watched {
            Some(ns) => assert!(args.contains(&format!("--watch-namespace={ns}")), "{args}"),
            None => assert!(!args.contains("--watch-namespace"), "{args}"),
        }
    }
}

#[test]
fn the_operator_deployment_matches_the_binary() {
    let objects = render(None, "chatscale-system");
    let deployment = one(&objects, "Deployment");
    assert_eq!(deployment["spec"]["replicas"], 2, "a leader and a standby");
    let pod = &deployment["spec"]["template"]["spec"];
    let container = &pod["containers"][0];
    assert_eq!(container["args"][0], "run");
    let env: Vec<&str> = container["env"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["name"].as_str().unwrap())
        .collect();
    // The Lease namespace and identity flags' env twins (operator/src/main.rs).
    assert!(
        env.contains(&"POD_NAMESPACE") && env.contains(&"POD_NAME"),
        "{env:?}"
    );
    assert_eq!(container["livenessProbe"]["httpGet"]["path"], "/healthz");
    assert_eq!(container["readinessProbe"]["httpGet"]["path"], "/readyz");
    assert_eq!(container["ports"][0]["containerPort"], 8080);
    assert!(
        container["args"][1].as_str().unwrap().ends_with(":8080"),
        "--http-address on the probed port"
    );
    // Restricted Pod Security Standard.
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
    assert_eq!(
        pod["securityContext"]["seccompProfile"]["type"],
        "RuntimeDefault"
    );
    let security = &container["securityContext"];
    assert_eq!(security["allowPrivilegeEscalation"], false);
    assert_eq!(security["readOnlyRootFilesystem"], true);
    assert_eq!(security["capabilities"]["drop"], json!(["ALL"]));
    assert!(container["resources"]["requests"]["memory"].is_string());

    // The NetworkPolicies the operator writes for chat pods and Redis admit
    // the operator by pod label: the chart's pods must carry it.
    let labels = &deployment["spec"]["template"]["metadata"]["labels"];
    let manifest = fs::read_to_string(workspace_root().join("examples/minimal.yaml")).unwrap();
    let policies: Vec<Value> = objects_of(&chatscale_operator::render::render(&manifest).unwrap())
        .into_iter()
        .filter(|o| o["kind"] == "NetworkPolicy")
        .collect();
    assert!(!policies.is_empty());
    for policy in policies {
        let operator_peers: Vec<&Value> = policy["spec"]["ingress"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|rule| rule["from"].as_array().into_iter().flatten())
            .filter(|peer| peer.get("namespaceSelector").is_some())
            .collect();
        assert!(!operator_peers.is_empty());
        for peer in operator_peers {
            for (key, value) in peer["podSelector"]["matchLabels"].as_object().unwrap() {
                assert_eq!(&labels[key], value, "operator pods carry {key}");
            }
        }
    }
}

#[test]
fn values_outside_the_schema_are_refused() {
    let dir = std::env::temp_dir();
    for (name, values, reason) in [
        ("unknown", "watchNamespaces: [chat]\n", "watchNamespaces"),
        (
            "namespace",
            "watchNamespace: Not_A_Namespace\n",
            "watchNamespace",
        ),
        ("zero", "replicaCount: 0\n", "replicaCount"),
        ("policy", "image:\n  pullPolicy: Sometimes\n", "pullPolicy"),
    ] {
        let file = dir.join(format!(
            "chatscale-values-{}-{name}.yaml",
            std::process::id()
        ));
        fs::write(&file, values).unwrap();
        let output = helm(&["template", CHART, "-f", file.to_str().unwrap()]);
        fs::remove_file(&file).unwrap();
        assert!(!output.status.success(), "{name} was accepted");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains(reason), "{name}: {stderr}");
    }
}

#[test]
fn notes_tell_the_user_what_to_do_next() {
    let text = helm_ok(&["template", CHART, "--namespace", "ops", "--notes"]);
    let notes = text
        .split("# Source: chatscale-operator/templates/NOTES.txt\n")
        .nth(1)
        .expect("NOTES.txt rendered");
    for expected in [
        "kubectl -n ops get lease chatscale-operator",
        "kubectl apply -f examples/minimal.yaml",
        "kubectl -n chat scale chatcluster/team-chat --replicas=4",
        "chatscale-operator-metrics:8080/metrics",
    ] {
        assert!(
            notes.contains(expected),
            "NOTES.txt lacks {expected:?}:\n{notes}"
        );
    }
}

/// Leaf paths of values.yaml, e.g. `image.repository`, `serviceMonitor.labels`.
fn value_paths(value: &Value, prefix: &str, out: &mut Vec<String>) {
    match value.as_object() {
        Some(map) if !map.is_empty() => {
            for (key, child) in map {
                let path = if prefix.is_empty() {
                    key.clone()
                } else {
                    format!("{prefix}.{key}")
                };
                // Free-form maps are documented as one value.
                if matches!(
                    key.as_str(),
                    "podSecurityContext" | "securityContext" | "resources" | "labels"
                ) {
                    out.push(path);
                } else {
                    value_paths(child, &path, out);
                }
            }
        }
        _ => out.push(prefix.to_owned()),
    }
}

#[test]
fn the_chart_readme_lists_every_value_and_the_schema_knows_it() {
    let chart = workspace_root().join(CHART);
    let values: Value =
        serde_saphyr::from_str(&fs::read_to_string(chart.join("values.yaml")).unwrap()).unwrap();
    let readme = fs::read_to_string(chart.join("README.md")).unwrap();
    let schema: Value =
        serde_json::from_str(&fs::read_to_string(chart.join("values.schema.json")).unwrap())
            .unwrap();
    let mut paths = Vec::new();
    value_paths(&values, "", &mut paths);
    assert!(paths.len() > 30, "{paths:?}");
    for path in &paths {
        assert!(
            readme.contains(&format!("| `{path}` |")),
            "README.md has no row for `{path}`"
        );
        let top = path.split('.').next().unwrap();
        assert!(
            schema["properties"].get(top).is_some(),
            "values.schema.json has no {top}"
        );
    }
}

#[test]
fn the_charts_crd_is_the_generated_one() {
    let root = fs::read_to_string(workspace_root().join("crds/chatcluster.yaml")).unwrap();
    let chart =
        fs::read_to_string(workspace_root().join(CHART).join("crds/chatcluster.yaml")).unwrap();
    assert!(
        root == chart,
        "{CHART}/crds/chatcluster.yaml differs from crds/chatcluster.yaml: run `make crds`"
    );
}

#[test]
fn the_reference_docs_are_generated_from_the_crd() {
    let stored =
        fs::read_to_string(workspace_root().join("docs/chatcluster-reference.md")).unwrap();
    assert!(
        stored == chatscale_operator::docs::chatcluster_reference(),
        "docs/chatcluster-reference.md is stale: run `make crds`"
    );
}

fn alert_rules() -> Value {
    serde_saphyr::from_str(&fs::read_to_string(workspace_root().join(ALERTS)).unwrap()).unwrap()
}

/// Asserts that every chat_* and chatscale_* metric the queries use is
/// registered by the code (histograms by their name without `_bucket`).
fn assert_registered<'a>(what: &str, queries: impl Iterator<Item = &'a str>) {
    let sources: String = [
        "chat-server/src/admin/metrics.rs",
        "operator/src/controller/reconcile.rs",
    ]
    .iter()
    .map(|p| fs::read_to_string(workspace_root().join(p)).unwrap())
    .chain(sources_under(
        &workspace_root().join("operator/src/autoscaler"),
    ))
    .collect();
    let mut used = BTreeSet::new();
    for expr in queries {
        for word in expr.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')) {
            if word.starts_with("chat_") || word.starts_with("chatscale_") {
                used.insert(word.trim_end_matches("_bucket").to_owned());
            }
        }
    }
    assert!(used.len() > 5, "{what}: {used:?}");
    for metric in used {
        assert!(
            sources.contains(&format!("\"{metric}\"")),
            "{what} uses {metric}, which no source registers"
        );
    }
}

#[test]
fn the_dashboard_uses_metrics_that_exist() {
    let dashboard = fs::read_to_string(
        workspace_root()
            .join(CHART)
            .join("dashboards/chatscale.json"),
    )
    .unwrap();
    let dashboard: Value = serde_json::from_str(&dashboard).unwrap();
    let panels = dashboard["panels"].as_array().unwrap();
    let exprs = panels
        .iter()
        .flat_map(|panel| panel["targets"].as_array().unwrap())
        .map(|target| target["expr"].as_str().unwrap());
    assert_registered("the dashboard", exprs);
}

#[test]
fn the_alerts_use_metrics_that_exist_and_say_what_to_do() {
    let rules = alert_rules();
    let rules: Vec<&Value> = rules["groups"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|group| group["rules"].as_array().unwrap())
        .collect();
    assert!(rules.len() >= 8, "{} alerts", rules.len());
    for rule in &rules {
        let name = rule["alert"].as_str().unwrap();
        assert!(name.starts_with("Chatscale"), "{name}");
        assert!(rule["for"].is_string(), "{name} has no `for`");
        assert!(
            ["warning", "critical"].contains(&rule["labels"]["severity"].as_str().unwrap()),
            "{name}: severity"
        );
        for annotation in ["summary", "description"] {
            assert!(
                rule["annotations"][annotation].is_string(),
                "{name}: no {annotation}"
            );
        }
    }
    assert_registered(
        "the alerts",
        rules.iter().map(|rule| rule["expr"].as_str().unwrap()),
    );
}

fn sources_under(dir: &Path) -> Vec<String> {
    fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "rs"))
        .map(|p| fs::read_to_string(p).unwrap())
        .collect()
}
