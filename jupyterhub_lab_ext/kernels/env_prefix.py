"""Read one environment prefix from the file system: what it is and which kernels it has.

A *prefix* is a directory with a ``conda-meta/`` subdirectory (conda, mamba and micromamba all
write one); a plain virtualenv (``pyvenv.cfg``) counts too when the admin allows it. Nothing here
runs ``conda`` or any program from an environment: the hub runs this as root, on environments
that users control, so it only ``stat``s directories and reads small JSON files (never through a
final symlink, never more than :data:`MAX_JSON_BYTES`).

:func:`scan_prefix` gives an immutable :class:`CondaEnv` with the :class:`KernelInfo` of each kernel;
:mod:`jupyterhub_lab_ext.kernels.conda_envs` decides which prefixes are looked at and offered.
"""

from __future__ import annotations

import json
import os
import re
import stat
from collections.abc import Iterable
from dataclasses import dataclass

#: kernel.json files larger than this are ignored (they are a few hundred bytes normally)
MAX_JSON_BYTES = 256 * 1024
_PYTHON_ARGV0 = re.compile(r"^python(3(\.\d+)?)?$")
_UNSAFE = re.compile(r"[^a-z0-9._-]+")


@dataclass(frozen=True)
class KernelInfo:
    """One kernel an environment provides (the content of a kernel.json, made absolute)."""

    key: str  #: ``python`` for the env's ipykernel, otherwise the kernelspec directory name
    language: str
    display_name: str
    argv: tuple[str, ...]
    env: tuple[tuple[str, str], ...] = ()
    resource_dir: str | None = None
    interrupt_mode: str = "signal"
    metadata_json: str = "{}"

    @property
    def metadata(self) -> dict:
        return json.loads(self.metadata_json)


@dataclass(frozen=True)
class CondaEnv:
    """An environment found on disk."""

    name: str  #: readable and stable: ``shared/geo``, ``mine/ml``
    group: str  #: ``shared`` or ``mine``
    prefix: str  #: real (symlink-free) absolute path
    python_version: str | None = None
    kernels: tuple[KernelInfo, ...] = ()
    activate_scripts: tuple[str, ...] = ()  #: ``etc/conda/activate.d/*.sh``, sorted
    is_venv: bool = False
    ignored_kernelspecs: tuple[str, ...] = ()  #: kernelspec dirs without a valid kernel.json

    @property
    def slug(self) -> str:
        return self.name.split("/", 1)[1]

    @property
    def conda_default_env(self) -> str:
        """What ``conda activate`` would put in ``CONDA_DEFAULT_ENV`` (the env's directory name)."""
        return os.path.basename(self.prefix)

    def kernel_name(self, kernel: KernelInfo) -> str:
        """Kernel name for the single-user server: lower-case ``[a-z0-9._-]``, stable across users."""
        base = f"{self.group}-{self.slug}"
        return base if kernel.key == "python" else f"{base}-{slugify(kernel.key)}"

    @property
    def default_kernel_name(self) -> str | None:
        """The kernel that new notebooks get when this env is the user's choice."""
        return self.kernel_name(self.kernels[0]) if self.kernels else None

    def summary(self) -> str:
        """One line for people: ``Python 3.11.4; kernels: Python, R``."""
        parts = [f"Python {self.python_version}" if self.python_version else "no Python"]
        langs = [k.language[:1].upper() + k.language[1:] for k in self.kernels]
        parts.append("kernels: " + (", ".join(langs) if langs else "none"))
        if self.activate_scripts:
            parts.append("activation scripts")
        return "; ".join(parts)


def slugify(text: str) -> str:
    """Lower-case ``[a-z0-9._-]`` version of ``text`` (never empty)."""
    slug = _UNSAFE.sub("-", text.lower()).strip("-.")
    return slug or "env"


def stat_path(path: str, follow: bool = True) -> os.stat_result | None:
    try:
        return os.stat(path) if follow else os.lstat(path)
    except OSError:
        return None


def is_dir(path: str) -> bool:
    st = stat_path(path)
    return st is not None and stat.S_ISDIR(st.st_mode)


