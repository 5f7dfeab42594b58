//! The ChatCluster status fields the autoscaler owns, as one typed patch.
//! It is applied under the autoscaler's own field manager and always whole:
//! with server-side apply, a field its manager leaves out is removed.
//!
//! Not [`crate::api::ChatClusterStatus`]: that type always serializes
//! `replicas` and `readyReplicas`, which the controller owns; applying it
//! here would take them over with zeros.

use std::sync::{Arc, Mutex};

use k8s_openapi::{apimachinery::pkg::apis::meta::v1::Time, jiff::Timestamp};
use serde::Serialize;

use super::control::Cluster;

/// The autoscaler's part of the status. The figures are written as `null`
/// when unknown, the scale fields only once a scale happened.
#[derive(Serialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct AutoscalerStatus {
    /// Socket.IO connections over all pods, if every ready pod reported.
    pub connections: Option<i64>,
    /// Connections per ready pod.
    pub connections_per_pod: Option<i64>,
    /// Connections on the busiest ready pod.
    pub busiest_pod_connections: Option<i64>,
    /// Redis operations per second, if Redis could be read.
    pub redis_ops_per_sec: Option<i64>,
    /// Pods being drained before removal.
    pub draining_pods: Vec<String>,
    /// Pods shedding connections for a rebalance.
    pub shedding_pods: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_scale_time: Option<Time>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_scale_reason: Option<String>,
}

impl AutoscalerStatus {
    /// Records a change of `spec.replicas`, now, for `reason`.
    pub fn scaled(&mut self, reason: &str) {
        self.last_scale_time = Some(Time(Timestamp::now()));
        self.last_scale_reason = Some(reason.to_owned());
    }
}

/// The status as last written, shared by the loop and its drain task, so
/// each write carries every field.
#[derive(Clone, Default)]
pub(super) struct OwnedStatus(Arc<Mutex<AutoscalerStatus>>);

impl OwnedStatus {
    /// Applies `update` to the fields and writes them all.
    pub async fn write(
        &self,
        cluster: &dyn Cluster,
        update: impl FnOnce(&mut AutoscalerStatus),
    ) -> anyhow::Result<()> {
        let whole = {
            let mut status = self.0.lock().unwrap_or_else(|e| e.into_inner());
            update(&mut status);
            status.clone()
        };
        cluster.status(whole).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn unknown_figures_are_null_and_scale_fields_appear_once_set() {
        let mut status = AutoscalerStatus {
            connections: Some(42),
            ..Default::default()
        };
        assert_eq!(
            serde_json::to_value(&status).unwrap(),
            json!({
                "connections": 42,
                "connectionsPerPod": null,
                "busiestPodConnections": null,
                "redisOpsPerSec": null,
                "drainingPods": [],
                "sheddingPods": [],
            })
        );
        status.scaled("connections 42 above target");
        let written = serde_json::to_value(&status).unwrap();
        assert_eq!(written["lastScaleReason"], "connections 42 above target");
        assert!(written["lastScaleTime"].is_string());
    }

    #[test]
    fn every_field_is_one_the_crd_status_declares() {
        use kube::CustomResourceExt;
        let crd = serde_json::to_value(crate::api::ChatCluster::crd()).unwrap();
        let declared = &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["status"]
            ["properties"];
        let mut status = AutoscalerStatus {
            connections: Some(1),
            busiest_pod_connections: Some(1),
            draining_pods: vec!["chat-1".into()],
            shedding_pods: vec!["chat-2".into()],
            ..Default::default()
        };
        status.scaled("a reason");
        let written = serde_json::to_value(&status).unwrap();
        for field in written.as_object().unwrap().keys() {
            assert!(
                declared.get(field).is_some(),
                "the CRD's status has no `{field}`: the API server would drop it"
            );
        }
    }
}
