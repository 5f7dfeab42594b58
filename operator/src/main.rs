//! chatscale-operator: `run` (the default) is the controller; `crd` prints
//! the CustomResourceDefinition; `render` prints the objects for a ChatCluster.

use clap::{Parser, Subcommand};
use kube::CustomResourceExt;

use chatscale_operator::api::ChatCluster;

#[derive(Parser)]
#[command(
    name = "chatscale-operator",
    version,
    about = "Kubernetes operator for ChatCluster resources"
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the controller (the default).
    Run {
        /// Address of /metrics, /healthz and /readyz.
        #[arg(long, env = "OPERATOR_HTTP_ADDRESS", default_value = "0.0.0.0:8080")]
        http_address: std::net::SocketAddr,
        /// Namespace of the leader-election Lease (the operator's own).
        #[arg(long, env = "POD_NAMESPACE", default_value = "chatscale-system")]
        lease_namespace: String,
        /// This replica's name in the Lease.
        #[arg(long, env = "POD_NAME", default_value = "chatscale-operator")]
        identity: String,
        /// Only ChatClusters (and the objects they own) in this namespace; all
        /// namespaces when unset or empty (then the operator needs a ClusterRole).
        #[arg(long, env = "WATCH_NAMESPACE")]
        watch_namespace: Option<String>,
    },
    /// Print the ChatCluster CustomResourceDefinition as YAML (what crds/ holds).
    Crd,
    /// Print the ClusterRole the operator needs.
    Rbac,
    /// Print the ChatCluster reference (Markdown) generated from the CRD schema.
    Docs,
    /// Print every object the operator would apply for a ChatCluster manifest.
    Render {
        /// The ChatCluster manifest (YAML).
        #[arg(short = 'f', long = "file")]
        file: std::path::PathBuf,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Some(Command::Crd) => {
            print!("{}", serde_saphyr::to_string(&ChatCluster::crd())?);
            Ok(())
        }
        Some(Command::Rbac) => {
            print!(
                "{}",
                serde_saphyr::to_string(&chatscale_operator::rbac::cluster_role())?
            );
            Ok(())
        }
        Some(Command::Docs) => {
            print!("{}", chatscale_operator::docs::chatcluster_reference());
            Ok(())
        }
        Some(Command::Render { file }) => {
            let manifest = std::fs::read_to_string(&file)
                .map_err(|e| anyhow::anyhow!("reading {}: {e}", file.display()))?;
            print!("{}", chatscale_operator::render::render(&manifest)?);
            Ok(())
        }
        Some(Command::Run {
            http_address,
            lease_namespace,
            identity,
            watch_namespace,
        }) => {
            let watch_namespace = watch_namespace.filter(|ns| !ns.is_empty());
            run(http_address, &lease_namespace, &identity, watch_namespace).await
        }
        None => {
            run(
                "0.0.0.0:8080".parse()?,
                "chatscale-system",
                "chatscale-operator",
                None,
            )
            .await
        }
    }
}

async fn run(
    http_address: std::net::SocketAddr,
    lease_namespace: &str,
    identity: &str,
    watch_namespace: Option<String>,
) -> anyhow::Result<()> {
    use chatscale_operator::{controller, leader::Elector, telemetry};
    tracing_subscriber::fmt()
        .json()
        .with_writer(std::io::stderr)
        .init();
    let client = kube::Client::try_default().await?;
    let context = std::sync::Arc::new(controller::Context::new(client.clone()));
    let registry = prometheus::Registry::new();
    context.metrics.register(&registry)?;
    let autoscaler_metrics = chatscale_operator::autoscaler::run::Metrics::new(&registry)?;
    tokio::spawn(telemetry::serve(http_address, registry));

    let elector = Elector::new(
        client.clone(),
        lease_namespace,
        "chatscale-operator",
        identity,
    );
    tokio::select! {
        () = elector.acquire() => {}
        () = shutdown() => return Ok(()),
    }
    // Stop reconciling on SIGTERM or when the lease is lost (a restart re-elects).
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(async move {
        tokio::select! {
            () = shutdown() => {}
            () = elector.hold() => {}
        }
        let _ = stop.send(());
    });
    tracing::info!(namespace = ?watch_namespace, "watching ChatClusters (all namespaces when None)");
    let autoscaler = tokio::spawn(chatscale_operator::autoscaler::run::run_in(
        client.clone(),
        autoscaler_metrics,
        watch_namespace.clone(),
    ));
    controller::run_in(client, context, watch_namespace, async move {
        let _ = stopped.await;
    })
    .await;
    autoscaler.abort();
    Ok(())
}

async fn shutdown() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("installing the SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}
