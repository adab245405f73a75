#!/usr/bin/env bash
# Prometheus's promtool, which the tests run on the operator's metrics, the chart's alerting
# rules and the dashboard's queries: prints its path. Taken out of Debian's `prometheus`
# package into the cache rather than installed, so that no Prometheus server is started on a
# machine with an init system; a promtool already on the PATH is used as it is.
set -euo pipefail
# shellcheck source=hack/lib.sh
source "$(dirname "$0")/lib.sh"
LOG_TAG=promtool

if command -v promtool >/dev/null; then
  command -v promtool
  exit 0
fi
readonly DIR="$CACHE_ROOT/promtool"
readonly BINARY="$DIR/usr/bin/promtool"
if [ ! -x "$BINARY" ]; then
  ensure_packages dpkg
  download=$(mktemp -d)
  trap 'rm -rf "$download"' EXIT
  log "downloading Debian's prometheus package for its promtool"
  (cd "$download" && { apt-get download prometheus >/dev/null 2>&1 ||
    { as_root apt-get update -qq && apt-get download prometheus >/dev/null; }; }) ||
    die "apt-get download prometheus failed"
  mkdir -p "$DIR"
  dpkg-deb -x "$download"/prometheus_*.deb "$DIR"
fi
[ -x "$BINARY" ] || die "$BINARY is missing after unpacking the prometheus package"
echo "$BINARY"
