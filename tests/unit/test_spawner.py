"""The conda-kernel spawners without a hub: form, validation, env and args, progress, config."""

from __future__ import annotations

import asyncio
import html
import os
import pwd
import re
import shutil
import subprocess
import sys

import pytest
from jupyterhub.spawner import LocalProcessSpawner, Spawner
from test_conda_envs import IR_SPEC, make_prefix
from tornado import web
from traitlets.config import Config

from jupyterhub_lab_ext.kernels import server_env
from jupyterhub_lab_ext.kernels.conda_envs import UserContext
from jupyterhub_lab_ext.spawner import docker as docker_spawner
from jupyterhub_lab_ext.spawner.conda_kernel import CondaKernelSpawner
from jupyterhub_lab_ext.spawner.local import LocalCondaKernelSpawner


class FakeUser:
    def __init__(self, name):
        self.name = name
        self.escaped_name = name
        self.url = f"/user/{name}/"


class FakeBase(Spawner):
    """Stands in for any spawner the mixin is applied to."""

    def get_env(self):
        return {"HOME": self._home, "FROM_BASE": "1"}

    async def start(self):  # pragma: no cover - not used
        raise NotImplementedError

    async def stop(self, now=False):  # pragma: no cover - not used
        raise NotImplementedError

    async def poll(self):  # pragma: no cover - not used
        return 0


class FakeCondaSpawner(CondaKernelSpawner, FakeBase):
    def conda_user_context(self):
        return UserContext(name=self.user.name, uid=os.getuid(), home=self._home)


@pytest.fixture
def tree(trusted_tmp_path):
    tmp_path = trusted_tmp_path.resolve()  # discovery reports real paths
    shared = tmp_path / "shared"
    home = tmp_path / "home"
    make_prefix(shared / "geo", conda_meta_python="3.12.1", kernelspecs={"ir": IR_SPEC})
    make_prefix(shared / "base")
    make_prefix(home / ".conda" / "envs" / "ml", python="3.10")
    return shared, home


@pytest.fixture
def spawner(tree):
    shared, home = tree
    s = FakeCondaSpawner(user=FakeUser("alice"), shared_env_dirs=[str(shared)])
    s._home = str(home)
    return s


def radio_values(form):
    return re.findall(r'<input[^>]*type="radio" name="profile" value="([^"]+)"', form)


def checked(form):
    return re.findall(r'value="([^"]+)"\s+checked', form)


async def test_form_has_both_groups_with_details(spawner):
    form = await spawner.get_options_form()
    shared_part, mine_part = form.split('id="jhle-user-envs"')
    assert radio_values(shared_part) == ["shared/base", "shared/geo"]
    assert radio_values(mine_part) == ["mine/ml"]
    assert "Shared environments" in shared_part and "My environments" in mine_part
    geo = form[form.index('data-env-name="shared/geo"') :]
    assert re.search(r"Python 3\.12\.1\s*&middot; kernels:\s*Python, R", geo[:800])
    assert checked(form) == ["shared/base"]  # no last choice: the first shared env


@pytest.mark.parametrize(
    "last, default_env, expected",
    [
        ("mine/ml", "", "mine/ml"),
        ("shared/gone", "shared/geo", "shared/geo"),
        (None, "shared/geo", "shared/geo"),
        (None, "shared/missing", "shared/base"),
    ],
    ids=["last-choice", "last-choice-deleted", "default-env", "default-env-missing"],
)
async def test_form_preselects(spawner, last, default_env, expected):
    spawner.default_env = default_env
    spawner.user_options = {"profile": last} if last else {}
    assert checked(await spawner.get_options_form()) == [expected]


def notice(form):
    found = re.findall(
        r'<div class="alert alert-warning jhle-env-notice" role="alert">(.*?)</div>', form
    )
    return html.unescape(found[0]) if found else ""


@pytest.mark.parametrize(
    "last, default_env, expected",
    [
        (None, "shared/geo", ""),
        (None, "", ""),
        ("mine/ml", "shared/missing", ""),
        (
            None,
            "shared/python3",
            "The default environment, shared/python3, is not installed on this hub; shared/base "
            "is preselected instead. The hub's administrators have been told in the hub log.",
        ),
        (
            "mine/<gone>",
            "",
            "Your last environment, mine/<gone>, no longer exists: pick another one.",
        ),
    ],
    ids=["default-there", "no-default", "last-choice-there", "default-missing", "last-gone"],
)
async def test_form_says_when_an_env_is_missing(spawner, caplog, last, default_env, expected):
    spawner.default_env = default_env
    spawner.user_options = {"profile": last} if last else {}
    form = await spawner.get_options_form()
    assert notice(form) == expected
    assert "<gone>" not in form  # escaped
    if "default environment" in expected:
        assert "default_env 'shared/python3' not found" in caplog.text


