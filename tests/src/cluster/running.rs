//! The product on the control plane with pods that really run, as
//! `operator/tests/lifecycle.rs` and `make local-cluster` both use it: the
//! control plane with [`Pods::Run`], the pod runner, Service names in the
//! private `/etc/hosts`, the chart installed with helm as users install it,
//! and the nginx stand-in for a ChatCluster's Ingress.

use std::{path::Path, time::Duration};

use k8s_openapi::api::networking::v1::Ingress;
use kube::{Api, Client, ResourceExt};

use super::{
    ControlPlane, Options, Pods, hosts,
    ingress::IngressStandIn,
    runner::{PodRunner, launch::Programs},
};
use crate::{chat_server_bin, wait_for};

/// Where the chart's release goes (as in the README's install steps).
pub const OPERATOR_NAMESPACE: &str = "chatscale-system";

/// How long helm and the first pods may take.
const START: Duration = Duration::from_secs(180);

/// A running control plane whose pods run; stops its helpers when dropped
/// (the control plane's processes go with the process).
pub struct RunningCluster {
    pub plane: &'static ControlPlane,
    /// An admin client.
    pub client: Client,
    pub runner: PodRunner,
    hosts: tokio::task::JoinHandle<()>,
}

impl Drop for RunningCluster {
    fn drop(&mut self) {
        self.hosts.abort();
    }
}

impl RunningCluster {
    /// Starts (or joins) this process's control plane with pods that run
    /// chat-server, managed Redis and `operator` (the chatscale-operator binary).
    pub async fn start(isolated_network: bool, operator: &Path) -> anyhow::Result<Self> {
        let options = Options {
            pods: Pods::Run,
            isolated_network,
        };
        let plane = tokio::task::spawn_blocking(move || ControlPlane::shared_with(options)).await?;
        let client = plane.client().await?;
        let hosts = hosts::follow(client.clone())?;
        let programs = Programs::chatscale(&chat_server_bin(), operator);
        let runner = PodRunner::start(plane, client.clone(), programs);
        Ok(Self {
            plane,
            client,
            runner,
            hosts,
        })
    }

    /// `helm install` of the chart, as the README says, waiting until its
    /// operator pods are Ready.
    pub fn install_operator(&self) -> anyhow::Result<()> {
        let timeout = format!("{}s", START.as_secs());
        self.plane.run_ok(
            "helm",
            &[
                "install",
                "chatscale",
                "charts/chatscale-operator",
                "--namespace",
                OPERATOR_NAMESPACE,
                "--create-namespace",
                "--wait",
                "--timeout",
                &timeout,
            ],
        )?;
        Ok(())
    }

    /// `kubectl apply -f manifest` into `namespace`, which it creates.
    pub fn apply(&self, namespace: &str, manifest: &Path) -> anyhow::Result<()> {
        self.plane
            .run_ok("kubectl", &["create", "namespace", namespace])?;
        let file = manifest.display().to_string();
        self.plane
            .run_ok("kubectl", &["apply", "-n", namespace, "-f", &file])?;
        Ok(())
    }

    /// The nginx stand-in for the (first) Ingress in `namespace`, once the
    /// operator has made it and nginx routes to at least one pod.
    pub async fn ingress(&self, namespace: &str) -> anyhow::Result<IngressStandIn> {
        let ingresses: Api<Ingress> = Api::namespaced(self.client.clone(), namespace);
        let name = wait_for("the ChatCluster's Ingress", START, || async {
            let list = ingresses.list(&Default::default()).await?;
            Ok(list.items.first().map(|i| i.name_any()))
        })
        .await?;
        let dir = self.plane.dir.join("ingress");
        let stand_in = IngressStandIn::start(self.client.clone(), namespace, &name, &dir).await?;
        wait_for("nginx to route to a chat pod", START, || async {
            Ok((!stand_in.upstreams().is_empty()).then_some(()))
        })
        .await?;
        Ok(stand_in)
    }
}
