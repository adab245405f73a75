#!/usr/bin/env bash
# Builds the images the chart names by default, without a registry or a Docker daemon: each
# image's root filesystem from the same package list and setup script its Dockerfile uses
# (images/<name>/), made with debootstrap, packed as a docker-archive for `ctr images import`.
#
#   hack/images.sh build             build every archive (cached); print the directory holding them
#   hack/images.sh import ADDRESS    build, then import every archive into the containerd at ADDRESS
#
# Debian roots are cached outside the repo, keyed by the content of their image folder; the
# operator's static binary is built with cargo into a cached target directory.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=hack/lib.sh
source hack/lib.sh
LOG_TAG=images

readonly IMAGES_DIR="$CACHE_ROOT/images"
readonly SUITE=bookworm
readonly MIRROR=http://deb.debian.org/debian
APP_VERSION=$(sed -n 's/^appVersion: *"\{0,1\}\([^"]*\)"\{0,1\}$/\1/p' charts/continuity-operator/Chart.yaml)
readonly APP_VERSION
readonly OPERATOR_IMAGE="ghcr.io/mailops/continuity-operator:$APP_VERSION"
readonly MAIL_IMAGE="ghcr.io/mailops/continuity-standby-mail:$APP_VERSION"
readonly WEBMAIL_IMAGE="ghcr.io/mailops/continuity-webmail:$APP_VERSION"
readonly PAUSE_IMAGE="localhost/continuity/pause:3.4"

# Packs ROOT as the single layer of image NAME into OUT (a docker-archive). CONFIG is the
# image's `config` object (JSON): user, entrypoint, environment.
pack() {
  local root=$1 name=$2 config=$3 out=$4
  local work
  work=$(mktemp -d)
  tar --numeric-owner --xattrs -C "$root" -cf "$work/layer.tar" .
  local diff_id
  diff_id=$(sha256sum "$work/layer.tar" | cut -d' ' -f1)
  printf '{"architecture":"amd64","os":"linux","config":%s,"rootfs":{"type":"layers","diff_ids":["sha256:%s"]}}' \
    "$config" "$diff_id" >"$work/config.json"
  printf '[{"Config":"config.json","RepoTags":["%s"],"Layers":["layer.tar"]}]' "$name" >"$work/manifest.json"
  tar -C "$work" -cf "$out.partial" manifest.json config.json layer.tar
  mv "$out.partial" "$out"
  rm -rf "$work"
  log "packed $name ($(du -h "$out" | cut -f1))"
}

# A Debian root made by images/NAME/setup.sh (which installs images/NAME/packages) inside a
# minimal debootstrap root, as the Dockerfile runs it inside debian:bookworm-slim. Cached by the
# hash of the image's folder. Prints its path.
debian_root() {
  local name=$1
  local key
  key=$(find "images/$name" -type f -print0 | sort -z | xargs -0 cat | sha256sum | cut -c1-16)
  local root="$IMAGES_DIR/roots/$name-$key"
  if [ ! -d "$root" ]; then
    local base="$IMAGES_DIR/roots/base-$SUITE"
    if [ ! -d "$base" ]; then
      ensure_packages debootstrap
      log "debootstrap $SUITE (about a minute)"
      rm -rf "$base.partial"
      mkdir -p "$base.partial"
      debootstrap --variant=minbase "$SUITE" "$base.partial" "$MIRROR" >"$IMAGES_DIR/debootstrap.log" 2>&1 ||
        { tail -n 20 "$IMAGES_DIR/debootstrap.log" >&2; die "debootstrap failed"; }
      mv "$base.partial" "$base"
    fi
    log "building the $name root"
    rm -rf "$root.partial"
    cp -a "$base" "$root.partial"
    cp /etc/resolv.conf "$root.partial/etc/resolv.conf"
    cp -r "images/$name" "$root.partial/tmp/image"
    mount -t proc proc "$root.partial/proc"
    local status=0
    chroot "$root.partial" /bin/sh /tmp/image/setup.sh >"$IMAGES_DIR/setup-$name.log" 2>&1 || status=$?
    umount "$root.partial/proc"
    [ "$status" = 0 ] || { tail -n 20 "$IMAGES_DIR/setup-$name.log" >&2; die "setting up the $name root failed"; }
    rm -rf "$root.partial/tmp/image"
    : >"$root.partial/etc/resolv.conf"
    mv "$root.partial" "$root"
  fi
  echo "$root"
}

build_operator() {
  local target="$CACHE_ROOT/image-target"
  log "building the operator's static binaries (operator and hand-back agent)"
  CARGO_TARGET_DIR="$target" RUSTFLAGS='-C target-feature=+crt-static' \
    cargo build --locked --release --quiet --target x86_64-unknown-linux-gnu \
    --bin continuity-operator --bin continuity-agent
  local root
  root=$(mktemp -d)
  # distroless static:nonroot, by hand: the binary, the nonroot user, CA certificates, /tmp.
  mkdir -p "$root/etc/ssl/certs" "$root/tmp"
  chmod 1777 "$root/tmp"
  local binary
  for binary in continuity-operator continuity-agent; do
    install -m 0755 "$target/x86_64-unknown-linux-gnu/release/$binary" "$root/$binary"
    strip "$root/$binary"
  done
  printf 'root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n' >"$root/etc/passwd"
  printf 'root:x:0:\nnonroot:x:65532:\n' >"$root/etc/group"
  cp /etc/ssl/certs/ca-certificates.crt "$root/etc/ssl/certs/" 2>/dev/null || true
  pack "$root" "$OPERATOR_IMAGE" \
    '{"User":"65532:65532","Entrypoint":["/continuity-operator"],"Env":["SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt"]}' \
    "$IMAGES_DIR/operator.tar"
  rm -rf "$root"
}

build_pause() {
  local node_bin root
  node_bin=$(hack/control-plane.sh build-node)
  root=$(mktemp -d)
  install -m 0755 "$node_bin/pause" "$root/pause"
  pack "$root" "$PAUSE_IMAGE" '{"User":"65535:65535","Entrypoint":["/pause"]}' "$IMAGES_DIR/pause.tar"
  rm -rf "$root"
}

# Packs the Debian image NAME as IMAGE with CONFIG, unless its archive is newer than its root.
build_debian() {
  local name=$1 image=$2 config=$3 root
  root=$(debian_root "$name")
  [ -f "$IMAGES_DIR/$name.tar" ] && [ "$IMAGES_DIR/$name.tar" -nt "$root" ] && return 0
  pack "$root" "$image" "$config" "$IMAGES_DIR/$name.tar"
}

build() {
  mkdir -p "$IMAGES_DIR"
  build_pause
  build_operator
  local path='"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"'
  build_debian mail "$MAIL_IMAGE" "{\"Env\":[$path]}"
  build_debian webmail "$WEBMAIL_IMAGE" \
    "{\"User\":\"33:33\",\"Env\":[$path],\"Entrypoint\":[\"/usr/local/bin/continuity-webmail\"],\"ExposedPorts\":{\"8000/tcp\":{}}}"
  echo "$IMAGES_DIR"
}

import() {
  local address=${1:?usage: $0 import CONTAINERD_ADDRESS}
  build >/dev/null
  local archive
  for archive in pause operator mail webmail; do
    ctr --address "$address" -n k8s.io images import "$IMAGES_DIR/$archive.tar" >/dev/null
  done
  log "imported into $address"
}

case "${1:-}" in
  build) build ;;
  import) shift; import "$@" ;;
  *) die "usage: $0 build | import CONTAINERD_ADDRESS" ;;
esac
