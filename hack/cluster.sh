#!/usr/bin/env bash
# A real single-node Kubernetes cluster for the end-to-end tests: etcd, kube-apiserver,
# kube-controller-manager, kube-scheduler, kubelet, kube-proxy and containerd, a CNI bridge, a
# cluster DNS for Services (hack/cluster-dns.py), hostPath PersistentVolumes, the project's
# images (hack/images.sh), and the operator installed with its chart (release `continuity`,
# namespace `continuity-system`). Pods reach nothing beyond this machine. Needs root.
#
#   hack/cluster.sh up       start it (reusing cached builds); the last line is KUBECONFIG=<path>
#   hack/cluster.sh down     stop it and remove every process, mount, interface, route,
#                            iptables rule and file it made
#   hack/cluster.sh status   exit 0 when it runs and its node is Ready
#
# State lives in $CONTINUITY_CLUSTER_DIR (default /tmp/continuity-cluster); builds are cached
# outside the repo (see hack/control-plane.sh and hack/images.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=hack/lib.sh
source hack/lib.sh
LOG_TAG=cluster

readonly DIR="${CONTINUITY_CLUSTER_DIR:-/tmp/continuity-cluster}"
readonly BRIDGE=cnt0
readonly NODE_IP=10.244.0.1
readonly POD_CIDR=10.244.0.0/24
readonly SERVICE_CIDR=10.96.0.0/16
readonly API_PORT=6443
readonly NODE_NAME=continuity-node
readonly DNS_VENV="$CACHE_ROOT/cluster-dns-venv-0.9.26"
readonly VOLUMES=12
readonly RULE_COMMENT=continuity-cluster
# The chart's values: this cluster's networks; the tests' primaries and relays run as pods in
# them, so primaries may be there too.
readonly OPERATOR_VALUES='{"tenancy":{"clusterNetworks":["10.96.0.0/16","10.244.0.0/24"],"allowedPrimaryNetworks":["10.96.0.0/16","10.244.0.0/24"]}}'

# Every process started, in order; `down` stops them in reverse.
spawn() {
  local name=$1
  shift
  "$@" >"$DIR/logs/$name.log" 2>&1 &
  echo "$! $name" >>"$DIR/pids"
}

# Waits until the command succeeds, or stops `up` with where to look.
wait_until() {
  local what=$1 seconds=$2
  shift 2
  wait_up "$seconds" "$@" || die "$what did not come up in ${seconds}s (logs in $DIR/logs)"
  log "$what is up (${SECONDS}s after start)"
}

outside_interface() { ip route show default | awk '{print $5; exit}'; }

kubectl_() { "$KUBECTL" --kubeconfig "$DIR/kubeconfig" "$@"; }

certificates() {
  local certs="$DIR/certs"
  mkdir -p "$certs"
  openssl req -x509 -newkey rsa:2048 -nodes -days 30 -subj "/CN=continuity-test-ca" \
    -keyout "$certs/ca.key" -out "$certs/ca.crt" 2>/dev/null
  openssl req -newkey rsa:2048 -nodes -subj "/CN=kube-apiserver" \
    -keyout "$certs/apiserver.key" -out "$certs/apiserver.csr" 2>/dev/null
  printf 'subjectAltName=IP:%s,IP:10.96.0.1,IP:127.0.0.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local\n' \
    "$NODE_IP" >"$certs/san.cnf"
  openssl x509 -req -in "$certs/apiserver.csr" -CA "$certs/ca.crt" -CAkey "$certs/ca.key" -CAcreateserial \
    -days 30 -extfile "$certs/san.cnf" -out "$certs/apiserver.crt" 2>/dev/null
  openssl genrsa -out "$certs/sa.key" 2048 2>/dev/null
}

network() {
  local outside
  outside=$(outside_interface)
  ip link add "$BRIDGE" type bridge
  ip addr add "$NODE_IP/24" dev "$BRIDGE"
  ip link set "$BRIDGE" up
  # Service addresses are only ever translated by kube-proxy; never let them leave by the
  # default route.
  ip route add "$SERVICE_CIDR" dev "$BRIDGE"
  sysctl -qw net.ipv4.ip_forward=1 net.bridge.bridge-nf-call-iptables=1
  # Pods reach nothing beyond this machine.
  iptables -w -I FORWARD -s "$POD_CIDR" -o "$outside" -m comment --comment "$RULE_COMMENT" -j DROP
  echo "$outside" >"$DIR/outside-interface"
  mkdir -p "$DIR/cni/conf" "$DIR/cni/ipam"
  cat >"$DIR/cni/conf/10-continuity.conflist" <<EOF
{
  "cniVersion": "0.4.0",
  "name": "continuity",
  "plugins": [
    {
      "type": "bridge", "bridge": "$BRIDGE", "isGateway": true, "ipMasq": false, "hairpinMode": true,
      "ipam": {
        "type": "host-local", "dataDir": "$DIR/cni/ipam",
        "ranges": [[{ "subnet": "$POD_CIDR", "rangeStart": "10.244.0.10", "gateway": "$NODE_IP" }]],
        "routes": [{ "dst": "0.0.0.0/0" }]
      }
    }
  ]
}
EOF
}

