#!/usr/bin/env bash
# Runs the operator in the foreground (Ctrl-C stops it).
#
# With $KUBECONFIG set, against that cluster. Otherwise against a local control plane
# (etcd + kube-apiserver + kube-controller-manager built from Debian's Kubernetes sources,
# cached, started on loopback); it keeps running after the operator stops, so you can look
# around, and `hack/control-plane.sh stop <dir>` (printed below) ends it.
#
# Either way the CRDs are installed and the examples applied in the namespace
# ${CONTINUITY_DEMO_NAMESPACE:-continuity-demo} (CONTINUITY_SKIP_EXAMPLES=1 skips them), so
# `kubectl get continuitydomains,continuityusers -A` shows statuses at once.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=hack/lib.sh
source hack/lib.sh
LOG_TAG=run

readonly DEMO_NAMESPACE="${CONTINUITY_DEMO_NAMESPACE:-continuity-demo}"
readonly HTTP_PORT="${HTTP_PORT:-8080}"

ensure_kubectl

log "building the operator"
cargo build --locked --quiet --bin continuity-operator

stop_hint=""
if [ -z "${KUBECONFIG:-}" ]; then
  cluster="$CACHE_ROOT/local-cluster"
  if hack/control-plane.sh status "$cluster"; then
    log "reusing the local control plane in $cluster"
  else
    hack/control-plane.sh stop "$cluster" 2>/dev/null || true
    rm -rf "$cluster"
    hack/control-plane.sh start "$cluster"
  fi
  export KUBECONFIG="$cluster/kubeconfig"
  stop_hint="hack/control-plane.sh stop $cluster"
fi

# Client-side apply: clusters before 1.25 drop the CRDs' CEL rules (the operator enforces
# them itself), and kubectl's client-side validation there does not know the field.
kubectl apply --validate=false -f crds/ >/dev/null
kubectl wait --for condition=Established --timeout=60s \
  crd/continuitydomains.continuity.mailops.io crd/continuityusers.continuity.mailops.io >/dev/null
log "CRDs installed"

if [ "${CONTINUITY_SKIP_EXAMPLES:-}" != 1 ]; then
  kubectl create namespace "$DEMO_NAMESPACE" --dry-run=client -o yaml | kubectl apply -f - >/dev/null
  # The provider grants the namespace the examples' mail domains.
  kubectl annotate --overwrite namespace "$DEMO_NAMESPACE" \
    continuity.mailops.io/allowed-domains=example.com,shop.example.org,corp.example.net >/dev/null
  kubectl apply -n "$DEMO_NAMESPACE" -f examples/ >/dev/null
  log "examples applied in namespace $DEMO_NAMESPACE"
fi

cat >&2 <<HINT

In another terminal:
  export KUBECONFIG=$KUBECONFIG
  kubectl get continuitydomains,continuityusers -n $DEMO_NAMESPACE
  curl -s localhost:$HTTP_PORT/metrics
${stop_hint:+Stop the local control plane when done: $stop_hint
}
HINT
exec cargo run --locked --quiet --bin continuity-operator -- --http-addr "127.0.0.1:$HTTP_PORT"
