//! chatscale-operator: turns `ChatCluster` resources into running chat
//! clusters. `api` is what users write; `resources` builds every Kubernetes
//! object as a pure function of a ChatCluster.

pub mod api;
pub mod autoscaler;
pub mod controller;
pub mod docs;
pub mod leader;
pub mod rbac;
pub mod render;
pub mod resources;
pub mod telemetry;
