#!/usr/bin/env bash
# Set up everything and run the whole test suite: lint, unit tests, docs build, end-to-end tests.
# Works on a fresh Debian 12 machine as root. Extra arguments go to pytest (e.g. -k culler).
#   JHLE_PREFIX   where the venv and node modules live (default /opt/jupyterhub-lab-ext)
#   JHLE_SKIP_DOCKER=1   skip installing/starting Docker (the Docker/Swarm tests then skip)
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
export JHLE_PREFIX=${JHLE_PREFIX:-/opt/jupyterhub-lab-ext}
JHLE_WITH=test bash "$here/scripts/bootstrap.sh"
venv=$JHLE_PREFIX/venv
export PATH=$venv/bin:$JHLE_PREFIX/node/node_modules/.bin:$PATH
cd "$here"
mkdir -p test-artifacts
echo "== ruff"
ruff check .
ruff format --check .
echo "== labextension (the shipped build is rebuilt from its sources and compared)"
PYTHON=$venv/bin/python bash "$here/scripts/build-labextension.sh" --check
echo "== docs"
python -m sphinx -W --keep-going -q -b html docs docs/_build/html
echo "== tests"
set +e
# unit tests first (seconds), then the end-to-end tests with real components
python -m pytest -p no:cacheprovider --timeout=900 "$@" tests/unit tests/e2e
rc=$?
set -e
exit $rc
