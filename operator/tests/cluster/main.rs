//! The operator against a real Kubernetes control plane (etcd,
//! kube-apiserver, kube-controller-manager, kube-scheduler, built from their
//! Go modules by `make testenv`) with kwok standing in for kubelets: pods on
//! its fake Nodes become Running and Ready, but no container runs. The chart
//! is installed with the real helm, manifests are applied with the real
//! kubectl, and the operator runs as its real binary under the chart's
//! ServiceAccount. One control plane serves every test in this binary; each
//! test has a namespace of its own.
//!
//! Run through `scripts/isolated` (a network namespace with only loopback),
//! as `make rust-test` does.

mod autoscaler;
mod controller;
mod dashboard;
mod helm;
mod kubectl;
mod leader;
mod rbac;
mod support;
