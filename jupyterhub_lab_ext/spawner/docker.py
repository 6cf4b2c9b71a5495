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

Limits per group and per env (``resource_limits``) and swarm placement per group and per env
(``placement_constraints``) are resolved at each spawn from the chosen env and the user's hub
groups (the policy: :mod:`jupyterhub_lab_ext.spawner.resources`) and applied to the container or
the swarm service; the server learns where its memory limit came from
(``JUPYTERHUB_LAB_EXT_MEM_LIMIT_FROM``) to explain an out-of-memory kill in JupyterLab.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import pwd
import time
from datetime import datetime, timezone
from pprint import pformat

from jupyterhub.utils import fmt_ip_url, random_port
from traitlets import Bool, Dict, TraitError, default, validate

from jupyterhub_lab_ext.kernels.conda_envs import UserContext
from jupyterhub_lab_ext.kernels.env_prefix import CondaEnv
from jupyterhub_lab_ext.spawner import resources
from jupyterhub_lab_ext.spawner.conda_kernel import CondaKernelSpawner
from jupyterhub_lab_ext.spawner.swarm_nodes import (
    current_task,
    ended_within,
    listen_ip,
    node_address,
    task_alive,
)
from jupyterhub_lab_ext.util import lab_status as names

try:
    from dockerspawner import DockerSpawner, SwarmSpawner
except ImportError as e:  # pragma: no cover - depends on the install
    raise ImportError(
        "conda-kernel-docker and conda-kernel-swarm need dockerspawner: "
        "pip install 'jupyterhub-lab-ext[docker]'"
    ) from e

#: seconds a swarm task that just ended is looked at again before its server counts as stopped
RESTART_GRACE = 8


def _now() -> datetime:
    return datetime.now(timezone.utc)


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

    resource_limits = Dict(
        help="""
        Memory and CPU limits of the user's server, per group and per environment. Keys say
        whom an entry is for: ``"*"`` (everyone), ``"group:NAME"`` (members of hub group NAME:
        the userlist's ``group:NAME``) and ``"env:ENV"`` (servers started with the environment
        the spawn form calls ENV, e.g. ``env:shared/cuda``). Each entry sets any of
        ``mem_limit`` and ``mem_guarantee`` (bytes, or a number with K, M, G or T: ``"256M"``)
        and ``cpu_limit`` and ``cpu_guarantee`` (cores: ``0.5``, ``2``).

        For each of the four, the env's entry wins; else the most generous value among the
        user's groups; else ``"*"``; else the spawner's own ``mem_limit`` (etc.) as configured.
        The spawn form shows the limits next to each env, and when the engine stops a kernel
        for exceeding the memory limit, JupyterLab tells the user which limit it was. Example::

            c.CondaKernelContainerSpawner.resource_limits = {
                "*": {"mem_limit": "1G", "cpu_limit": 1},
                "group:students": {"mem_limit": "256M"},
                "group:staff": {"mem_limit": "4G", "cpu_limit": 4},
                "env:shared/cuda": {"mem_limit": "16G", "cpu_limit": 8, "mem_guarantee": "8G"},
            }

        Docker applies the limits to the container (the memory limit covers swap too; a
        guarantee is a memory reservation and a CPU weight, ``cpu_shares`` = 1024 per core);
        Swarm to the service's resources (a guarantee is a reservation the scheduler honours).
        """,
    ).tag(config=True)

    @validate("resource_limits")
    def _check_resource_limits(self, proposal):
        try:
            resources.check_limits(proposal.value)
        except ValueError as e:
            raise TraitError(f"CondaKernelContainerSpawner.{e}") from None
        return proposal.value

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

    @functools.cached_property
    def _configured(self) -> dict:
        """The engine settings as configured, before any spawn changed them (read once)."""
        return {name: getattr(self, name) for name in self.per_spawn_traits()}

    def per_spawn_traits(self) -> tuple[str, ...]:
        """The traits :meth:`apply_resources` sets at each spawn (from their configured value)."""
        return resources.RESOURCE_KEYS

    def _user_groups(self) -> list[str]:
        return [g.name for g in getattr(self.user, "groups", None) or ()]

    def resolve_resources(self, env: str | None) -> resources.Resolved:
        """The limits a server with ``env`` would get for this user (see ``resource_limits``)."""
        limits = resources.check_limits(self.resource_limits)
        return resources.resolve(limits, env, self._user_groups())

    def apply_resources(self) -> None:
        """Set this spawn's limits from the chosen env and the user's groups."""
        configured = self._configured
        self._resolved = self.resolve_resources(self.conda_env_name)
        for name in resources.RESOURCE_KEYS:
            setattr(self, name, self._resolved.values.get(name, configured[name]))
        if self._resolved.values:
            self.log.info(
                "user=%s limits %s from %s",
                self.user.name,
                self._resolved.values,
                self._resolved.origins,
            )

    _resolved = resources.Resolved()

    def conda_env_limits(self, envs: list[CondaEnv]) -> dict[str, str]:
        if not self.resource_limits:
            return {}
        return {e.name: resources.limits_text(self.resolve_resources(e.name).values) for e in envs}

    def run_pre_spawn_hook(self):
        if self._host_network and self.random_host_port:
            self.port = random_port()
        self.apply_resources()
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
        origin = self._resolved.origins.get("mem_limit")
        if origin:
            env[names.ENV_MEM_LIMIT_FROM] = origin
        return env


def _merged(configured, ours: dict):
    """The admin's ``extra_host_config`` (a dict, or a callable of the spawner) plus ``ours``."""
    if not callable(configured):
        return {**(configured or {}), **ours}

    async def merged(spawner):
        value = configured(spawner)
        if inspect.isawaitable(value):
            value = await value
        return {**(value or {}), **ours}

    return merged


