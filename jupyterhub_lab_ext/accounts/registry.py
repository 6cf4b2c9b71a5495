"""The root-owned registry of the system accounts and groups this package created.

A GECOS marker can be rewritten by its user with ``chfn``, so "created by us" is decided
by this file instead: ``<state_dir>/accounts.json`` (mode 0600) in a directory of mode 0700,
both owned by the hub's user (root). Per-home template manifests live next to it in
``<state_dir>/manifests/<name>.json``. Every write replaces the file atomically (temporary
file, ``fsync``, ``rename``) under an ``flock`` on ``<state_dir>/accounts.lock``, so the hub
and the ``homes`` CLI can both update it. All functions block: call them in a thread.
"""

from __future__ import annotations

import fcntl
import json
import os
import stat
import time
from collections.abc import Callable
from contextlib import contextmanager
from typing import Any

from jupyterhub_lab_ext.util.atomic import atomic_replace

REGISTRY = "accounts.json"
_LOCK = "accounts.lock"
_MANIFESTS = "manifests"


class RegistryError(RuntimeError):
    """The registry is missing its safety properties (owner, mode) or unreadable."""


def utcnow_iso() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def _check_private(st: os.stat_result, path: str, *, directory: bool) -> None:
    if directory and not stat.S_ISDIR(st.st_mode):
        raise RegistryError(f"{path} is not a directory")
    if not directory and not stat.S_ISREG(st.st_mode):
        raise RegistryError(f"{path} is not a regular file")
    if st.st_uid != os.geteuid():
        raise RegistryError(f"{path} is owned by uid {st.st_uid}, expected {os.geteuid()}")
    if st.st_mode & 0o077:
        raise RegistryError(f"{path} has mode {st.st_mode & 0o7777:o}, expected no group/other")


def write_private_json(directory: str, name: str, data: Any) -> None:
    """Atomically replace ``directory/name`` with ``data`` as JSON, mode 0600."""

    def write(f):
        json.dump(data, f, indent=1, sort_keys=True)
        f.write("\n")

    atomic_replace(os.path.join(directory, name), write, mode=0o600)


def read_private_json(path: str) -> Any | None:
    """Read a JSON file that must be private to us; None if it does not exist."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    with os.fdopen(fd, encoding="utf-8") as f:
        _check_private(os.fstat(f.fileno()), path, directory=False)
        try:
            return json.load(f)
        except ValueError as e:
            raise RegistryError(f"{path} is not valid JSON: {e}") from e


class AccountRegistry:
    """Which accounts and groups we created, plus what template files each home got."""

    def __init__(self, state_dir: str):
        self.state_dir = os.path.abspath(state_dir)
        self.path = os.path.join(self.state_dir, REGISTRY)
        self._cache: tuple[tuple[int, ...], dict] | None = None

    # -- directory and locking --------------------------------------------------------------
    def ensure_dir(self) -> None:
        """Create the state directory (0700) if needed and check it is private to us."""
        os.makedirs(os.path.dirname(self.state_dir), mode=0o755, exist_ok=True)
        try:
            os.mkdir(self.state_dir, 0o700)
            os.chmod(self.state_dir, 0o700)
        except FileExistsError:
            pass
        _check_private(os.lstat(self.state_dir), self.state_dir, directory=True)

    @contextmanager
    def _locked(self):
        self.ensure_dir()
        fd = os.open(
            os.path.join(self.state_dir, _LOCK),
            os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC,
            0o600,
        )
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    # -- reading ----------------------------------------------------------------------------
    def load(self) -> dict:
        """The registry content (``{"users": {...}, "groups": {...}}``), cached by stat."""
        try:
            st = os.stat(self.path, follow_symlinks=False)
        except FileNotFoundError:
            return {"version": 1, "users": {}, "groups": {}}
        dst = os.lstat(self.state_dir)
        key = (
            st.st_ino,
            st.st_mtime_ns,
            st.st_size,
            st.st_mode,
            st.st_uid,
            dst.st_mode,
            dst.st_uid,
        )
        if self._cache and self._cache[0] == key:
            return self._cache[1]
        _check_private(dst, self.state_dir, directory=True)
        data = read_private_json(self.path) or {}
        if not isinstance(data.get("users"), dict) or not isinstance(data.get("groups"), dict):
            raise RegistryError(f"{self.path}: missing 'users' or 'groups'")
        self._cache = (key, data)
        return data

    def user(self, name: str) -> dict | None:
        return self.load()["users"].get(name)

    def group(self, name: str) -> dict | None:
        return self.load()["groups"].get(name)

    def users(self) -> dict[str, dict]:
        return dict(self.load()["users"])

    # -- writing ----------------------------------------------------------------------------
    def update(self, change: Callable[[dict], None]) -> dict:
        """Apply ``change`` to a fresh copy of the registry and write it atomically."""
        with self._locked():
            self._cache = None
            data = json.loads(json.dumps(self.load()))
            data.setdefault("version", 1)
            change(data)
            write_private_json(self.state_dir, REGISTRY, data)
            self._cache = None
            return data

    def set_user(self, name: str, **fields: Any) -> None:
        def change(data):
            record = data["users"].setdefault(name, {"created": utcnow_iso()})
            record.update(fields)

        self.update(change)

    def drop_user(self, name: str) -> None:
        """Forget ``name`` (only used to undo an intent record when creation failed)."""
        self.update(lambda data: data["users"].pop(name, None))

    def set_group(self, name: str, gid: int | None) -> None:
        """Record group ``name`` (``gid`` None: about to be created)."""

        def change(data):
            data["groups"][name] = {"gid": gid, "created": utcnow_iso()}

        self.update(change)

    def drop_group(self, name: str) -> None:
        """Forget group ``name`` (undo an intent record when creating it failed)."""
        self.update(lambda data: data["groups"].pop(name, None))

    # -- per-home manifests -----------------------------------------------------------------
    def _manifest_path(self, name: str) -> tuple[str, str]:
        if "/" in name or name.startswith("."):
            raise RegistryError(f"bad account name {name!r}")
        return os.path.join(self.state_dir, _MANIFESTS), f"{name}.json"

    def manifest(self, name: str) -> dict[str, str]:
        directory, fname = self._manifest_path(name)
        data = read_private_json(os.path.join(directory, fname))
        return dict(data.get("files", {})) if data else {}

    def set_manifest(self, name: str, files: dict[str, str]) -> None:
        directory, fname = self._manifest_path(name)
        with self._locked():
            try:
                os.mkdir(directory, 0o700)
                os.chmod(directory, 0o700)
            except FileExistsError:
                _check_private(os.lstat(directory), directory, directory=True)
            write_private_json(directory, fname, {"files": files, "updated": utcnow_iso()})
