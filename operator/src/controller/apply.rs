//! Server-side apply of the desired objects with one field manager: the API
//! server merges them, and whatever the operator owns returns to the desired
//! state (drift is corrected) without touching fields others manage.

use kube::{
    Api, Client, Resource, ResourceExt,
    api::{ApiResource, DynamicObject, GroupVersionKind, Patch, PatchParams},
};

use crate::{api::ChatCluster, resources::names};

/// The one field manager of everything the operator writes.
pub const FIELD_MANAGER: &str = "chatscale-operator";

/// Every kind the operator applies: (kind, API group, plural). The RBAC rules
/// are derived from this list, so the two cannot drift apart.
pub const APPLIED_KINDS: &[(&str, &str, &str)] = &[
    ("Secret", "", "secrets"),
    ("Service", "", "services"),
    ("StatefulSet", "apps", "statefulsets"),
    ("Deployment", "apps", "deployments"),
    ("Ingress", "networking.k8s.io", "ingresses"),
    ("NetworkPolicy", "networking.k8s.io", "networkpolicies"),
    ("PodDisruptionBudget", "policy", "poddisruptionbudgets"),
    ("HTTPRoute", "gateway.networking.k8s.io", "httproutes"),
];

/// The plural resource name of a kind the operator applies.
fn plural(kind: &str) -> Option<&'static str> {
    APPLIED_KINDS
        .iter()
        .find(|(k, _, _)| *k == kind)
        .map(|(_, _, plural)| *plural)
}

/// The API resource of a desired object, from its apiVersion and kind.
pub fn api_resource(object: &DynamicObject) -> anyhow::Result<ApiResource> {
    let types = object
        .types
        .as_ref()
        .ok_or_else(|| anyhow::anyhow!("a desired object without apiVersion/kind"))?;
    let (group, version) = match types.api_version.split_once('/') {
        Some((group, version)) => (group, version),
        None => ("", types.api_version.as_str()),
    };
    let plural =
        plural(&types.kind).ok_or_else(|| anyhow::anyhow!("no plural known for {}", types.kind))?;
    Ok(ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk(group, version, &types.kind),
        plural,
    ))
}

/// Applies `status` to the ChatCluster's status subresource as `manager`.
pub async fn apply_status(
    client: &Client,
    cc: &ChatCluster,
    manager: &str,
    status: impl serde::Serialize,
) -> Result<(), kube::Error> {
    Api::<ChatCluster>::namespaced(client.clone(), &names::namespace(cc))
        .patch_status(
            &cc.name_any(),
            &PatchParams::apply(manager).force(),
            &Patch::Apply(serde_json::json!({
                "apiVersion": ChatCluster::api_version(&()),
                "kind": ChatCluster::kind(&()),
                "status": status,
            })),
        )
        .await?;
    Ok(())
}

/// Applies one object in its namespace.
pub async fn apply(client: &Client, object: &DynamicObject) -> anyhow::Result<()> {
    let resource = api_resource(object)?;
    let namespace = object.metadata.namespace.as_deref().unwrap_or("default");
    let name = object
        .metadata
        .name
        .as_deref()
        .ok_or_else(|| anyhow::anyhow!("a desired object without a name"))?;
    let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), namespace, &resource);
    api.patch(
        name,
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(object),
    )
    .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_resources_come_from_apiversion_and_kind() {
        let object: DynamicObject = serde_json::from_value(serde_json::json!({
            "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "x"}
        }))
        .unwrap();
        let resource = api_resource(&object).unwrap();
        assert_eq!(
            (resource.group.as_str(), resource.plural.as_str()),
            ("apps", "deployments")
        );
        let core: DynamicObject = serde_json::from_value(serde_json::json!({
            "apiVersion": "v1", "kind": "Secret", "metadata": {"name": "x"}
        }))
        .unwrap();
        assert_eq!(api_resource(&core).unwrap().group, "");
        let unknown: DynamicObject = serde_json::from_value(serde_json::json!({
            "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "x"}
        }))
        .unwrap();
        assert!(api_resource(&unknown).is_err());
    }
}
