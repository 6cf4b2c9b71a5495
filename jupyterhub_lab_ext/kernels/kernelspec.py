"""The single-user server's kernelspec manager: exactly the kernels of the shared and own envs.

Enable it in the single-user server with (the conda-kernel spawners pass this for you)::

    --ServerApp.kernel_spec_manager_class=jupyterhub_lab_ext.kernels.kernelspec.CondaEnvKernelSpecManager

It lists one kernel per language per environment found by :mod:`jupyterhub_lab_ext.kernels.conda_envs`
and nothing else (no ``python3`` of the server's env, no stale specs from
``~/.local/share/jupyter/kernels``). Every call re-checks the env directories with a few
``stat`` calls, so a new env shows up and a deleted one disappears while the server runs.
:meth:`~CondaEnvKernelSpecManager.get_kernel_spec` refuses any name it would not list, so a
kernel outside the set cannot be started by name either: the kernels API answers 404 with a
message naming the kernels on offer. Every env that discovery skips is one line in the server's
log (``user=NAME skipped PATH: REASON``), once while it stays skipped.

Each kernelspec runs the env as if it were activated: an absolute interpreter path, ``PATH``,
``CONDA_PREFIX`` and ``CONDA_DEFAULT_ENV`` in the kernel's ``env``; only when the env has
``etc/conda/activate.d/*.sh`` scripts is the kernel started through a tiny ``sh`` wrapper that
sources them and then ``exec``\\ s the kernel (so the kernel keeps the PID and interrupts work).
"""

from __future__ import annotations

import functools
import importlib.util
import os
import re
import tempfile

from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel
from tornado import web
from traitlets import Bool, List, Unicode, default

from jupyterhub_lab_ext.kernels import server_env
from jupyterhub_lab_ext.kernels.conda_envs import DiscoveryConfig, EnvScanner, UserContext
from jupyterhub_lab_ext.kernels.env_prefix import CondaEnv, KernelInfo
from jupyterhub_lab_ext.kernels.env_skips import SkipLog
from jupyterhub_lab_ext.kernels.quiet_refusals import Refusal, quiet

#: at most this many offered kernel names are listed in a refusal
MAX_NAMES_IN_MESSAGE = 20
_PLAIN_NAME = re.compile(r"[\w.:/-]{1,100}")

#: sources the env's activate.d scripts, then replaces itself with the kernel ($1 = prefix)
ACTIVATE_SCRIPT = (
    'p="$1"; shift; '
    'for f in "$p"/etc/conda/activate.d/*.sh; do if [ -r "$f" ]; then . "$f"; fi; done; '
    'exec "$@"'
)
ACTIVATE_ARGV0_NAME = "jupyterhub-lab-ext-activate"


def _from_spawner() -> DiscoveryConfig:
    """What the spawner passed in the server's environment (see :mod:`.server_env`)."""
    return server_env.from_env(os.environ)


@functools.cache
def _fallback_resource_dir() -> str:
    """ipykernel's ``resources`` directory (the Python logos), found without importing it."""
    spec = importlib.util.find_spec("ipykernel")
    if spec is not None and spec.origin:
        resources = os.path.join(os.path.dirname(spec.origin), "resources")
        if os.path.isdir(resources):
            return resources
    return tempfile.mkdtemp(prefix="jhle-kernel-resources-")  # pragma: no cover - no ipykernel


class KernelNotOffered(NoSuchKernel, web.HTTPError, Refusal):
    """A kernel name outside the offered set: still a ``NoSuchKernel`` for jupyter_client and
    jupyter_server (which answer ``GET /api/kernelspecs/NAME`` with 404 for it), and an HTTP 404
    with a clear message where jupyter_server lets ``NoSuchKernel`` become a 500
    (``POST /api/kernels``). As a :class:`~.quiet_refusals.Refusal` it costs the server's log
    no traceback."""

    def __init__(self, name: str, offered: list[str]):
        NoSuchKernel.__init__(self, name)
        shown = repr(name) if _PLAIN_NAME.fullmatch(name) else "with this name"
        listed = ", ".join(offered[:MAX_NAMES_IN_MESSAGE]) or "none"
        if len(offered) > MAX_NAMES_IN_MESSAGE:
            listed += f" and {len(offered) - MAX_NAMES_IN_MESSAGE} more"
        web.HTTPError.__init__(
            self,
            404,
            f"No kernel {shown}: only the kernels of the shared environments and of your own "
            f"environments can be started here ({listed}).",
        )

    def __str__(self) -> str:
        return self.get_message() or NoSuchKernel.__str__(self)


def display_name(env: CondaEnv, kernel: KernelInfo) -> str:
    if kernel.key == "python":
        version = ".".join((env.python_version or "").split(".")[:2])
        return f"Python {version} ({env.name})" if version else f"Python ({env.name})"
    return f"{kernel.display_name} ({env.name})"


@functools.lru_cache(maxsize=8192)
def _spec_dict(env: CondaEnv, kernel: KernelInfo, shell: str) -> tuple[str, dict]:
    prefix = env.prefix
    argv = list(kernel.argv)
    if env.activate_scripts:
        argv = [shell, "-c", ACTIVATE_SCRIPT, ACTIVATE_ARGV0_NAME, prefix, *argv]
    kenv = {"PATH": os.path.join(prefix, "bin") + os.pathsep + "${PATH}"}
    if env.is_venv:
        kenv["VIRTUAL_ENV"] = prefix
    else:
        kenv["CONDA_PREFIX"] = prefix
        kenv["CONDA_DEFAULT_ENV"] = env.conda_default_env
    kenv.update(dict(kernel.env))
    metadata = kernel.metadata
    metadata.update(
        {
            "conda_env_name": env.name,
            "conda_env_path": prefix,
            "conda_language": kernel.language,
            "conda_raw_kernel_name": kernel.key,
        }
    )
    spec = {
        "argv": argv,
        "env": kenv,
        "display_name": display_name(env, kernel),
        "language": kernel.language,
        "interrupt_mode": kernel.interrupt_mode,
        "metadata": metadata,
    }
    return kernel.resource_dir or _fallback_resource_dir(), spec


