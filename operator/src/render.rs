//! `chatscale-operator render -f FILE`: every object the operator would apply
//! for a ChatCluster, as multi-document YAML, like `helm template`: for review
//! in GitOps and for schema checks in tests. Nothing is sent to a cluster.

use kube::ResourceExt;

use crate::{
    api::ChatCluster,
    resources::{self, Generated},
};

/// Namespace assumed when the manifest names none (kubectl's default).
const DEFAULT_NAMESPACE: &str = "default";
/// The API server assigns the real uid; owner references show this one.
const PLACEHOLDER_UID: &str = "00000000-0000-0000-0000-000000000000";

/// Parses a ChatCluster manifest, checks its CEL rules, and renders its objects.
pub fn render(manifest: &str) -> anyhow::Result<String> {
    let mut cc: ChatCluster = serde_saphyr::from_str(manifest)?;
    if let Err(errors) = cc.validate_cel() {
        anyhow::bail!("the ChatCluster breaks its validation rules: {errors}");
    }
    if cc.namespace().is_none() {
        cc.metadata.namespace = Some(DEFAULT_NAMESPACE.into());
    }
    if cc.uid().is_none() {
        cc.metadata.uid = Some(PLACEHOLDER_UID.into());
    }
    let objects = resources::desired(&cc, &Generated::placeholders())?;
    let mut out = String::from(
        "# Rendered by chatscale-operator render: what the operator applies for this ChatCluster.\n\
         # Secrets show placeholders; the operator generates their values once.\n",
    );
    for object in objects {
        out.push_str("---\n");
        out.push_str(&serde_saphyr::to_string(&object)?);
    }
    Ok(out)
}
