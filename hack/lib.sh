# Shared by the hack/ scripts: where caches live, logging, and installing Debian packages.
# shellcheck shell=bash

CACHE_ROOT="${CONTINUITY_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/continuity-operator}"

log() { printf '[%s] %s\n' "${LOG_TAG:-hack}" "$*" >&2; }
die() { log "error: $*"; exit 1; }

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

# Installs the Debian packages that are missing; `apt-get update` only when something is.
ensure_packages() {
  local pkg missing=()
  for pkg in "$@"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  log "installing Debian packages: ${missing[*]}"
  as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

# A TCP port on 127.0.0.1 that is free now (for components that cannot report the port they
# were given, as etcd and the Kubernetes binaries cannot).
free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}

# Runs the command after SECONDS until it succeeds (quietly); returns 1 when time runs out.
wait_up() {
  local deadline=$((SECONDS + $1))
  shift
  until "$@" >/dev/null 2>&1; do
    [ $SECONDS -lt $deadline ] || return 1
    sleep 0.2
  done
}

# kubectl, from Debian when the machine has none.
ensure_kubectl() {
  command -v kubectl >/dev/null || ensure_packages kubernetes-client
}
