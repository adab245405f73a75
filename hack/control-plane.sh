#!/usr/bin/env bash
# A genuine Kubernetes control plane (etcd + kube-apiserver + kube-controller-manager) on
# loopback, built from Debian bookworm's `kubernetes` source package because these machines
# reach no container registry and no GitHub. See README.md, "Test control plane".
#
#   hack/control-plane.sh build                 build once, cache the binaries; print the bin dir
#   hack/control-plane.sh build-node            the same for a node's (kubelet, kube-scheduler,
#                                               kube-proxy, pause), used by hack/cluster.sh
#   hack/control-plane.sh start DIR [--watch-pid PID] [--no-controller-manager]
#                                               start on free loopback ports; writes DIR/kubeconfig,
#                                               DIR/env and an audit log of every write request
#                                               (DIR/logs/audit.log); with --watch-pid, stops itself
#                                               when PID exits (so a crashed test run leaves nothing);
#                                               without a controller manager, no pods are made (the
#                                               scale benchmark sets its workloads' status itself)
#   hack/control-plane.sh stop DIR              stop what `start DIR` started, by PID
#   hack/control-plane.sh status DIR            exit 0 when that control plane runs and answers
#
# The cache lives outside the repo, keyed by the Debian source version, so a second run on the
# same machine skips the ~5 minute build:
#   ${CONTINUITY_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/continuity-operator}/control-plane/<version>/
set -euo pipefail

# shellcheck source=hack/lib.sh
source "$(dirname "$0")/lib.sh"
LOG_TAG=control-plane

readonly K8S_DEB_VERSION="1.20.5+really1.20.2-1.1+deb12u1"
readonly K8S_UPSTREAM_VERSION="v1.20.2"
readonly CACHE_DIR="$CACHE_ROOT/control-plane/$K8S_DEB_VERSION"
readonly BIN_DIR="$CACHE_DIR/bin"
readonly BINARIES=(etcd kube-apiserver kube-controller-manager)
readonly NODE_BIN_DIR="$CACHE_DIR/node-bin"
readonly NODE_BINARIES=(kubelet kube-scheduler kube-proxy pause)

cached() {
  local dir=$1 b
  shift
  for b in "$@"; do [ -x "$dir/$b" ] || return 1; done
}

