//! The whole product end to end on the real control plane, with pods that
//! really run: `helm install` of the chart (its operator pods run the real
//! operator binary), a ChatCluster with managed Redis and autoscaling applied
//! with `kubectl`, its pods run by the pod runner (real chat-server and
//! redis-server processes on their pod IPs), a real nginx configured from
//! the operator's Ingress (cookie affinity) in front of the Ready pods, and
//! official socket.io-client clients that follow the README's resume recipe.
//!
//! Load ramps up: the autoscaler raises replicas and the real Deployment and
//! ReplicaSet controllers create the pods. The first pods hold most clients
//! (connections are sticky): the autoscaler asks the busiest to shed, and
//! its clients move through the stand-in ingress to the others. Load drops: the autoscaler marks
//! and drains the emptiest pods and the ReplicaSet controller deletes exactly
//! those (SIGTERM, exit 0). `kubectl rollout restart` replaces every pod
//! through SIGTERM and drain. Every remaining client holds every room event,
//! every AI answer completes, and the Events tell the story.
//!
//! What is real: etcd, kube-apiserver, kube-controller-manager,
//! kube-scheduler, helm, kubectl, the operator, chat-server, redis-server,
//! nginx and socket.io-client. What stands in: kwok for the kubelets (pod IPs
//! on loopback), the pod runner for the container runtime, `/etc/hosts` for
//! cluster DNS and kube-proxy, nginx configured by the test for the Ingress
//! controller.

use std::{
    collections::BTreeSet,
    path::Path,
    time::{Duration, Instant},
};

use chatscale_operator::{api::ChatCluster, controller::Reason};
use chatscale_tests::{
    cluster::{event_reasons, hosts, running::RunningCluster},
    fleet::Fleet,
    wait_for, workspace_root,
};
use k8s_openapi::api::{apps::v1::Deployment, core::v1::Pod};
use kube::{Api, Client, ResourceExt, api::ListParams};
use serde_json::{Value, json};

const NS: &str = "chat";
const CLUSTER: &str = "team-chat";
const DEPLOYMENT: &str = "team-chat-chat";
const TARGET: u64 = 10;
/// Rebalancing's dead zone: 36 clients on 4 pods leave little room at 15%.
const DEAD_ZONE_PERCENT: u64 = 30;
const DELETION_COST: &str = "controller.kubernetes.io/pod-deletion-cost";
/// How long one phase may take at most.
const PHASE: Duration = Duration::from_secs(180);

/// The chat pods, with whether each is Ready and not terminating.
async fn chat_pods(client: &Client) -> anyhow::Result<Vec<(String, bool)>> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), NS);
    let selector = format!("app.kubernetes.io/instance={CLUSTER},app.kubernetes.io/component=chat");
    let list = pods.list(&ListParams::default().labels(&selector)).await?;
    Ok(list
        .items
        .iter()
        .map(|p| (p.name_any(), hosts::serving(p)))
        .collect())
}

async fn chat_pod_names(client: &Client) -> anyhow::Result<BTreeSet<String>> {
    Ok(chat_pods(client)
        .await?
        .into_iter()
        .map(|(n, _)| n)
        .collect())
}

