//! Autoscaling on the signals that matter for chat: connections and Redis
//! throughput. `decide` (how many pods) and `rebalance` (which pods shed
//! connections) are pure functions of observations, recent history and the
//! spec, so the policy is tested (and simulated) without Kubernetes.

pub mod admin_client;
pub mod collect;
pub mod control;
pub mod decide;
pub mod drain;
pub mod rebalance;
pub mod run;
pub mod sim;
pub mod status;