def is_prefix(path: str, allow_venvs: bool = False) -> bool:
    """A conda(-layout) prefix has ``conda-meta/``; a venv has ``pyvenv.cfg`` (if allowed)."""
    if is_dir(os.path.join(path, "conda-meta")):
        return True
    return allow_venvs and os.path.isfile(os.path.join(path, "pyvenv.cfg"))


def read_small_file(path: str, owner: int | None = None) -> str | None:
    """Read a small regular file without following a final symlink; None if not acceptable.

    With ``owner`` set, the file must belong to that uid (files users control are read by root).
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        return None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_size > MAX_JSON_BYTES:
            return None
        if owner is not None and st.st_uid != owner:
            return None
        with os.fdopen(fd, "rb", closefd=False) as f:
            return f.read(MAX_JSON_BYTES).decode("utf-8", "replace")
    except OSError:
        return None
    finally:
        os.close(fd)


def _site_packages(prefix: str) -> str | None:
    lib = os.path.join(prefix, "lib")
    try:
        names = sorted(n for n in os.listdir(lib) if re.fullmatch(r"python3\.\d+", n))
    except OSError:
        return None
    for name in reversed(names):
        sp = os.path.join(lib, name, "site-packages")
        if is_dir(sp):
            return sp
    return None


def python_version(prefix: str, site_packages: str | None) -> str | None:
    """From conda-meta (``python-3.11.4-h1_0.json``), pyvenv.cfg, or the ``lib/python3.X`` name."""
    try:
        for entry in os.listdir(os.path.join(prefix, "conda-meta")):
            m = re.fullmatch(r"python-(\d+\.\d+(?:\.\d+)?)-.*\.json", entry)
            if m:
                return m.group(1)
    except OSError:
        pass
    cfg = read_small_file(os.path.join(prefix, "pyvenv.cfg"))
    if cfg:
        m = re.search(r"^\s*version(?:_info)?\s*=\s*(\d+\.\d+(?:\.\d+)?)", cfg, re.MULTILINE)
        if m:
            return m.group(1)
    if site_packages:
        return os.path.basename(os.path.dirname(site_packages))[len("python") :]
    return None


def _has_ipykernel(site_packages: str | None) -> bool:
    if not site_packages:
        return False
    return is_dir(os.path.join(site_packages, "ipykernel")) or os.path.isfile(
        os.path.join(site_packages, "ipykernel_launcher.py")
    )


def _load_kernel_json(path: str, owner: int | None) -> dict | None:
    text = read_small_file(path, owner)
    if text is None:
        return None
    try:
        data = json.loads(text)
    except ValueError:
        return None
    argv = data.get("argv") if isinstance(data, dict) else None
    if not (isinstance(argv, list) and argv and all(isinstance(a, str) for a in argv)):
        return None
    return data


def _kernel_from_spec(prefix: str, key: str, data: dict, resource_dir: str) -> KernelInfo:
    argv = list(data["argv"])
    if not os.path.isabs(argv[0]):
        # relative argv[0] ("R", "python") means the env's own program, never the server's
        argv[0] = os.path.join(prefix, "bin", argv[0])
    env = data.get("env") if isinstance(data.get("env"), dict) else {}
    metadata = data.get("metadata") if isinstance(data.get("metadata"), dict) else {}
    mode = (
        data.get("interrupt_mode") if data.get("interrupt_mode") in ("signal", "message") else None
    )
    return KernelInfo(
        key=key,
        language=str(data.get("language") or key),
        display_name=str(data.get("display_name") or key),
        argv=tuple(argv),
        env=tuple(sorted((str(k), str(v)) for k, v in env.items())),
        resource_dir=resource_dir,
        interrupt_mode=mode or "signal",
        metadata_json=json.dumps(metadata, sort_keys=True, default=str),
    )


def _is_python_spec(data: dict) -> bool:
    argv0 = os.path.basename(data["argv"][0])
    return str(data.get("language", "")).lower() == "python" and bool(_PYTHON_ARGV0.match(argv0))


def find_kernels(
    prefix: str, site_packages: str | None, owner: int | None
) -> tuple[list[KernelInfo], list[str]]:
    """Kernels of one env: its ipykernel (as ``python``), then other kernelspecs it ships; and the
    kernelspec directories left out for want of a valid kernel.json."""
    kernels: list[KernelInfo] = []
    ignored: list[str] = []
    python = os.path.join(prefix, "bin", "python")
    specs_dir = os.path.join(prefix, "share", "jupyter", "kernels")
    specs: list[tuple[str, dict, str]] = []
    try:
        names = sorted(os.listdir(specs_dir))
    except OSError:
        names = []
    for name in names:
        kdir = os.path.join(specs_dir, name)
        if os.path.islink(kdir) or not is_dir(kdir):
            continue
        data = _load_kernel_json(os.path.join(kdir, "kernel.json"), owner)
        if data is None:
            ignored.append(kdir)
            continue
        specs.append((name, data, kdir))
    python_specs = [s for s in specs if _is_python_spec(s[1])]
    has_python = os.path.exists(python) and (_has_ipykernel(site_packages) or bool(python_specs))
    if has_python:
        resource_dir = python_specs[0][2] if python_specs else None
        kernels.append(
            KernelInfo(
                key="python",
                language="python",
                display_name="Python",
                argv=(python, "-m", "ipykernel_launcher", "-f", "{connection_file}"),
                resource_dir=resource_dir,
                metadata_json=json.dumps({"debugger": True}),
            )
        )
    for name, data, kdir in specs:
        if _is_python_spec(data) and has_python:
            continue  # the same ipykernel again: one Python kernel per env, no duplicates
        kernels.append(_kernel_from_spec(prefix, name.lower(), data, kdir))
    return kernels, ignored


def _activate_scripts(prefix: str) -> tuple[str, ...]:
    d = os.path.join(prefix, "etc", "conda", "activate.d")
    try:
        names = sorted(n for n in os.listdir(d) if n.endswith(".sh"))
    except OSError:
        return ()
    return tuple(os.path.join(d, n) for n in names if os.path.isfile(os.path.join(d, n)))


def signature_paths(prefix: str, site_packages: str | None = None) -> tuple[str, ...]:
    """The paths whose ``stat`` tells whether an env changed (installs, kernels, activation)."""
    return (
        prefix,
        os.path.join(prefix, "conda-meta"),
        site_packages or os.path.join(prefix, "lib"),
        os.path.join(prefix, "share", "jupyter", "kernels"),
        os.path.join(prefix, "etc", "conda", "activate.d"),
        os.path.join(prefix, "pyvenv.cfg"),
    )


def stat_signature(paths: Iterable[str]) -> tuple:
    """(inode, mtime, owner) of each path, None for missing ones."""
    sig = []
    for p in paths:
        try:
            st = os.stat(p)
        except OSError:
            sig.append(None)
        else:
            sig.append((st.st_ino, st.st_mtime_ns, st.st_uid))
    return tuple(sig)


def scan_prefix(prefix: str, group: str, owner: int | None = None, allow_venvs: bool = False):
    """Read one prefix into a :class:`CondaEnv` (named later by :func:`assign_names`)."""
    if not is_prefix(prefix, allow_venvs):
        return None
    site_packages = _site_packages(prefix)
    kernels, ignored = find_kernels(prefix, site_packages, owner)
    return CondaEnv(
        name=f"{group}/{slugify(os.path.basename(prefix))}",
        group=group,
        prefix=prefix,
        python_version=python_version(prefix, site_packages),
        kernels=tuple(kernels),
        activate_scripts=_activate_scripts(prefix),
        is_venv=not is_dir(os.path.join(prefix, "conda-meta")),
        ignored_kernelspecs=tuple(ignored),
    )


def site_packages_hint(env: CondaEnv | None) -> str | None:
    if env is None or not env.python_version:
        return None
    major_minor = ".".join(env.python_version.split(".")[:2])
    return os.path.join(env.prefix, "lib", f"python{major_minor}", "site-packages")
