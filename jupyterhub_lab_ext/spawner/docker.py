"""``conda-kernel-docker`` and ``conda-kernel-swarm``: the conda-kernel feature on dockerspawner.

:class:`CondaKernelDockerSpawner` (on ``DockerSpawner``) and :class:`CondaKernelSwarmSpawner` (on
``SwarmSpawner``) take the options of every conda-kernel spawner (``c.CondaKernelSpawner.*``), the
container options below, which both share (``c.CondaKernelContainerSpawner.*``), and
dockerspawner's. This module imports dockerspawner (``pip install jupyterhub-lab-ext[docker]``);
JupyterHub loads it only when an admin selects one of its classes.

conda prefixes cannot be moved, so a container must see the envs at the same paths as the hub.
The defaults here make that the case for a one-machine deployment where users are system users:

- the shared env dirs are mounted read-only at their own path (``read_only_volumes``);
- the user's home is mounted read-write at its own path (``volumes``), and the server runs as
  the user's uid:gid with ``HOME`` set, so ``~/.conda/envs`` is the same directory inside and out;
- host networking (``network_name = "host"``): every server listens on 127.0.0.1 on a port of
  its own, picked at each start; nothing is published through Docker's bridge or swarm ingress;
- containers (and swarm services) are removed when the server stops (``remove``).

Set any of those traits to change it. The image must contain this package (the server loads
the kernelspec manager from it) and a Jupyter stack matching the hub.
"""

from __future__ import annotations

import functools
import pwd

from jupyterhub.utils import random_port
from traitlets import Bool, default

from jupyterhub_lab_ext.kernels.conda_envs import UserContext
from jupyterhub_lab_ext.spawner.conda_kernel import CondaKernelSpawner

try:
    from dockerspawner import DockerSpawner, SwarmSpawner
except ImportError as e:  # pragma: no cover - depends on the install
    raise ImportError(
        "conda-kernel-docker and conda-kernel-swarm need dockerspawner: "
        "pip install 'jupyterhub-lab-ext[docker]'"
    ) from e

__all__ = ["CondaKernelContainerSpawner", "CondaKernelDockerSpawner", "CondaKernelSwarmSpawner"]


class CondaKernelContainerSpawner(CondaKernelSpawner):
    """The conda-kernel feature plus container defaults that keep env paths identical (the part
    the Docker and Swarm variants share; combine it with a dockerspawner class, before it)."""

    random_host_port = Bool(
        True,
        help="""
        With host networking, pick a free port on 127.0.0.1 for each server start (several
        users' servers share the host's network). Set to False to use ``port`` as configured.
        """,
    ).tag(config=True)

    run_as_user = Bool(
        True,
        help="""
        Run the container as the user's system uid:gid (from the hub's passwd) with ``HOME``
        and the working directory set to their home, which is mounted at the same path.
        Set to False for images that switch users themselves (docker-stacks' ``NB_UID``).
        """,
    ).tag(config=True)

    @functools.cached_property
    def _account(self) -> UserContext | None:
        """The user's system account (None without one); looked up once per spawner."""
        return self.conda_user_context() if self.run_as_user else None

    @property
    def _host_network(self) -> bool:
        return self.network_name == "host"

    @default("network_name")
    def _default_network_name(self):
        return "host"

    @default("use_internal_ip")
    def _default_use_internal_ip(self):
        # with host networking nothing is published; the hub talks to 127.0.0.1:port
        return self._host_network or self.network_name not in {"bridge", "host"}

    @default("ip")
    def _default_ip(self):
        return "127.0.0.1" if self._host_network else "0.0.0.0"

    @default("remove")
    def _default_remove(self):
        return True

    @default("read_only_volumes")
    def _default_read_only_volumes(self):
        # each shared env dir at its own path, read-only
        return {d: d for d in self.shared_env_dirs}

    @default("volumes")
    def _default_volumes(self):
        account = self._account
        return {account.home: account.home} if account else {}

    def _user_spec(self) -> dict:
        account = self._account
        if account is None:
            return {}
        gid = pwd.getpwnam(account.name).pw_gid
        return {"user": f"{account.uid}:{gid}", "workdir": account.home}

    def run_pre_spawn_hook(self):
        if self._host_network and self.random_host_port:
            self.port = random_port()
        return super().run_pre_spawn_hook()

    async def get_ip_and_port(self):
        if self._host_network:
            return self.ip, self.port
        return await super().get_ip_and_port()

    def conda_home(self, env: dict) -> str | None:
        account = self._account
        return env.get("HOME") or (account.home if account else None)

    def get_env(self):
        env = super().get_env()
        account = self._account
        if account is not None:
            env.setdefault("HOME", account.home)
            env.setdefault("USER", account.name)
        return env


class CondaKernelDockerSpawner(CondaKernelContainerSpawner, DockerSpawner):
    """DockerSpawner whose users pick a shared or personal conda env (``conda-kernel-docker``)."""

    @default("extra_create_kwargs")
    def _default_extra_create_kwargs(self):
        spec = self._user_spec()
        if not spec:
            return {}
        return {"user": spec["user"], "working_dir": spec["workdir"]}


class CondaKernelSwarmSpawner(CondaKernelContainerSpawner, SwarmSpawner):
    """SwarmSpawner whose users pick a shared or personal conda env (``conda-kernel-swarm``)."""

    @default("extra_container_spec")
    def _default_extra_container_spec(self):
        return self._user_spec()
