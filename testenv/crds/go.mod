// Module chatscale.dev/testenv/crds only pins, by go.sum, the two projects whose
// CustomResourceDefinitions the control-plane tests install: the Gateway API's
// experimental channel (HTTPRoute sessionPersistence) and the Prometheus
// Operator's ServiceMonitor and PodMonitor. No Go code is built from it.
module chatscale.dev/testenv/crds

go 1.24.0

require (
	github.com/prometheus-operator/prometheus-operator v0.85.0
	sigs.k8s.io/gateway-api v1.3.0
)
