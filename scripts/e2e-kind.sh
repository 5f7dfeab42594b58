#!/usr/bin/env bash
# End-to-end on a real (local) Kubernetes: kind cluster, both images built and
# loaded, the Helm chart installed, a ChatCluster applied and waited for, load
# driven through it, and the autoscaler watched scaling up and back down.
#
# NOT RUN BY CI, AND NEVER RUN ON THIS PROJECT'S MACHINES: they have no Docker
# engine and no network beyond package registries. This script is for a
# developer machine with Docker. Nothing in this repository claims it passed.
#
# Needs: docker, kind, kubectl, helm (v3.8+ or v4), node + `npm ci` in tests/js
# (the JS load fallback); optional: the chatscale-load generator (load/ crate),
# used when `cargo build -p chatscale-load` works in this checkout.
#
# Usage: scripts/e2e-kind.sh            # create, test, delete the cluster
#        KEEP=1 scripts/e2e-kind.sh     # leave the cluster running afterwards
# Tunables: CLUSTER (chatscale-e2e), CONNECTIONS (600), LOAD_SECS (240),
#           SCALE_TIMEOUT (300 s per phase).
set -euo pipefail
cd "$(dirname "$0")/.."

CLUSTER=${CLUSTER:-chatscale-e2e}
CONNECTIONS=${CONNECTIONS:-600}
LOAD_SECS=${LOAD_SECS:-240}
SCALE_TIMEOUT=${SCALE_TIMEOUT:-300}
TAG=e2e
NS_OPERATOR=chatscale-system
NS=chat-e2e
NAME=e2e
MIN=2

for tool in docker kind kubectl helm node; do
  command -v "$tool" >/dev/null || { echo "e2e-kind: $tool is required" >&2; exit 2; }
done
docker info >/dev/null 2>&1 || { echo "e2e-kind: no Docker engine reachable" >&2; exit 2; }

pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  if [ -z "${KEEP:-}" ]; then kind delete cluster --name "$CLUSTER" >/dev/null 2>&1 || true; fi
}
trap cleanup EXIT

step() { printf '\n== %s\n' "$*"; }

# Polls until the command's output satisfies the test, or fails after the timeout.
wait_for() { # description timeout-seconds command...
  local what=$1 timeout=$2; shift 2
  local deadline=$((SECONDS + timeout))
  until "$@"; do
    if ((SECONDS >= deadline)); then echo "e2e-kind: timed out waiting for $what" >&2; return 1; fi
    sleep 5
  done
}

replicas() { kubectl -n "$NS" get chatcluster "$NAME" -o jsonpath='{.spec.replicas}'; }
scaled_above_min() { local r; r=$(replicas); echo "  spec.replicas=$r"; [ "${r:-0}" -gt "$MIN" ]; }
back_at_min() { local r; r=$(replicas); echo "  spec.replicas=$r"; [ "${r:-0}" -eq "$MIN" ]; }

step "kind cluster $CLUSTER"
kind get clusters | grep -qx "$CLUSTER" || kind create cluster --name "$CLUSTER" --wait 120s

step "images (Dockerfile.operator, Dockerfile.chat-server), loaded into kind"
docker build -f Dockerfile.operator -t "chatscale/chatscale-operator:$TAG" .
docker build -f Dockerfile.chat-server -t "chatscale/chat-server:$TAG" .
kind load docker-image --name "$CLUSTER" "chatscale/chatscale-operator:$TAG" "chatscale/chat-server:$TAG"

step "helm install charts/chatscale-operator"
helm upgrade --install chatscale-operator charts/chatscale-operator \
  --namespace "$NS_OPERATOR" --create-namespace \
  --set image.repository=chatscale/chatscale-operator --set image.tag="$TAG" \
  --set image.pullPolicy=Never --wait --timeout 5m
kubectl -n "$NS_OPERATOR" get pods -o wide
wait_for "a leader" 60 kubectl -n "$NS_OPERATOR" get lease chatscale-operator

