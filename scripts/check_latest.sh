#!/usr/bin/env bash
# Opt-in and not gating: install the newest versions that hasrd's requirements allow into a fresh
# virtual environment, run the test suite there, and report what moved against constraints.txt.
#   bash scripts/check_latest.sh               # report in out/latest/ (versions.md, install.log, pytest.log)
#   bash scripts/check_latest.sh --write-lock  # and, if every test passed, rewrite constraints.txt
# Exit status: 0 when the tests passed on the newest versions, 1 when the install or a test failed.
set -uo pipefail
cd "$(dirname "$0")/.."
write_lock=0
for arg in "$@"; do
  case "$arg" in
    --write-lock) write_lock=1 ;;
    *) echo "check_latest.sh: unknown option '$arg' (known: --write-lock)" >&2; exit 2 ;;
  esac
done
out=out/latest
mkdir -p "$out"
venv=$(mktemp -d "${TMPDIR:-/tmp}/hasrd-latest-venv.XXXXXX")
trap 'rm -rf "$venv"' EXIT
python3 -m venv "$venv"
# shellcheck disable=SC1091
source "$venv/bin/activate"
start=$(date +%s)
if ! bash scripts/install.sh --dev --latest > "$out/install.log" 2>&1; then
  echo "check_latest.sh: the install of the newest versions failed: $(tail -1 "$out/install.log")" >&2
  exit 1
fi
echo "check_latest.sh: installed in $(( $(date +%s) - start )) s; versions that moved against constraints.txt:"
python scripts/lockfile.py diff | tee "$out/versions.md"
rc=0
python -m pytest -q -p no:cacheprovider > "$out/pytest.log" 2>&1 || rc=$?
echo "check_latest.sh: tests on the newest versions: $(tail -1 "$out/pytest.log") (exit $rc; $out/pytest.log)"
if [ "$rc" = 0 ] && [ "$write_lock" = 1 ]; then
  python scripts/lockfile.py write
fi
[ "$rc" = 0 ]
