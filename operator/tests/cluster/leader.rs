//! Two operator processes racing for a new Lease elect one leader; when the leader
//! dies (SIGKILL: no release), the standby takes over once the Lease lapses
//! and reconciles from then on.

use std::time::Instant;

use chatscale_operator::api::ChatCluster;
use k8s_openapi::api::{apps::v1::Deployment, coordination::v1::Lease};
use kube::{
    Api,
    api::{Patch, PatchParams},
};
use serde_json::json;

use crate::support::{Operator, eventually, example, install_chart, kubeconfig_as, plane};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_operators_elect_one_leader_and_the_standby_takes_over() -> anyhow::Result<()> {
    let ns = plane().namespace("leader").await?;
    let ns = ns.as_str();
    let account = install_chart(ns, ns, &[])?;
    let kubeconfig = kubeconfig_as(ns, &account)?;
    let client = plane().client().await?;
    let leases: Api<Lease> = Api::namespaced(client.clone(), ns);
    let holder = || async {
        let lease = leases.get_opt("chatscale-operator").await.ok()??;
        let spec = lease.spec?;
        Some((spec.holder_identity?, spec.renew_time?.0))
    };

    // Both start at once and race for a Lease that does not exist yet.
    let a = Operator::start(&kubeconfig, ns, ns, "operator-a")?;
    let b = Operator::start(&kubeconfig, ns, ns, "operator-b")?;
    let (leader, renewed) = eventually("a leader", || async { holder().await }).await?;
    let (mut first, second) = if leader == "operator-a" {
        (a, b)
    } else {
        (b, a)
    };
    // Two renewals later the same one holds it: the other stands by.
    let (after_one, renewed_again) = eventually("a renewal", || async {
        holder().await.filter(|(_, t)| *t > renewed)
    })
    .await?;
    let (after_two, _) = eventually("a second renewal", || async {
        holder().await.filter(|(_, t)| *t > renewed_again)
    })
    .await?;
    assert_eq!((&after_one, &after_two), (&leader, &leader));

    let clusters: Api<ChatCluster> = Api::namespaced(client.clone(), ns);
    clusters
        .create(
            &Default::default(),
            &serde_json::from_value(example("minimal", ns)?)?,
        )
        .await?;
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), ns);
    eventually("the leader's Deployment", || async {
        deployments.get_opt("team-chat-chat").await.ok()?
    })
    .await?;
    // main.rs logs this once elected, before it starts the controller.
    const LEADING: &str = "watching ChatClusters";
    assert!(
        first.logs().contains(LEADING) && !second.logs().contains(LEADING),
        "only the leader runs the controller"
    );

    // The leader dies; the standby takes over when the Lease lapses.
    first.kill().await?;
    let killed = Instant::now();
    eventually("the standby holding the Lease", || async {
        holder().await.filter(|(h, _)| *h == second.identity)
    })
    .await?;
    let takeover = killed.elapsed();
    assert!(second.logs().contains(LEADING));
    eprintln!(
        "takeover {:.1} s after the leader was killed",
        takeover.as_secs_f64()
    );
    clusters
        .patch(
            "team-chat",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"replicas": 3}})),
        )
        .await?;
    eventually(
        "the new leader carrying replicas 3 to the Deployment",
        || async {
            let d = deployments.get("team-chat-chat").await.ok()?;
            (d.spec?.replicas == Some(3)).then_some(())
        },
    )
    .await?;
    Ok(())
}
