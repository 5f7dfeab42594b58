//! The autoscaler's Kubernetes side against the in-memory API, with local
//! HTTP servers standing in for the pods' admin ports: scale-up patches
//! replicas at once; scale-down marks and drains exactly the emptiest pod
//! first; a pod whose metrics fail blocks any scale-down; a scale-up during a
//! drain cancels it; status and Events.

use std::sync::{
    Arc, Mutex,
    atomic::{AtomicBool, AtomicI64, Ordering},
};

use axum::{Router, http::StatusCode, routing::get};
use chatscale_operator::{
    api::ChatCluster,
    autoscaler::{
        decide::Decision,
        run::{Autoscaler, Metrics, step},
    },
};
use chatscale_tests::fake_kube::{FakeKube, res};
use k8s_openapi::api::core::v1::Pod;
use kube::{
    Api,
    api::{Patch, PatchParams, PostParams},
    runtime::events::{Recorder, Reporter},
};
use serde_json::json;

const NS: &str = "chat";

/// A pod's admin port: `/metrics` with `connections` (negative = HTTP 500)
/// and `/drain`. A drain finishes at once, unless `finish` is false: then it
/// runs until `DELETE /drain` cancels it.
struct FakePod {
    connections: Arc<AtomicI64>,
    drained: Arc<Mutex<bool>>,
    finish: Arc<AtomicBool>,
    cancelled: Arc<AtomicBool>,
    port: u16,
}

async fn fake_pod(connections: i64) -> FakePod {
    let value = Arc::new(AtomicI64::new(connections));
    let drained = Arc::new(Mutex::new(false));
    let finish = Arc::new(AtomicBool::new(true));
    let cancelled = Arc::new(AtomicBool::new(false));
    let (metrics, drain_state, drain_start) = (value.clone(), drained.clone(), drained.clone());
    let (finishes, drain_cancel, finished_cancel, cancel_flag) = (
        finish.clone(),
        drained.clone(),
        finish.clone(),
        cancelled.clone(),
    );
    let app = Router::new()
        .route(
            "/metrics",
            get(move || {
                let n = metrics.load(Ordering::SeqCst);
                async move {
                    if n < 0 {
                        (StatusCode::INTERNAL_SERVER_ERROR, String::new())
                    } else {
                        (StatusCode::OK, format!("chat_connected_sockets {n}\nchat_ai_streams_active 0\nchat_draining 0\n"))
                    }
                }
            }),
        )
        .route(
            "/drain",
            get(move || {
                let state = match (*drain_state.lock().unwrap(), finishes.load(Ordering::SeqCst)) {
                    (false, _) => "serving",
                    (true, true) => "drained",
                    (true, false) => "draining",
                };
                async move { format!("{{\"state\":\"{state}\"}}") }
            })
            .post(move || {
                *drain_start.lock().unwrap() = true;
                async { (StatusCode::ACCEPTED, "{\"state\":\"draining\"}") }
            })
            .delete(move || {
                let mut started = drain_cancel.lock().unwrap();
                let status = if *started && !finished_cancel.load(Ordering::SeqCst) {
                    *started = false;
                    cancel_flag.store(true, Ordering::SeqCst);
                    StatusCode::OK
                } else {
                    StatusCode::CONFLICT
                };
                async move { status }
            }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move { axum::serve(listener, app).await });
    FakePod {
        connections: value,
        drained,
        finish,
        cancelled,
        port,
    }
}

async fn add_pod(kube: &FakeKube, name: &str, port: u16) {
    let pods: Api<Pod> = Api::namespaced(kube.client(), NS);
    let pod: Pod = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": NS, "labels": {
            "app.kubernetes.io/name": "chatscale", "app.kubernetes.io/instance": "team-chat",
            "app.kubernetes.io/component": "chat"}},
        "spec": {"containers": [{"name": "chat-server", "ports": [{"name": "admin", "containerPort": port}]}]}
    }))
    .unwrap();
    pods.create(&PostParams::default(), &pod).await.unwrap();
    let status = json!({"status": {"phase": "Running", "podIP": "127.0.0.1",
        "conditions": [{"type": "Ready", "status": "True"}]}});
    pods.patch_status(name, &PatchParams::default(), &Patch::Merge(status))
        .await
        .unwrap();
}

