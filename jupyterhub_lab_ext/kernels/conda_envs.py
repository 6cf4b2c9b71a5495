"""Discover shared and per-user conda(-layout) environments by reading the file system only.

Nothing here runs ``conda`` or any program from an environment: the hub runs this as root, on
environments that users control, so it only ``stat``s directories and reads small files.

The result is a list of immutable :class:`~jupyterhub_lab_ext.kernels.env_prefix.CondaEnv` records (read by
:mod:`jupyterhub_lab_ext.kernels.env_prefix`) with stable, readable names (``shared/geo``, ``mine/ml``).
:class:`EnvScanner` keeps a stat-based cache so a re-scan of unchanged trees costs a few
``stat`` calls per environment. Every directory seen but not offered is returned as a
:class:`~jupyterhub_lab_ext.kernels.env_skips.Skip` with its reason (the callers log them), and shared envs
must pass the ownership and mode rule of :mod:`jupyterhub_lab_ext.kernels.env_trust`.
"""

from __future__ import annotations

import getpass
import os
import pwd
import stat
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace

from jupyterhub_lab_ext.kernels import env_skips
from jupyterhub_lab_ext.kernels.env_prefix import (
    CondaEnv,
    is_dir,
    is_prefix,
    read_small_file,
    scan_prefix,
    signature_paths,
    site_packages_hint,
    slugify,
    stat_path,
    stat_signature,
)
from jupyterhub_lab_ext.kernels.env_skips import Skip
from jupyterhub_lab_ext.kernels.env_trust import TrustCheck, owner_name, resolve_owners

SHARED = "shared"
MINE = "mine"
#: at most this many lines of ``environments.txt`` are read
MAX_ENVIRONMENTS_TXT_LINES = 10_000


@dataclass(frozen=True)
class UserContext:
    """Whose environments to find: the system user's name, uid and home directory."""

    name: str
    uid: int
    home: str

    @classmethod
    def from_passwd(cls, name: str) -> UserContext:
        entry = pwd.getpwnam(name)
        return cls(name=name, uid=entry.pw_uid, home=entry.pw_dir)

    @classmethod
    def current(cls) -> UserContext:
        home = os.environ.get("HOME") or os.path.expanduser("~")
        return cls(name=getpass.getuser(), uid=os.getuid(), home=home)


@dataclass(frozen=True)
class DiscoveryConfig:
    """Where to look. ``user_env_dirs`` may use ``~`` (the user's home) and ``{username}``."""

    shared_env_dirs: tuple[str, ...] = ("/opt/conda/envs",)
    user_env_dirs: tuple[str, ...] = ("~/.conda/envs",)
    read_environments_txt: bool = True
    allow_venvs: bool = False
    shared_env_owners: tuple[str, ...] = ()  #: trusted besides root (names or uids)

    @classmethod
    def of(cls, settings) -> DiscoveryConfig:
        """The discovery settings of a configurable that has the same-named traits (the spawner
        feature on the hub, the kernel spec manager in the user's server)."""
        return cls(
            shared_env_dirs=tuple(settings.shared_env_dirs),
            user_env_dirs=tuple(settings.user_env_dirs),
            read_environments_txt=settings.read_environments_txt,
            allow_venvs=settings.allow_venvs,
            shared_env_owners=tuple(settings.shared_env_owners),
        )


