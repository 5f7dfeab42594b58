//! The autoscaler's Kubernetes side against the real API server: its pods
//! are real Pod objects that the scheduler places on kwok nodes and kwok
//! makes Running with a loopback pod IP; a local HTTP server on that IP
//! stands in for each pod's admin port (no chat-server runs here): scale-up patches
//! replicas at once; scale-down marks and drains exactly the emptiest pod
//! first; a pod whose metrics fail blocks any scale-down; a scale-up during a
//! drain cancels it; status and Events.

use std::sync::{
    Arc, Mutex,
    atomic::{AtomicBool, AtomicI64, Ordering},
};

use axum::{Router, http::StatusCode, routing::get};
use chatscale_contract::admin::{self, DrainState, DrainStatus, metrics::CONNECTED_SOCKETS};
use chatscale_operator::{
    api::ChatCluster,
    autoscaler::{
        decide::Decision,
        run::{Autoscaler, Metrics, step},
    },
    controller::Reason,
};
use k8s_openapi::api::core::v1::Pod;
use kube::{
    Api, Client,
    api::{Patch, PatchParams, PostParams},
    runtime::events::{Recorder, Reporter},
};
use serde_json::json;

use crate::support::{ensure_chart_crd, event_reasons, eventually, plane};

/// A test's namespace and an admin client.
struct Kube {
    client: Client,
    ns: String,
}

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
            admin::METRICS,
            get(move || {
                let n = metrics.load(Ordering::SeqCst);
                async move {
                    if n < 0 {
                        (StatusCode::INTERNAL_SERVER_ERROR, String::new())
                    } else {
                        (StatusCode::OK, format!("{CONNECTED_SOCKETS} {n}\n"))
                    }
                }
            }),
        )
        .route(
            admin::DRAIN,
            get(move || {
                let state = match (
                    *drain_state.lock().unwrap(),
                    finishes.load(Ordering::SeqCst),
                ) {
                    (false, _) => DrainState::Serving,
                    (true, true) => DrainState::Drained,
                    (true, false) => DrainState::Draining,
                };
                let status = DrainStatus {
                    state,
                    sockets: 0,
                    active_streams: 0,
                    started_at: None,
                };
                async move { axum::Json(status) }
            })
            .post(move || {
                *drain_start.lock().unwrap() = true;
                let status = DrainStatus {
                    state: DrainState::Draining,
                    sockets: 0,
                    active_streams: 0,
                    started_at: None,
                };
                async move { (StatusCode::ACCEPTED, axum::Json(status)) }
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
    // Every address of 127.0.0.0/8, so the pod IP kwok gives (see POD_CIDR) reaches it.
    let listener = tokio::net::TcpListener::bind("0.0.0.0:0").await.unwrap();
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

/// A Pod of the cluster, Running and Ready on a kwok node, whose admin port is `port`.
async fn add_pod(kube: &Kube, name: &str, port: u16) {
    let pods: Api<Pod> = Api::namespaced(kube.client.clone(), &kube.ns);
    let pod: Pod = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "labels": {
            "app.kubernetes.io/name": "chatscale", "app.kubernetes.io/instance": "team-chat",
            "app.kubernetes.io/component": "chat"}},
        "spec": {"containers": [{"name": "chat-server", "image": "chat-server:test",
            "ports": [{"name": "admin", "containerPort": port}]}]}
    }))
    .unwrap();
    pods.create(&PostParams::default(), &pod).await.unwrap();
    eventually("the pod Running and Ready with a loopback IP", || async {
        let status = pods.get(name).await.ok()?.status?;
        let ready = status
            .conditions?
            .iter()
            .any(|c| c.type_ == "Ready" && c.status == "True");
        let ip = status.pod_ip?;
        (ready && ip.starts_with("127.") && status.phase.as_deref() == Some("Running"))
            .then_some(())
    })
    .await
    .unwrap();
}

/// Sets `spec.replicas` as a user (or the reconcile) would.
async fn set_replicas(kube: &Kube, replicas: i32) -> kube::Result<ChatCluster> {
    let patch = json!({"spec": {"replicas": replicas}});
    Api::<ChatCluster>::namespaced(kube.client.clone(), &kube.ns)
        .patch("team-chat", &PatchParams::default(), &Patch::Merge(patch))
        .await
}

async fn cluster(kube: &Kube) -> ChatCluster {
    Api::<ChatCluster>::namespaced(kube.client.clone(), &kube.ns)
        .get("team-chat")
        .await
        .unwrap()
}

/// The status as stored (untyped, so an empty list stays a list).
async fn status_of(kube: &Kube) -> serde_json::Value {
    let resource = kube::api::ApiResource::erase::<ChatCluster>(&());
    let api: Api<kube::api::DynamicObject> =
        Api::namespaced_with(kube.client.clone(), &kube.ns, &resource);
    api.get("team-chat").await.unwrap().data["status"].clone()
}

async fn events(kube: &Kube) -> Vec<String> {
    event_reasons(&kube.client, &kube.ns, "team-chat").await
}

async fn cost(kube: &Kube, pod: &str) -> serde_json::Value {
    let pod = Api::<Pod>::namespaced(kube.client.clone(), &kube.ns)
        .get(pod)
        .await
        .unwrap();
    pod.metadata
        .annotations
        .unwrap_or_default()
        .get("controller.kubernetes.io/pod-deletion-cost")
        .map_or(serde_json::Value::Null, |v| json!(v))
}

