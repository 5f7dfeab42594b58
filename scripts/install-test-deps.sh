#!/usr/bin/env bash
# Installs what `make test` needs on a fresh Debian machine (run as root):
# Debian packages (Chromium for the browser test, redis-server and nginx for the
# scale-out tests, prometheus for the alert and dashboard tests, native TLS), then the pinned npm
# packages of the JS test client. Already-present tools are left alone.
set -euo pipefail
cd "$(dirname "$0")/.."

missing=()
command -v chromium >/dev/null || missing+=(chromium)
command -v redis-server >/dev/null || missing+=(redis-server)
command -v redis-cli >/dev/null || missing+=(redis-tools)
# The alert rule tests (promtool) and the dashboard test (a real Prometheus server).
command -v promtool >/dev/null && command -v prometheus >/dev/null || missing+=(prometheus)
[ -x /usr/sbin/nginx ] || command -v nginx >/dev/null || missing+=(nginx)
command -v node >/dev/null || missing+=(nodejs)
command -v npm >/dev/null || missing+=(npm)
command -v pkg-config >/dev/null || missing+=(pkg-config)
# scripts/isolated: a network namespace of the tests' own (unshare is util-linux).
command -v ip >/dev/null || missing+=(iproute2)
command -v unshare >/dev/null || missing+=(util-linux)
pkg-config --exists openssl 2>/dev/null || missing+=(libssl-dev)

if ((${#missing[@]})); then
  echo "installing Debian packages: ${missing[*]}"
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

# The Kubernetes OpenAPI schemas (1.25-1.37), offline, for the operator's rendered objects.
command -v kubernetes-validate >/dev/null || python3 -m pip install --quiet --root-user-action=ignore kubernetes-validate==1.37.0

# Helm's Go library (Helm v4 SDK, bundled native library, works offline) for
# rendering and linting the Helm chart without a helm binary (scripts/helm.py).
python3 -c 'import importlib.metadata as m; assert m.version("helm-python-sdk") == "0.2.2"' 2>/dev/null \
  || python3 -m pip install --quiet --root-user-action=ignore helm-python-sdk==0.2.2

# Go builds the test control plane (testenv/build.sh): Debian's golang is older
# than the Kubernetes 1.33 modules need, so it is not installed from here.
command -v go >/dev/null || { echo "make test needs Go 1.24 or newer on PATH (https://go.dev/dl) to build testenv/" >&2; exit 1; }

(cd tests/js && npm ci --no-audit --no-fund --loglevel=error)
