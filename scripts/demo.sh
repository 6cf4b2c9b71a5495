#!/usr/bin/env bash
# Set up and run a demo hub of every part on http://127.0.0.1:8765: a local OIDC provider and a
# userlist, the conda-kernel spawner with shared envs (built once with venv + pip, then reused)
# and one of alice's own, the idle culler and the user limit (2 servers) as managed services,
# SQLite. Works on a fresh Debian 12 machine as root. Ctrl-C stops all of it.
#   JHLE_PREFIX     install location (default /opt/jupyterhub-lab-ext; shared envs in demo-envs/)
#   JHLE_DEMO_DIR   state of the demo hub (default /srv/jupyterhub-lab-ext-demo)
# Extra arguments go to devtools/demo.py (e.g. --port 8800, --check).
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
export JHLE_PREFIX=${JHLE_PREFIX:-/opt/jupyterhub-lab-ext}
JHLE_WITH=demo bash "$here/scripts/bootstrap.sh"
exec "$JHLE_PREFIX/venv/bin/python" "$here/devtools/demo.py" "$@"