def build_spec(env: CondaEnv, kernel: KernelInfo, shell: str = "/bin/sh") -> tuple[str, dict]:
    """``(resource_dir, kernel.json dict)`` for one kernel of one env (a fresh copy)."""
    resource_dir, spec = _spec_dict(env, kernel, shell)
    copy = dict(spec)
    copy["argv"] = list(spec["argv"])
    copy["env"] = dict(spec["env"])
    copy["metadata"] = dict(spec["metadata"])
    return resource_dir, copy


def specs_for(envs: list[CondaEnv]) -> dict[str, tuple[CondaEnv, KernelInfo]]:
    """Kernel name -> (env, kernel) for all envs, in order; the first of a name wins."""
    out: dict[str, tuple[CondaEnv, KernelInfo]] = {}
    for env in envs:
        for kernel in env.kernels:
            out.setdefault(env.kernel_name(kernel), (env, kernel))
    return out


class CondaEnvKernelSpecManager(KernelSpecManager):
    """Kernelspecs for exactly the shared conda envs and the current user's own envs."""

    shared_env_dirs = List(
        Unicode(),
        help=f"""
        Directories holding shared environments (each subdirectory with ``conda-meta/`` is an
        env), or env prefixes themselves. The conda-kernel spawners set this through the
        ``{server_env.SHARED_ENV_DIRS}`` environment variable (``:``-separated), so you
        rarely set it here. Example: ``["/opt/conda/envs"]``.
        """,
    ).tag(config=True)

    @default("shared_env_dirs")
    def _default_shared(self):
        return list(_from_spawner().shared_env_dirs)

    user_env_dirs = List(
        Unicode(),
        help=f"""
        Directories holding the user's own environments; ``~`` is the user's home and
        ``{{username}}`` the user's name. Only envs owned by the user, inside the home or these
        directories, are listed. Set by the spawner through ``{server_env.USER_ENV_DIRS}``.
        """,
    ).tag(config=True)

    @default("user_env_dirs")
    def _default_user(self):
        return list(_from_spawner().user_env_dirs)

    allow_venvs = Bool(
        help="Also offer plain virtualenvs (a ``pyvenv.cfg`` instead of ``conda-meta/``)."
    ).tag(config=True)

    @default("allow_venvs")
    def _default_allow_venvs(self):
        return _from_spawner().allow_venvs

    read_environments_txt = Bool(
        help="Also list the envs named in ``~/.conda/environments.txt`` (owned by the user)."
    ).tag(config=True)

    @default("read_environments_txt")
    def _default_read_txt(self):
        return _from_spawner().read_environments_txt

    shared_env_owners = List(
        Unicode(),
        help=f"""
        System users (names or uids) trusted, besides root, to own shared environments and the
        directories above them. Set by the spawner through ``{server_env.SHARED_ENV_OWNERS}``.
        """,
    ).tag(config=True)

    @default("shared_env_owners")
    def _default_owners(self):
        return list(_from_spawner().shared_env_owners)

    activation_shell = Unicode(
        "/bin/sh",
        help="""
        POSIX shell that runs the env's ``etc/conda/activate.d/*.sh`` scripts before it
        ``exec``\\ s the kernel. Used only for envs that have such scripts.
        """,
    ).tag(config=True)

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self._scanner = EnvScanner()
        self._skip_log = SkipLog()

    @property
    def discovery_config(self) -> DiscoveryConfig:
        return DiscoveryConfig.of(self)

    def list_envs(self) -> list[CondaEnv]:
        """The envs as they are on disk now (stat-cached); new skips go to the server's log."""
        user = UserContext.current()
        found = self._scanner.scan(self.discovery_config, user)
        self._skip_log.report(self.log, user.name, found.skipped)
        return found.envs

    def _specs(self) -> dict[str, tuple[CondaEnv, KernelInfo]]:
        specs = specs_for(self.list_envs())
        if self.allowed_kernelspecs:
            specs = {k: v for k, v in specs.items() if k in self.allowed_kernelspecs}
        return specs

    def find_kernel_specs(self) -> dict[str, str]:
        return {
            name: build_spec(env, kernel, self.activation_shell)[0]
            for name, (env, kernel) in self._specs().items()
        }

    def get_kernel_spec(self, kernel_name: str):
        specs = self._specs()
        found = specs.get(kernel_name.lower())
        if found is None:
            self.log.warning("Refusing kernel %r: not one of this user's environments", kernel_name)
            raise quiet(self.log, KernelNotOffered(kernel_name, list(specs)))
        resource_dir, spec = build_spec(*found, self.activation_shell)
        return self.kernel_spec_class(resource_dir=resource_dir, **spec)

    def get_all_specs(self) -> dict[str, dict]:
        out = {}
        for name, (env, kernel) in self._specs().items():
            resource_dir, spec = build_spec(env, kernel, self.activation_shell)
            out[name] = {"resource_dir": resource_dir, "spec": spec}
        return out
