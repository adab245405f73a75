#!/usr/bin/env bash
# Prometheus's blackbox_exporter, the peer that benches/probe_throughput.rs measures our probe
# against: installs Debian's package when the binary is missing and prints the binary's path.
# (The bench starts its own exporter on a port of its own; a system service the package may
# start on a machine with an init system is not used.)
set -euo pipefail
# shellcheck source=hack/lib.sh
source "$(dirname "$0")/lib.sh"
LOG_TAG=blackbox

readonly BINARY=/usr/bin/prometheus-blackbox-exporter

[ -x "$BINARY" ] || ensure_packages prometheus-blackbox-exporter
[ -x "$BINARY" ] || die "$BINARY is missing after installing prometheus-blackbox-exporter"
echo "$BINARY"
