#!/usr/bin/env bash
# Builds the real Kubernetes control plane for the tests into OUT (default
# target/testenv): bin/ holds kube-apiserver, kube-controller-manager,
# kube-scheduler, kubectl (Kubernetes v1.33.13), etcd (v3.5.21), kwok
# (v0.7.0) and helm (v3.18.6); crds/ holds the Gateway API experimental CRDs
# (v1.3.0) and the Prometheus Operator's ServiceMonitor, PodMonitor and PrometheusRule CRDs (v0.85.0). Versions are
# pinned by go.mod/go.sum here and in crds/. A second run with unchanged
# inputs does nothing; Go's module and build caches make a changed one quick.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
out="${1:-$here/../target/testenv}"
command -v go >/dev/null || { echo "testenv needs Go 1.24 or newer (https://go.dev/dl, or Debian's golang-go)" >&2; exit 1; }

stamp="$(cat "$here"/go.mod "$here"/go.sum "$here"/crds/go.mod "$here"/crds/go.sum "$0" | sha256sum | cut -d' ' -f1)"
if [ -f "$out/stamp" ] && [ "$(cat "$out/stamp")" = "$stamp" ]; then
  echo "testenv: up to date in $out"
  exit 0
fi
rm -rf "$out"
mkdir -p "$out/bin" "$out/crds"
cd "$here"
export CGO_ENABLED=0 GOFLAGS=-mod=readonly

# Upstream stamps the version at link time; without it /version says v0.0.0,
# which Helm's kubeVersion checks read.
kube=v1.33.13
kube_ldflags="-s -w
  -X k8s.io/component-base/version.gitVersion=$kube
  -X k8s.io/component-base/version.gitMajor=1
  -X k8s.io/component-base/version.gitMinor=33
  -X k8s.io/component-base/version.gitTreeState=clean
  -X k8s.io/component-base/version.buildDate=1970-01-01T00:00:00Z
  -X k8s.io/client-go/pkg/version.gitVersion=$kube
  -X k8s.io/client-go/pkg/version.gitMajor=1
  -X k8s.io/client-go/pkg/version.gitMinor=33"
start=$SECONDS
go build -trimpath -ldflags "$kube_ldflags" -o "$out/bin/" \
  k8s.io/kubernetes/cmd/kube-apiserver \
  k8s.io/kubernetes/cmd/kube-controller-manager \
  k8s.io/kubernetes/cmd/kube-scheduler \
  k8s.io/kubernetes/cmd/kubectl
go build -trimpath -ldflags "-s -w" -o "$out/bin/etcd" go.etcd.io/etcd/server/v3
go build -trimpath -ldflags "-s -w" -o "$out/bin/kwok" sigs.k8s.io/kwok/cmd/kwok
go build -trimpath -ldflags "-s -w -X helm.sh/helm/v3/internal/version.version=v3.18.6" \
  -o "$out/bin/helm" helm.sh/helm/v3/cmd/helm

cd "$here/crds"
gateway="$(go mod download -json sigs.k8s.io/gateway-api | sed -n 's/.*"Dir": "\(.*\)",/\1/p')"
prometheus="$(go mod download -json github.com/prometheus-operator/prometheus-operator | sed -n 's/.*"Dir": "\(.*\)",/\1/p')"
cp "$gateway"/config/crd/experimental/gateway.networking.k8s.io_{gatewayclasses,gateways,httproutes,referencegrants}.yaml "$out/crds/"
cp "$prometheus"/example/prometheus-operator-crd/monitoring.coreos.com_{servicemonitors,podmonitors,prometheusrules}.yaml "$out/crds/"

echo "$stamp" > "$out/stamp"
echo "testenv: built in $((SECONDS - start)) s into $out"
"$out/bin/kube-apiserver" --version
# (not `| head -1`: with pipefail, etcd writing its later lines after head
# exits would fail the build with SIGPIPE)
"$out/bin/etcd" --version | sed -n 1p
"$out/bin/helm" version --short
