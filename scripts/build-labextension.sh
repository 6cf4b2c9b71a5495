#!/usr/bin/env bash
# Build the JupyterLab status extension from labextension/ (TypeScript) into
# jupyterhub_lab_ext/labextension/, the prebuilt copy that is committed and that `pip install`
# puts under share/jupyter/labextensions/jupyterhub-lab-ext/ (so installing needs no Node.js).
# Packages come from the npm registry at the versions pinned in labextension/package-lock.json.
#
#   scripts/build-labextension.sh           rebuild (then commit the result)
#   scripts/build-labextension.sh --check   rebuild and exit 1 if the committed build differs
#                                           from it (a stale build); changes nothing
#   PYTHON   the Python with jupyterlab installed (default: python on PATH)
#
# The bundler's module ids depend on the absolute path of the sources, so the build always runs
# in one fixed directory ($STAGE), whatever the checkout's path: every clone builds the same bytes.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
python=${PYTHON:-python}
mode=${1:-build}
case $mode in build | --check) ;; *) echo "usage: $0 [--check]" >&2; exit 2 ;; esac
STAGE=/tmp/jupyterhub-lab-ext-labextension-build
out=jupyterhub_lab_ext/labextension

exec 9>"$STAGE.lock"
flock 9 # one build at a time on this machine (they share $STAGE)
rm -rf "$STAGE"
mkdir -p "$STAGE/labextension"
(cd "$here/labextension" && cp -r package.json package-lock.json tsconfig.json src style "$STAGE/labextension/")
cd "$STAGE/labextension"
npm ci --no-audit --no-fund --ignore-scripts --loglevel=error >/dev/null
npx tsc
"$python" -m jupyterlab.labextensions build . >build.log 2>&1 || { cat build.log >&2; exit 1; }

if [[ $mode == --check ]]; then
  if ! diff -r "$STAGE/$out" "$here/$out"; then
    echo "labextension: the committed build in $out/ is stale;" \
      "run scripts/build-labextension.sh and commit the result" >&2
    exit 1
  fi
  echo "labextension: the committed build matches its sources"
else
  rm -rf "${here:?}/$out"
  cp -r "$STAGE/$out" "$here/$out"
  echo "labextension: built into $out/"
fi
rm -rf "$STAGE"