@dataclass(frozen=True)
class Discovery:
    """What one scan found: the envs to offer, and what it left out and why."""

    envs: list[CondaEnv]
    skipped: list[Skip]


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
        st = stat_path(root)
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
                lst = stat_path(path, follow=False)
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
        paths = signature_paths(prefix, site_packages_hint(env))
        self._envs[key] = _EnvEntry(paths, stat_signature(paths), env)
        return env

    @staticmethod
    def _offer(env, path, config, skips, listed=False) -> CondaEnv | None:
        """``env`` (read from ``path``) when it has a kernel; else append why not to skips.
        A directory that is no env is reported when listed in environments.txt or not hidden."""
        if env is None:
            if listed or (is_dir(path) and not os.path.basename(path).startswith(".")):
                skips.append(
                    Skip(path, _not_an_env(path, config.allow_venvs), env_skips.NOT_AN_ENV)
                )
            return None
        for kdir in env.ignored_kernelspecs:
            skips.append(
                Skip(kdir, "a kernelspec without a valid kernel.json", env_skips.BAD_KERNELSPEC)
            )
        if not env.kernels:
            skips.append(Skip(path, _NO_KERNEL, env_skips.NO_KERNEL))
            return None
        return env

    def _environments_txt(self, path: str, owner: int) -> tuple[str, ...]:
        st = stat_path(path, follow=False)
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

    def _shared(self, config: DiscoveryConfig, skips: list[Skip]) -> list[CondaEnv]:
        """Envs under the admin's shared roots (a root may itself be a prefix) that only root or
        a trusted owner can change."""
        owners = resolve_owners(config.shared_env_owners) if config.shared_env_owners else None
        trust = TrustCheck(owners or frozenset())
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
                if real in seen:
                    continue
                if not is_within(real, [real_root]):
                    why = f"a symbolic link that leads outside {real_root} (to {real})"
                    skips.append(Skip(cand, why, env_skips.OUTSIDE))
                    continue
                env = self._env(real, SHARED, None, config.allow_venvs)
                unsafe = trust.reason(real) if env is not None else None
                if unsafe:
                    why = f"unsafe shared location: {unsafe}"
                    skips.append(Skip(real, why, env_skips.UNSAFE_SHARED))
                    continue
                env = self._offer(env, real, config, skips)
                if env is not None:
                    seen.add(real)
                    found.append(env)
        return assign_names(found)

    def _user(self, config: DiscoveryConfig, user: UserContext, skips: list[Skip]):
        """The user's own envs: owned by the user and inside the user's home or user_env_dirs."""
        home = os.path.normpath(user.home)
        real_home = os.path.realpath(home)
        allowed = [real_home]
        outside = f"leads outside the home of {user.name} and the user_env_dirs"
        shared_roots = [os.path.realpath(d) for d in config.shared_env_dirs]
        candidates: list[tuple[str, bool]] = []  # (path, listed in environments.txt)
        for d in (expand_user_dir(d, user) for d in config.user_env_dirs):
            real_dir = os.path.realpath(d)
            if is_within(d, [home]) and not is_within(real_dir, [real_home]):
                # e.g. ~/.conda/envs -> /home/other/...: never follow a user's link out of the home
                skips.append(Skip(d, f"{outside} (to {real_dir})", env_skips.OUTSIDE))
                continue
            allowed.append(real_dir)
            candidates.extend((path, False) for path, _ in self._list_root(real_dir))
        if config.read_environments_txt:
            conda_dir = os.path.join(home, ".conda")
            real_conda = os.path.realpath(conda_dir)
            if is_within(real_conda, [real_home]):  # no link out of the home
                txt = os.path.join(conda_dir, "environments.txt")
                candidates.extend((p, True) for p in self._environments_txt(txt, user.uid))
            else:
                skips.append(Skip(conda_dir, f"{outside} (to {real_conda})", env_skips.OUTSIDE))
        found: list[CondaEnv] = []
        seen: set[str] = set()
        for cand, listed in candidates:
            if not os.path.isabs(cand):
                skips.append(Skip(cand, "not an absolute path", env_skips.NOT_AN_ENV))
                continue
            real = os.path.realpath(cand)
            if real in seen or is_within(real, shared_roots):
                continue
            if not is_within(real, allowed):
                skips.append(Skip(cand, f"{outside} (to {real})", env_skips.OUTSIDE))
                continue
            st = stat_path(real)
            if st is None or not stat.S_ISDIR(st.st_mode):
                if listed:
                    skips.append(Skip(cand, _not_an_env(real, False), env_skips.NOT_AN_ENV))
                continue
            if st.st_uid != user.uid:
                why = f"owned by {owner_name(st.st_uid)}, not by {user.name}"
                skips.append(Skip(cand, why, env_skips.NOT_OWNED))
                continue
            env = self._env(real, MINE, user.uid, config.allow_venvs)
            env = self._offer(env, real, config, skips, listed)
            if env is not None:
                seen.add(real)
                found.append(env)
        found.sort(key=lambda e: (os.path.basename(e.prefix).lower(), e.prefix))
        return assign_names(found)

    def scan(self, config: DiscoveryConfig, user: UserContext | None) -> Discovery:
        """Shared envs first, then the user's (none when ``user`` is None), and the skips."""
        skips: list[Skip] = []
        envs = self._shared(config, skips)
        if user is not None:
            envs += self._user(config, user, skips)
        return Discovery(envs, list(dict.fromkeys(skips)))


_NO_KERNEL = "an environment without any kernel (install ipykernel or a kernelspec into it)"


def _not_an_env(path: str, allow_venvs: bool) -> str:
    st = stat_path(path)
    if st is None:
        return "does not exist"
    if not stat.S_ISDIR(st.st_mode):
        return "not a directory"
    return "not an environment (no conda-meta/" + (" or pyvenv.cfg)" if allow_venvs else ")")


def scan(config: DiscoveryConfig, user: UserContext | None) -> Discovery:
    """One-shot discovery without a cache (the CLI)."""
    return EnvScanner().scan(config, user)
