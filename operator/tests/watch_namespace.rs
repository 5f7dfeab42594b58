//! `chatscale-operator run --watch-namespace NS` (the Helm chart's
//! `watchNamespace`): the controller only sees ChatClusters in NS, against
//! the in-memory API server (`chatscale_tests::fake_kube`), so a namespaced
//! Role is enough. No cluster runs here.

use std::{sync::Arc, time::Duration};

use chatscale_operator::{
    api::ChatCluster,
    controller::{self, Context, scoped},
};
use chatscale_tests::fake_kube::{FakeKube, res};
use k8s_openapi::api::{apps::v1::Deployment, core::v1::Pod};
use kube::{Api, api::PostParams};

const WAIT: Duration = Duration::from_secs(15);

#[test]
fn scoped_apis_name_the_namespace_only_when_given() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let kube = FakeKube::start().await;
        let client = kube.client();
        assert_eq!(
            scoped::<ChatCluster>(client.clone(), Some("chat")).resource_url(),
            "/apis/chatscale.dev/v1alpha1/namespaces/chat/chatclusters"
        );
        assert_eq!(
            scoped::<ChatCluster>(client.clone(), None).resource_url(),
            "/apis/chatscale.dev/v1alpha1/chatclusters"
        );
        assert_eq!(
            scoped::<Pod>(client, Some("chat")).resource_url(),
            "/api/v1/namespaces/chat/pods"
        );
    });
}

fn cluster(namespace: &str) -> ChatCluster {
    let path = format!("{}/../examples/minimal.yaml", env!("CARGO_MANIFEST_DIR"));
    let mut cc: ChatCluster =
        serde_saphyr::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    cc.metadata.namespace = Some(namespace.into());
    cc
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_namespaced_controller_leaves_other_namespaces_alone() -> anyhow::Result<()> {
    let kube = FakeKube::start().await;
    let client = kube.client();
    // A ChatCluster outside the watched namespace exists before the controller starts,
    // so an all-namespaces controller would find it in its first LIST.
    for ns in ["elsewhere", "chat"] {
        Api::<ChatCluster>::namespaced(client.clone(), ns)
            .create(&PostParams::default(), &cluster(ns))
            .await?;
    }
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let runner = tokio::spawn(controller::run_in(
        client.clone(),
        Arc::new(Context::new(client)),
        Some("chat".into()),
        async move {
            let _ = stopped.await;
        },
    ));

    // The watched one is reconciled through to its status...
    let deployment = res::<Deployment>();
    kube.wait_for(
        |k| {
            k.get(&deployment, "chat", "team-chat-chat").is_some()
                && k.get(&res::<ChatCluster>(), "chat", "team-chat")
                    .is_some_and(|cc| cc["status"]["conditions"].is_array())
        },
        WAIT,
    )
    .await?;
    // ...and the other one was never touched: no owned objects, no status.
    assert!(
        kube.get(&deployment, "elsewhere", "team-chat-chat")
            .is_none()
    );
    let other = kube
        .get(&res::<ChatCluster>(), "elsewhere", "team-chat")
        .unwrap();
    assert!(other.get("status").is_none_or(|s| s.is_null()), "{other}");
    let touched: Vec<String> = kube
        .objects()
        .iter()
        .filter(|o| o["metadata"]["namespace"] == "elsewhere")
        .map(|o| format!("{}/{}", o["kind"], o["metadata"]["name"]))
        .collect();
    assert_eq!(
        touched,
        ["\"ChatCluster\"/\"team-chat\""],
        "only the user's object"
    );

    let _ = stop.send(());
    runner.await?;
    Ok(())
}
