"""The discovery settings the spawner hands to the user's server, as environment variables.

The conda-kernel spawners (hub process) write them with :func:`to_env`; the kernelspec manager
(single-user server) reads them back with :func:`from_env`. This module owns the variable names
and their format, so the two processes cannot drift apart: directory lists are ``:``-separated
(``os.pathsep``), flags are ``"1"``/``"0"`` (``true``, ``yes`` and ``on`` also read as set).

A variable that is missing, and an empty shared-dir list, mean the default of
:class:`~jupyterhub_lab_ext.kernels.conda_envs.DiscoveryConfig`; an empty user-dir list means
no user dirs.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from jupyterhub_lab_ext.kernels.conda_envs import DiscoveryConfig

SHARED_ENV_DIRS = "JUPYTERHUB_LAB_EXT_SHARED_ENV_DIRS"
USER_ENV_DIRS = "JUPYTERHUB_LAB_EXT_USER_ENV_DIRS"
ALLOW_VENVS = "JUPYTERHUB_LAB_EXT_ALLOW_VENVS"
READ_ENVIRONMENTS_TXT = "JUPYTERHUB_LAB_EXT_READ_ENVIRONMENTS_TXT"
SHARED_ENV_OWNERS = "JUPYTERHUB_LAB_EXT_SHARED_ENV_OWNERS"

#: conda's own variables: where ``conda create -n NAME`` puts envs, and its package cache
CONDA_ENVS_DIRS = "CONDA_ENVS_DIRS"
CONDA_PKGS_DIRS = "CONDA_PKGS_DIRS"

_TRUE = frozenset({"1", "true", "yes", "on"})


def _join(values) -> str:
    return os.pathsep.join(values)


def _split(value: str | None) -> tuple[str, ...] | None:
    if value is None:
        return None
    return tuple(d for d in value.split(os.pathsep) if d)


def _flag(value: str | None, fallback: bool) -> bool:
    if value is None:
        return fallback
    return value.strip().lower() in _TRUE


def to_env(config: DiscoveryConfig) -> dict[str, str]:
    """The variables that tell the user's server ``config``."""
    return {
        SHARED_ENV_DIRS: _join(config.shared_env_dirs),
        USER_ENV_DIRS: _join(config.user_env_dirs),
        ALLOW_VENVS: "1" if config.allow_venvs else "0",
        READ_ENVIRONMENTS_TXT: "1" if config.read_environments_txt else "0",
        SHARED_ENV_OWNERS: _join(config.shared_env_owners),
    }


def from_env(environ: Mapping[str, str]) -> DiscoveryConfig:
    """The settings the spawner passed (defaults for what it did not)."""
    defaults = DiscoveryConfig()
    user_dirs = _split(environ.get(USER_ENV_DIRS))
    return DiscoveryConfig(
        shared_env_dirs=_split(environ.get(SHARED_ENV_DIRS)) or defaults.shared_env_dirs,
        user_env_dirs=defaults.user_env_dirs if user_dirs is None else user_dirs,
        read_environments_txt=_flag(
            environ.get(READ_ENVIRONMENTS_TXT), defaults.read_environments_txt
        ),
        allow_venvs=_flag(environ.get(ALLOW_VENVS), defaults.allow_venvs),
        shared_env_owners=_split(environ.get(SHARED_ENV_OWNERS)) or defaults.shared_env_owners,
    )
