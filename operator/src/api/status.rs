//! What the operator reports back on a ChatCluster.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Observed state, written by the operator through the status subresource.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ChatClusterStatus {
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// chat-server pods that exist (for the scale subresource).
    #[serde(default)]
    pub replicas: i32,
    /// chat-server pods that are ready.
    #[serde(default)]
    pub ready_replicas: i32,
    /// Label selector of the chat-server pods, as a string (for the scale subresource).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<String>,
    /// Socket.IO connections over all pods, from the last scrape.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connections: Option<i64>,
    /// Redis operations per second, from the last reading.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub redis_ops_per_sec: Option<i64>,
    /// Replicas the operator wants.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub desired_replicas: Option<i32>,
    /// Connections per ready pod, from the last scrape.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connections_per_pod: Option<i64>,
    /// Pods being drained before removal.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub draining_pods: Vec<String>,
    /// Connections on the busiest ready pod, from the last scrape.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub busiest_pod_connections: Option<i64>,
    /// Pods shedding connections for a rebalance.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub shedding_pods: Vec<String>,
    /// When the autoscaler last changed `spec.replicas`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_scale_time: Option<k8s_openapi::apimachinery::pkg::apis::meta::v1::Time>,
    /// Why the autoscaler last changed `spec.replicas`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_scale_reason: Option<String>,
    /// Ready, Progressing and Degraded, each with a reason and a message.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
}
