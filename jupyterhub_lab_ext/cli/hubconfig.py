"""The hub's config as the hub sees it: one loader for every admin command's ``--config``.

:class:`HubConfig` loads ``jupyterhub_config.py`` as JupyterHub does (the file is Python and is
executed: run the command where the hub's config can run), resolves ``c.JupyterHub``'s
``authenticator_class`` and ``spawner_class`` with JupyterHub's own trait type (entry-point short
names such as ``userlist`` or ``conda-kernel``, import strings, or class objects, so an admin's
subclass counts), and instantiates that class with the loaded config. Every section the hub would
apply to it therefore applies here too: ``c.Authenticator``, ``c.UserlistAuthenticator``,
``c.Spawner``, ``c.CondaKernelSpawner``, the class's own and its bases'. A config that names no
class gets this package's: ``userlist`` and ``conda-kernel``.

Objects are built as the hub builds them, minus the hub: no parent application, no database, a
stand-in for the spawner's user (its name), and a logger that keeps their start-up lines out of
the command's output.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from urllib.parse import quote

from jupyterhub.traitlets import EntryPointType
from traitlets import HasTraits, TraitError
from traitlets.config import Config
from traitlets.config.loader import PyFileConfigLoader

#: assumed when the config sets no ``c.JupyterHub.authenticator_class`` / ``spawner_class``
DEFAULT_AUTHENTICATOR = "userlist"
DEFAULT_SPAWNER = "conda-kernel"

_QUIET = logging.getLogger("jupyterhub_lab_ext.cli.hub")
_QUIET.addHandler(logging.NullHandler())
_QUIET.propagate = False


def _name(klass) -> str:
    return klass if isinstance(klass, str) else f"{klass.__module__}.{klass.__qualname__}"


class HubConfigError(Exception):
    """The hub's config cannot be loaded, or does not configure what a command needs."""


@dataclass(frozen=True)
class _User:
    """What a spawner may read of its user while it is configured (the hub gives it a User)."""

    name: str

    @property
    def escaped_name(self) -> str:
        return quote(self.name, safe="@~")  # as jupyterhub.user.User.escaped_name

    @property
    def url(self) -> str:
        return f"/user/{self.escaped_name}/"


class _HubClasses(HasTraits):
    """The two class options of ``c.JupyterHub``, resolved by JupyterHub's trait type."""

    authenticator_class = EntryPointType(
        klass="jupyterhub.auth.Authenticator", entry_point_group="jupyterhub.authenticators"
    )
    spawner_class = EntryPointType(
        klass="jupyterhub.spawner.Spawner", entry_point_group="jupyterhub.spawners"
    )


@dataclass(frozen=True)
class HubConfig:
    """A loaded ``jupyterhub_config.py``."""

    path: str
    config: Config

    @classmethod
    def load(cls, path: str) -> HubConfig:
        """Execute the config file; :class:`HubConfigError` says why it cannot be loaded."""
        loader = PyFileConfigLoader(os.path.basename(path), os.path.dirname(path) or ".")
        try:
            config = loader.load_config()
        except Exception as e:  # the config file is Python: anything can go wrong in it
            raise HubConfigError(f"{path}: cannot load hub config: {type(e).__name__}: {e}") from e
        return cls(path, config)

    def _class(self, option: str, default: str) -> type:
        value = self.config.get("JupyterHub", {}).get(option, default)
        try:
            return getattr(_HubClasses(**{option: value}), option)
        except TraitError as e:
            trait = _HubClasses.class_traits()[option]
            raise HubConfigError(
                f"{self.path}: c.JupyterHub.{option} = {value!r} is neither an installed "
                f"{trait.entry_point_group} entry point nor a subclass of {_name(trait.klass)}"
            ) from e

    @property
    def authenticator_class(self) -> type:
        return self._class("authenticator_class", DEFAULT_AUTHENTICATOR)

    @property
    def spawner_class(self) -> type:
        return self._class("spawner_class", DEFAULT_SPAWNER)

    def authenticator_settings(self, names: tuple[str, ...], **overrides) -> dict:
        """The options ``names`` of the hub's authenticator, configured as the hub configures it;
        ``overrides`` win over the file (as the command line does)."""
        return self._settings(self.authenticator_class, "authenticator", names, overrides)

    def spawner_settings(self, names: tuple[str, ...], user: str, **overrides) -> dict:
        """The options ``names`` of the hub's spawner for ``user`` (the hub makes one spawner per
        user, and some spawners read their user while being configured: dockerspawner names its
        container after the user as soon as ``image`` is set)."""
        overrides = {"user": _User(user), **overrides}
        return self._settings(self.spawner_class, "spawner", names, overrides)

    def _settings(self, cls: type, what: str, names: tuple[str, ...], overrides: dict) -> dict:
        traits = cls.class_traits()
        missing = [name for name in (*names, *overrides) if name not in traits]
        if missing:  # e.g. ``envs --config`` on a hub without a conda-kernel spawner
            raise HubConfigError(
                f"{self.path}: the hub's {what} {cls.__name__} has no {', '.join(missing)}: "
                "is it one of jupyterhub-lab-ext's?"
            )
        try:
            obj = cls(config=self.config, log=_QUIET, **overrides)
        except Exception as e:  # the hub would fail on it too: say why, no traceback
            why = f"{type(e).__name__}: {e}"
            raise HubConfigError(f"{self.path}: cannot configure {cls.__name__}: {why}") from e
        return {name: getattr(obj, name) for name in names}
