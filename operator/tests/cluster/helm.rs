//! The chart with the real helm against the real API server: `helm install`
//! (the CRD installed, the operator Deployment scheduled and Running on kwok
//! nodes), `helm upgrade` with changed values, `helm uninstall`; and every
//! option of `ci/all-features-values.yaml` accepted, the monitors by the
//! Prometheus Operator's own CRDs.

use k8s_openapi::{
    api::{
        apps::v1::Deployment,
        core::v1::{ConfigMap, Pod, ServiceAccount},
        networking::v1::NetworkPolicy,
        rbac::v1::{ClusterRole, Role},
    },
    apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition,
};
use kube::{
    Api, Client,
    api::{ApiResource, DynamicObject, GroupVersionKind, ListParams},
};
use serde_json::json;

use crate::support::{CHART, ensure_namespace, eventually, helm_install, install_crds, plane};

/// Running pods of a release's operator Deployment, with their nodes.
async fn operator_pods(client: &Client, ns: &str, release: &str) -> Vec<(String, String)> {
    let selector =
        format!("app.kubernetes.io/name=chatscale-operator,app.kubernetes.io/instance={release}");
    let pods = Api::<Pod>::namespaced(client.clone(), ns)
        .list(&ListParams::default().labels(&selector))
        .await
        .map(|l| l.items)
        .unwrap_or_default();
    pods.into_iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .filter(|p| p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running"))
        .map(|p| {
            let node = p.spec.and_then(|s| s.node_name).unwrap_or_default();
            (p.metadata.name.unwrap_or_default(), node)
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn helm_installs_upgrades_and_uninstalls_the_operator() -> anyhow::Result<()> {
    let ns = plane().namespace("helm").await?;
    let ns = ns.as_str();
    let client = plane().client().await?;
    let full = format!("{ns}-chatscale-operator");
    let install = helm_install(ns, ns, &[])?;
    assert!(install.contains("STATUS: deployed"), "{install}");

    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    let crd = crds.get("chatclusters.chatscale.dev").await?;
    assert!(
        crd.status
            .unwrap()
            .conditions
            .unwrap()
            .iter()
            .any(|c| c.type_ == "Established" && c.status == "True"),
        "the chart's CRD is established"
    );
    // --wait returned: both replicas Running, spread over two kwok nodes.
    let pods = operator_pods(&client, ns, ns).await;
    assert_eq!(pods.len(), 2, "{pods:?}");
    assert!(
        pods.iter().all(|(_, node)| node.starts_with("kwok-node-")),
        "{pods:?}"
    );
    assert_ne!(pods[0].1, pods[1].1, "spread across nodes: {pods:?}");

    let upgrade = plane().run_ok(
        "helm",
        &[
            "upgrade",
            ns,
            CHART,
            "--namespace",
            ns,
            "--reuse-values",
            "--set",
            "replicaCount=3",
            "--set",
            "resources.requests.cpu=100m",
            "--wait",
            "--timeout",
            "2m",
        ],
    )?;
    assert!(upgrade.contains("REVISION: 2"), "{upgrade}");
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), ns);
    let deployment = deployments.get(&full).await?;
    let spec = deployment.spec.unwrap();
    assert_eq!(spec.replicas, Some(3));
    let requests = spec.template.spec.unwrap().containers[0]
        .resources
        .clone()
        .unwrap()
        .requests
        .unwrap();
    assert_eq!(requests["cpu"].0, "100m");
    eventually("3 operator pods Running after the upgrade", || async {
        let pods = operator_pods(&client, ns, ns).await;
        (pods.len() == 3).then_some(())
    })
    .await?;

    plane().run_ok(
        "helm",
        &[
            "uninstall",
            ns,
            "--namespace",
            ns,
            "--wait",
            "--timeout",
            "2m",
        ],
    )?;
    assert!(deployments.get_opt(&full).await?.is_none());
    assert!(
        Api::<ServiceAccount>::namespaced(client.clone(), ns)
            .get_opt(&full)
            .await?
            .is_none()
    );
    assert!(
        Api::<ClusterRole>::all(client.clone())
            .get_opt(&full)
            .await?
            .is_none()
    );
    eventually("the operator pods gone", || async {
        operator_pods(&client, ns, ns)
            .await
            .is_empty()
            .then_some(())
    })
    .await?;
    // Helm never deletes CRDs (nor, with them, users' ChatClusters).
    assert!(crds.get_opt("chatclusters.chatscale.dev").await?.is_some());
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_chart_option_is_accepted_by_the_api_server() -> anyhow::Result<()> {
    install_crds("monitoring.coreos.com_")?;
    let client = plane().client().await?;
    // The namespaces ci/all-features-values.yaml names.
    for name in ["chat", "chat-prod", "monitoring"] {
        ensure_namespace(name).await?;
    }
    let ns = plane().namespace("features").await?;
    let ns = ns.as_str();
    let full = format!("{ns}-chatscale-operator");
    let values = format!("{CHART}/ci/all-features-values.yaml");
    helm_install(ns, ns, &["-f", &values])?;
    let monitor = |namespace: &str, kind: &str, plural: &str| {
        let gvk = GroupVersionKind::gvk("monitoring.coreos.com", "v1", kind);
        Api::<DynamicObject>::namespaced_with(
            client.clone(),
            namespace,
            &ApiResource::from_gvk_with_plural(&gvk, plural),
        )
    };
    // serviceMonitor.namespace: monitoring; the PodMonitor in the release namespace.
    let service_monitor = monitor("monitoring", "ServiceMonitor", "servicemonitors")
        .get(&full)
        .await?;
    assert_eq!(
        service_monitor.data["spec"]["endpoints"][0]["port"],
        "http-metrics"
    );
    let pod_monitor = monitor(ns, "PodMonitor", "podmonitors")
        .get(&format!("{full}-chat-servers"))
        .await?;
    assert_eq!(
        pod_monitor.data["spec"]["namespaceSelector"]["matchNames"],
        json!(["chat", "chat-prod"])
    );
    // The PrometheusRule, accepted by the Prometheus Operator's CRD schema
    // (in the namespace prometheusRule.namespace names), with every alert.
    let rule = monitor("monitoring", "PrometheusRule", "prometheusrules")
        .get(&full)
        .await?;
    let alerts: Vec<&str> = rule.data["spec"]["groups"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|group| group["rules"].as_array().into_iter().flatten())
        .filter_map(|rule| rule["alert"].as_str())
        .collect();
    assert!(alerts.len() >= 8, "{alerts:?}");
    assert!(alerts.contains(&"ChatscaleRedisDown"), "{alerts:?}");
    assert!(
        Api::<NetworkPolicy>::namespaced(client.clone(), ns)
            .get_opt(&full)
            .await?
            .is_some()
    );
    assert!(
        Api::<Role>::namespaced(client.clone(), "chat")
            .get_opt(&full)
            .await?
            .is_some()
    );
    let dashboards = Api::<ConfigMap>::namespaced(client.clone(), "monitoring")
        .list(&ListParams::default().labels(&format!("app.kubernetes.io/instance={ns}")))
        .await?;
    assert_eq!(dashboards.items.len(), 1, "the Grafana dashboard ConfigMap");
    let deployment = Api::<Deployment>::namespaced(client.clone(), ns)
        .get(&full)
        .await?;
    assert_eq!(deployment.spec.unwrap().replicas, Some(3));
    plane().run_ok("helm", &["uninstall", ns, "--namespace", ns, "--wait"])?;
    Ok(())
}
