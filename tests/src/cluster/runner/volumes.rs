//! A pod's volumes as folders: Secret and ConfigMap keys written as files
//! (with their modes), `emptyDir` as an empty folder, a claim as a folder that
//! outlives the pod (so a restarted Redis finds its data), and the projected
//! service-account volume as a bound token from the TokenRequest API with the
//! cluster's CA. Programs find a folder through the mount-path mapping
//! (`launch::Mapping`).

use std::{
    collections::BTreeMap,
    os::unix::fs::PermissionsExt,
    path::{Path, PathBuf},
};

use anyhow::{Context, bail};
use k8s_openapi::api::{
    authentication::v1::{BoundObjectReference, TokenRequest, TokenRequestSpec},
    core::v1::{ConfigMap, Container, KeyToPath, Pod, Secret, ServiceAccount, Volume},
};
use kube::{Api, Client};

use super::env::{config_map_data, secret_data};

/// Where the in-cluster config of client libraries looks for the token.
pub const SERVICE_ACCOUNT_DIR: &str = "/var/run/secrets/kubernetes.io/serviceaccount";

/// The folders of one pod's volumes, by volume name.
pub struct Volumes {
    pub folders: BTreeMap<String, PathBuf>,
    /// The folder of the projected service-account volume, when the pod has one.
    pub service_account: Option<PathBuf>,
}

/// Writes every volume of `pod` under `pod_dir/volumes`; claims go under `claims_dir`.
pub async fn materialize(
    client: &Client,
    pod: &Pod,
    pod_dir: &Path,
    claims_dir: &Path,
    ca_cert: &Path,
) -> anyhow::Result<Volumes> {
    let namespace = pod.metadata.namespace.as_deref().unwrap_or("default");
    let mut folders = BTreeMap::new();
    let mut service_account = None;
    for volume in pod.spec.iter().flat_map(|s| s.volumes.iter().flatten()) {
        let folder = if let Some(claim) = &volume.persistent_volume_claim {
            claims_dir.join(namespace).join(&claim.claim_name)
        } else {
            pod_dir.join("volumes").join(&volume.name)
        };
        std::fs::create_dir_all(&folder)?;
        write_volume(client, pod, volume, &folder, ca_cert)
            .await
            .with_context(|| format!("volume {}", volume.name))?;
        if volume.projected.as_ref().is_some_and(|p| {
            p.sources
                .iter()
                .flatten()
                .any(|s| s.service_account_token.is_some())
        }) {
            service_account = Some(folder.clone());
        }
        folders.insert(volume.name.clone(), folder);
    }
    Ok(Volumes {
        folders,
        service_account,
    })
}

impl Volumes {
    /// The container's mounts: mount path in the pod, folder here.
    pub fn mounts(&self, container: &Container) -> anyhow::Result<Vec<(String, PathBuf)>> {
        container
            .volume_mounts
            .iter()
            .flatten()
            .map(|mount| {
                let folder = self
                    .folders
                    .get(&mount.name)
                    .with_context(|| format!("no volume {} for its mount", mount.name))?;
                let folder = match mount.sub_path.as_deref() {
                    Some(sub) if !sub.is_empty() => folder.join(sub),
                    _ => folder.clone(),
                };
                Ok((mount.mount_path.clone(), folder))
            })
            .collect()
    }
}

