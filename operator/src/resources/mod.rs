//! Every Kubernetes object of a chat cluster, built as a pure function of the
//! ChatCluster (and of the two secrets the controller generates once). The
//! controller applies what `desired` returns; `render` prints it; tests check
//! it against golden files and the Kubernetes OpenAPI schemas.

pub mod chat;
pub(crate) mod httproute;
pub(crate) mod names;
pub mod redis;
mod routing;
mod safety;
mod security;

use kube::{
    Resource, ResourceExt,
    api::{DynamicObject, ObjectMeta},
};
use serde::Serialize;
use std::collections::BTreeMap;

use crate::api::ChatCluster;

/// Values generated once by the controller and kept in Secrets across reconciles.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Generated {
    /// Password of the managed Redis.
    pub redis_password: String,
    /// Bearer token of the chat-servers' drain API.
    pub admin_token: String,
}

impl Generated {
    /// Stand-ins for `render`: the controller generates real values at the first reconcile.
    pub fn placeholders() -> Self {
        Self {
            redis_password: "generated-by-the-operator".into(),
            admin_token: "generated-by-the-operator".into(),
        }
    }
}

/// A spec the schema let through but that cannot be built (reported as Degraded).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("invalid ChatCluster spec: {0}")]
pub struct SpecError(pub String);

/// Every object the operator applies for `cc`, in apply order.
pub fn desired(cc: &ChatCluster, generated: &Generated) -> Result<Vec<DynamicObject>, SpecError> {
    let mut objects = Vec::new();
    objects.extend(redis::objects(cc, generated)?);
    objects.extend(chat::objects(cc, generated)?);
    objects.extend(routing::objects(cc)?);
    objects.extend(safety::objects(cc)?);
    Ok(objects)
}

/// Metadata of an owned object: name, namespace, labels, and the ChatCluster
/// as controller owner (so deleting the ChatCluster deletes it).
pub fn owned_meta(cc: &ChatCluster, name: String, component: &str) -> ObjectMeta {
    ObjectMeta {
        name: Some(name),
        namespace: cc.namespace(),
        labels: Some(names::labels(cc, component)),
        owner_references: cc.controller_owner_ref(&()).map(|owner| vec![owner]),
        ..Default::default()
    }
}

/// A typed object as a `DynamicObject` (apiVersion, kind, metadata and body).
pub fn dynamic<K>(object: &K) -> DynamicObject
where
    K: Resource<DynamicType = ()> + Serialize,
{
    let value = serde_json::to_value(object).expect("Kubernetes objects serialize to JSON");
    serde_json::from_value(value).expect("a serialized object is a DynamicObject")
}

/// Annotations as a map.
pub fn annotations<const N: usize>(pairs: [(&str, String); N]) -> BTreeMap<String, String> {
    pairs.into_iter().map(|(k, v)| (k.to_owned(), v)).collect()
}
