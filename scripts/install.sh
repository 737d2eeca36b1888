#!/usr/bin/env bash
# Set up hasrd on a fresh Debian/Ubuntu machine: system tools, then the Python package.
#   bash scripts/install.sh          # the toolkit, evaluation judges and the classic-codec baselines
#   bash scripts/install.sh --dev    # also the test tools and the speech synthesisers the tests use
#   bash scripts/install.sh --latest # the newest versions the requirements allow, instead of the lock
# Python packages come at the versions in constraints.txt (the set the test suite last passed
# with; HASRD_CONSTRAINTS=FILE names another) unless --latest is given: docs/install.md.
# Safe to re-run: apt and pip skip what is already installed.
set -euo pipefail
cd "$(dirname "$0")/.."
dev=0
latest=0
for arg in "$@"; do
  case "$arg" in
    --dev) dev=1 ;;
    --latest) latest=1 ;;
    *) echo "install.sh: unknown option '$arg' (known: --dev, --latest)" >&2; exit 2 ;;
  esac
done
lock="${HASRD_CONSTRAINTS:-constraints.txt}"
pin1=()
pin2=()
if [ "$latest" = 0 ]; then
  [ -f "$lock" ] || { echo "install.sh: no constraints file at $lock (give --latest to install without one)" >&2; exit 2; }
  # The first step is resolved without the lock's protobuf: descript-audiotools declares
  # protobuf<3.20, and the lock holds the newer one that the second step installs for onnx.
  step1_lock=$(mktemp "${TMPDIR:-/tmp}/hasrd-constraints.XXXXXX")
  trap 'rm -f "$step1_lock"' EXIT
  grep -v -i -E '^protobuf *==' "$lock" > "$step1_lock"
  pin1=(-c "$step1_lock")
  pin2=(-c "$lock")
fi

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
out=$(python3 -m pip install -q --disable-pip-version-check "${pin1[@]}" -e ".[$extras]" 2>&1) || { echo "$out" >&2; exit 1; }
echo "$out" | grep -v -e "dependency resolver does not currently" -e "^onnx.* requires protobuf" \
  -e "^WARNING: Location" -e "^$" >&2 || true
# ONNX export: onnx needs protobuf>=6, which descript-audiotools' metadata forbids (protobuf<3.20)
# although it works with it; installed on its own so the step above stays resolvable. pip reports
# the old pin as a conflict and installs anyway.
# protobuf is named so that a re-run (whose first step put audiotools' old protobuf back) ends in
# the same state as a fresh machine.
out=$(python3 -m pip install -q --disable-pip-version-check "${pin2[@]}" "onnx>=1.16" "onnxscript>=0.2" "protobuf>=6.31.1" 2>&1) \
  || { echo "$out" >&2; exit 1; }
echo "$out" | grep -v -e "dependency resolver does not currently" -e "descript-audiotools .* requires protobuf" \
  -e "^WARNING: Location" -e "^$" >&2 || true
