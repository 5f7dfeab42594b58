//! A container's environment as the kubelet builds it: `envFrom` first, then
//! `env` in order, with `valueFrom` Secret and ConfigMap keys read through the
//! API, field references from the pod object, and `$(NAME)` expanded.

use std::collections::BTreeMap;

use anyhow::{Context, bail};
use k8s_openapi::api::core::v1::{ConfigMap, Container, EnvVar, Pod, Secret};
use kube::{Api, Client};

use super::launch::expand;

/// The resolved variables, in the order the kubelet sets them.
pub async fn resolve(
    client: &Client,
    pod: &Pod,
    container: &Container,
) -> anyhow::Result<Vec<(String, String)>> {
    let namespace = pod.metadata.namespace.as_deref().unwrap_or("default");
    let secrets: Api<Secret> = Api::namespaced(client.clone(), namespace);
    let config_maps: Api<ConfigMap> = Api::namespaced(client.clone(), namespace);
    let mut vars: Vec<(String, String)> = Vec::new();
    let set = |vars: &mut Vec<(String, String)>, name: String, value: String| {
        vars.retain(|(n, _)| *n != name);
        vars.push((name, value));
    };
    for source in container.env_from.iter().flatten() {
        let prefix = source.prefix.clone().unwrap_or_default();
        let data = if let Some(s) = &source.secret_ref {
            secret_data(&secrets, &s.name, s.optional.unwrap_or(false)).await?
        } else if let Some(c) = &source.config_map_ref {
            config_map_data(&config_maps, &c.name, c.optional.unwrap_or(false)).await?
        } else {
            BTreeMap::new()
        };
        for (key, value) in data {
            set(&mut vars, format!("{prefix}{key}"), value);
        }
    }
    for var in container.env.iter().flatten() {
        let known: BTreeMap<String, String> = vars.iter().cloned().collect();
        if let Some(value) = value_of(var, pod, &secrets, &config_maps, &known).await? {
            set(&mut vars, var.name.clone(), value);
        }
    }
    Ok(vars)
}

async fn value_of(
    var: &EnvVar,
    pod: &Pod,
    secrets: &Api<Secret>,
    config_maps: &Api<ConfigMap>,
    known: &BTreeMap<String, String>,
) -> anyhow::Result<Option<String>> {
    let Some(from) = &var.value_from else {
        return Ok(Some(expand(var.value.as_deref().unwrap_or(""), known)));
    };
    if let Some(key) = &from.secret_key_ref {
        let data = secret_data(secrets, &key.name, key.optional.unwrap_or(false)).await?;
        return optional_key(data, &key.key, key.optional, &var.name);
    }
    if let Some(key) = &from.config_map_key_ref {
        let data = config_map_data(config_maps, &key.name, key.optional.unwrap_or(false)).await?;
        return optional_key(data, &key.key, key.optional, &var.name);
    }
    if let Some(field) = &from.field_ref {
        return field_value(pod, &field.field_path).map(Some);
    }
    bail!(
        "{}: only secretKeyRef, configMapKeyRef and fieldRef are supported here",
        var.name
    )
}

fn optional_key(
    mut data: BTreeMap<String, String>,
    key: &str,
    optional: Option<bool>,
    var: &str,
) -> anyhow::Result<Option<String>> {
    match data.remove(key) {
        Some(value) => Ok(Some(value)),
        None if optional == Some(true) => Ok(None),
        None => bail!("{var}: key {key} not found"),
    }
}

/// A `fieldRef` path of the downward API.
pub fn field_value(pod: &Pod, path: &str) -> anyhow::Result<String> {
    let meta = &pod.metadata;
    let spec = pod.spec.as_ref();
    let status = pod.status.as_ref();
    let in_map = |map: &Option<BTreeMap<String, String>>, key: &str| {
        map.as_ref()
            .and_then(|m| m.get(key))
            .cloned()
            .unwrap_or_default()
    };
    let quoted = |prefix: &str| {
        path.strip_prefix(prefix)
            .and_then(|rest| rest.strip_suffix("']"))
            .map(str::to_owned)
    };
    Ok(match path {
        "metadata.name" => meta.name.clone().unwrap_or_default(),
        "metadata.namespace" => meta.namespace.clone().unwrap_or_default(),
        "metadata.uid" => meta.uid.clone().unwrap_or_default(),
        "spec.nodeName" => spec.and_then(|s| s.node_name.clone()).unwrap_or_default(),
        "spec.serviceAccountName" => spec
            .and_then(|s| s.service_account_name.clone())
            .unwrap_or_default(),
        "status.podIP" => status.and_then(|s| s.pod_ip.clone()).unwrap_or_default(),
        "status.hostIP" => status.and_then(|s| s.host_ip.clone()).unwrap_or_default(),
        _ => {
            if let Some(key) = quoted("metadata.labels['") {
                in_map(&meta.labels, &key)
            } else if let Some(key) = quoted("metadata.annotations['") {
                in_map(&meta.annotations, &key)
            } else {
                bail!("fieldRef {path} is not supported here")
            }
        }
    })
}

/// A Secret's keys as text (none when optional and missing).
pub async fn secret_data(
    secrets: &Api<Secret>,
    name: &str,
    optional: bool,
) -> anyhow::Result<BTreeMap<String, String>> {
    let Some(secret) = secrets.get_opt(name).await? else {
        if optional {
            return Ok(BTreeMap::new());
        }
        bail!("Secret {name} not found");
    };
    let mut data: BTreeMap<String, String> = secret
        .data
        .unwrap_or_default()
        .into_iter()
        .map(|(k, v)| (k, String::from_utf8_lossy(&v.0).into_owned()))
        .collect();
    data.extend(secret.string_data.unwrap_or_default());
    Ok(data)
}

/// A ConfigMap's keys (none when optional and missing).
pub async fn config_map_data(
    config_maps: &Api<ConfigMap>,
    name: &str,
    optional: bool,
) -> anyhow::Result<BTreeMap<String, String>> {
    match config_maps.get_opt(name).await? {
        Some(map) => Ok(map.data.unwrap_or_default()),
        None if optional => Ok(BTreeMap::new()),
        None => Err(anyhow::anyhow!("ConfigMap {name} not found")).context("envFrom or valueFrom"),
    }
}