step "ChatCluster $NS/$NAME (examples/minimal.yaml, local image, small targets)"
kubectl create namespace "$NS" --dry-run=client -o yaml | kubectl apply -f -
# The minimal example with this run's image and targets small enough for a laptop.
kubectl apply -f - <<YAML
apiVersion: chatscale.dev/v1alpha1
kind: ChatCluster
metadata:
  name: $NAME
  namespace: $NS
spec:
  image: chatscale/chat-server:$TAG
  routing:
    host: chat.e2e.localhost
  resources:
    requests: {cpu: 50m, memory: 64Mi}
    limits: {memory: 256Mi}
  autoscaling:
    enabled: true
    minReplicas: $MIN
    maxReplicas: 6
    targetConnectionsPerPod: 100
    intervalSeconds: 5
    behavior:
      scaleDown:
        stabilizationWindowSeconds: 30
        policies: [{type: Percent, value: 100, periodSeconds: 15}]
  drain:
    timeoutSeconds: 60
    rate: 100
YAML
# The chat pods run the local image that kind loaded (pull policy of a :e2e tag is IfNotPresent).
kubectl -n "$NS" wait "chatcluster/$NAME" --for=condition=Ready --timeout=5m
kubectl -n "$NS" get chatcluster,deploy,statefulset,svc,ingress,pdb,networkpolicy

# A port-forward reaches one chat pod: the total connection count still drives
# the autoscaler (desired = connections / targetConnectionsPerPod).
step "load: $CONNECTIONS connections for ${LOAD_SECS}s through a port-forward"
kubectl -n "$NS" port-forward "svc/$NAME-chat" 3000:80 >/dev/null &
pids+=($!)
wait_for "the port-forward" 30 bash -c 'exec 3<>/dev/tcp/127.0.0.1/3000' 2>/dev/null
if cargo build -q --release -p chatscale-load --locked 2>/dev/null; then
  # The project's load generator (load/ crate); its flags may change while it is built.
  target/release/chatscale-load --url http://127.0.0.1:3000 --connections "$CONNECTIONS" \
    --rooms 20 --rate 20 --hold-secs "$LOAD_SECS" --max-secs $((LOAD_SECS + 120)) &
else
  echo "  chatscale-load not available; using the official socket.io-client from tests/js"
  (cd tests/js && { [ -d node_modules ] || npm ci --no-audit --no-fund --loglevel=error; })
  node --input-type=module - "$CONNECTIONS" "$LOAD_SECS" <<'JS' &
import { createRequire } from "node:module";
const require = createRequire(`${process.cwd()}/tests/js/package.json`);
const { io } = require("socket.io-client");
const [count, seconds] = process.argv.slice(2).map(Number);
const sockets = [];
for (let i = 0; i < count; i++) {
  const s = io("http://127.0.0.1:3000", { transports: ["websocket"], reconnection: true });
  s.on("connect", () => s.emit("join", { room: `room-${i % 20}` }, () => {}));
  sockets.push(s);
  if (i % 50 === 49) await new Promise((r) => setTimeout(r, 200));
}
setTimeout(() => { sockets.forEach((s) => s.close()); process.exit(0); }, seconds * 1000);
JS
fi
pids+=($!)

step "scale up: spec.replicas above $MIN"
wait_for "a scale-up" "$SCALE_TIMEOUT" scaled_above_min
kubectl -n "$NS" get chatcluster "$NAME"

step "load stops; scale down (drained first) back to $MIN"
kill "${pids[-1]}" 2>/dev/null || true
wait_for "the scale-down" "$SCALE_TIMEOUT" back_at_min
kubectl -n "$NS" get chatcluster "$NAME"
kubectl -n "$NS" get events --field-selector involvedObject.kind=ChatCluster

step "e2e-kind: scaled up under load and back down after it"
