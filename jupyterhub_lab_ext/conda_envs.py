"""Discover shared and per-user conda(-layout) environments by reading the file system only.

A *prefix* is a directory with a ``conda-meta/`` subdirectory (conda, mamba and micromamba all
write one); a plain virtualenv (``pyvenv.cfg``) counts too when the admin allows it. Nothing here
runs ``conda`` or any program from an environment: the hub runs this as root, on environments
that users control, so it only ``stat``s directories and reads small JSON files.

The result is a list of immutable :class:`CondaEnv` records with stable, readable names
(``shared/geo``, ``mine/ml``) and the kernels each one provides (:class:`KernelInfo`).
:class:`EnvScanner` keeps a stat-based cache so a re-scan of unchanged trees costs a few
``stat`` calls per environment.
"""

from __future__ import annotations

import json
import logging
import os
import re
import stat
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace

log = logging.getLogger(__name__)

SHARED = "shared"
MINE = "mine"
#: kernel.json files larger than this are ignored (they are a few hundred bytes normally)
MAX_JSON_BYTES = 256 * 1024
#: at most this many lines of ``environments.txt`` are read
MAX_ENVIRONMENTS_TXT_LINES = 10_000
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


@dataclass(frozen=True)
class UserContext:
    """Whose environments to find: the system user's name, uid and home directory."""

    name: str
    uid: int
    home: str

    @classmethod
    def from_passwd(cls, name: str) -> UserContext:
        import pwd

        entry = pwd.getpwnam(name)
        return cls(name=name, uid=entry.pw_uid, home=entry.pw_dir)

    @classmethod
    def current(cls) -> UserContext:
        import getpass

        home = os.environ.get("HOME") or os.path.expanduser("~")
        return cls(name=getpass.getuser(), uid=os.getuid(), home=home)


@dataclass(frozen=True)
class DiscoveryConfig:
    """Where to look. ``user_env_dirs`` may use ``~`` (the user's home) and ``{username}``."""

    shared_env_dirs: tuple[str, ...] = ("/opt/conda/envs",)
    user_env_dirs: tuple[str, ...] = ("~/.conda/envs",)
    read_environments_txt: bool = True
    allow_venvs: bool = False

    @classmethod
    def of(cls, settings) -> DiscoveryConfig:
        """The discovery settings of a configurable that has the same-named traits (the spawner
        mixin on the hub, the kernel spec manager in the user's server)."""
        return cls(
            shared_env_dirs=tuple(settings.shared_env_dirs),
            user_env_dirs=tuple(settings.user_env_dirs),
            read_environments_txt=settings.read_environments_txt,
            allow_venvs=settings.allow_venvs,
        )


def slugify(text: str) -> str:
    """Lower-case ``[a-z0-9._-]`` version of ``text`` (never empty)."""
    slug = _UNSAFE.sub("-", text.lower()).strip("-.")
    return slug or "env"


def expand_user_dir(template: str, user: UserContext) -> str:
    """Expand ``~`` to the user's home (not the hub's) and ``{username}`` to the user's name."""
    path = template.replace("{username}", user.name)
    if path == "~" or path.startswith("~/"):
        path = user.home + path[1:]
    return os.path.normpath(path)


def is_within(path: str, roots: Iterable[str]) -> bool:
    """True when ``path`` equals or lies under one of ``roots`` (all absolute, symlink-free)."""
    for root in roots:
        if path == root or path.startswith(root.rstrip("/") + "/"):
            return True
    return False


def _stat(path: str, follow: bool = True) -> os.stat_result | None:
    try:
        return os.stat(path) if follow else os.lstat(path)
    except OSError:
        return None


def _isdir(path: str) -> bool:
    st = _stat(path)
    return st is not None and stat.S_ISDIR(st.st_mode)