fn chat_cluster() -> anyhow::Result<Value> {
    let path = workspace_root().join("examples/minimal.yaml");
    let mut value: Value = serde_saphyr::from_str(&std::fs::read_to_string(path)?)?;
    value["spec"]["autoscaling"] = json!({
        "minReplicas": 1,
        "maxReplicas": 4,
        "targetConnectionsPerPod": TARGET,
        "intervalSeconds": 1,
        "behavior": {
            "scaleUp": {"stabilizationWindowSeconds": 0, "policies": [{"type": "Pods", "value": 4, "periodSeconds": 1}]},
            "scaleDown": {"stabilizationWindowSeconds": 5, "policies": [{"type": "Pods", "value": 4, "periodSeconds": 1}]},
        },
    });
    value["spec"]["autoscaling"]["rebalance"] = json!({
        "afterSeconds": 3,
        "deadZonePercent": DEAD_ZONE_PERCENT,
        "connectionsPerSecond": 10,
    });
    value["spec"]["drain"] = json!({"timeoutSeconds": 20, "rate": 50});
    Ok(value)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn scale_up_drain_aware_scale_down_and_a_rolling_deploy_lose_nothing() -> anyhow::Result<()> {
    let operator = Path::new(env!("CARGO_BIN_EXE_chatscale-operator"));
    let cluster = RunningCluster::start(true, operator).await?;
    let (plane, client, runner) = (cluster.plane, &cluster.client, &cluster.runner);

    // 1. The chart, as users install it (its operator pods run and become
    // Ready), and the ChatCluster applied with kubectl.
    cluster.install_operator()?;
    let manifest = plane.dir.join("lifecycle-chatcluster.json");
    std::fs::write(&manifest, serde_json::to_vec_pretty(&chat_cluster()?)?)?;
    cluster.apply(NS, &manifest)?;
    // With no load the autoscaler settles on minReplicas: one pod.
    wait_for("exactly one chat pod, Ready", PHASE, || async {
        let pods = chat_pods(client).await?;
        Ok((pods.len() == 1 && pods[0].1).then_some(()))
    })
    .await?;
    let stand_in = cluster.ingress(NS).await?;
    let access_log = stand_in.access_log.display().to_string();
    // Before Redis is Ready a chat-server may exit and be restarted (as
    // kubelets do); from here on no process may end on its own.
    let settled = Instant::now();
    let mut fleet = Fleet::start(&[
        ("FLEET_URL", &stand_in.url),
        ("FLEET_ACCESS_LOG", &access_log),
        ("FLEET_COOKIES", "1"),
        ("FLEET_ROOM", "lifecycle"),
    ])
    .await?;

    // 2. Ramp up while chatting and asking the AI.
    fleet.call(json!({"op": "open", "count": 6})).await?;
    fleet.call(json!({"op": "talk"})).await?;
    let first_pods = chat_pod_names(client).await?;
    let crossed = Instant::now();
    fleet.call(json!({"op": "open", "count": 6})).await?; // 12 > 10 x 1.1
    let new_ready = wait_for("a second Ready chat pod", PHASE, || async {
        let journal = runner.journal();
        Ok(journal
            .readiness
            .iter()
            .find(|r| {
                r.ready && r.namespace == NS && !first_pods.contains(&r.pod) && r.at > crossed
            })
            .map(|r| r.at))
    })
    .await?;
    let scale_up_seconds = new_ready.duration_since(crossed).as_secs_f64();
    wait_for("nginx routing to 2 pods", PHASE, || async {
        Ok((stand_in.upstreams().len() == 2).then_some(()))
    })
    .await?;
    // Each batch of new clients lands on the pods Ready by then (round robin
    // for new sessions), so every pod ends up holding some: 36 clients, 4 pods.
    for (clients, pods) in [(12, 3), (12, 4)] {
        eprintln!("opening {clients} more clients, for {pods} pods");
        fleet.call(json!({"op": "open", "count": clients})).await?;
        wait_for(
            &format!("{pods} Ready chat pods behind nginx"),
            PHASE,
            || async {
                let ready = chat_pods(client).await?.iter().filter(|(_, r)| *r).count();
                Ok((ready == pods && stand_in.upstreams().len() == pods).then_some(()))
            },
        )
        .await?;
    }
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), NS);
    let replicas = deployments
        .get(DEPLOYMENT)
        .await?
        .spec
        .and_then(|s| s.replicas);
    assert_eq!(
        replicas,
        Some(4),
        "the autoscaler's replicas reached the Deployment"
    );

    // 2b. Rebalancing. The first pod took every client of the first two
    // batches, the first two took most of the third: the busiest is far
    // above the mean of 9, and sheds until it is within the dead zone.
    let chatclusters: Api<ChatCluster> = Api::namespaced(client.clone(), NS);
    let figures = || async {
        let status = chatclusters.get(CLUSTER).await?.status.unwrap_or_default();
        anyhow::Ok((status.connections, status.busiest_pod_connections))
    };
    let unbalanced = figures().await?;
    let rebalance_started = Instant::now();
    wait_for(
        "the busiest pod within the dead zone of the mean",
        PHASE,
        || async {
            let reasons = event_reasons(client, NS, CLUSTER).await;
            let (Some(total), Some(busiest)) = figures().await? else {
                return Ok(None);
            };
            let zone = (100 + DEAD_ZONE_PERCENT) as f64 / 100.0 * total as f64 / 4.0;
            let done = reasons
                .iter()
                .any(|r| r == Reason::RebalanceCompleted.as_str());
            Ok((total == 36 && busiest as f64 <= zone && done).then_some(()))
        },
    )
    .await?;
    let rebalance_seconds = rebalance_started.elapsed().as_secs_f64();
    let balanced = figures().await?;
    let rebalance_moves = fleet.call(json!({"op": "moves"})).await?;
    wait_for("4 Ready chat pods behind nginx again", PHASE, || async {
        let ready = chat_pods(client).await?.iter().filter(|(_, r)| *r).count();
        Ok((ready == 4 && stand_in.upstreams().len() == 4).then_some(()))
    })
    .await?;

    // 3. The load drops to 15: 2 pods. The emptiest are drained and removed.
    let before_drop = chat_pod_names(client).await?;
    let kept = fleet.call(json!({"op": "keep", "count": 15})).await?;
    let dropped = Instant::now();
    eprintln!("kept {kept}");
    wait_for("2 chat pods, none terminating", PHASE, || async {
        let pods = chat_pods(client).await?;
        Ok((pods.len() == 2 && pods.iter().all(|(_, r)| *r)).then_some(()))
    })
    .await?;
    let scale_down_seconds = dropped.elapsed().as_secs_f64();
    let journal = runner.journal();
    let removed: Vec<_> = journal
        .deletions
        .iter()
        .filter(|d| d.namespace == NS && before_drop.contains(&d.pod))
        .collect();
    assert_eq!(removed.len(), 2, "two pods removed: {removed:?}");
    for deletion in &removed {
        assert!(
            deletion.annotations.contains_key(DELETION_COST),
            "the ReplicaSet controller deleted an unmarked pod: {deletion:?}"
        );
    }
    // Measured, not asserted: a draining pod turns not Ready (its /readyz
    // answers 503), so it may be unready when the ReplicaSet deletes it.
    let ready_when_deleted = removed.iter().filter(|d| d.ready).count();
    // Each removed pod's last exit is its drain. (A chat-server that started
    // before Redis did may have exited once before `settled`, and been
    // restarted.)
    for deletion in &removed {
        let exit = journal
            .exits
            .iter()
            .rev()
            .find(|e| e.pod == deletion.pod && e.at > settled);
        assert!(
            exit.is_some_and(|e| e.graceful()),
            "{} exits 0 on SIGTERM after its drain: {exit:?}",
            deletion.pod
        );
    }
    let scale_down_moves = fleet.call(json!({"op": "moves"})).await?;
    assert!(
        scale_down_moves["moved"].as_u64().unwrap_or(0) >= 1,
        "the drained pods held clients, and they moved: {scale_down_moves}"
    );

    // 4. A deploy: every old pod replaced through SIGTERM and drain.
    let old = chat_pod_names(client).await?;
    let restart_started = Instant::now();
    plane.run_ok(
        "kubectl",
        &[
            "rollout",
            "restart",
            &format!("deployment/{DEPLOYMENT}"),
            "-n",
            NS,
        ],
    )?;
    plane.run_ok(
        "kubectl",
        &[
            "rollout",
            "status",
            &format!("deployment/{DEPLOYMENT}"),
            "-n",
            NS,
            "--timeout=4m",
        ],
    )?;
    wait_for("the old pods gone", PHASE, || async {
        let pods = chat_pods(client).await?;
        Ok(pods.iter().all(|(n, _)| !old.contains(n)).then_some(()))
    })
    .await?;
    let rollout_seconds = restart_started.elapsed().as_secs_f64();
    let journal = runner.journal();
    for pod in &old {
        let exit = journal.exits.iter().rev().find(|e| &e.pod == pod);
        assert!(
            exit.is_some_and(|e| e.graceful()),
            "{pod} was replaced through SIGTERM and drain: {exit:?}"
        );
    }
    // The fleet's `finish` below waits for every client to be back and up to date.
    let rollout_moves = fleet.call(json!({"op": "moves"})).await?;

    // 5. Nothing lost.
    let report = fleet.call(json!({"op": "finish"})).await?;
    eprintln!("fleet report {report}");
    assert_eq!(report["missing"], 0, "{report}");
    assert!(report["answers"].as_u64().unwrap_or(0) > 0, "{report}");
    assert_eq!(report["clients"], 15, "{report}");
    let reasons = event_reasons(client, NS, CLUSTER).await;
    for reason in [
        Reason::ScaledUp,
        Reason::RebalanceStarted,
        Reason::RebalanceCompleted,
        Reason::DrainStarted,
        Reason::DrainCompleted,
        Reason::ScaledDown,
    ] {
        assert!(
            reasons.iter().any(|r| r == reason.as_str()),
            "no {reason} Event: {reasons:?}"
        );
    }
    let unexpected: Vec<_> = runner
        .journal()
        .exits
        .into_iter()
        .filter(|e| !e.deleting && e.at > settled)
        .collect();
    assert!(
        unexpected.is_empty(),
        "processes that ended on their own: {unexpected:?}"
    );
    assert!(
        runner.journal().errors.is_empty(),
        "{:?}",
        runner.journal().errors
    );

    assert!(
        !reasons
            .iter()
            .any(|r| r == Reason::RebalanceFailed.as_str()),
        "{reasons:?}"
    );
    eprintln!(
        "MEASURED rebalance: (connections, busiest pod) {unbalanced:?} -> {balanced:?} in \
         {rebalance_seconds:.1} s (moves {rebalance_moves})"
    );
    eprintln!(
        "MEASURED scale-up: load crossed the threshold -> new pod Ready in {scale_up_seconds:.1} s; \
         scale-down: load dropped -> 2 pods gone in {scale_down_seconds:.1} s, {ready_when_deleted} of them \
         still Ready when the ReplicaSet deleted them (moves {scale_down_moves}); \
         rollout restart of 2 pods in {rollout_seconds:.1} s: {rollout_moves}"
    );
    fleet.stop().await?;
    Ok(())
}
