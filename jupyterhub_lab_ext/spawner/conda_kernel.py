"""The conda-kernel feature: each user picks a shared or a personal conda environment.

:class:`CondaKernelSpawner` holds the feature's options and its spawner hooks. Set its options as
``c.CondaKernelSpawner.<name>``: they apply to every variant, ``conda-kernel``
(:class:`~jupyterhub_lab_ext.spawner.local.LocalCondaKernelSpawner`), ``conda-kernel-docker`` and
``conda-kernel-swarm`` (:mod:`jupyterhub_lab_ext.spawner.docker`). It goes before a spawner class,
``class S(CondaKernelSpawner, SomeSpawner)``, and only overrides the documented spawner hooks: the
options form, ``options_from_form``, ``apply_user_options`` (validation; also runs for REST
spawns), ``get_env``, ``get_args`` and ``progress``.

The single-user server always runs from its own Jupyter env; the choice decides which kernel is
the default, and the server lists exactly the kernels of the shared envs and the user's envs (see
:mod:`jupyterhub_lab_ext.kernels.kernelspec`). Every env that discovery skips is one line in the
hub's log (``user=NAME skipped PATH: REASON``), once while it stays skipped; a request for an env
that is not offered is one warning line and an HTTP 400
(:mod:`jupyterhub_lab_ext.kernels.quiet_refusals`).
"""

from __future__ import annotations

import asyncio
import html
import os

import jinja2
from traitlets import Bool, Dict, Float, List, Unicode, default, validate
from traitlets.config import LoggingConfigurable

from jupyterhub_lab_ext.kernels import server_env
from jupyterhub_lab_ext.kernels.conda_envs import (
    SHARED,
    DiscoveryConfig,
    EnvScanner,
    UserContext,
    expand_user_dir,
)
from jupyterhub_lab_ext.kernels.env_prefix import CondaEnv
from jupyterhub_lab_ext.kernels.env_skips import SkipLog
from jupyterhub_lab_ext.kernels.quiet_refusals import EnvNotOffered, quiet
from jupyterhub_lab_ext.spawner import lab_status
from jupyterhub_lab_ext.util import data as _data

#: the form field and the ``user_options`` key of the choice (the JupyterHub 6 admin page shows it)
OPTION = "profile"
#: accepted as an alias of ``profile`` in REST requests
OPTION_ALIASES = ("env",)
#: a refused env name is quoted up to this many characters (in the log and the error message)
MAX_NAME_SHOWN = 200

_scanner = EnvScanner()  # one stat cache for the whole hub
_skip_logs: dict[str, SkipLog] = {}  # per user: JupyterHub makes new spawner objects at will


def _simple_options_from_form(form_data):
    """``{"profile": ["shared/geo"]}`` (form) or ``{"profile": "shared/geo"}`` (query) -> options."""
    options = {}
    for key in (OPTION, *OPTION_ALIASES):
        value = form_data.get(key)
        if isinstance(value, list):
            value = value[0] if value else None
        if value is not None:
            options[OPTION] = value
            break
    return options


def _apply_user_options(spawner, user_options):
    return spawner.apply_conda_user_options(user_options)


def _render_options_form(spawner):
    return spawner.render_conda_options_form()


def env_notice(names: list[str], default_env: str, last: str | None) -> str:
    """What the spawn form tells the user when an env it would preselect is missing ("" if none).

    ``names``: the offered envs; ``last``: the user's previous choice, if any.
    """
    if not names:
        return (
            "No environment is available to you, so JupyterLab will have no kernels. Ask the "
            "hub's administrators, or create an environment of your own (see below)."
        )
    if last and last not in names:
        return f"Your last environment, {last}, no longer exists: pick another one."
    if not last and default_env and default_env not in names:
        return (
            f"The default environment, {default_env}, is not installed on this hub; {names[0]} "
            "is preselected instead. The hub's administrators have been told in the hub log."
        )
    return ""


