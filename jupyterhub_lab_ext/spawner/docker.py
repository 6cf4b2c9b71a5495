"""The conda-kernel mixin on dockerspawner's DockerSpawner and SwarmSpawner.

Entry points ``conda-kernel-docker`` and ``conda-kernel-swarm``. dockerspawner is optional:
this module imports without it and only fails, with a clear message, when one of the classes
is used (``pip install jupyterhub-lab-ext[docker]``).

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

from jupyterhub.utils import random_port
from traitlets import Bool, default

from jupyterhub_lab_ext.spawner.conda_kernel import CondaKernelSpawnerMixin

__all__ = ["CondaKernelDockerMixin"]  # + CondaKernelDockerSpawner, CondaKernelSwarmSpawner (lazy)

_CLASSES: dict[str, type] = {}


class CondaKernelDockerMixin(CondaKernelSpawnerMixin):
    """The conda-kernel mixin plus container defaults that keep env paths identical."""

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

    def _account(self):
        """The user's system account (None without one); looked up once per spawner."""
        if not hasattr(self, "_docker_account"):
            self._docker_account = self.conda_user_context() if self.run_as_user else None
        return self._docker_account

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
        account = self._account()
        return {account.home: account.home} if account else {}

    def _user_spec(self) -> dict:
        account = self._account()
        if account is None:
            return {}
        import pwd

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
        account = self._account()
        return env.get("HOME") or (account.home if account else None)

    def get_env(self):
        env = super().get_env()
        account = self._account()
        if account is not None:
            env.setdefault("HOME", account.home)
            env.setdefault("USER", account.name)
        return env


class _DockerDefaults(CondaKernelDockerMixin):
    @default("extra_create_kwargs")
    def _default_extra_create_kwargs(self):
        spec = self._user_spec()
        if not spec:
            return {}
        return {"user": spec["user"], "working_dir": spec["workdir"]}


class _SwarmDefaults(CondaKernelDockerMixin):
    @default("extra_container_spec")
    def _default_extra_container_spec(self):
        return self._user_spec()


def _build(name: str) -> type:
    try:
        from dockerspawner import DockerSpawner, SwarmSpawner
    except ImportError as e:  # pragma: no cover - depends on the install
        raise ImportError(
            f"{name} needs dockerspawner: pip install 'jupyterhub-lab-ext[docker]'"
        ) from e
    mixin, base = {
        "CondaKernelDockerSpawner": (_DockerDefaults, DockerSpawner),
        "CondaKernelSwarmSpawner": (_SwarmDefaults, SwarmSpawner),
    }[name]
    doc = f"{base.__name__} whose users pick a shared or personal conda environment."
    return type(name, (mixin, base), {"__doc__": doc, "__module__": __name__})


def __getattr__(name: str):
    if name in ("CondaKernelDockerSpawner", "CondaKernelSwarmSpawner"):
        if name not in _CLASSES:
            _CLASSES[name] = _build(name)
        return _CLASSES[name]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
