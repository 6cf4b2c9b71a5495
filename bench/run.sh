#!/usr/bin/env bash
# Run every benchmark (each compares us with the anchor in the same run and prints ratios).
# Needs the test environment: bash scripts/bootstrap.sh with JHLE_WITH=test. Run as root.
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
py=${JHLE_PREFIX:-/opt/jupyterhub-lab-ext}/venv/bin/python
rc=0
for b in "$here"/bench_*.py; do
  echo "== $(basename "$b")"
  "$py" "$b" "$@" || rc=1
done
exit $rc