async def test_form_without_any_env_says_there_will_be_no_kernels(tmp_path):
    s = FakeCondaSpawner(user=FakeUser("alice"), shared_env_dirs=[str(tmp_path / "none")])
    s._home = str(tmp_path)
    s.default_env = "shared/python3"
    assert notice(await s.get_options_form()).startswith(
        "No environment is available to you, so JupyterLab will have no kernels."
    )


async def test_form_escapes_paths(trusted_tmp_path):
    tmp_path = trusted_tmp_path
    shared = tmp_path / "<b>x</b>"
    make_prefix(shared / "e")
    s = FakeCondaSpawner(user=FakeUser("alice"), shared_env_dirs=[str(shared)])
    s._home = str(tmp_path / "nohome")
    form = await s.get_options_form()
    assert "<b>x</b>" not in form and html.escape("<b>x</b>") in form


async def test_form_without_user_envs_explains_how_to_make_one(spawner, tree):
    shared, home = tree
    shutil.rmtree(home / ".conda")
    form = await spawner.get_options_form()
    assert radio_values(form.split('id="jhle-user-envs"')[1]) == []
    assert "conda create -n myenv python ipykernel" in form


@pytest.mark.parametrize(
    "form_data, expected",
    [
        ({"profile": ["mine/ml"]}, {"profile": "mine/ml"}),
        ({"profile": "shared/geo"}, {"profile": "shared/geo"}),
        ({"env": ["shared/geo"]}, {"profile": "shared/geo"}),
        ({}, {}),
    ],
    ids=["form", "query", "alias", "empty"],
)
def test_options_from_form(spawner, form_data, expected):
    assert spawner.run_options_from_form(form_data) == expected


async def test_valid_choice_is_applied_and_stored_as_profile(spawner):
    spawner.user_options = {"env": "mine/ml"}
    await spawner._run_apply_user_options(spawner.user_options)
    assert spawner.conda_env.name == "mine/ml"
    assert spawner.user_options == {"profile": "mine/ml"}
    args = spawner.get_args()
    assert (
        "--ServerApp.kernel_spec_manager_class="
        "jupyterhub_lab_ext.kernels.kernelspec.CondaEnvKernelSpecManager" in args
    )
    assert "--MappingKernelManager.default_kernel_name=mine-ml" in args


@pytest.mark.parametrize(
    "options, message",
    [
        ({"profile": "mine/other"}, "Unknown environment 'mine/other'"),
        ({"profile": "/home/bob/.conda/envs/x"}, "Unknown environment '/home/bob"),
        ({"profile": "shared/../mine/ml"}, "Unknown environment"),
        ({"env": "shared/geo2"}, "Unknown environment"),
        ({"profile": ["shared/geo"]}, "must be an environment name"),
        ({"profile": {"path": "/opt"}}, "must be an environment name"),
    ],
    ids=["other-users-name", "path", "traversal", "alias", "list", "dict"],
)
async def test_forged_choice_is_a_clear_400(spawner, options, message):
    spawner.user_options = options
    with pytest.raises(web.HTTPError) as info:
        await spawner._run_apply_user_options(options)
    assert info.value.status_code == 400
    assert message in info.value.jupyterhub_message  # what JupyterHub shows the user
    assert spawner.conda_env is None


async def test_no_choice_uses_default_env(spawner):
    spawner.default_env = "shared/geo"
    await spawner._run_apply_user_options({})
    assert spawner.user_options["profile"] == "shared/geo"
    assert "--MappingKernelManager.default_kernel_name=shared-geo" in spawner.get_args()


async def test_no_envs_at_all_still_spawns_without_default_kernel(tmp_path):
    s = FakeCondaSpawner(user=FakeUser("alice"), shared_env_dirs=[str(tmp_path / "none")])
    s._home = str(tmp_path)
    assert await s.apply_conda_user_options({}) is None
    assert not any(a.startswith("--MappingKernelManager") for a in s.get_args())


