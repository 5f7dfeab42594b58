//! chatscale-operator: `crd` prints the CustomResourceDefinition, `render`
//! prints the objects for a ChatCluster; `run` (the controller) arrives with
//! the controller work.

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
    /// Print the ChatCluster CustomResourceDefinition as YAML (what crds/ holds).
    Crd,
    /// Print every object the operator would apply for a ChatCluster manifest.
    Render {
        /// The ChatCluster manifest (YAML).
        #[arg(short = 'f', long = "file")]
        file: std::path::PathBuf,
    },
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Some(Command::Crd) => {
            print!("{}", serde_saphyr::to_string(&ChatCluster::crd())?);
            Ok(())
        }
        Some(Command::Render { file }) => {
            let manifest = std::fs::read_to_string(&file)
                .map_err(|e| anyhow::anyhow!("reading {}: {e}", file.display()))?;
            print!("{}", chatscale_operator::render::render(&manifest)?);
            Ok(())
        }
        None => anyhow::bail!("the controller (`run`) is not built yet; see the operator issue"),
    }
}