class CondaKernelSpawner(LoggingConfigurable):
    """The conda-kernel feature: a choice of conda environment for any JupyterHub spawner.

    Combine it with a spawner class, before it: ``class S(CondaKernelSpawner, SomeSpawner)``.
    """

    shared_env_dirs = List(
        Unicode(),
        default_value=list(DiscoveryConfig.shared_env_dirs),
        help="""
        Where the environments shared by all users live: directories whose subdirectories are
        conda prefixes (``conda create -p /opt/conda/envs/geo ...``), or prefixes themselves.
        They are offered to every user as ``shared/<name>``, but only when the env and every
        directory above it are owned by root (or one of ``shared_env_owners``) and not writable
        by group or others; other envs are skipped with a warning in the hub log. Example::

            c.CondaKernelSpawner.shared_env_dirs = ["/opt/conda/envs", "/srv/course-envs"]
        """,
    ).tag(config=True)

    shared_env_owners = List(
        Unicode(),
        help="""
        System users trusted, besides root, to own shared environments and the directories
        above them: names or numeric uids, e.g. ``["conda-admin"]`` when a service account
        maintains the shared envs. Whoever can change a shared env can run code as every user
        who picks it, so a shared env is offered only when it and every directory above it up
        to ``/`` are owned by root or one of these and not writable by group or others (a
        sticky world-writable directory such as ``/tmp`` is not safe either: anyone can create
        an env in it). A name without an account trusts nobody.
        """,
    ).tag(config=True)

    user_env_dirs = List(
        Unicode(),
        default_value=list(DiscoveryConfig.user_env_dirs),
        help="""
        Where each user's own environments live; ``~`` is that user's home and ``{username}``
        their name. They are offered as ``mine/<name>``, together with the entries of the
        user's ``~/.conda/environments.txt``. An env is offered only when it is owned by the
        user and lies (after resolving symlinks) in the user's home or one of these directories.
        The first entry is also where ``conda create -n NAME`` puts new envs (``CONDA_ENVS_DIRS``).
        Example: ``["~/.conda/envs", "/scratch/{username}/envs"]``.
        """,
    ).tag(config=True)

    default_env = Unicode(
        "",
        help="""
        The environment chosen when the user has not picked one (first spawn, or a REST spawn
        without options), by its name in the form, e.g. ``"shared/python3"``. Empty (default):
        the first shared environment, else the user's first one.
        """,
    ).tag(config=True)

    allow_venvs = Bool(
        False,
        help="Also offer plain virtualenvs (a ``pyvenv.cfg`` instead of ``conda-meta/``).",
    ).tag(config=True)

    read_environments_txt = Bool(
        True,
        help="""
        Also offer the user's envs listed in ``~/.conda/environments.txt`` (conda writes every
        env it creates there). Entries that the user does not own, or that lead outside the
        user's home and ``user_env_dirs``, are ignored.
        """,
    ).tag(config=True)

    options_form_template = Unicode(
        "",
        help="""
        Path of a Jinja template for the spawn form, to replace the one this package ships
        (``share/jupyterhub-lab-ext/templates/spawn_form.html``). It gets ``shared_envs``,
        ``user_envs`` (lists of environment records), ``selected`` (a name) and ``field``
        (the input name to use, ``profile``) and ``limits`` (the limits text per env name,
        ``256 MB · 1 CPU``, with ``resource_limits``).
        """,
    ).tag(config=True)

    kernel_spec_manager_class = Unicode(
        "jupyterhub_lab_ext.kernels.kernelspec.CondaEnvKernelSpecManager",
        help="""
        Kernelspec manager the single-user server runs with (passed as
        ``--ServerApp.kernel_spec_manager_class``). It must be importable in the server's env.
        Set to empty to leave the server's kernels alone (the choice then only picks the
        default kernel name).
        """,
    ).tag(config=True)

    set_conda_dirs = Bool(
        True,
        help="""
        Set ``CONDA_ENVS_DIRS`` (the first of :attr:`user_env_dirs`) and ``CONDA_PKGS_DIRS``
        (``~/.conda/pkgs``) in the user's server, so users can ``conda create -n NAME`` their
        own envs even though the shared install is read-only. Values the server already gets
        from the base spawner's environment are kept. Set to False to leave both to conda's own
        configuration (``.condarc``).
        """,
    ).tag(config=True)

    lab_status = Bool(
        True,
        help="""
        Show the JupyterLab status item in the user's server: the environment the server was
        started with, the time left before the idle culler stops it (with a "Keep my server"
        notification shortly before), and the user-limit service's queue and limit facts (see
        the docs' "Status in JupyterLab" page). It loads the server extension
        ``jupyterhub_lab_ext.labserver``; without it the item stays hidden. Turn it off with::

            c.CondaKernelSpawner.lab_status = False
        """,
    ).tag(config=True)

    lab_status_services = Dict(
        default_value={"culler": "idle-culler", "user-limit": "user-limit"},
        help="""
        The hub services the status item asks, by role (``culler``, ``user-limit``) and service
        name in ``c.JupyterHub.services``; their entries' ``url`` is where the user's server
        reaches them. A role without a running service is shown as not running, never as an
        error. Only needed when the services have other names than the defaults.
        """,
    ).tag(config=True)

    @validate("lab_status_services")
    def _known_roles(self, proposal):
        unknown = set(proposal.value) - set(lab_status.SERVICE_VARS)
        if unknown:
            raise ValueError(f"lab_status_services: unknown roles {sorted(unknown)}")
        return proposal.value

    lab_status_refresh = Float(
        30.0,
        min=5.0,
        help="""
        Seconds between the status item's refreshes of its own server. The server keeps the
        services' answers three times as long, so each service sees one request per server per
        three periods (and the countdown is still computed to the second). At least 5.
        """,
    ).tag(config=True)

    @default("options_form")
    def _default_options_form(self):
        return _render_options_form

    @default("options_from_form")
    def _default_options_from_form(self):
        return _simple_options_from_form

    @default("apply_user_options")
    def _default_apply_user_options(self):
        return _apply_user_options

    @default("default_url")
    def _default_default_url(self):
        return "/lab"

    # -- discovery -------------------------------------------------------------------------

    @property
    def discovery_config(self) -> DiscoveryConfig:
        return DiscoveryConfig.of(self)

    def conda_user_context(self) -> UserContext | None:
        """The system account whose envs are offered (None: only shared envs)."""
        try:
            return UserContext.from_passwd(self.user.name)
        except KeyError:
            self.log.warning(
                "user=%s has no system account; offering shared envs only", self.user.name
            )
            return None

    async def list_conda_envs(self) -> list[CondaEnv]:
        """Shared envs, then the user's, read from disk off the event loop (as is the passwd
        lookup, which may go to LDAP). Skipped envs not logged before go to the hub's log."""
        config = self.discovery_config
        found = await asyncio.to_thread(lambda: _scanner.scan(config, self.conda_user_context()))
        skip_log = _skip_logs.setdefault(self.user.name, SkipLog())
        skip_log.report(self.log, self.user.name, found.skipped)
        return found.envs

    def _default_choice(self, envs: list[CondaEnv]) -> CondaEnv | None:
        for env in envs:
            if env.name == self.default_env:
                return env
        if self.default_env:
            self.log.warning("default_env %r not found; using the first env", self.default_env)
        return envs[0] if envs else None

    # -- the form ------------------------------------------------------------------------------

    def _form_template(self):
        if self.options_form_template:
            path = self.options_form_template
            loader = jinja2.FileSystemLoader(os.path.dirname(os.path.abspath(path)))
            name = os.path.basename(path)
        else:
            loader = jinja2.FileSystemLoader(str(_data.templates_dir()))
            name = "spawn_form.html"
        env = jinja2.Environment(loader=loader, autoescape=True)
        return env.get_template(name)

    def conda_env_limits(self, envs: list[CondaEnv]) -> dict[str, str]:
        """The resource limits the form shows per env name (none here; the container spawners
        have ``resource_limits``)."""
        return {}

    async def render_conda_options_form(self) -> str:
        """The spawn form: shared envs and the user's envs in two groups, last choice selected."""
        envs = await self.list_conda_envs()
        names = {e.name for e in envs}
        last = (self.user_options or {}).get(OPTION)
        notice = env_notice([e.name for e in envs], self.default_env, last)
        if last not in names:
            choice = self._default_choice(envs)
            last = choice.name if choice else None
        form = self._form_template().render(
            shared_envs=[e for e in envs if e.group == SHARED],
            user_envs=[e for e in envs if e.group != SHARED],
            selected=last,
            field=OPTION,
            limits=self.conda_env_limits(envs),
        )
        if notice:
            alert = '<div class="alert alert-warning jhle-env-notice" role="alert">{}</div>\n'
            form = alert.format(html.escape(notice)) + form
        return form

    # -- validation (form and REST) ------------------------------------------------------------

    async def apply_conda_user_options(self, user_options: dict) -> CondaEnv | None:
        """Check the requested env against what is on disk; HTTP 400 for anything else."""
        requested = self._requested_env(user_options)
        envs = await self.list_conda_envs()
        env = self._offered_env(envs, requested) if requested else self._default_choice(envs)
        self._conda_env = env
        if env is None:
            self.log.warning(
                "user=%s no conda environment found; starting without one", self.user.name
            )
        else:
            self.user_options = {**(self.user_options or {}), OPTION: env.name}
            if OPTION_ALIASES[0] in self.user_options:
                self.user_options.pop(OPTION_ALIASES[0])
            self.log.info("user=%s environment %s (%s)", self.user.name, env.name, env.prefix)
        return env

    def _requested_env(self, user_options: dict) -> str | None:
        """The env name the options ask for (None: no choice). Other options are logged and
        ignored; a choice that is not a string is refused."""
        options = dict(user_options or {})
        requested = None
        for key in (OPTION, *OPTION_ALIASES):
            if key in options:
                requested = options.pop(key)
                break
        for key in (OPTION, *OPTION_ALIASES):
            options.pop(key, None)
        if options:
            self.log.warning(
                "user=%s ignoring unknown options %.300s", self.user.name, sorted(options)
            )
        if requested is not None and not isinstance(requested, str):
            self.log.warning(
                "user=%s refused a spawn: option %r is a %s, not an environment name",
                self.user.name,
                OPTION,
                type(requested).__name__,
            )
            raise quiet(
                self.log, EnvNotOffered(f"Option {OPTION!r} must be an environment name (a string)")
            )
        return requested

    def _offered_env(self, envs: list[CondaEnv], requested: str) -> CondaEnv:
        """The env named ``requested`` among ``envs``; a refusal naming the offered ones if none."""
        env = next((e for e in envs if e.name == requested), None)
        if env is not None:
            return env
        shown = repr(requested[:MAX_NAME_SHOWN]) + (
            "..." if len(requested) > MAX_NAME_SHOWN else ""
        )
        offered = ", ".join(e.name for e in envs) or "none"
        self.log.warning(
            "user=%s refused a spawn: environment %s is not offered to them", self.user.name, shown
        )
        raise quiet(
            self.log,
            EnvNotOffered(
                f"Unknown environment {shown}: choose one of the offered environments ({offered})."
            ),
        )

    _conda_env: CondaEnv | None = None

    @property
    def conda_env(self) -> CondaEnv | None:
        """The validated choice of the current spawn (set by ``apply_user_options``)."""
        return self._conda_env

    @property
    def conda_env_name(self) -> str | None:
        """The name the spawn form gives the current spawn's env (``shared/geo``), or None."""
        return self._conda_env.name if self._conda_env else None

    # -- what the server gets ----------------------------------------------------------------

    def conda_home(self, env: dict) -> str | None:
        """The user's home as their server sees it (for ``CONDA_ENVS_DIRS``)."""
        return env.get("HOME")

    def get_env(self):
        env = super().get_env()
        env.update(server_env.to_env(self.discovery_config))
        home = self.conda_home(env)
        if self.set_conda_dirs and home:
            user = UserContext(name=self.user.name, uid=-1, home=home)
            first = (self.user_env_dirs or DiscoveryConfig.user_env_dirs)[0]
            env.setdefault(server_env.CONDA_ENVS_DIRS, expand_user_dir(first, user))
            env.setdefault(server_env.CONDA_PKGS_DIRS, os.path.join(home, ".conda", "pkgs"))
        if self.lab_status:
            env.update(self._lab_status_env(env))
        return env

    def _lab_status_env(self, env: dict) -> dict:
        return lab_status.server_env(
            self.conda_env_name,
            lab_status.configured_services(self.config),
            self.lab_status_services,
            env.get("JUPYTERHUB_BASE_URL", "/"),
            self.lab_status_refresh,
        )

    def get_args(self):
        args = list(super().get_args())
        if self.kernel_spec_manager_class:
            args.append(f"--ServerApp.kernel_spec_manager_class={self.kernel_spec_manager_class}")
        env = self.conda_env
        if env is not None and env.default_kernel_name:
            args.append(f"--MappingKernelManager.default_kernel_name={env.default_kernel_name}")
        if self.lab_status:
            args += lab_status.server_args()
        return args

    async def progress(self):
        env = self.conda_env
        if env is not None:
            yield {"progress": 30, "message": f"Environment {env.name}: {env.summary()}"}
        async for event in super().progress():
            yield event