def test_env_for_the_server(spawner, tree):
    shared, home = tree
    spawner.user_env_dirs = ["~/.conda/envs", "/scratch/{username}"]
    env = spawner.get_env()
    assert env["FROM_BASE"] == "1"
    assert env[server_env.SHARED_ENV_DIRS] == str(shared)
    assert env[server_env.USER_ENV_DIRS] == "~/.conda/envs:/scratch/{username}"
    assert env["CONDA_ENVS_DIRS"] == f"{home}/.conda/envs"
    assert env["CONDA_PKGS_DIRS"] == f"{home}/.conda/pkgs"
    spawner.set_conda_dirs = False
    assert "CONDA_ENVS_DIRS" not in spawner.get_env()


async def test_progress_names_the_environment(spawner):
    await spawner.apply_conda_user_options({"profile": "shared/geo"})
    events = [e async for e in spawner.progress()]
    assert events[0]["message"].startswith("Environment shared/geo: Python 3.12.1")
    assert events[-1] == {"progress": 50, "message": "Spawning server..."}


def test_custom_template(spawner, tmp_path):
    tpl = tmp_path / "mine.html"
    tpl.write_text("{% for e in shared_envs %}[{{ e.name }}]{% endfor %}|{{ selected }}")
    spawner.options_form_template = str(tpl)
    assert asyncio.run(spawner.get_options_form()) == "[shared/base][shared/geo]|shared/base"


def test_conda_kernel_spawner_is_a_local_process_spawner():
    assert issubclass(LocalCondaKernelSpawner, LocalProcessSpawner)
    assert LocalCondaKernelSpawner.__mro__[1] is CondaKernelSpawner
    s = LocalCondaKernelSpawner()
    assert s.default_url == "/lab"
    assert s.shared_env_dirs == ["/opt/conda/envs"] and s.user_env_dirs == ["~/.conda/envs"]


VARIANTS = [
    LocalCondaKernelSpawner,
    docker_spawner.CondaKernelDockerSpawner,
    docker_spawner.CondaKernelSwarmSpawner,
]


@pytest.mark.parametrize("cls", VARIANTS, ids=lambda c: c.__name__)
def test_the_feature_section_reaches_every_variant(cls):
    config = Config()
    config.CondaKernelSpawner.shared_env_dirs = ["/srv/course-envs"]
    config.CondaKernelSpawner.default_env = "shared/geo"
    config.CondaKernelContainerSpawner.run_as_user = False  # Docker and Swarm only
    s = cls(config=config)
    assert (s.shared_env_dirs, s.default_env) == (["/srv/course-envs"], "shared/geo")
    if cls is not LocalCondaKernelSpawner:
        assert s.run_as_user is False
    # a variant's own section wins over the feature's, as with any traitlets subclass
    config[cls.__name__].shared_env_dirs = ["/srv/mine"]
    assert cls(config=config).shared_env_dirs == ["/srv/mine"]


@pytest.mark.parametrize("cls", VARIANTS, ids=lambda c: c.__name__)
def test_no_option_lives_in_a_mixin_section(cls):
    sections = {
        klass.__name__
        for klass in cls.__mro__
        for name, trait in cls.class_traits(config=True).items()
        if name in vars(klass)
    }
    assert sections and not [s for s in sections if s.endswith("Mixin")]


def test_docker_module_defines_ordinary_classes():
    for cls in (docker_spawner.CondaKernelDockerSpawner, docker_spawner.CondaKernelSwarmSpawner):
        assert cls.__module__ == docker_spawner.__name__
        assert issubclass(cls, docker_spawner.CondaKernelContainerSpawner)
    assert not hasattr(docker_spawner, "__getattr__")


def test_the_local_spawner_loads_no_docker_and_the_folder_no_spawner():
    code = (
        "import sys\n"
        "import jupyterhub_lab_ext.spawner\n"
        "assert not [m for m in sys.modules if m.startswith('jupyterhub_lab_ext.spawner.')]\n"
        "from jupyterhub_lab_ext.spawner.local import LocalCondaKernelSpawner\n"
        "assert 'dockerspawner' not in sys.modules, 'dockerspawner loaded'\n"
    )
    cwd = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=cwd, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr


def _docker_spawner(cls_name, tmp_path, **kw):
    me = pwd.getpwuid(os.getuid())
    s = getattr(docker_spawner, cls_name)(user=FakeUser(me.pw_name), **kw)
    return s, me


