#!/usr/bin/env bash
# Provides a Python virtualenv with helm-sdkpy (real Helm as a library; there is no helm
# binary on these machines) and prints its python's path. Cached outside the repo.
set -euo pipefail
# shellcheck source=hack/lib.sh
source "$(dirname "$0")/lib.sh"
LOG_TAG=helm-venv

readonly HELM_SDKPY_VERSION="0.1.32"
readonly VENV="$CACHE_ROOT/helm-venv-$HELM_SDKPY_VERSION"

mkdir -p "$CACHE_ROOT"
# Parallel callers (tests) wait for the one that builds the venv.
exec 9>"$VENV.lock"
flock 9
# A venv cannot be moved (its scripts hold absolute paths), so it is built in place and only
# counts once the marker is written.
if [ ! -f "$VENV/.complete" ]; then
  log "creating $VENV with helm-sdkpy $HELM_SDKPY_VERSION"
  ensure_packages python3-venv
  rm -rf "$VENV"
  python3 -m venv "$VENV"
  # helm-sdkpy declares Python >= 3.12 but runs on 3.11 (checked: lint, install, uninstall).
  "$VENV/bin/pip" install --quiet --disable-pip-version-check --ignore-requires-python \
    "helm-sdkpy==$HELM_SDKPY_VERSION" >&2
  touch "$VENV/.complete"
fi
echo "$VENV/bin/python"
