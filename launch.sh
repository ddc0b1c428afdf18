#!/usr/bin/env bash
# vit-locality launcher.
#
#   ./launch.sh test [pytest args]                    make .venv if missing, install, run the tests
#   ./launch.sh train CONFIG [--workdir=DIR] [--config.x=y ...]    make .venv if missing, train
#
# .venv is (re)installed whenever pyproject.toml changes. PYTHON picks the interpreter that
# creates it (default python3; Python >= 3.10).
set -euo pipefail
cd "$(dirname "$0")"

VENV=.venv
PYTHON=${PYTHON:-python3}

ensure_venv() {
  local stamp="$VENV/.installed-$(sha256sum pyproject.toml | cut -c1-16)"
  if [[ -f "$stamp" ]]; then return; fi
  echo "Installing vit-locality and its dependencies into $VENV ..." >&2
  [[ -x "$VENV/bin/python" ]] || "$PYTHON" -m venv "$VENV"
  "$VENV/bin/python" -m pip install --quiet --upgrade pip
  "$VENV/bin/python" -m pip install --quiet -e '.[test]'
  rm -f "$VENV"/.installed-*
  touch "$stamp"
}

usage() {
  sed -n '2,9p' "$0" | sed 's/^# \{0,1\}//'
  exit 2
}

mode=${1:-}
[[ -n "$mode" ]] || usage
shift
case "$mode" in
  test)
    ensure_venv
    exec "$VENV/bin/python" -m pytest "$@"
    ;;
  train)
    [[ $# -ge 1 ]] || { echo "error: ./launch.sh train needs a config, e.g. configs/cifar100_modern.py" >&2; exit 2; }
    config=$1
    shift
    ensure_venv
    exec "$VENV/bin/python" -m vit_locality.main --config="$config" "$@"
    ;;
  *)
    echo "error: unknown mode '$mode'; allowed: test, train" >&2
    usage
    ;;
esac
