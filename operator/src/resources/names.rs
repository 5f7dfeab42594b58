//! Names and labels of owned objects, in one place so that selectors,
//! Services and NetworkPolicies agree.

use std::collections::BTreeMap;

use kube::ResourceExt;

use crate::api::ChatCluster;

pub const CHAT: &str = "chat";
pub const REDIS: &str = "redis";
/// Label value of the operator's own pods (NetworkPolicies let them in).
pub const OPERATOR_NAME: &str = "chatscale-operator";

pub const PUBLIC_PORT: i32 = chatscale_contract::ports::PUBLIC as i32;
pub const ADMIN_PORT: i32 = chatscale_contract::ports::ADMIN as i32;
pub const REDIS_PORT: i32 = 6379;

/// The ChatCluster's namespace (`default` when a manifest names none, as kubectl does).
pub fn namespace(cc: &ChatCluster) -> String {
    cc.namespace().unwrap_or_else(|| "default".into())
}

pub fn chat(cc: &ChatCluster) -> String {
    format!("{}-chat", cc.name_any())
}

pub fn redis(cc: &ChatCluster) -> String {
    format!("{}-redis", cc.name_any())
}

/// Secret with the managed Redis password and the full URL (`password`, `url`).
pub fn redis_auth(cc: &ChatCluster) -> String {
    format!("{}-redis-auth", cc.name_any())
}

/// Secret with the admin token of the drain API (`token`).
pub fn admin_secret(cc: &ChatCluster) -> String {
    format!("{}-admin", cc.name_any())
}

/// Labels every owned object carries; the selector labels are the first three.
pub fn labels(cc: &ChatCluster, component: &str) -> BTreeMap<String, String> {
    let mut labels = selector(cc, component);
    labels.insert("app.kubernetes.io/managed-by".into(), OPERATOR_NAME.into());
    labels.insert("app.kubernetes.io/part-of".into(), "chatscale".into());
    labels
}

/// The labels that select a component's pods.
pub fn selector(cc: &ChatCluster, component: &str) -> BTreeMap<String, String> {
    [
        ("app.kubernetes.io/name", "chatscale"),
        ("app.kubernetes.io/instance", cc.name_any().as_str()),
        ("app.kubernetes.io/component", component),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect()
}

/// `a=b,c=d`: the selector in the form the scale subresource reports.
pub fn selector_string(cc: &ChatCluster, component: &str) -> String {
    selector(cc, component)
        .into_iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}
