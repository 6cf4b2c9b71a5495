"""Build real conda-layout environment prefixes for tests and benchmarks (conda itself is not
installable here, see ../shared/reference/e2e-recipes.md).

A prefix is a real venv (so ``sys.prefix`` of its Python is the prefix) plus ``conda-meta/``:
- one *base* venv with ipykernel is built once (``/usr/bin/python3 -m venv`` + ``pip install
  ipykernel``) and cached under ``$JHLE_PREFIX/cache`` (world-readable, so spawned users can run it);
- each env is a ``cp -a`` copy of it. A venv finds its prefix from the ``pyvenv.cfg`` next to
  ``bin/``, so the copy's ``sys.prefix`` is the copy; nothing in it is run from its scripts' shebangs
  (kernels start as ``<prefix>/bin/python -m ipykernel_launcher``).
Measured here: building the base once ~15 s (pip, from the wheel cache); each copy ~0.3 s.

Shared envs must live where only root can change them, up to ``/`` (the package refuses others, see
docs/conda-envs.md): build them under :func:`trusted_dir`, never under /tmp (writable by everyone).
"""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

PREFIX = Path(os.environ.get("JHLE_PREFIX", "/opt/jupyterhub-lab-ext"))
SYSTEM_PYTHON = "/usr/bin/python3"
CACHE = PREFIX / "cache"
#: symlink-free (discovery reports real paths, and the trust rule judges where links lead)
TRUSTED = Path(os.path.realpath(PREFIX / "tmp"))


def python_version() -> str:
    """``3.11``: the Python of every env these helpers build."""
    out = subprocess.run(
        [SYSTEM_PYTHON, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
        check=True,
        capture_output=True,
        text=True,
    )
    return out.stdout.strip()


def trusted_dir(prefix: str) -> Path:
    """A new directory, world-readable, that only root can change (as can every directory above
    it: $JHLE_PREFIX/tmp). The caller removes it."""
    TRUSTED.mkdir(parents=True, exist_ok=True)
    TRUSTED.chmod(0o755)
    path = Path(tempfile.mkdtemp(prefix=prefix, dir=TRUSTED))
    path.chmod(0o755)
    return path


def base_env() -> Path:
    """The cached venv with ipykernel (built on first use; serialised by a file lock)."""
    CACHE.mkdir(parents=True, exist_ok=True)
    CACHE.chmod(0o755)
    target = CACHE / f"kernel-env-py{python_version()}"
    with open(CACHE / ".kernel-env.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (target / ".complete").exists():
            return target
        shutil.rmtree(target, ignore_errors=True)
        tmp = Path(tempfile.mkdtemp(prefix="kernel-env-", dir=CACHE))
        try:
            subprocess.run([SYSTEM_PYTHON, "-m", "venv", str(tmp)], check=True)
            subprocess.run(
                [str(tmp / "bin" / "python"), "-m", "pip", "install", "-q", "ipykernel"],
                check=True,
            )
            (tmp / ".complete").write_text("ok\n")
            tmp.rename(target)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        subprocess.run(["chmod", "-R", "a+rX", str(target)], check=True)
        return target


def make_conda_env(
    prefix: Path | str,
    *,
    owner: str | None = None,
    activate: dict[str, str] | None = None,
    kernelspecs: dict[str, str] | None = None,
) -> Path:
    """A real conda-layout prefix at ``prefix`` whose Python has ipykernel.

    ``owner``: chown the tree to that system user. ``activate``: files for
    ``etc/conda/activate.d``. ``kernelspecs``: ``{name: kernel.json text}`` in share/jupyter/kernels.
    """
    prefix = Path(prefix)
    prefix.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(["cp", "-a", str(base_env()), str(prefix)], check=True)
    (prefix / ".complete").unlink(missing_ok=True)
    meta = prefix / "conda-meta"
    meta.mkdir(exist_ok=True)
    (meta / "history").write_text(f"==> {prefix.name} made by tests/e2e/envs.py <==\n")
    for name, text in (activate or {}).items():
        d = prefix / "etc" / "conda" / "activate.d"
        d.mkdir(parents=True, exist_ok=True)
        (d / name).write_text(text)
    for name, text in (kernelspecs or {}).items():
        d = prefix / "share" / "jupyter" / "kernels" / name
        d.mkdir(parents=True, exist_ok=True)
        (d / "kernel.json").write_text(text)
    if owner:
        subprocess.run(["chown", "-R", f"{owner}:", str(prefix)], check=True)
    else:
        subprocess.run(["chmod", "-R", "a+rX", str(prefix)], check=True)
    return prefix


if __name__ == "__main__":  # manual check: python tests/e2e/envs.py /tmp/x
    made = make_conda_env(sys.argv[1])
    print(made)
