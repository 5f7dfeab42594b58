//! RBAC for real: the operator runs under the chart's ServiceAccount (a
//! TokenRequest token) and the API server enforces the chart's rules. In
//! cluster-wide mode (the ClusterRole) it reconciles every example with no
//! 403; requests outside the rules are denied; a `watchNamespace` install
//! (a Role) is confined to its namespace, and ChatClusters elsewhere are not
//! touched.

use chatscale_operator::{api::ChatCluster, controller::Reason};
use k8s_openapi::api::{apps::v1::Deployment, core::v1::Node};
use kube::{Api, api::DeleteParams};

use crate::support::{
    Operator, event_reasons, eventually, example, helm_install, install_crds, installed,
    kubeconfig_as, manifest_file, plane, production_secrets, service_account,
};

fn forbidden<T: std::fmt::Debug>(result: Result<T, kube::Error>) -> bool {
    matches!(result, Err(kube::Error::Api(ref s)) if s.code == 403)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_operator_reconciles_every_example_under_the_charts_cluster_role() -> anyhow::Result<()>
{
    install_crds("gateway.networking.k8s.io_")?;
    let ns = plane().namespace("rbac").await?;
    let ns = ns.as_str();
    // The chart's default: a ClusterRole (no watchNamespace). The operator
    // still watches only this namespace so the other tests' clusters stay theirs.
    helm_install(ns, ns, &[])?;
    let account = service_account(ns);
    let kubeconfig = kubeconfig_as(ns, &account)?;
    let operator = Operator::start(&kubeconfig, ns, ns, &format!("{ns}-0"))?;
    let admin = plane().client().await?;
    production_secrets(&admin, ns).await?;

    let names = [
        ("minimal", "team-chat"),
        ("production", "agency"),
        ("manual-scaling", "support"),
    ];
    for (example_name, _) in names {
        let file = manifest_file(&format!("{ns}-{example_name}"), &example(example_name, ns)?)?;
        plane().run_ok("kubectl", &["apply", "-f", &file.display().to_string()])?;
    }
    let clusters: Api<ChatCluster> = Api::namespaced(admin.clone(), ns);
    for (_, name) in names {
        eventually(&format!("{name} reconciled"), || async {
            let cc = clusters.get_status(name).await.ok()?;
            let degraded = cc
                .status?
                .conditions
                .into_iter()
                .find(|c| c.type_ == "Degraded")?;
            (degraded.status == "False" && degraded.reason == "Reconciled").then_some(())
        })
        .await?;
        let reasons = event_reasons(&admin, ns, name).await;
        assert!(
            !reasons.iter().any(|r| r == Reason::ApplyFailed.as_str()),
            "{name}: {reasons:?}"
        );
    }
    let logs = operator.logs();
    assert!(
        // kube's errors for a 403 say "forbidden" (a bare "403" could be part of a resourceVersion).
        !logs.to_lowercase().contains("forbidden"),
        "the operator was refused something:\n{logs}"
    );

    // Outside its rules: no Nodes, and it never deletes what it owns.
    let as_operator = chatscale_tests::cluster::client_from(&kubeconfig).await?;
    assert!(forbidden(
        Api::<Node>::all(as_operator.clone())
            .list(&Default::default())
            .await
    ));
    assert!(forbidden(
        Api::<Deployment>::namespaced(as_operator.clone(), ns)
            .delete("team-chat-chat", &DeleteParams::default())
            .await
    ));
    // It may read ChatClusters anywhere (a ClusterRole).
    Api::<ChatCluster>::namespaced(as_operator, "default")
        .list(&Default::default())
        .await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watch_namespace_install_is_confined_to_its_namespace() -> anyhow::Result<()> {
    let installed = installed("scoped").await?;
    let (ns, admin) = (installed.namespace.as_str(), &installed.client);
    let elsewhere = plane().namespace("elsewhere").await?;
    for namespace in [ns, elsewhere.as_str()] {
        Api::<ChatCluster>::namespaced(admin.clone(), namespace)
            .create(
                &Default::default(),
                &serde_json::from_value(example("minimal", namespace)?)?,
            )
            .await?;
    }
    let deployments = |n: &str| Api::<Deployment>::namespaced(admin.clone(), n);
    eventually("the watched namespace's Deployment", || async {
        deployments(ns).get_opt("team-chat-chat").await.ok()?
    })
    .await?;

    let account = service_account(ns);
    let as_operator = crate::support::client_as(ns, &account).await?;
    // Its Role works here and nowhere else.
    Api::<ChatCluster>::namespaced(as_operator.clone(), ns)
        .list(&Default::default())
        .await?;
    assert!(forbidden(
        Api::<ChatCluster>::namespaced(as_operator.clone(), &elsewhere)
            .list(&Default::default())
            .await
    ));
    assert!(forbidden(
        Api::<ChatCluster>::all(as_operator)
            .list(&Default::default())
            .await
    ));
    // The other namespace's cluster got nothing (checked after this one's
    // reconcile and a status write, so the operator has had its chance).
    eventually("the watched cluster's status", || async {
        Api::<ChatCluster>::namespaced(admin.clone(), ns)
            .get_status("team-chat")
            .await
            .ok()?
            .status
    })
    .await?;
    assert!(
        deployments(&elsewhere)
            .get_opt("team-chat-chat")
            .await?
            .is_none()
    );
    assert!(
        Api::<ChatCluster>::namespaced(admin.clone(), &elsewhere)
            .get_status("team-chat")
            .await?
            .status
            .is_none(),
        "no status written outside the watched namespace"
    );
    Ok(())
}
