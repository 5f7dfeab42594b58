//! chatscale-operator: `crd` prints the CustomResourceDefinition; `run` (the
//! controller) arrives with the controller work.

use clap::{Parser, Subcommand};
use kube::CustomResourceExt;

use chatscale_operator::api::ChatCluster;

#[derive(Parser)]
#[command(name = "chatscale-operator", version, about = "Kubernetes operator for ChatCluster resources")]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Print the ChatCluster CustomResourceDefinition as YAML (what crds/ holds).
    Crd,
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Some(Command::Crd) => {
            print!("{}", serde_saphyr::to_string(&ChatCluster::crd())?);
            Ok(())
        }
        None => anyhow::bail!("the controller (`run`) is not built yet; see the operator issue"),
    }
}