/// One evaluation of the ChatCluster as the API server holds it now.
async fn tick(
    kube: &Kube,
    recorder: &Recorder,
    metrics: &Metrics,
    autoscaler: &mut Autoscaler,
    now: u64,
) -> anyhow::Result<Decision> {
    step(
        &kube.client,
        recorder,
        metrics,
        &cluster(kube).await,
        autoscaler,
        now,
    )
    .await
}

/// A namespace with a ChatCluster of 2 replicas, 1..=5 at 10 connections per pod.
async fn setup(prefix: &str) -> anyhow::Result<(Kube, Recorder)> {
    ensure_chart_crd()?;
    let ns = plane().namespace(prefix).await?;
    let client = plane().client().await?;
    let manifest = format!(
        "apiVersion: chatscale.dev/v1alpha1\nkind: ChatCluster\nmetadata: {{name: team-chat, namespace: {ns}}}\n\
        spec:\n  replicas: 2\n  routing: {{host: chat.example.com}}\n  autoscaling:\n    minReplicas: 1\n    maxReplicas: 5\n    \
        targetConnectionsPerPod: 10\n    targetRedisOpsPerPod: 0\n    behavior:\n      scaleDown:\n        \
        stabilizationWindowSeconds: 0\n        policies: [{{type: Percent, value: 100, periodSeconds: 15}}]\n"
    );
    let cc: ChatCluster = serde_saphyr::from_str(&manifest)?;
    Api::<ChatCluster>::namespaced(client.clone(), &ns)
        .create(&PostParams::default(), &cc)
        .await?;
    let recorder = Recorder::new(
        client.clone(),
        Reporter {
            controller: "test".into(),
            instance: None,
        },
    );
    Ok((Kube { client, ns }, recorder))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scales_up_at_once_and_down_only_through_a_drain() -> anyhow::Result<()> {
    let (kube, recorder) = setup("autoscale").await?;
    let (busy, idle) = (fake_pod(15).await, fake_pod(20).await);
    add_pod(&kube, "chat-a", busy.port).await;
    add_pod(&kube, "chat-b", idle.port).await;
    let mut autoscaler = Autoscaler::default();
    let metrics = Metrics::default();

    // 35 connections at 10 per pod: 4 pods, at once.
    let up = tick(&kube, &recorder, &metrics, &mut autoscaler, 1000).await?;
    assert_eq!(up.desired, 4, "{}", up.reason);
    assert_eq!(cluster(&kube).await.spec.replicas, 4);
    assert!(events(&kube).await.contains(&Reason::ScaledUp.to_string()));
    let status = status_of(&kube).await;
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
    assert_eq!(cluster(&kube).await.spec.replicas, 1);
    assert!(*idle.drained.lock().unwrap(), "the idle pod was drained");
    assert!(!*busy.drained.lock().unwrap(), "the busy pod was not");
    assert_eq!(
        cost(&kube, "chat-b").await,
        json!("-1000"),
        "the drained pod goes first"
    );
    assert_eq!(cost(&kube, "chat-a").await, serde_json::Value::Null);
    let reasons = events(&kube).await;
    for reason in [
        Reason::DrainStarted,
        Reason::DrainCompleted,
        Reason::ScaledDown,
    ] {
        assert!(
            reasons.contains(&reason.to_string()),
            "{reason} in {reasons:?}"
        );
    }

    // A pod whose metrics fail: no scale-down, however low the rest.
    set_replicas(&kube, 2).await?;
    busy.connections.store(-1, Ordering::SeqCst);
    let blind = tick(&kube, &recorder, &metrics, &mut autoscaler, 3000).await?;
    assert_eq!(blind.desired, 2, "{}", blind.reason);
    assert_eq!(cluster(&kube).await.spec.replicas, 2);
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
    let (kube, recorder) = setup("cancel").await?;
    let (busy, idle) = (fake_pod(5).await, fake_pod(0).await);
    idle.finish.store(false, Ordering::SeqCst);
    add_pod(&kube, "chat-a", busy.port).await;
    add_pod(&kube, "chat-b", idle.port).await;
    let mut autoscaler = Autoscaler::default();
    let metrics = Metrics::default();

    // 5 connections: down to 1, so the idle pod drains (and does not finish).
    let down = tick(&kube, &recorder, &metrics, &mut autoscaler, 1000).await?;
    assert_eq!(down.desired, 1, "{}", down.reason);
    assert_eq!(autoscaler.draining(), ["chat-b"]);
    // The drain runs in the background: it marks the pod, then calls its /drain.
    eventually("chat-b marked and draining", || async {
        (cost(&kube, "chat-b").await == json!("-1000") && *idle.drained.lock().unwrap())
            .then_some(())
    })
    .await?;
    assert_eq!(
        cluster(&kube).await.spec.replicas,
        2,
        "replicas wait for the drain"
    );
    let status = status_of(&kube).await;
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
        cost(&kube, "chat-b").await,
        serde_json::Value::Null,
        "the mark is cleared"
    );
    assert_eq!(cluster(&kube).await.spec.replicas, 4);
    let reasons = events(&kube).await;
    for reason in [
        Reason::DrainStarted,
        Reason::DrainCancelled,
        Reason::ScaledUp,
    ] {
        assert!(
            reasons.contains(&reason.to_string()),
            "{reason} in {reasons:?}"
        );
    }
    assert!(
        !reasons.contains(&Reason::ScaledDown.to_string()),
        "{reasons:?}"
    );
    let status = status_of(&kube).await;
    assert_eq!(status["drainingPods"], json!([]));
    Ok(())
}
