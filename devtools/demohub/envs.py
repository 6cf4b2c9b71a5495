"""The demo's conda-layout environments, built without conda (its channels need not be reachable).

An environment is a ``/usr/bin/python3 -m venv`` prefix with packages from pip plus what makes
it a conda prefix for the spawner: ``conda-meta/history``. Kernels run as
``<prefix>/bin/python -m ipykernel_launcher``, so the env's own Python and packages are used.

- shared envs (``base``: ipykernel; ``data``: ipykernel, numpy, matplotlib) are built in place in
  ``envs_dir``, once: a stamp in ``conda-meta`` records what was installed, and a warm start
  only reads it. World-readable, writable by root only.
- alice's own env is a copy of ``base`` relocated into her home (prefix rewritten in the
  scripts, as conda does when it links a package), owned by her: made once, when her home
  has no ``~/.conda`` yet.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

SYSTEM_PYTHON = "/usr/bin/python3"
STAMP = "conda-meta/jupyterhub-lab-ext-demo.json"


@dataclass(frozen=True)
class EnvSpec:
    name: str
    packages: tuple[str, ...]
    purpose: str


SHARED = (
    EnvSpec("base", ("ipykernel",), "plain Python"),
    EnvSpec("data", ("ipykernel", "numpy", "matplotlib"), "numpy, matplotlib"),
)
PERSONAL = EnvSpec("scratch", ("ipykernel",), "alice's own env (a copy of base)")


class EnvBuildError(RuntimeError):
    pass


def python_version() -> str:
    out = subprocess.run(
        [SYSTEM_PYTHON, "-c", "import platform; print(platform.python_version())"],
        check=True,
        capture_output=True,
        text=True,
    )
    return out.stdout.strip()


def stamp_for(spec: EnvSpec, version: str) -> dict:
    return {"name": spec.name, "python": version, "packages": list(spec.packages)}


def read_stamp(prefix: Path) -> dict | None:
    try:
        return json.loads((prefix / STAMP).read_text())
    except (OSError, ValueError):
        return None


def history_text(prefix: Path, packages: tuple[str, ...], how: str) -> str:
    """A ``conda-meta/history`` in conda's format (its header is what conda tools look for)."""
    when = time.strftime("%Y-%m-%d %H:%M:%S")
    return (
        f"==> {when} <==\n"
        f"# cmd: {how} {prefix} {' '.join(packages)}\n"
        "# made by jupyterhub-lab-ext's demo with venv + pip (no conda needed)\n"
    )


def _run(argv: list[str], what: str) -> None:
    proc = subprocess.run(argv, capture_output=True, text=True)
    if proc.returncode != 0:
        raise EnvBuildError(f"{what} failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}")


def _build(prefix: Path, spec: EnvSpec, version: str, say) -> None:
    say(f"demo: building shared env {spec.name!r} ({' '.join(spec.packages)}) in {prefix}")
    started = time.monotonic()
    shutil.rmtree(prefix, ignore_errors=True)
    _run([SYSTEM_PYTHON, "-m", "venv", str(prefix)], f"python3 -m venv {prefix}")
    _run(
        [str(prefix / "bin" / "python"), "-m", "pip", "install", "-q", *spec.packages],
        f"pip install {' '.join(spec.packages)} into {prefix}",
    )
    meta = prefix / "conda-meta"
    meta.mkdir(exist_ok=True)
    (meta / "history").write_text(history_text(prefix, spec.packages, "conda create -p"))
    _run(["chmod", "-R", "a+rX,go-w", str(prefix)], f"chmod {prefix}")
    # the stamp last: an interrupted build has none and is rebuilt next time
    (prefix / STAMP).write_text(json.dumps(stamp_for(spec, version)) + "\n")
    say(f"demo: env {spec.name!r} ready in {time.monotonic() - started:.0f} s")


def ensure_shared(envs_dir: Path, say=print) -> dict[str, Path]:
    """Build the shared envs that are missing or outdated; return ``{name: prefix}``."""
    envs_dir.mkdir(parents=True, exist_ok=True)
    envs_dir.chmod(0o755)
    version = python_version()
    out = {}
    with open(envs_dir / ".build.lock", "w") as lock:  # another demo may be building them
        fcntl.flock(lock, fcntl.LOCK_EX)
        for spec in SHARED:
            prefix = envs_dir / spec.name
            if read_stamp(prefix) != stamp_for(spec, version):
                _build(prefix, spec, version, say)
            out[spec.name] = prefix
    return out


def _relocate(prefix: Path, old: Path) -> None:
    """Rewrite the old prefix in the env's text scripts (shebangs, activate scripts)."""
    old_b, new_b = str(old).encode(), str(prefix).encode()
    for path in [*(prefix / "bin").iterdir(), prefix / "pyvenv.cfg"]:
        if path.is_symlink() or not path.is_file():
            continue
        data = path.read_bytes()
        if old_b in data and b"\0" not in data[:8192]:
            path.write_bytes(data.replace(old_b, new_b))


def ensure_personal(home: Path, uid: int, gid: int, base: Path, say=print) -> Path | None:
    """Give the user of ``home`` the env ``~/.conda/envs/scratch``, once: only when the home has
    no ``~/.conda`` yet (so a user's own changes are never touched). Returns its prefix or None."""
    conda = home / ".conda"
    prefix = conda / "envs" / PERSONAL.name
    if os.path.lexists(conda):
        return prefix if (prefix / "conda-meta").is_dir() else None
    os.mkdir(conda, 0o755)  # fails rather than follow anything planted meanwhile
    os.mkdir(conda / "envs", 0o755)
    _run(["cp", "-a", "--no-target-directory", str(base), str(prefix)], f"copy {base}")
    _relocate(prefix, base)
    (prefix / STAMP).unlink(missing_ok=True)
    (prefix / "conda-meta" / "history").write_text(
        history_text(prefix, PERSONAL.packages, "conda create -p")
    )
    _run(["chown", "-R", "--no-dereference", f"{uid}:{gid}", str(conda)], f"chown {conda}")
    say(f"demo: made {prefix} for uid {uid}")
    return prefix
