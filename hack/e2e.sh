#!/usr/bin/env bash
# The end-to-end suite: starts the real single-node cluster (hack/cluster.sh: the project's
# images, the operator installed with its chart), runs the scenarios of tests/e2e against it,
# and takes the cluster down again. On failure, the components' logs, every pod's log, the
# Events and the objects go to a folder named on the last line. Needs root.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=hack/lib.sh
source hack/lib.sh
LOG_TAG=e2e

export CONTINUITY_CLUSTER_DIR="${CONTINUITY_CLUSTER_DIR:-/tmp/continuity-cluster}"
started=$SECONDS

# The browser scenario: Debian's Chromium, driven by playwright-core (npm, cached).
readonly PLAYWRIGHT="$CACHE_ROOT/playwright-core-1.64.1"
command -v node >/dev/null || ensure_packages nodejs npm
ensure_packages chromium
if [ ! -f "$PLAYWRIGHT/.complete" ]; then
  rm -rf "$PLAYWRIGHT"
  mkdir -p "$PLAYWRIGHT"
  (cd "$PLAYWRIGHT" && npm install --silent --no-audit --no-fund --prefix . playwright-core@1.64.1 >&2)
  touch "$PLAYWRIGHT/.complete"
fi
export NODE_PATH="$PLAYWRIGHT/node_modules"
# Screenshots, and on failure every log: kept only when something failed.
CONTINUITY_E2E_ARTIFACTS=$(mktemp -d "${TMPDIR:-/tmp}/continuity-e2e-artifacts.XXXXXX")
export CONTINUITY_E2E_ARTIFACTS

# What an interrupted run left behind goes first.
hack/cluster.sh down
trap 'hack/cluster.sh down' EXIT
# `up` logs to stderr; its only output is the KUBECONFIG line.
kubeconfig=$(hack/cluster.sh up | sed -n 's/^KUBECONFIG=//p')
[ -f "$kubeconfig" ] || die "the cluster did not come up"
log "cluster up after $((SECONDS - started))s"

collect() {
  local artifacts=$CONTINUITY_E2E_ARTIFACTS
  cp -r "$CONTINUITY_CLUSTER_DIR/logs" "$artifacts/components"
  local k=(kubectl --kubeconfig "$kubeconfig")
  "${k[@]}" get all,events,continuitydomains,continuityusers,pvc,pv -A -o wide >"$artifacts/objects.txt" 2>&1 || true
  "${k[@]}" get continuitydomains,continuityusers -A -o yaml >"$artifacts/continuity.yaml" 2>&1 || true
  mkdir -p "$artifacts/pods"
  "${k[@]}" get pods -A --no-headers -o custom-columns=NS:.metadata.namespace,NAME:.metadata.name 2>/dev/null |
    while read -r ns pod; do
      "${k[@]}" -n "$ns" logs "$pod" --all-containers --prefix >"$artifacts/pods/$ns-$pod.log" 2>&1 || true
    done
  echo "$artifacts"
}

if ! CONTINUITY_TEST_KUBECONFIG="$kubeconfig" cargo test --locked --test e2e -- --test-threads 2 --nocapture; then
  log "failed after $((SECONDS - started))s; logs, Events and objects in: $(collect)"
  exit 1
fi
rm -rf "$CONTINUITY_E2E_ARTIFACTS"
log "all scenarios passed in $((SECONDS - started))s"