async fn write_volume(
    client: &Client,
    pod: &Pod,
    volume: &Volume,
    folder: &Path,
    ca_cert: &Path,
) -> anyhow::Result<()> {
    let namespace = pod.metadata.namespace.as_deref().unwrap_or("default");
    if let Some(source) = &volume.secret {
        let secrets: Api<Secret> = Api::namespaced(client.clone(), namespace);
        let name = source.secret_name.as_deref().unwrap_or_default();
        let data = secret_data(&secrets, name, source.optional.unwrap_or(false)).await?;
        return write_keys(folder, &data, source.items.as_deref(), source.default_mode);
    }
    if let Some(source) = &volume.config_map {
        let maps: Api<ConfigMap> = Api::namespaced(client.clone(), namespace);
        let data = config_map_data(&maps, &source.name, source.optional.unwrap_or(false)).await?;
        return write_keys(folder, &data, source.items.as_deref(), source.default_mode);
    }
    if volume.empty_dir.is_some() || volume.persistent_volume_claim.is_some() {
        return Ok(());
    }
    if let Some(projected) = &volume.projected {
        for source in projected.sources.iter().flatten() {
            if let Some(token) = &source.service_account_token {
                let jwt = bound_token(client, pod, token.expiration_seconds).await?;
                write_file(
                    &folder.join(&token.path),
                    jwt.as_bytes(),
                    projected.default_mode,
                )?;
            } else if let Some(map) = &source.config_map {
                // kube-root-ca.crt: the cluster's CA, which this runner knows.
                let data = if map.name == "kube-root-ca.crt" {
                    BTreeMap::from([("ca.crt".to_owned(), std::fs::read_to_string(ca_cert)?)])
                } else {
                    let maps: Api<ConfigMap> = Api::namespaced(client.clone(), namespace);
                    config_map_data(&maps, &map.name, map.optional.unwrap_or(false)).await?
                };
                write_keys(folder, &data, map.items.as_deref(), projected.default_mode)?;
            } else if let Some(api) = &source.downward_api {
                for item in api.items.iter().flatten() {
                    let field = item
                        .field_ref
                        .as_ref()
                        .context("downwardAPI needs fieldRef")?;
                    let value = super::env::field_value(pod, &field.field_path)?;
                    write_file(
                        &folder.join(&item.path),
                        value.as_bytes(),
                        projected.default_mode,
                    )?;
                }
            } else {
                bail!(
                    "projected sources other than token, ConfigMap and downwardAPI are not supported here"
                );
            }
        }
        return Ok(());
    }
    bail!(
        "only Secret, ConfigMap, emptyDir, PersistentVolumeClaim and projected volumes are supported here"
    )
}

/// A token for the pod's ServiceAccount, bound to the pod (as the kubelet asks).
async fn bound_token(
    client: &Client,
    pod: &Pod,
    expiration: Option<i64>,
) -> anyhow::Result<String> {
    let namespace = pod.metadata.namespace.as_deref().unwrap_or("default");
    let account = pod
        .spec
        .as_ref()
        .and_then(|s| s.service_account_name.clone())
        .unwrap_or_else(|| "default".into());
    let accounts: Api<ServiceAccount> = Api::namespaced(client.clone(), namespace);
    let request = TokenRequest {
        spec: TokenRequestSpec {
            audiences: Vec::new(),
            // As the projected source asks (3607 s for the kubelet's own
            // volume, which the API server extends: the token is not rotated here).
            expiration_seconds: expiration,
            bound_object_ref: Some(BoundObjectReference {
                api_version: Some("v1".into()),
                kind: Some("Pod".into()),
                name: pod.metadata.name.clone(),
                uid: pod.metadata.uid.clone(),
            }),
        },
        ..Default::default()
    };
    let answer = accounts
        .create_token_request(&account, &Default::default(), &request)
        .await?;
    answer
        .status
        .map(|s| s.token)
        .context("TokenRequest returned no token")
}

fn write_keys(
    folder: &Path,
    data: &BTreeMap<String, String>,
    items: Option<&[KeyToPath]>,
    default_mode: Option<i32>,
) -> anyhow::Result<()> {
    match items {
        Some(items) => {
            for item in items {
                let value = data
                    .get(&item.key)
                    .with_context(|| format!("key {} not found", item.key))?;
                write_file(
                    &folder.join(&item.path),
                    value.as_bytes(),
                    item.mode.or(default_mode),
                )?;
            }
        }
        None => {
            for (key, value) in data {
                write_file(&folder.join(key), value.as_bytes(), default_mode)?;
            }
        }
    }
    Ok(())
}

fn write_file(path: &Path, contents: &[u8], mode: Option<i32>) -> anyhow::Result<()> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    std::fs::write(path, contents)?;
    let mode = u32::try_from(mode.unwrap_or(0o644)).unwrap_or(0o644);
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))?;
    Ok(())
}