containerd_() {
  local base="$DIR/containerd"
  mkdir -p "$base"
  cat >"$base/config.toml" <<EOF
version = 2
root = "$base/root"
state = "$base/state"
[grpc]
  address = "$base/containerd.sock"
[plugins."io.containerd.internal.v1.opt"]
  path = "$base/opt"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "localhost/continuity/pause:3.4"
  restrict_oom_score_adj = true
  disable_apparmor = true
  netns_mounts_under_state_dir = true
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
        Root = "$base/runc"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "$DIR/cni/conf"
EOF
  spawn containerd containerd --config "$base/config.toml"
  wait_until containerd 30 ctr --address "$base/containerd.sock" version
}

control_plane() {
  local bin=$1 etcd_port etcd_peer_port
  etcd_port=$(free_port)
  etcd_peer_port=$(free_port)
  local token
  token=$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')
  echo "$token" >"$DIR/token"
  echo "$token,admin,admin,system:masters" >"$DIR/tokens.csv"
  spawn etcd "$bin/etcd" --name=node --data-dir="$DIR/etcd" \
    --listen-client-urls="http://127.0.0.1:$etcd_port" --advertise-client-urls="http://127.0.0.1:$etcd_port" \
    --listen-peer-urls="http://127.0.0.1:$etcd_peer_port" --initial-advertise-peer-urls="http://127.0.0.1:$etcd_peer_port" \
    --initial-cluster="node=http://127.0.0.1:$etcd_peer_port"
  spawn kube-apiserver "$bin/kube-apiserver" --etcd-servers="http://127.0.0.1:$etcd_port" \
    --bind-address="$NODE_IP" --advertise-address="$NODE_IP" --secure-port="$API_PORT" --insecure-port=0 \
    --tls-cert-file="$DIR/certs/apiserver.crt" --tls-private-key-file="$DIR/certs/apiserver.key" \
    --token-auth-file="$DIR/tokens.csv" --authorization-mode=RBAC \
    --service-account-issuer=https://kubernetes.default.svc \
    --service-account-key-file="$DIR/certs/sa.key" --service-account-signing-key-file="$DIR/certs/sa.key" \
    --service-cluster-ip-range="$SERVICE_CIDR" --kubelet-preferred-address-types=InternalIP,Hostname \
    --allow-privileged=true
  local server="https://$NODE_IP:$API_PORT"
  cat >"$DIR/kubeconfig" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: node
  cluster:
    server: $server
    certificate-authority: $DIR/certs/ca.crt
users:
- name: admin
  user:
    token: $token
contexts:
- name: node
  context:
    cluster: node
    user: admin
current-context: node
EOF
  chmod 600 "$DIR/kubeconfig"
  wait_until kube-apiserver 120 curl -fsS --cacert "$DIR/certs/ca.crt" -H "Authorization: Bearer $token" "$server/readyz"
  spawn kube-controller-manager "$bin/kube-controller-manager" --kubeconfig="$DIR/kubeconfig" \
    --authentication-kubeconfig="$DIR/kubeconfig" --authorization-kubeconfig="$DIR/kubeconfig" \
    --bind-address=127.0.0.1 --secure-port="$(free_port)" --port=0 --leader-elect=false \
    --service-account-private-key-file="$DIR/certs/sa.key" --root-ca-file="$DIR/certs/ca.crt" \
    --use-service-account-credentials=false
}

