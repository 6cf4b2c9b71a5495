"""The conda-kernel mixin on dockerspawner's DockerSpawner and SwarmSpawner.

Entry points ``conda-kernel-docker`` and ``conda-kernel-swarm``. dockerspawner is optional:
this module imports without it and only fails, with a clear message, when one of the classes
is used (``pip install jupyterhub-lab-ext[docker]``).

Conda prefixes are not relocatable, so the containers must see the envs at the same paths as
the hub: the shared env dirs are mounted read-only at their own path (the default of
``read_only_volumes``; set it yourself to mount them differently), and user envs need homes mounted at the
same path (for example ``SystemUserSpawner`` with ``image_homedir_format_string`` equal to the
host home). The image must contain this package, so the server can load the kernelspec manager.
"""

from __future__ import annotations

from traitlets import default

from .spawner import CondaKernelSpawnerMixin

__all__ = ["CondaKernelDockerMixin"]  # + CondaKernelDockerSpawner, CondaKernelSwarmSpawner (lazy)

_CLASSES: dict[str, type] = {}


class CondaKernelDockerMixin(CondaKernelSpawnerMixin):
    """The conda-kernel mixin plus read-only mounts of the shared env dirs at the same path."""

    @default("read_only_volumes")
    def _default_read_only_volumes(self):
        # each shared env dir at its own path, read-only; set read_only_volumes to take over
        return {d: d for d in self.shared_env_dirs}


def _build(name: str) -> type:
    try:
        from dockerspawner import DockerSpawner, SwarmSpawner
    except ImportError as e:  # pragma: no cover - depends on the install
        raise ImportError(
            f"{name} needs dockerspawner: pip install 'jupyterhub-lab-ext[docker]'"
        ) from e
    base = {"CondaKernelDockerSpawner": DockerSpawner, "CondaKernelSwarmSpawner": SwarmSpawner}[
        name
    ]
    doc = f"{base.__name__} whose users pick a shared or personal conda environment."
    return type(name, (CondaKernelDockerMixin, base), {"__doc__": doc, "__module__": __name__})


def __getattr__(name: str):
    if name in ("CondaKernelDockerSpawner", "CondaKernelSwarmSpawner"):
        if name not in _CLASSES:
            _CLASSES[name] = _build(name)
        return _CLASSES[name]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