def is_prefix(path: str, allow_venvs: bool = False) -> bool:
    """A conda(-layout) prefix has ``conda-meta/``; a venv has ``pyvenv.cfg`` (if allowed)."""
    if _isdir(os.path.join(path, "conda-meta")):
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
        if _isdir(sp):
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
    return _isdir(os.path.join(site_packages, "ipykernel")) or os.path.isfile(
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


def find_kernels(prefix: str, site_packages: str | None, owner: int | None) -> list[KernelInfo]:
    """Kernels of one env: its ipykernel (as ``python``), then other kernelspecs it ships."""
    kernels: list[KernelInfo] = []
    python = os.path.join(prefix, "bin", "python")
    specs_dir = os.path.join(prefix, "share", "jupyter", "kernels")
    specs: list[tuple[str, dict, str]] = []
    try:
        names = sorted(os.listdir(specs_dir))
    except OSError:
        names = []
    for name in names:
        kdir = os.path.join(specs_dir, name)
        if os.path.islink(kdir) or not _isdir(kdir):
            continue
        data = _load_kernel_json(os.path.join(kdir, "kernel.json"), owner)
        if data is None:
            log.info("skipping kernelspec without a valid kernel.json: %s", kdir)
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
    return kernels


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
    return CondaEnv(
        name=f"{group}/{slugify(os.path.basename(prefix))}",
        group=group,
        prefix=prefix,
        python_version=python_version(prefix, site_packages),
        kernels=tuple(find_kernels(prefix, site_packages, owner)),
        activate_scripts=_activate_scripts(prefix),
        is_venv=not _isdir(os.path.join(prefix, "conda-meta")),
    )


def assign_names(envs: Sequence[CondaEnv]) -> list[CondaEnv]:
    """Unique ``group/slug`` names in the given (stable) order; later duplicates get ``-2``, ``-3``."""
    seen: set[str] = set()
    out = []
    for env in envs:
        base = f"{env.group}/{slugify(os.path.basename(env.prefix))}"
        name, n = base, 1
        while name in seen:
            n += 1
            name = f"{base}-{n}"
        seen.add(name)
        out.append(env if env.name == name else replace(env, name=name))
    return out


@dataclass
class _RootEntry:
    sig: tuple | None
    children: tuple[tuple[str, bool], ...]  #: (path, is_symlink)


@dataclass
class _EnvEntry:
    paths: tuple[str, ...]
    sig: tuple
    env: CondaEnv | None


@dataclass
class EnvScanner:
    """Stat-cached discovery. One instance per process; thread-safe enough for one caller at a time."""

    _roots: dict[str, _RootEntry] = field(default_factory=dict)
    _envs: dict[tuple, _EnvEntry] = field(default_factory=dict)
    _txt: dict[str, tuple[tuple | None, tuple[str, ...]]] = field(default_factory=dict)

    def _list_root(self, root: str) -> tuple[tuple[str, bool], ...]:
        """Entries of a (symlink-free) envs dir, re-read only when the dir's mtime changes."""
        st = _stat(root)
        sig = None if st is None else (st.st_ino, st.st_mtime_ns)
        cached = self._roots.get(root)
        if cached is not None and cached.sig == sig:
            return cached.children
        children: list[tuple[str, bool]] = []
        if st is not None and stat.S_ISDIR(st.st_mode):
            try:
                names = sorted(os.listdir(root))
            except OSError:
                names = []
            for name in names:
                path = os.path.join(root, name)
                lst = _stat(path, follow=False)
                if lst is not None:
                    children.append((path, stat.S_ISLNK(lst.st_mode)))
        entry = _RootEntry(sig, tuple(children))
        self._roots[root] = entry
        return entry.children

    def _env(self, prefix: str, group: str, owner: int | None, allow_venvs: bool):
        key = (prefix, group, owner, allow_venvs)
        cached = self._envs.get(key)
        if cached is not None and stat_signature(cached.paths) == cached.sig:
            return cached.env
        env = scan_prefix(prefix, group, owner, allow_venvs)
        if env is not None and not env.kernels:
            log.info(
                "skipping env %s: it has no kernel (install ipykernel or a kernelspec)", prefix
            )
        paths = signature_paths(prefix, _site_packages_hint(env))
        self._envs[key] = _EnvEntry(paths, stat_signature(paths), env)
        return env

    def _environments_txt(self, path: str, owner: int) -> tuple[str, ...]:
        st = _stat(path, follow=False)
        sig = None if st is None else (st.st_ino, st.st_mtime_ns, st.st_size, st.st_uid)
        cached = self._txt.get(path)
        if cached is not None and cached[0] == sig:
            return cached[1]
        text = read_small_file(path, owner) if st is not None else None
        lines: tuple[str, ...] = ()
        if text:
            raw = text.splitlines()[:MAX_ENVIRONMENTS_TXT_LINES]
            lines = tuple(s.strip() for s in raw if s.strip() and not s.lstrip().startswith("#"))
        self._txt[path] = (sig, lines)
        return lines

    def shared_envs(self, config: DiscoveryConfig) -> list[CondaEnv]:
        """Envs under the admin's shared roots (a root may itself be a prefix)."""
        found: list[CondaEnv] = []
        seen: set[str] = set()
        for root in config.shared_env_dirs:
            real_root = os.path.realpath(root)
            if is_prefix(real_root, config.allow_venvs):
                candidates: tuple[tuple[str, bool], ...] = ((real_root, False),)
            else:
                candidates = self._list_root(real_root)
            for cand, is_link in candidates:
                # a plain entry of a symlink-free dir is its own real path
                real = os.path.realpath(cand) if is_link else cand
                if real in seen or not is_within(real, [real_root]):
                    if real not in seen:
                        log.debug("ignoring shared env %s: resolves outside %s", cand, root)
                    continue
                env = self._env(real, SHARED, None, config.allow_venvs)
                if env is not None and env.kernels:
                    seen.add(real)
                    found.append(env)
        return assign_names(found)

    def user_envs(self, config: DiscoveryConfig, user: UserContext) -> list[CondaEnv]:
        """The user's own envs: owned by the user and inside the user's home or user_env_dirs."""
        home = os.path.normpath(user.home)
        real_home = os.path.realpath(home)
        allowed = [real_home]
        shared_roots = [os.path.realpath(d) for d in config.shared_env_dirs]
        candidates: list[str] = []
        for d in (expand_user_dir(d, user) for d in config.user_env_dirs):
            real_dir = os.path.realpath(d)
            if is_within(d, [home]) and not is_within(real_dir, [real_home]):
                # e.g. ~/.conda/envs -> /home/other/...: never follow a user's link out of the home
                log.info("ignoring %s of %s: it leads outside the home", d, user.name)
                continue
            allowed.append(real_dir)
            candidates.extend(path for path, _ in self._list_root(real_dir))
        if config.read_environments_txt:
            conda_dir = os.path.join(home, ".conda")
            if is_within(os.path.realpath(conda_dir), [real_home]):  # no link out of the home
                txt = os.path.join(conda_dir, "environments.txt")
                candidates.extend(self._environments_txt(txt, user.uid))
        found: list[CondaEnv] = []
        seen: set[str] = set()
        for cand in candidates:
            if not os.path.isabs(cand):
                continue
            real = os.path.realpath(cand)
            if real in seen or is_within(real, shared_roots):
                continue
            if not is_within(real, allowed):
                log.info("ignoring env %s of %s: outside the allowed roots", cand, user.name)
                continue
            st = _stat(real)
            if st is None or not stat.S_ISDIR(st.st_mode):
                continue
            if st.st_uid != user.uid:
                log.info("ignoring env %s of %s: not owned by the user", cand, user.name)
                continue
            env = self._env(real, MINE, user.uid, config.allow_venvs)
            if env is not None and env.kernels:
                seen.add(real)
                found.append(env)
        found.sort(key=lambda e: (os.path.basename(e.prefix).lower(), e.prefix))
        return assign_names(found)

    def discover(self, config: DiscoveryConfig, user: UserContext | None) -> list[CondaEnv]:
        """Shared envs first, then the user's (none when ``user`` is None)."""
        envs = self.shared_envs(config)
        if user is not None:
            envs += self.user_envs(config, user)
        return envs


def _site_packages_hint(env: CondaEnv | None) -> str | None:
    if env is None or not env.python_version:
        return None
    major_minor = ".".join(env.python_version.split(".")[:2])
    return os.path.join(env.prefix, "lib", f"python{major_minor}", "site-packages")


def discover(config: DiscoveryConfig, user: UserContext | None) -> list[CondaEnv]:
    """One-shot discovery without a cache (the CLI and tests)."""
    return EnvScanner().discover(config, user)