node() {
  local bin=$1
  spawn kube-scheduler "$bin/kube-scheduler" --kubeconfig="$DIR/kubeconfig" \
    --authentication-kubeconfig="$DIR/kubeconfig" --authorization-kubeconfig="$DIR/kubeconfig" \
    --bind-address=127.0.0.1 --secure-port="$(free_port)" --port=0 --leader-elect=false
  # Pods resolve cluster names with the cluster DNS on the node's address, nothing else.
  printf 'nameserver %s\n' "$NODE_IP" >"$DIR/resolv.conf"
  mkdir -p "$DIR/kubelet"
  cat >"$DIR/kubelet/config.yaml" <<EOF
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: $NODE_IP
port: 10250
healthzBindAddress: 127.0.0.1
healthzPort: 0
readOnlyPort: 0
authentication:
  anonymous:
    enabled: true
  webhook:
    enabled: false
authorization:
  mode: AlwaysAllow
cgroupDriver: cgroupfs
enforceNodeAllocatable: []
failSwapOn: false
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
evictionHard:
  memory.available: 1Mi
  nodefs.available: 1%
  imagefs.available: 1%
# Mounted ConfigMaps (the gateways' transport map) follow a change within this, not a minute.
syncFrequency: 10s
clusterDNS: [$NODE_IP]
clusterDomain: cluster.local
resolvConf: $DIR/resolv.conf
EOF
  spawn kubelet "$bin/kubelet" --config="$DIR/kubelet/config.yaml" --kubeconfig="$DIR/kubeconfig" \
    --container-runtime=remote --container-runtime-endpoint="unix://$DIR/containerd/containerd.sock" \
    --node-ip="$NODE_IP" --hostname-override="$NODE_NAME" --oom-score-adj=0 \
    --root-dir="$DIR/kubelet/root" --cert-dir="$DIR/kubelet/pki"
  spawn kube-proxy "$bin/kube-proxy" --kubeconfig="$DIR/kubeconfig" --proxy-mode=iptables \
    --hostname-override="$NODE_NAME" --cluster-cidr="$POD_CIDR" --oom-score-adj=0 \
    --conntrack-max-per-core=0 --bind-address=127.0.0.1 \
    --healthz-bind-address="127.0.0.1:$(free_port)" --metrics-bind-address="127.0.0.1:$(free_port)"
  wait_until "node $NODE_NAME Ready" 120 node_ready
}

node_ready() {
  [ "$(kubectl_ get node "$NODE_NAME" -o 'jsonpath={.status.conditions[?(@.type=="Ready")].status}')" = True ]
}

cluster_dns() {
  if [ ! -f "$DNS_VENV/.complete" ]; then
    ensure_packages python3-venv
    rm -rf "$DNS_VENV"
    python3 -m venv "$DNS_VENV"
    "$DNS_VENV/bin/pip" install --quiet --disable-pip-version-check dnslib==0.9.26 >&2
    touch "$DNS_VENV/.complete"
  fi
  spawn cluster-dns "$DNS_VENV/bin/python" hack/cluster-dns.py --listen "$NODE_IP:53" \
    --server "https://$NODE_IP:$API_PORT" --token-file "$DIR/token" --ca "$DIR/certs/ca.crt"
  wait_until "cluster DNS" 30 grep -q serving "$DIR/logs/cluster-dns.log"
}

volumes() {
  local i manifest=""
  for i in $(seq 1 "$VOLUMES"); do
    mkdir -p "$DIR/volumes/pv$i"
    manifest+="apiVersion: v1
kind: PersistentVolume
metadata:
  name: continuity-test-pv$i
spec:
  capacity:
    storage: 10Gi
  accessModes: [ReadWriteOnce]
  persistentVolumeReclaimPolicy: Retain
  hostPath:
    path: $DIR/volumes/pv$i
---
"
  done
  printf '%s' "$manifest" | kubectl_ apply -f - >/dev/null
  chmod 0777 "$DIR"/volumes/pv*
}

operator() {
  local helm_python
  helm_python=$(hack/helm-venv.sh)
  kubectl_ create namespace continuity-system >/dev/null
  # The gateway's namespace label, set by hand as on Kubernetes 1.20 (see the README).
  kubectl_ label namespace continuity-system kubernetes.io/metadata.name=continuity-system >/dev/null
  "$helm_python" hack/helm.py install continuity charts/continuity-operator --namespace continuity-system \
    --kubeconfig "$DIR/kubeconfig" \
    --values "$OPERATOR_VALUES" >"$DIR/logs/helm-install.log" ||
    { cat "$DIR/logs/helm-install.log" >&2; die "installing the chart failed"; }
  wait_until "the operator pod" 180 kubectl_ -n continuity-system wait --for=condition=Ready pod \
    -l app.kubernetes.io/name=continuity-operator --timeout=2s
}

