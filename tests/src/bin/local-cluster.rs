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

use anyhow::Context;
use chatscale_tests::{cluster::running::RunningCluster, workspace_root};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let operator = workspace_root().join("target/debug/chatscale-operator");
    anyhow::ensure!(
        operator.exists(),
        "{} is missing: run `make local-cluster` (it builds it)",
        operator.display()
    );
    let cluster = RunningCluster::start(false, &operator).await?;
    eprintln!("installing the operator with helm ...");
    cluster.install_operator()?;
    cluster.apply("chat", &workspace_root().join("examples/minimal.yaml"))?;
    eprintln!("applied examples/minimal.yaml; waiting for its Ingress and a Ready pod ...");
    let stand_in = cluster.ingress("chat").await?;
    let plane = cluster.plane;
    println!(
        "\nchatscale is running on this machine (kwok for the kubelets, local processes for the pods).\n\n  \
         export KUBECONFIG={kubeconfig}\n  kubectl get chatclusters -n chat -w\n\n  \
         demo page:  {url}/\n  scale it:   cargo run --release -p chatscale-load -- --url {url} --connections 12000 --source-ips 16 --hold-secs 120\n              \
         (examples/minimal.yaml: 2 pods at least, 5000 connections each, 10% tolerance)\n\n\
         Pod logs are in {pods}. Ctrl-C stops everything.",
        kubeconfig = plane.kubeconfig.display(),
        url = stand_in.url,
        pods = plane.dir.join("pods").display(),
    );
    tokio::signal::ctrl_c()
        .await
        .context("waiting for Ctrl-C")?;
    eprintln!("stopping ...");
    // nginx and the pods' processes stop with their owners; the control
    // plane's processes die with this process (PR_SET_PDEATHSIG).
    drop(stand_in);
    drop(cluster);
    std::process::exit(0);
}