/// Sets `spec.replicas` as a user (or the reconcile) would.
async fn set_replicas(kube: &FakeKube, replicas: i32) -> kube::Result<ChatCluster> {
    let patch = json!({"spec": {"replicas": replicas}});
    Api::<ChatCluster>::namespaced(kube.client(), NS)
        .patch("team-chat", &PatchParams::default(), &Patch::Merge(patch))
        .await
}

fn cluster(kube: &FakeKube) -> ChatCluster {
    serde_json::from_value(kube.get(&res::<ChatCluster>(), NS, "team-chat").unwrap()).unwrap()
}

fn events(kube: &FakeKube) -> Vec<String> {
    kube.objects()
        .into_iter()
        .filter(|o| o["kind"] == "Event")
        .map(|o| o["reason"].as_str().unwrap_or_default().to_owned())
        .collect()
}

/// One evaluation of the ChatCluster as the in-memory API holds it now.
async fn tick(
    kube: &FakeKube,
    recorder: &Recorder,
    metrics: &Metrics,
    autoscaler: &mut Autoscaler,
    now: u64,
) -> anyhow::Result<Decision> {
    step(
        &kube.client(),
        recorder,
        metrics,
        &cluster(kube),
        autoscaler,
        now,
    )
    .await
}

/// The in-memory API with a ChatCluster of 2 replicas, 1..=5 at 10 connections per pod.
async fn setup() -> anyhow::Result<(FakeKube, Recorder)> {
    let kube = FakeKube::start().await;
    let client = kube.client();
    let manifest = "apiVersion: chatscale.dev/v1alpha1\nkind: ChatCluster\nmetadata: {name: team-chat, namespace: chat}\n\
        spec:\n  replicas: 2\n  routing: {host: chat.example.com}\n  autoscaling:\n    minReplicas: 1\n    maxReplicas: 5\n    \
        targetConnectionsPerPod: 10\n    targetRedisOpsPerPod: 0\n    behavior:\n      scaleDown:\n        \
        stabilizationWindowSeconds: 0\n        policies: [{type: Percent, value: 100, periodSeconds: 15}]\n";
    let cc: ChatCluster = serde_saphyr::from_str(manifest)?;
    Api::<ChatCluster>::namespaced(client.clone(), NS)
        .create(&PostParams::default(), &cc)
        .await?;
    let recorder = Recorder::new(
        client.clone(),
        Reporter {
            controller: "test".into(),
            instance: None,
        },
    );
    Ok((kube, recorder))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scales_up_at_once_and_down_only_through_a_drain() -> anyhow::Result<()> {
    let (kube, recorder) = setup().await?;
    let (busy, idle) = (fake_pod(15).await, fake_pod(20).await);
    add_pod(&kube, "chat-a", busy.port).await;
    add_pod(&kube, "chat-b", idle.port).await;
    let mut autoscaler = Autoscaler::default();
    let metrics = Metrics::default();

    // 35 connections at 10 per pod: 4 pods, at once.
    let up = tick(&kube, &recorder, &metrics, &mut autoscaler, 1000).await?;
    assert_eq!(up.desired, 4, "{}", up.reason);
    assert_eq!(cluster(&kube).spec.replicas, 4);
    assert!(events(&kube).contains(&"ScaledUp".to_owned()));
    let status = kube.get(&res::<ChatCluster>(), NS, "team-chat").unwrap()["status"].clone();
    assert_eq!(
        (
            status["connections"].as_i64(),
            status["connectionsPerPod"].as_i64()
        ),
        (Some(35), Some(17))
    );
    assert!(
        status["lastScaleReason"]
            .as_str()
            .unwrap()
            .contains("connections")
    );

    // Back to two pods that exist; the load drops to 5: one pod must go, the emptiest, drained first.
    set_replicas(&kube, 2).await?;
    busy.connections.store(5, Ordering::SeqCst);
    idle.connections.store(0, Ordering::SeqCst);
    let down = tick(&kube, &recorder, &metrics, &mut autoscaler, 2000).await?;
    assert_eq!(down.desired, 1, "{}", down.reason);
    assert_eq!(
        autoscaler.draining(),
        ["chat-b"],
        "the drain runs in the background"
    );
    autoscaler.settle().await;
    assert_eq!(cluster(&kube).spec.replicas, 1);
    assert!(*idle.drained.lock().unwrap(), "the idle pod was drained");
    assert!(!*busy.drained.lock().unwrap(), "the busy pod was not");
    let cost = |name: &str| {
        kube.get(&res::<Pod>(), NS, name).unwrap()["metadata"]["annotations"]["controller.kubernetes.io/pod-deletion-cost"].clone()
    };
    assert_eq!(cost("chat-b"), json!("-1000"), "the drained pod goes first");
    assert_eq!(cost("chat-a"), serde_json::Value::Null);
    let reasons = events(&kube);
    for reason in ["DrainStarted", "DrainCompleted", "ScaledDown"] {
        assert!(
            reasons.contains(&reason.to_owned()),
            "{reason} in {reasons:?}"
        );
    }

    // A pod whose metrics fail: no scale-down, however low the rest.
    set_replicas(&kube, 2).await?;
    busy.connections.store(-1, Ordering::SeqCst);
    let blind = tick(&kube, &recorder, &metrics, &mut autoscaler, 3000).await?;
    assert_eq!(blind.desired, 2, "{}", blind.reason);
    assert_eq!(cluster(&kube).spec.replicas, 2);
    assert_eq!(
        metrics.scrape_failures.get(),
        1,
        "the failed scrape is counted"
    );
    let decided = |d: &str| metrics.decisions.with_label_values(&[d]).get();
    assert_eq!((decided("up"), decided("down"), decided("hold")), (1, 1, 1));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scale_up_during_a_drain_cancels_it() -> anyhow::Result<()> {
    let (kube, recorder) = setup().await?;
    let (busy, idle) = (fake_pod(5).await, fake_pod(0).await);
    idle.finish.store(false, Ordering::SeqCst);
    add_pod(&kube, "chat-a", busy.port).await;
    add_pod(&kube, "chat-b", idle.port).await;
    let mut autoscaler = Autoscaler::default();
    let metrics = Metrics::default();
    let cost = |name: &str| {
        kube.get(&res::<Pod>(), NS, name).unwrap()["metadata"]["annotations"]["controller.kubernetes.io/pod-deletion-cost"].clone()
    };

    // 5 connections: down to 1, so the idle pod drains (and does not finish).
    let down = tick(&kube, &recorder, &metrics, &mut autoscaler, 1000).await?;
    assert_eq!(down.desired, 1, "{}", down.reason);
    assert_eq!(autoscaler.draining(), ["chat-b"]);
    assert_eq!(cost("chat-b"), json!("-1000"));
    assert_eq!(
        cluster(&kube).spec.replicas,
        2,
        "replicas wait for the drain"
    );
    let status = kube.get(&res::<ChatCluster>(), NS, "team-chat").unwrap()["status"].clone();
    assert_eq!(status["drainingPods"], json!(["chat-b"]));

    // While it drains the load stays low: nothing new happens.
    let again = tick(&kube, &recorder, &metrics, &mut autoscaler, 1001).await?;
    assert_eq!(again.desired, 1);
    assert_eq!(
        autoscaler.draining(),
        ["chat-b"],
        "the same drain, not a second one"
    );

    // A crowd arrives: 40 connections want 4 pods. The drain is cancelled first.
    busy.connections.store(40, Ordering::SeqCst);
    let up = tick(&kube, &recorder, &metrics, &mut autoscaler, 1002).await?;
    assert_eq!(up.desired, 4, "{}", up.reason);
    assert!(
        idle.cancelled.load(Ordering::SeqCst),
        "DELETE /drain reached the pod"
    );
    assert!(autoscaler.draining().is_empty());
    assert_eq!(
        cost("chat-b"),
        serde_json::Value::Null,
        "the mark is cleared"
    );
    assert_eq!(cluster(&kube).spec.replicas, 4);
    let reasons = events(&kube);
    for reason in ["DrainStarted", "DrainCancelled", "ScaledUp"] {
        assert!(
            reasons.contains(&reason.to_owned()),
            "{reason} in {reasons:?}"
        );
    }
    assert!(!reasons.contains(&"ScaledDown".to_owned()), "{reasons:?}");
    let status = kube.get(&res::<ChatCluster>(), NS, "team-chat").unwrap()["status"].clone();
    assert_eq!(status["drainingPods"], json!([]));
    Ok(())
}