class CondaKernelDockerSpawner(CondaKernelContainerSpawner, DockerSpawner):
    """DockerSpawner whose users pick a shared or personal conda env (``conda-kernel-docker``)."""

    @default("extra_create_kwargs")
    def _default_extra_create_kwargs(self):
        spec = self._user_spec()
        if not spec:
            return {}
        return {"user": spec["user"], "working_dir": spec["workdir"]}

    def per_spawn_traits(self) -> tuple[str, ...]:
        return (*super().per_spawn_traits(), "extra_host_config")

    def apply_resources(self) -> None:
        # DockerSpawner maps mem_limit and cpu_limit itself; swap and the guarantees are ours
        super().apply_resources()
        ours = resources.docker_host_settings(self._resolved.values)
        self.extra_host_config = _merged(self._configured["extra_host_config"], ours)


class CondaKernelSwarmSpawner(CondaKernelContainerSpawner, SwarmSpawner):
    """SwarmSpawner whose users pick a shared or personal conda env (``conda-kernel-swarm``).

    With host networking a server runs in the network of the node where swarm placed its task:
    the hub reaches it at that node's address (looked up from the service's current task at
    each start, poll and hub restart; see spawner/swarm_nodes.py), and on a swarm with nodes
    off loopback it listens on every address of its node (``ip`` 0.0.0.0, unless ``ip`` is set
    to a routable address). The hub's API must then be reachable from the nodes
    (``c.JupyterHub.hub_connect_ip`` and ``hub_bind_url`` on an address of the hub's machine).
    """

    placement_constraints = Dict(
        help="""
        Where the swarm may run the user's server, per group and per environment: the same
        keys as ``resource_limits`` (``"*"``, ``"group:NAME"``, ``"env:ENV"``), each to a list
        of swarm placement constraints. Every matching entry applies (the user's env and all
        their groups), added to the ``constraints`` of ``extra_placement_spec``. For an env
        installed only on the GPU nodes (labelled with
        ``docker node update --label-add gpu=true NODE``)::

            c.CondaKernelSwarmSpawner.placement_constraints = {
                "env:shared/cuda": ["node.labels.gpu == true"],
                "group:physics": ["node.labels.site == physics"],
            }
        """,
    ).tag(config=True)

    @validate("placement_constraints")
    def _check_placement_constraints(self, proposal):
        try:
            resources.check_constraints(proposal.value)
        except ValueError as e:
            raise TraitError(f"CondaKernelSwarmSpawner.{e}") from None
        return proposal.value

    @default("extra_container_spec")
    def _default_extra_container_spec(self):
        return self._user_spec()

    async def start(self):
        if self._host_network:
            self.ip = listen_ip(self.ip, await self.docker("nodes"))
        return await super().start()

    async def get_task(self):
        """The service's current task (a restarted or rescheduled service keeps old ones)."""
        if await self.get_object() is None:
            return None
        return current_task(await self.docker("tasks", filters={"service": self.service_name}))

    async def poll(self):
        """Running while the current task is meant to run and has not ended (also while a
        restarted or rescheduled task is being placed); with host networking, a task that
        moved to another node moves the server's address with it (the hub's next route check
        points the proxy there)."""
        task = await self.get_task()
        deadline = time.monotonic() + RESTART_GRACE
        while task and ended_within(task, RESTART_GRACE, _now()) and time.monotonic() < deadline:
            await asyncio.sleep(1)  # a task that just ended: swarm may be replacing it
            task = await self.get_task()
        if task is None:
            self.log.warning("Service %s not found", self.service_name)
            return 0
        if not task_alive(task):
            return pformat(task["Status"])
        if self._host_network and self.server is not None and task.get("NodeID"):
            await self._follow(task)
        return None

    async def _follow(self, task: dict) -> None:
        address = await self._address_of(task)
        if address is not None and address != self.server.ip:
            self.log.warning(
                "user=%s server moved to node %s: %s:%s",
                self.user.name,
                task["NodeID"],
                address,
                self.port,
            )
            self.server.ip = address

    async def _address_of(self, task: dict) -> str | None:
        return node_address(await self.docker("inspect_node", task["NodeID"]))

    async def get_ip_and_port(self):
        if not self._host_network:
            return await super().get_ip_and_port()
        task = await self.get_task()
        if task is None or not task.get("NodeID"):
            raise RuntimeError(f"service {self.service_name} has no task on a node")
        address = await self._address_of(task)
        if address is None:
            raise RuntimeError(f"node {task['NodeID']} of {self.service_name} has no address")
        return address, self.port

    async def get_url(self):
        """The server's URL at the node where its task runs now (the hub asks at its start)."""
        if not self._host_network:
            return await super().get_url()
        ip, port = await self.get_ip_and_port()
        return f"{self.server.proto}://{fmt_ip_url(ip)}:{port}{self.server.base_url}"

    def get_state(self):
        state = super().get_state()
        if self.object_id and self.port:  # a hub restart must find the server's port
            state["port"] = self.port
        return state

    def load_state(self, state):
        super().load_state(state)
        if state.get("port"):
            self.port = state["port"]

    def per_spawn_traits(self) -> tuple[str, ...]:
        return (*super().per_spawn_traits(), "extra_placement_spec")

    def apply_resources(self) -> None:
        super().apply_resources()
        ours = resources.constraints_for(
            self.placement_constraints, self.conda_env_name, self._user_groups()
        )
        spec = dict(self._configured["extra_placement_spec"] or {})
        if ours:
            spec["constraints"] = resources.merge_constraints(spec.get("constraints"), ours)
        self.extra_placement_spec = spec
