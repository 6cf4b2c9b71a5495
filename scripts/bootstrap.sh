#!/usr/bin/env bash
# Install everything the demo and the test suite need on a fresh Debian 12 machine (run as root).
# Idempotent: a second run only re-installs this package.
#
#   JHLE_PREFIX   where the venv and node modules go (default /opt/jupyterhub-lab-ext); must be
#                 world-readable because spawned system users run their servers from it.
#   JHLE_WITH     extra components: "test" (chromium, postgresql, docker), "demo" (default: demo only).
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
PREFIX=${JHLE_PREFIX:-/opt/jupyterhub-lab-ext}
WITH=${JHLE_WITH:-demo}
export DEBIAN_FRONTEND=noninteractive

need_apt=()
command -v /usr/bin/python3 >/dev/null || need_apt+=(python3)
/usr/bin/python3 -c 'import venv, ensurepip' 2>/dev/null || need_apt+=(python3-venv)
command -v node >/dev/null || need_apt+=(nodejs)
command -v npm >/dev/null || need_apt+=(npm)
command -v git >/dev/null || need_apt+=(git)
command -v useradd >/dev/null || need_apt+=(passwd)
command -v rsync >/dev/null || need_apt+=(rsync)
if [[ $WITH == *test* ]]; then
  command -v chromium >/dev/null || need_apt+=(chromium)
  command -v /usr/lib/postgresql/15/bin/initdb >/dev/null || need_apt+=(postgresql)
  # the production-path test: the example nginx site with TLS, `systemd-analyze verify` on the units
  command -v nginx >/dev/null || need_apt+=(nginx)
  command -v openssl >/dev/null || need_apt+=(openssl)
  command -v systemd-analyze >/dev/null || need_apt+=(systemd)
  if [[ ${JHLE_SKIP_DOCKER:-0} != 1 ]]; then
    command -v dockerd >/dev/null || need_apt+=(docker.io)
    command -v debootstrap >/dev/null || need_apt+=(debootstrap)
  fi
fi
if ((${#need_apt[@]})); then
  echo "bootstrap: apt-get install ${need_apt[*]}"
  apt-get update -q
  # Daemons installed for the tests (nginx, postgresql, docker) must not start on their own,
  # listening on every address: deny starts while installing (Debian's policy-rc.d), unless the
  # machine already has a policy. The tests run their own instances on 127.0.0.1.
  policy=/usr/sbin/policy-rc.d
  if [[ ! -e $policy ]]; then
    printf '#!/bin/sh\nexit 101\n' >"$policy"
    chmod 755 "$policy"
    trap 'rm -f "$policy"' EXIT
  fi
  apt-get install -y -q --no-install-recommends "${need_apt[@]}"
fi

mkdir -p "$PREFIX"
chmod 755 "$PREFIX"
if [[ ! -x $PREFIX/venv/bin/python ]]; then
  /usr/bin/python3 -m venv "$PREFIX/venv"
fi
py=$PREFIX/venv/bin/python
# this machine's pip config may name local package mirrors that do not exist: hide those warnings only
pip_install() { "$py" -m pip install -q "$@" 2> >(grep -v "is ignored: it is neither a file nor a directory" >&2); }
extras=demo
[[ $WITH == *test* ]] && extras=test,docs,bench,docker
# one stamp per set of extras: `demo.sh` then `test.sh` on one prefix must still add the test extras
stamp=$PREFIX/venv/.deps-${extras//,/-}-$(sha1sum "$here/setup.cfg" | cut -c1-12)
if [[ ! -e $stamp ]]; then
  pip_install --upgrade pip
  pip_install "$here[$extras]"
  touch "$stamp"
fi
# install the current source (not editable: spawned users must be able to read it), unless the
# installed copy is identical already (a warm start of the demo then skips ~8 s of wheel building)
site=$("$py" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
if ! diff -rq -x __pycache__ "$here/jupyterhub_lab_ext" "$site/jupyterhub_lab_ext" >/dev/null 2>&1 ||
  ! diff -rq "$here/share/jupyterhub-lab-ext" "$PREFIX/venv/share/jupyterhub-lab-ext" >/dev/null 2>&1; then
  pip_install --no-deps --force-reinstall "$here"
fi

node_dir=$PREFIX/node
mkdir -p "$node_dir"
cp "$here/devtools/oidc/package.json" "$node_dir/package.json"
if [[ ! -x $node_dir/node_modules/.bin/configurable-http-proxy || ! -d $node_dir/node_modules/oidc-provider ]]; then
  (cd "$node_dir" && npm install --no-audit --no-fund --loglevel=error)
fi
cp "$here/devtools/oidc/provider.mjs" "$node_dir/provider.mjs"
chmod -R a+rX "$PREFIX"
echo "bootstrap: ready in $PREFIX"
