//! The real kube-runtime controller against an in-memory Kubernetes API
//! (`chatscale_tests::fake_kube`, real HTTP, LIST and WATCH): a ChatCluster
//! gets every object with owner references; spec changes flow through;
//! deleted or edited objects come back; status goes through the status
//! subresource; an invalid spec is Degraded. No cluster runs here.

use std::{sync::Arc, time::Duration};

use chatscale_operator::{
    api::ChatCluster,
    controller::{self, Context},
};
use chatscale_tests::fake_kube::{FakeKube, res};
use k8s_openapi::api::{
    apps::v1::{Deployment, StatefulSet},
    core::v1::{Secret, Service},
    networking::v1::{Ingress, NetworkPolicy},
    policy::v1::PodDisruptionBudget,
};
use kube::{
    Api, ResourceExt,
    api::{ApiResource, Patch, PatchParams, PostParams},
};
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(15);
const NS: &str = "chat";

fn owned() -> Vec<(ApiResource, &'static str)> {
    vec![
        (res::<Secret>(), "team-chat-redis-auth"),
        (res::<Service>(), "team-chat-redis"),
        (res::<StatefulSet>(), "team-chat-redis"),
        (res::<Secret>(), "team-chat-admin"),
        (res::<Deployment>(), "team-chat-chat"),
        (res::<Service>(), "team-chat-chat"),
        (res::<Ingress>(), "team-chat"),
        (res::<PodDisruptionBudget>(), "team-chat-chat"),
        (res::<NetworkPolicy>(), "team-chat-redis"),
        (res::<NetworkPolicy>(), "team-chat-chat"),
    ]
}

