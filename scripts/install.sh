#!/usr/bin/env bash
# Set up hasrd on a fresh Debian/Ubuntu machine: system tools, then the Python package.
#   bash scripts/install.sh          # the toolkit, evaluation judges and the classic-codec baselines
#   bash scripts/install.sh --dev    # also the test tools and the speech synthesisers the tests use
# Safe to re-run: apt and pip skip what is already installed.
set -euo pipefail
cd "$(dirname "$0")/.."
dev=0
[ "${1:-}" = "--dev" ] && dev=1

apt_pkgs="codec2 opus-tools sox"
if [ "$dev" = 1 ]; then
  apt_pkgs="$apt_pkgs $(grep -v '^#' scripts/corpus_packages.txt | tr '\n' ' ')"
fi
missing=""
for p in $apt_pkgs; do
  dpkg -s "$p" >/dev/null 2>&1 || missing="$missing $p"
done
if [ -n "$missing" ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "install.sh: apt-get install$missing" >&2
    apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $missing >/dev/null
  else
    echo "install.sh: warning: missing system packages:$missing (baselines/tests that need them are skipped)" >&2
  fi
fi

extras="eval"
[ "$dev" = 1 ] && extras="dev"
out=$(python3 -m pip install -q --disable-pip-version-check -e ".[$extras]" 2>&1) || { echo "$out" >&2; exit 1; }
echo "$out" | grep -v -e "dependency resolver does not currently" -e "^onnx.* requires protobuf" \
  -e "^WARNING: Location" -e "^$" >&2 || true
# ONNX export: onnx needs protobuf>=6, which descript-audiotools' metadata forbids (protobuf<3.20)
# although it works with it; installed on its own so the step above stays resolvable. pip reports
# the old pin as a conflict and installs anyway.
# protobuf is named so that a re-run (whose first step put audiotools' old protobuf back) ends in
# the same state as a fresh machine.
out=$(python3 -m pip install -q --disable-pip-version-check "onnx>=1.16" "onnxscript>=0.2" "protobuf>=6.31.1" 2>&1) \
  || { echo "$out" >&2; exit 1; }
echo "$out" | grep -v -e "dependency resolver does not currently" -e "descript-audiotools .* requires protobuf" \
  -e "^WARNING: Location" -e "^$" >&2 || true