# Downloads Debian's kubernetes source package into WORK/tree and prepares it for `make`.
prepare_tree() {
  local work=$1
  ensure_packages golang-1.19-go golang-1.19-src rsync etcd-server dpkg-dev make curl openssl python3 \
    golang-github-modern-go-reflect2-dev golang-github-json-iterator-go-dev
  rm -rf "${work:?}"
  mkdir -p "$work/apt/lists/partial" "$work/apt/cache/archives/partial"
  # A private apt configuration, so the system's sources stay untouched.
  printf '%s\n' "deb-src http://deb.debian.org/debian bookworm main" \
    "deb-src http://deb.debian.org/debian-security bookworm-security main" >"$work/apt/sources.list"
  local apt_opts=(-o "Dir::Etc::SourceList=$work/apt/sources.list" -o Dir::Etc::SourceParts=/dev/null
    -o "Dir::State::Lists=$work/apt/lists" -o "Dir::Cache=$work/apt/cache" -o APT::Sandbox::User=root)
  log "downloading Debian source package kubernetes $K8S_DEB_VERSION"
  apt-get "${apt_opts[@]}" update -qq >/dev/null
  (cd "$work" && apt-get "${apt_opts[@]}" source --download-only "kubernetes=$K8S_DEB_VERSION" >/dev/null 2>&1) ||
    die "apt-get source kubernetes=$K8S_DEB_VERSION failed"
  # The .dsc's hashes were checked by apt against the signed Release file; dpkg-source's own
  # signature check only warns about a missing keyring.
  (cd "$work" && dpkg-source -x ./*.dsc tree >"$work/dpkg-source.log" 2>&1) ||
    { cat "$work/dpkg-source.log" >&2; die "dpkg-source -x failed"; }

  local tree="$work/tree"
  # The vendored reflect2 1.0.1 crashes under Go >= 1.18 ("fatal error: fault" in
  # runtime.mapiterinit on the first custom-object create); Debian's packaged 1.0.2 and
  # json-iterator 1.1.12 are the fixed versions.
  local pkg
  for pkg in github.com/modern-go/reflect2 github.com/json-iterator/go; do
    rm -rf "${tree:?}/vendor/$pkg"
    mkdir -p "$tree/vendor/$pkg"
    cp -r "/usr/share/gocode/src/$pkg/." "$tree/vendor/$pkg/"
  done
  # Without a git checkout the build would call itself v0.0.0; tell it what it is.
  printf '%s\n' "KUBE_GIT_COMMIT='0000000000000000000000000000000000000000'" "KUBE_GIT_TREE_STATE='clean'" \
    "KUBE_GIT_VERSION='$K8S_UPSTREAM_VERSION'" "KUBE_GIT_MAJOR='1'" "KUBE_GIT_MINOR='20'" >"$work/version"
  mkdir -p "$work/gopath/src/k8s.io"
  ln -sfn "$tree" "$work/gopath/src/k8s.io/kubernetes"
}

# Builds the commands named (each `cmd/<name>`) in the prepared tree of WORK.
make_commands() {
  local work=$1
  shift
  local what
  what=$(printf 'cmd/%s ' "$@")
  log "building $* (a few minutes on 2 cores)"
  (
    cd "$work/gopath/src/k8s.io/kubernetes"
    export GOROOT=/usr/lib/go-1.19 GOPATH="$work/gopath" GOPROXY=off CGO_ENABLED=0 \
      GOCACHE="$work/gocache" HOME="$work" KUBE_GIT_VERSION_FILE="$work/version"
    export PATH="$GOROOT/bin:$PATH"
    make WHAT="$what" >"$work/build.log" 2>&1
  ) || { tail -n 40 "$work/build.log" >&2; die "build failed (log: $work/build.log)"; }
}

# Moves STAGED to DEST in one step: a half-built cache never looks complete.
publish() {
  local staged=$1 dest=$2
  rm -rf "${dest:?}"
  mv "$staged" "$dest"
  log "cached in $dest"
}

# Holds the build lock until the script exits: two scripts building at once would share a tree.
lock_builds() {
  mkdir -p "$CACHE_DIR"
  exec 8>"$CACHE_DIR/build.lock"
  flock 8
}

build() {
  if cached "$BIN_DIR" "${BINARIES[@]}"; then
    echo "$BIN_DIR"
    return 0
  fi
  lock_builds
  if cached "$BIN_DIR" "${BINARIES[@]}"; then
    echo "$BIN_DIR"
    return 0
  fi
  local work="$CACHE_DIR/work" staged="$CACHE_DIR/bin.partial"
  prepare_tree "$work"
  make_commands "$work" kube-apiserver kube-controller-manager
  rm -rf "$staged"
  mkdir -p "$staged"
  cp "$work/tree/_output/bin/kube-apiserver" "$work/tree/_output/bin/kube-controller-manager" "$staged/"
  cp /usr/bin/etcd "$staged/"
  publish "$staged" "$BIN_DIR"
  rm -rf "$work"
  echo "$BIN_DIR"
}

# A node's binaries, for hack/cluster.sh: kubelet, kube-scheduler and kube-proxy from the same
# tree, and the sandbox image's pause program, compiled static from the tree's own source.
build_node() {
  if cached "$NODE_BIN_DIR" "${NODE_BINARIES[@]}"; then
    echo "$NODE_BIN_DIR"
    return 0
  fi
  lock_builds
  if cached "$NODE_BIN_DIR" "${NODE_BINARIES[@]}"; then
    echo "$NODE_BIN_DIR"
    return 0
  fi
  ensure_packages gcc libc6-dev
  local work="$CACHE_DIR/node-work" staged="$CACHE_DIR/node-bin.partial"
  prepare_tree "$work"
  make_commands "$work" kubelet kube-scheduler kube-proxy
  rm -rf "$staged"
  mkdir -p "$staged"
  cp "$work/tree/_output/bin/kubelet" "$work/tree/_output/bin/kube-scheduler" \
    "$work/tree/_output/bin/kube-proxy" "$staged/"
  gcc -Os -static -o "$staged/pause" "$work/tree/build/pause/linux/pause.c" || die "compiling pause failed"
  publish "$staged" "$NODE_BIN_DIR"
  rm -rf "$work"
  echo "$NODE_BIN_DIR"
}

start() {
  local dir="" watch_pid="" controller_manager=1
  while [ $# -gt 0 ]; do
    case "$1" in
      --watch-pid) watch_pid="$2"; shift 2 ;;
      --no-controller-manager) controller_manager=0; shift ;;
      *) dir="$1"; shift ;;
    esac
  done
  [ -n "$dir" ] || die "usage: $0 start DIR [--watch-pid PID] [--no-controller-manager]"
  build >/dev/null
  ensure_packages curl openssl python3
  # The admin token, the keys and etcd's data are for this user only.
  umask 077
  mkdir -p "$dir"
  dir="$(cd "$dir" && pwd)"
  [ ! -s "$dir/pids" ] || die "$dir already holds a running control plane; stop it first"
  mkdir -p "$dir/etcd" "$dir/certs" "$dir/logs"

  local etcd_port etcd_peer_port api_port kcm_port
  etcd_port=$(free_port)
  etcd_peer_port=$(free_port)
  api_port=$(free_port)
  kcm_port=$(free_port)
  local token
  token=$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')
  echo "$token,admin,admin,system:masters" >"$dir/tokens.csv"
  openssl genrsa -out "$dir/certs/sa.key" 2048 2>/dev/null
  # Every write request, by whom (user agent), to what: tests and the scale benchmark count
  # the operator's writes from outside it, in DIR/logs/audit.log (JSON lines).
  cat >"$dir/audit-policy.yaml" <<'POLICY'
apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: ["RequestReceived"]
rules:
- level: None
  verbs: ["get", "list", "watch"]
- level: Metadata
POLICY

  "$BIN_DIR/etcd" --name=cp --data-dir="$dir/etcd" \
    --listen-client-urls="http://127.0.0.1:$etcd_port" --advertise-client-urls="http://127.0.0.1:$etcd_port" \
    --listen-peer-urls="http://127.0.0.1:$etcd_peer_port" --initial-advertise-peer-urls="http://127.0.0.1:$etcd_peer_port" \
    --initial-cluster="cp=http://127.0.0.1:$etcd_peer_port" \
    >"$dir/logs/etcd.log" 2>&1 &
  echo $! >>"$dir/pids"

  "$BIN_DIR/kube-apiserver" --etcd-servers="http://127.0.0.1:$etcd_port" \
    --bind-address=127.0.0.1 --advertise-address=127.0.0.1 --secure-port="$api_port" --insecure-port=0 \
    --cert-dir="$dir/certs" --token-auth-file="$dir/tokens.csv" --authorization-mode=RBAC \
    --disable-admission-plugins=ServiceAccount \
    --service-account-issuer=https://kubernetes.default.svc \
    --service-account-key-file="$dir/certs/sa.key" --service-account-signing-key-file="$dir/certs/sa.key" \
    --service-cluster-ip-range=10.96.0.0/16 \
    --audit-policy-file="$dir/audit-policy.yaml" --audit-log-path="$dir/logs/audit.log" \
    --audit-log-format=json --audit-log-maxsize=1024 --audit-log-maxbackup=1 \
    >"$dir/logs/kube-apiserver.log" 2>&1 &
  echo $! >>"$dir/pids"

  local server="https://127.0.0.1:$api_port"
  wait_up 120 curl -fsS --cacert "$dir/certs/apiserver.crt" \
    -H "Authorization: Bearer $token" "$server/readyz" ||
    { tail -n 30 "$dir/logs/kube-apiserver.log" >&2; stop "$dir"; die "kube-apiserver did not become ready"; }
  log "kube-apiserver is up"

  cat >"$dir/kubeconfig" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: local
  cluster:
    server: $server
    certificate-authority: $dir/certs/apiserver.crt
users:
- name: admin
  user:
    token: $token
contexts:
- name: local
  context:
    cluster: local
    user: admin
current-context: local
EOF
  chmod 600 "$dir/kubeconfig"

  if [ "$controller_manager" = 1 ]; then
    "$BIN_DIR/kube-controller-manager" --kubeconfig="$dir/kubeconfig" \
      --authentication-kubeconfig="$dir/kubeconfig" --authorization-kubeconfig="$dir/kubeconfig" \
      --bind-address=127.0.0.1 --secure-port="$kcm_port" --port=0 --leader-elect=false \
      --service-account-private-key-file="$dir/certs/sa.key" --use-service-account-credentials=false \
      --controllers='*,-serviceaccount-token' \
      >"$dir/logs/kube-controller-manager.log" 2>&1 &
    echo $! >>"$dir/pids"
  fi

  cat >"$dir/env" <<EOF
export KUBECONFIG=$dir/kubeconfig
EOF
  if [ -n "$watch_pid" ]; then
    # Detached from our stdio so a caller reading our output is not held open by it.
    nohup bash -c "while kill -0 $watch_pid 2>/dev/null && [ -s '$dir/pids' ]; do sleep 1; done; '$0' stop '$dir'" \
      >/dev/null 2>&1 &
  fi
  log "running: KUBECONFIG=$dir/kubeconfig (logs in $dir/logs)"
}

# The PIDs recorded by `start DIR` that still run one of our binaries. A PID file can outlive
# its processes (a reboot); a recycled PID belongs to someone else and must not be touched.
our_pids() {
  local pid exe
  [ -f "$1/pids" ] || return 0
  for pid in $(cat "$1/pids"); do
    exe=$(readlink "/proc/$pid/exe" 2>/dev/null) || continue
    case "$exe" in "$BIN_DIR"/*) echo "$pid" ;; esac
  done
}

stop() {
  local dir="${1:?usage: $0 stop DIR}" pid pids
  [ -f "$dir/pids" ] || return 0
  # Reverse order: controller-manager, apiserver, then etcd.
  pids=$(our_pids "$dir" | tac)
  for pid in $pids; do kill "$pid" 2>/dev/null || true; done
  for pid in $pids; do
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null || true
  done
  rm -f "$dir/pids"
  log "stopped ($dir)"
}

status() {
  local dir="${1:?usage: $0 status DIR}"
  [ -s "$dir/pids" ] && [ -f "$dir/kubeconfig" ] || return 1
  [ "$(our_pids "$dir" | wc -l)" -eq "$(wc -l <"$dir/pids")" ] || return 1
  local server token
  server=$(sed -n 's/^ *server: //p' "$dir/kubeconfig")
  token=$(sed -n 's/^ *token: //p' "$dir/kubeconfig")
  curl -fsS --max-time 5 --cacert "$dir/certs/apiserver.crt" -H "Authorization: Bearer $token" "$server/readyz" >/dev/null
}

case "${1:-}" in
  build) build ;;
  build-node) build_node ;;
  start) shift; start "$@" ;;
  stop) shift; stop "$@" ;;
  status) shift; status "$@" ;;
  *) die "usage: $0 build | build-node | start DIR [--watch-pid PID] [--no-controller-manager] | stop DIR | status DIR" ;;
esac