up() {
  [ "$(id -u)" = 0 ] || die "needs root (network, mounts, containerd)"
  [ ! -s "$DIR/pids" ] || die "$DIR holds a running cluster; run '$0 down' first"
  ensure_packages containerd runc containernetworking-plugins iptables conntrack socat debootstrap \
    openssl curl python3-venv
  local cp_bin node_bin
  cp_bin=$(hack/control-plane.sh build)
  node_bin=$(hack/control-plane.sh build-node)
  KUBECTL=$(kubectl_binary)
  local started=$SECONDS
  mkdir -p "$DIR/logs"
  # What the kubelet, containerd's CNI library and runc's shims write outside the state
  # directory, whatever their flags: removed by `down` when `up` made them.
  for dir in /var/log/pods /var/log/containers /var/lib/cni /run/containerd; do
    [ -e "$dir" ] || echo "$dir" >>"$DIR/made-dirs"
  done
  # Chains kube-proxy and the kubelet add are ours to remove only if there were none before.
  if ! iptables -w -S | grep -q '^-N KUBE-' && ! iptables -w -t nat -S | grep -q '^-N KUBE-'; then
    touch "$DIR/kube-chains"
  fi
  # Likewise the kubelet's cgroups, and the containers in them.
  if ! find /sys/fs/cgroup/ -maxdepth 2 -name kubepods | grep -q .; then
    touch "$DIR/kubepods"
  fi
  certificates
  network
  containerd_
  hack/images.sh import "$DIR/containerd/containerd.sock"
  control_plane "$cp_bin"
  node "$node_bin"
  cluster_dns
  volumes
  operator
  log "up in $((SECONDS - started))s"
  echo "KUBECONFIG=$DIR/kubeconfig"
}

kubectl_binary() {
  ensure_kubectl
  command -v kubectl
}

# Every process in the kubelet's cgroups (/kubepods), then those cgroups; only when the
# machine had none before `up`.
kill_pods() {
  local proc left
  for _ in $(seq 50); do
    left=0
    for proc in /proc/[0-9]*; do
      if grep -q ':/kubepods' "$proc/cgroup" 2>/dev/null; then
        kill -9 "${proc#/proc/}" 2>/dev/null || true
        left=1
      fi
    done
    [ "$left" = 1 ] || break
    sleep 0.1
  done
  find /sys/fs/cgroup/ -depth -type d -path '*/kubepods*' -exec rmdir {} + 2>/dev/null || true
}

# The iptables chains kube-proxy and the kubelet make (KUBE-*), in every table, and the rules
# that jump to them; only when the machine had none before `up`.
remove_kube_chains() {
  local table chain rule
  for table in filter nat mangle; do
    iptables -w -t "$table" -S | grep -E '^-A (INPUT|OUTPUT|FORWARD|PREROUTING|POSTROUTING) .*-j KUBE-' |
      while read -r rule; do
        # shellcheck disable=SC2086 # the rule's words, as iptables -S printed them
        eval "iptables -w -t $table -D ${rule#-A }" 2>/dev/null || true
      done || true
    for chain in $(iptables -w -t "$table" -S | sed -n 's/^-N \(KUBE-[^ ]*\)$/\1/p'); do
      iptables -w -t "$table" -F "$chain" 2>/dev/null || true
    done
    for chain in $(iptables -w -t "$table" -S | sed -n 's/^-N \(KUBE-[^ ]*\)$/\1/p'); do
      iptables -w -t "$table" -X "$chain" 2>/dev/null || true
    done
  done
}

down() {
  [ -d "$DIR" ] || return 0
  local pid name
  if [ -f "$DIR/pids" ]; then
    tac "$DIR/pids" | while read -r pid name; do
      kill "$pid" 2>/dev/null || true
      for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
      kill -9 "$pid" 2>/dev/null || true
    done
  fi
  # Shims whose containerd was ours, then the containers: a killed shim leaves its container
  # running, in the kubelet's cgroups.
  pkill -9 -f "containerd-shim-runc-v2 .*-address $DIR/" 2>/dev/null || true
  if [ -f "$DIR/kubepods" ]; then
    kill_pods
  fi
  if [ -f "$DIR/kube-chains" ]; then
    remove_kube_chains
  fi
  # Mounts under the state directory (overlays, netns, volumes), deepest first.
  awk -v dir="$DIR" '$2 ~ "^"dir {print $2}' /proc/mounts | sort -r | while read -r mount; do
    umount -l "$mount" 2>/dev/null || true
  done
  if [ -f "$DIR/outside-interface" ]; then
    iptables -w -D FORWARD -s "$POD_CIDR" -o "$(cat "$DIR/outside-interface")" -m comment --comment "$RULE_COMMENT" -j DROP 2>/dev/null || true
  fi
  ip route del "$SERVICE_CIDR" dev "$BRIDGE" 2>/dev/null || true
  ip link del "$BRIDGE" 2>/dev/null || true
  if [ -f "$DIR/made-dirs" ]; then
    while read -r made; do rm -rf "$made"; done <"$DIR/made-dirs"
  fi
  rm -rf "$DIR"
  log "down"
}

status() {
  [ -s "$DIR/pids" ] || return 1
  KUBECTL=$(kubectl_binary)
  node_ready
}

case "${1:-}" in
  up) up ;;
  down) down ;;
  status) status ;;
  *) die "usage: $0 up | down | status" ;;
esac