@pytest.mark.parametrize("cls_name", ["CondaKernelDockerSpawner", "CondaKernelSwarmSpawner"])
def test_docker_defaults_keep_paths_and_identity(cls_name, tmp_path):
    s, me = _docker_spawner(cls_name, tmp_path, shared_env_dirs=["/srv/envs"])
    assert s.read_only_volumes == {"/srv/envs": "/srv/envs"}
    assert s.volumes == {me.pw_dir: me.pw_dir}
    assert (s.network_name, s.ip, s.use_internal_ip, s.remove) == ("host", "127.0.0.1", True, True)
    user_spec = f"{me.pw_uid}:{me.pw_gid}"
    if cls_name == "CondaKernelDockerSpawner":
        assert s.extra_create_kwargs == {"user": user_spec, "working_dir": me.pw_dir}
    else:
        assert s.extra_container_spec == {"user": user_spec, "workdir": me.pw_dir}
    assert s.conda_home({}) == me.pw_dir


async def test_docker_host_network_picks_a_port_per_start(tmp_path):
    s, me = _docker_spawner("CondaKernelDockerSpawner", tmp_path)
    s.run_pre_spawn_hook()
    first = s.port
    assert first != 8888 and await s.get_ip_and_port() == ("127.0.0.1", first)
    s.random_host_port = False
    s.port = 9999
    s.run_pre_spawn_hook()
    assert s.port == 9999


def test_docker_bridge_network_keeps_dockerspawner_behaviour(tmp_path):
    s, me = _docker_spawner("CondaKernelDockerSpawner", tmp_path, network_name="bridge")
    assert (s.ip, s.use_internal_ip) == ("0.0.0.0", False)
    s.run_pre_spawn_hook()
    assert s.port == 8888
    s2, _ = _docker_spawner("CondaKernelDockerSpawner", tmp_path, run_as_user=False)
    assert s2.volumes == {} and s2.extra_create_kwargs == {}


# ---- the hub's log: skipped envs once, a refused spawn as one warning ------------------------


async def test_skipped_envs_are_logged_once_per_user_by_the_spawner_log(tree, caplog):
    shared, home = tree
    make_prefix(shared / "nokernel", ipykernel=False)
    name = f"carol{os.getpid()}"  # skips are remembered per user name, for the hub's lifetime

    def new_spawner():  # JupyterHub makes a new spawner object e.g. after a failed spawn
        s = FakeCondaSpawner(user=FakeUser(name), shared_env_dirs=[str(shared)])
        s._home = str(home)
        return s

    with caplog.at_level("INFO", logger=new_spawner().log.name):
        await new_spawner().get_options_form()
        await new_spawner().apply_conda_user_options({})
    lines = [r.getMessage() for r in caplog.records if "skipped" in r.getMessage()]
    reason = "an environment without any kernel (install ipykernel or a kernelspec into it)"
    assert lines == [f"user={name} skipped {shared / 'nokernel'}: {reason}"]
    assert {r.name for r in caplog.records} == {new_spawner().log.name}  # the hub's logger


async def test_refused_spawn_leaves_one_warning_and_no_traceback(spawner, caplog):
    """JupyterHub's own ``_run_apply_user_options`` logs the exception with a traceback; after a
    refusal its records about it are dropped, other errors pass."""
    with caplog.at_level("INFO"), pytest.raises(web.HTTPError) as info:
        await spawner._run_apply_user_options({"profile": "mine/other"})
    # what JupyterHub's user.spawn and the spawn form handler then log about it
    spawner.log.error(f"Error starting alice's server: {info.value}")
    spawner.log.error("Failed to spawn single-user server with form", exc_info=info.value)
    spawner.log.error("an unrelated error")
    records = [(r.levelname, r.getMessage(), r.exc_info) for r in caplog.records]
    refusal = "user=alice refused a spawn: environment 'mine/other' is not offered to them"
    assert records == [("WARNING", refusal, None), ("ERROR", "an unrelated error", None)]


async def test_refused_name_is_bounded_in_log_and_message(spawner, caplog):
    with caplog.at_level("WARNING"), pytest.raises(web.HTTPError) as info:
        await spawner.apply_conda_user_options({"profile": "x" * 100_000})
    assert len(caplog.records[0].getMessage()) < 300
    assert len(info.value.jupyterhub_message) < 400
