//! `make local-cluster`: the operator without a cluster. Starts the real
//! control plane (kwok standing in for the kubelets), the pod runner
//! (standing in for the container runtime: pods run as local processes),
//! installs the operator with the chart, applies `examples/minimal.yaml`, and
//! puts a real nginx in front of the chat pods as the Ingress asks. Prints
//! the kubeconfig and the demo page's URL, and runs until Ctrl-C, which stops
//! everything it started.
//!
//! Runs through `scripts/isolated --host-network` (a private /etc/hosts for
//! the Service names; the machine's loopback, so a browser and kubectl reach
//! nginx and the API server on 127.0.0.1).

use std::path::PathBuf;

use anyhow::Context;
use chatscale_tests::{
    chat_server_bin,
    cluster::{
        ControlPlane, Options, Pods, hosts,
        ingress::IngressStandIn,
        runner::{PodRunner, launch::Programs},
    },
    wait_until, workspace_root,
};
use k8s_openapi::api::networking::v1::Ingress;
use kube::{Api, ResourceExt};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let operator = workspace_root().join("target/debug/chatscale-operator");
    anyhow::ensure!(
        operator.exists(),
        "{} is missing: run `make local-cluster` (it builds it)",
        operator.display()
    );
    let plane = tokio::task::spawn_blocking(|| {
        ControlPlane::shared_with(Options {
            pods: Pods::Run,
            isolated_network: false,
        })
    })
    .await?;
    let client = plane.client().await?;
    let _hosts = hosts::follow(client.clone())?;
    let _runner = PodRunner::start(
        plane,
        client.clone(),
        Programs::chatscale(&chat_server_bin(), &operator),
    );
    eprintln!("installing the operator with helm ...");
    plane.run_ok(
        "helm",
        &[
            "install",
            "chatscale",
            "charts/chatscale-operator",
            "--namespace",
            "chatscale-system",
            "--create-namespace",
            "--wait",
            "--timeout",
            "3m",
        ],
    )?;
    let example = workspace_root().join("examples/minimal.yaml");
    plane.run_ok("kubectl", &["create", "namespace", "chat"])?;
    plane.run_ok("kubectl", &["apply", "-f", &example.display().to_string()])?;
    eprintln!("applied examples/minimal.yaml; waiting for its Ingress ...");
    let ingresses: Api<Ingress> = Api::namespaced(client.clone(), "chat");
    wait_until(
        "the Ingress",
        std::time::Duration::from_secs(120),
        || async {
            ingresses
                .list(&Default::default())
                .await
                .is_ok_and(|l| !l.items.is_empty())
        },
    )
    .await?;
    let ingress = ingresses.list(&Default::default()).await?.items[0].name_any();
    let stand_in =
        IngressStandIn::start(client, "chat", &ingress, &plane.dir.join("ingress")).await?;
    let kubeconfig: PathBuf = plane.kubeconfig.clone();
    println!(
        "\nchatscale is running on this machine (kwok for the kubelets, local processes for the pods).\n\n  \
         export KUBECONFIG={kubeconfig}\n  kubectl get chatclusters -n chat -w\n\n  \
         demo page:  {url}/\n  scale it:   cargo run --release -p chatscale-load -- --url {url} --connections 6000\n              \
         (examples/minimal.yaml sizes a pod for 5000 connections)\n\n\
         Pod logs are in {pods}. Ctrl-C stops everything.",
        kubeconfig = kubeconfig.display(),
        url = stand_in.url,
        pods = plane.dir.join("pods").display(),
    );
    tokio::signal::ctrl_c()
        .await
        .context("waiting for Ctrl-C")?;
    eprintln!("stopping ...");
    // Dropping the runner and nginx stops their processes; the control plane's
    // processes die with this process (PR_SET_PDEATHSIG).
    drop(stand_in);
    drop(_runner);
    std::process::exit(0);
}