fn condition(kube: &FakeKube, type_: &str) -> Option<(String, String)> {
    let cc = kube.get(&res::<ChatCluster>(), NS, "team-chat")?;
    let found = cc["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == type_)?
        .clone();
    Some((
        found["status"].as_str()?.to_owned(),
        found["reason"].as_str()?.to_owned(),
    ))
}

/// Runs the real controller against `kube` until the returned sender fires.
fn start_controller(
    kube: &FakeKube,
) -> (
    tokio::sync::oneshot::Sender<()>,
    tokio::task::JoinHandle<()>,
) {
    let client = kube.client();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let runner = tokio::spawn(controller::run(
        client.clone(),
        Arc::new(Context::new(client)),
        async move {
            let _ = stopped.await;
        },
    ));
    (stop, runner)
}

/// A ChatCluster from `examples/NAME.yaml`.
fn example(name: &str) -> anyhow::Result<ChatCluster> {
    let path = format!("{}/../examples/{name}.yaml", env!("CARGO_MANIFEST_DIR"));
    Ok(serde_saphyr::from_str(&std::fs::read_to_string(path)?)?)
}

fn field<'a>(object: &'a Option<Value>, pointer: &str) -> Option<&'a Value> {
    object.as_ref()?.pointer(pointer)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_controller_builds_keeps_and_reports_a_chat_cluster() -> anyhow::Result<()> {
    let kube = FakeKube::start().await;
    let client = kube.client();
    let (stop, runner) = start_controller(&kube);

    let cc = example("minimal")?;
    let clusters: Api<ChatCluster> = Api::namespaced(client.clone(), NS);
    let created = clusters.create(&PostParams::default(), &cc).await?;
    let uid = created.uid().unwrap();

    // Every object, owned by the ChatCluster.
    kube.wait_for(
        |k| owned().iter().all(|(r, n)| k.get(r, NS, n).is_some()),
        WAIT,
    )
    .await?;
    for (resource, name) in owned() {
        let object = kube.get(&resource, NS, name).unwrap();
        let owner = &object["metadata"]["ownerReferences"][0];
        assert_eq!(
            (owner["uid"].as_str(), owner["controller"].as_bool()),
            (Some(uid.as_str()), Some(true)),
            "{name}"
        );
    }
    // Status through the status subresource, and an Event.
    kube.wait_for(
        |k| condition(k, "Degraded") == Some(("False".into(), "Reconciled".into())),
        WAIT,
    )
    .await?;
    let status = kube.get(&res::<ChatCluster>(), NS, "team-chat").unwrap()["status"].clone();
    assert_eq!(status["observedGeneration"], 1);
    assert_eq!(
        status["selector"],
        "app.kubernetes.io/component=chat,app.kubernetes.io/instance=team-chat,app.kubernetes.io/name=chatscale"
    );
    assert_eq!(
        condition(&kube, "Ready"),
        Some(("False".into(), "NoPodReady".into()))
    );
    assert!(
        kube.objects()
            .iter()
            .any(|o| o["kind"] == "Event" && o["reason"] == "Created"),
        "a Created Event"
    );
    let password = |k: &FakeKube| {
        field(
            &k.get(&res::<Secret>(), NS, "team-chat-redis-auth"),
            "/stringData/password",
        )
        .cloned()
    };
    let first_password = password(&kube).unwrap();
    assert_eq!(first_password.as_str().unwrap().len(), 40);

    // A spec change flows to the Deployment; generated secrets stay.
    clusters
        .patch(
            "team-chat",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"replicas": 5}})),
        )
        .await?;
    kube.wait_for(
        |k| {
            field(
                &k.get(&res::<Deployment>(), NS, "team-chat-chat"),
                "/spec/replicas",
            ) == Some(&json!(5))
        },
        WAIT,
    )
    .await?;
    kube.wait_for(
        |k| {
            field(
                &k.get(&res::<ChatCluster>(), NS, "team-chat"),
                "/status/observedGeneration",
            ) == Some(&json!(2))
        },
        WAIT,
    )
    .await?;
    assert_eq!(
        password(&kube),
        Some(first_password),
        "the password is generated once"
    );

    // Drift: a deleted Deployment and an edited Service come back.
    kube.delete_direct(&res::<Deployment>(), NS, "team-chat-chat");
    kube.wait_for(
        |k| k.get(&res::<Deployment>(), NS, "team-chat-chat").is_some(),
        WAIT,
    )
    .await?;
    kube.edit_direct(&res::<Service>(), NS, "team-chat-chat", |service| {
        service["spec"]["ports"][0]["port"] = json!(8080);
    });
    kube.wait_for(
        |k| {
            field(
                &k.get(&res::<Service>(), NS, "team-chat-chat"),
                "/spec/ports/0/port",
            ) == Some(&json!(80))
        },
        WAIT,
    )
    .await?;

    // Pods become ready: the status follows the Deployment's.
    kube.edit_direct(&res::<Deployment>(), NS, "team-chat-chat", |deployment| {
        deployment["status"] = json!({"replicas": 5, "readyReplicas": 5, "updatedReplicas": 5});
    });
    kube.wait_for(
        |k| condition(k, "Ready") == Some(("True".into(), "PodsReady".into())),
        WAIT,
    )
    .await?;
    assert_eq!(
        condition(&kube, "Progressing"),
        Some(("False".into(), "Stable".into()))
    );

    // A spec the schema would have refused (the fake API has no admission): Degraded, no crash.
    clusters
        .patch(
            "team-chat",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"autoscaling": {"minReplicas": 9, "maxReplicas": 3}}})),
        )
        .await?;
    kube.wait_for(
        |k| condition(k, "Degraded") == Some(("True".into(), "InvalidSpec".into())),
        WAIT,
    )
    .await?;
    assert!(
        kube.objects().iter().any(|o| o["kind"] == "Event"
            && o["reason"] == "InvalidSpec"
            && o["type"] == "Warning"),
        "a Warning Event explains it"
    );
    assert!(!runner.is_finished(), "the controller keeps running");

    let _ = stop.send(());
    tokio::time::timeout(WAIT, runner).await??;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gateway_cluster_gets_an_httproute_and_no_ingress() -> anyhow::Result<()> {
    let kube = FakeKube::start().await;
    let client = kube.client();
    let (stop, runner) = start_controller(&kube);
    let cc = example("production")?;
    Api::<ChatCluster>::namespaced(client.clone(), "chat-prod")
        .create(&PostParams::default(), &cc)
        .await?;
    let route = ApiResource::from_gvk_with_plural(
        &kube::api::GroupVersionKind::gvk("gateway.networking.k8s.io", "v1", "HTTPRoute"),
        "httproutes",
    );
    kube.wait_for(|k| k.get(&route, "chat-prod", "agency").is_some(), WAIT)
        .await?;
    // The HTTPRoute is watched: deleted or edited, it comes back at once (not
    // at the next periodic resync, minutes later).
    kube.delete_direct(&route, "chat-prod", "agency");
    kube.wait_for(|k| k.get(&route, "chat-prod", "agency").is_some(), WAIT)
        .await?;
    kube.edit_direct(&route, "chat-prod", "agency", |r| {
        r["spec"]["hostnames"] = json!(["elsewhere.example"]);
    });
    kube.wait_for(
        |k| {
            field(&k.get(&route, "chat-prod", "agency"), "/spec/hostnames/0")
                != Some(&json!("elsewhere.example"))
        },
        WAIT,
    )
    .await?;
    let route = kube.get(&route, "chat-prod", "agency").unwrap();
    assert_eq!(
        route["spec"]["rules"][0]["sessionPersistence"]["sessionName"],
        "agency-chat"
    );
    assert!(kube.get(&res::<Ingress>(), "chat-prod", "agency").is_none());
    assert!(
        kube.get(&res::<StatefulSet>(), "chat-prod", "agency-redis")
            .is_none(),
        "external Redis: none managed"
    );
    let _ = stop.send(());
    tokio::time::timeout(WAIT, runner).await??;
    Ok(())
}
