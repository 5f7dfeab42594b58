//! Service names for pods that really run ([`super::Pods::Run`]): no
//! cluster DNS and no kube-proxy run here, and a Service's cluster IP leads
//! nowhere. As a stand-in for both, every Service with a selector gets its
//! in-cluster names (`NAME.NAMESPACE.svc`, `NAME.NAMESPACE.svc.cluster.local`)
//! in `/etc/hosts`, pointing at the IP of one Ready pod it selects, and a
//! StatefulSet pod its `HOSTNAME.SUBDOMAIN.NAMESPACE.svc` name. The file must
//! be this process's own: `scripts/isolated` (and `make local-cluster`) run
//! in a mount namespace of their own with a private copy bind-mounted over
//! `/etc/hosts`; anywhere else this refuses to start.

use std::{collections::BTreeMap, io::Write, time::Duration};

use anyhow::{Context, bail};
use k8s_openapi::api::core::v1::{Pod, Service};
use kube::{Api, Client, ResourceExt};

const HOSTS: &str = "/etc/hosts";
const MARK: &str = "# pods and Services of the chatscale test cluster (tests/src/cluster/hosts.rs)";

/// Fails unless `/etc/hosts` is a private bind mount of this process's own
/// mount namespace, so that writing it changes nothing outside.
pub fn ensure_private_hosts() -> anyhow::Result<()> {
    let ours = std::fs::read_link("/proc/self/ns/mnt")?;
    let init = std::fs::read_link("/proc/1/ns/mnt").ok();
    let mounted = std::fs::read_to_string("/proc/self/mountinfo")?
        .lines()
        .any(|line| line.split(' ').nth(4) == Some(HOSTS));
    if init.as_ref() == Some(&ours) || !mounted {
        bail!(
            "pods that really run need a private /etc/hosts (their Service names are written \
             there): run this through scripts/isolated, which gives it a mount namespace \
             with its own copy"
        );
    }
    Ok(())
}

/// Keeps `/etc/hosts` in step with the cluster's Services and Ready pods.
pub fn follow(client: Client) -> anyhow::Result<tokio::task::JoinHandle<()>> {
    ensure_private_hosts()?;
    let original = std::fs::read_to_string(HOSTS).context("reading /etc/hosts")?;
    let original = original
        .split(MARK)
        .next()
        .unwrap_or_default()
        .trim_end()
        .to_owned();
    Ok(tokio::spawn(async move {
        let mut written = String::new();
        loop {
            match names(&client).await {
                Ok(entries) => {
                    let text = render(&original, &entries);
                    if text != written && write_in_place(&text).is_ok() {
                        written = text;
                    }
                }
                Err(error) => eprintln!("hosts: {error:#}"),
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }))
}

/// Name to IP.
async fn names(client: &Client) -> anyhow::Result<BTreeMap<String, String>> {
    let services = Api::<Service>::all(client.clone())
        .list(&Default::default())
        .await?;
    let pods = Api::<Pod>::all(client.clone())
        .list(&Default::default())
        .await?;
    let ready: Vec<&Pod> = pods.items.iter().filter(|p| serving(p)).collect();
    let mut entries = BTreeMap::new();
    for service in &services.items {
        let namespace = service.namespace().unwrap_or_default();
        let Some(selector) = service.spec.as_ref().and_then(|s| s.selector.as_ref()) else {
            continue;
        };
        let chosen = ready
            .iter()
            .filter(|p| p.namespace().as_deref() == Some(namespace.as_str()))
            .filter(|p| selector.iter().all(|(k, v)| p.labels().get(k) == Some(v)))
            .min_by_key(|p| p.name_any());
        if let Some(ip) = chosen.and_then(|p| p.status.as_ref()?.pod_ip.clone()) {
            let base = format!("{}.{namespace}.svc", service.name_any());
            entries.insert(format!("{base}.cluster.local"), ip.clone());
            entries.insert(base, ip);
        }
    }
    for pod in &ready {
        let spec = pod.spec.as_ref();
        if let (Some(host), Some(sub), Some(ip)) = (
            spec.and_then(|s| s.hostname.clone()),
            spec.and_then(|s| s.subdomain.clone()),
            pod.status.as_ref().and_then(|s| s.pod_ip.clone()),
        ) {
            let base = format!("{host}.{sub}.{}.svc", pod.namespace().unwrap_or_default());
            entries.insert(format!("{base}.cluster.local"), ip.clone());
            entries.insert(base, ip);
        }
    }
    Ok(entries)
}

/// Ready and not terminating: what an EndpointSlice would list as ready.
pub fn serving(pod: &Pod) -> bool {
    pod.metadata.deletion_timestamp.is_none()
        && pod.status.as_ref().is_some_and(|s| s.pod_ip.is_some())
        && ready(pod)
}

/// The pod's Ready condition is True.
pub fn ready(pod: &Pod) -> bool {
    pod.status
        .iter()
        .flat_map(|s| s.conditions.iter().flatten())
        .any(|c| c.type_ == "Ready" && c.status == "True")
}

fn render(original: &str, entries: &BTreeMap<String, String>) -> String {
    let mut text = format!("{original}\n{MARK}\n");
    for (name, ip) in entries {
        text.push_str(&format!("{ip} {name}\n"));
    }
    text
}

/// Rewrites the file itself (not a new file renamed over it: the bind mount
/// holds the original inode), in one write and then cut to length, so a
/// reader never finds it empty.
fn write_in_place(text: &str) -> std::io::Result<()> {
    let mut file = std::fs::OpenOptions::new().write(true).open(HOSTS)?;
    file.write_all(text.as_bytes())?;
    file.set_len(text.len() as u64)
}
