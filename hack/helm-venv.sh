#!/usr/bin/env bash
# Provides a Python virtualenv with helm-sdkpy (real Helm as a library; there is no helm
# binary on these machines) and prints its python's path. Cached outside the repo.
set -euo pipefail

readonly HELM_SDKPY_VERSION="0.1.32"
readonly CACHE_ROOT="${CONTINUITY_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/continuity-operator}"
readonly VENV="$CACHE_ROOT/helm-venv-$HELM_SDKPY_VERSION"

# A venv cannot be moved (its scripts hold absolute paths), so it is built in place and only
# counts once the marker is written.
if [ ! -f "$VENV/.complete" ]; then
  echo "[helm-venv] creating $VENV with helm-sdkpy $HELM_SDKPY_VERSION" >&2
  rm -rf "$VENV"
  python3 -m venv "$VENV" || {
    echo "[helm-venv] python3 -m venv failed; installing python3-venv" >&2
    if [ "$(id -u)" = 0 ]; then apt-get install -y -qq python3-venv >/dev/null; else sudo apt-get install -y -qq python3-venv >/dev/null; fi
    python3 -m venv "$VENV"
  }
  # helm-sdkpy declares Python >= 3.12 but runs on 3.11 (checked: lint, install, uninstall).
  "$VENV/bin/pip" install --quiet --disable-pip-version-check --ignore-requires-python \
    "helm-sdkpy==$HELM_SDKPY_VERSION" >&2
  touch "$VENV/.complete"
fi
echo "$VENV/bin/python"
