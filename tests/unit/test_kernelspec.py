"""CondaEnvKernelSpecManager: the exact kernel set, refusal of other names, activation."""

from __future__ import annotations

import getpass
import os
import shutil
import subprocess
import sys

import pytest
from jupyter_client.kernelspec import NoSuchKernel
from jupyter_client.manager import KernelManager
from jupyter_client.multikernelmanager import AsyncMultiKernelManager
from test_conda_envs import IR_SPEC, PY_SPEC, make_prefix
from tornado import web

from jupyterhub_lab_ext.kernels import server_env
from jupyterhub_lab_ext.kernels.conda_envs import DiscoveryConfig
from jupyterhub_lab_ext.kernels.kernelspec import (
    ACTIVATE_ARGV0_NAME,
    ACTIVATE_SCRIPT,
    CondaEnvKernelSpecManager,
)


@pytest.fixture
def dirs(trusted_tmp_path, monkeypatch):
    tmp_path = trusted_tmp_path
    shared = tmp_path / "shared"
    home = tmp_path / "home"
    shared.mkdir()
    (home / ".conda" / "envs").mkdir(parents=True)
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv(server_env.SHARED_ENV_DIRS, str(shared))
    monkeypatch.setenv(server_env.USER_ENV_DIRS, "~/.conda/envs")
    # a stale user kernelspec that the stock manager would list
    stale = home / ".local" / "share" / "jupyter" / "kernels" / "stale"
    stale.mkdir(parents=True)
    (stale / "kernel.json").write_text('{"argv": ["python", "{connection_file}"], "language": "x"}')
    return shared, home


def test_lists_exactly_shared_and_own_kernels(dirs):
    shared, home = dirs
    make_prefix(shared / "geo", kernelspecs={"python3": PY_SPEC, "ir": IR_SPEC})
    make_prefix(home / ".conda" / "envs" / "ml")
    ksm = CondaEnvKernelSpecManager()
    assert sorted(ksm.find_kernel_specs()) == ["mine-ml", "shared-geo", "shared-geo-ir"]
    specs = ksm.get_all_specs()
    assert sorted(specs) == ["mine-ml", "shared-geo", "shared-geo-ir"]
    assert specs["shared-geo"]["spec"]["display_name"] == "Python 3.11 (shared/geo)"
    assert specs["shared-geo-ir"]["spec"]["display_name"] == "R (shared/geo)"
    assert specs["mine-ml"]["spec"]["metadata"]["conda_env_path"] == str(
        home / ".conda" / "envs" / "ml"
    )


@pytest.mark.parametrize("name", ["python3", "stale", "mine-other", "../shared-geo"])
def test_refuses_kernels_it_does_not_list(dirs, name):
    shared, home = dirs
    make_prefix(shared / "geo")
    ksm = CondaEnvKernelSpecManager()
    with pytest.raises(NoSuchKernel):
        ksm.get_kernel_spec(name)
    assert ksm.get_kernel_spec("SHARED-GEO").display_name.startswith("Python")


def test_activation_in_env_without_wrapper(dirs):
    shared, home = dirs
    prefix = make_prefix(shared / "geo")
    spec = CondaEnvKernelSpecManager().get_kernel_spec("shared-geo")
    assert spec.argv[0] == os.path.join(prefix, "bin", "python")
    assert spec.env == {
        "PATH": f"{prefix}/bin:${{PATH}}",
        "CONDA_PREFIX": prefix,
        "CONDA_DEFAULT_ENV": "geo",
    }


def test_venv_gets_virtual_env_instead_of_conda_vars(dirs, monkeypatch):
    shared, home = dirs
    prefix = make_prefix(shared / "v", conda=False, venv=True)
    monkeypatch.setenv(server_env.ALLOW_VENVS, "1")
    spec = CondaEnvKernelSpecManager().get_kernel_spec("shared-v")
    assert spec.env["VIRTUAL_ENV"] == prefix and "CONDA_PREFIX" not in spec.env


def test_server_does_not_swap_in_its_own_python(dirs):
    """jupyter_client replaces argv[0] "python" with the server's interpreter; ours is absolute."""
    shared, home = dirs
    prefix = make_prefix(shared / "geo", ipykernel=False, kernelspecs={"python3": PY_SPEC})
    km = KernelManager(kernel_name="shared-geo", kernel_spec_manager=CondaEnvKernelSpecManager())
    cmd = km.format_kernel_cmd()
    assert cmd[0] == os.path.join(prefix, "bin", "python")


def test_wrapper_only_with_activate_scripts(dirs):
    shared, home = dirs
    make_prefix(shared / "plain")
    prefix = make_prefix(shared / "act", activate={"x.sh": "export X=1\n"})
    ksm = CondaEnvKernelSpecManager()
    assert ksm.get_kernel_spec("shared-plain").argv[0].endswith("/bin/python")
    argv = ksm.get_kernel_spec("shared-act").argv
    assert argv[:5] == ["/bin/sh", "-c", ACTIVATE_SCRIPT, ACTIVATE_ARGV0_NAME, prefix]
    assert argv[5:] == [
        f"{prefix}/bin/python",
        "-m",
        "ipykernel_launcher",
        "-f",
        "{connection_file}",
    ]


def test_wrapper_sources_scripts_and_execs_in_place(tmp_path):
    """The real sh wrapper: activate.d variables reach the program, which keeps the wrapper's PID."""
    prefix = make_prefix(
        tmp_path / "act",
        activate={"a.sh": "export JHLE_A=from-a\n", "b.sh": 'export JHLE_B="$JHLE_A+b"\n'},
    )
    program = ["/bin/sh", "-c", 'echo "$$ $JHLE_A $JHLE_B"']
    proc = subprocess.Popen(
        ["/bin/sh", "-c", ACTIVATE_SCRIPT, ACTIVATE_ARGV0_NAME, prefix, *program],
        stdout=subprocess.PIPE,
        text=True,
    )
    out, _ = proc.communicate(timeout=10)
    assert proc.returncode == 0
    assert out.split() == [str(proc.pid), "from-a", "from-a+b"]


def test_new_env_appears_and_deleted_env_disappears(dirs):
    shared, home = dirs
    make_prefix(shared / "geo")
    ksm = CondaEnvKernelSpecManager()
    assert sorted(ksm.find_kernel_specs()) == ["shared-geo"]
    make_prefix(home / ".conda" / "envs" / "fresh")
    assert sorted(ksm.get_all_specs()) == ["mine-fresh", "shared-geo"]
    ksm.get_kernel_spec("mine-fresh")
    shutil.rmtree(home / ".conda" / "envs" / "fresh")
    assert sorted(ksm.find_kernel_specs()) == ["shared-geo"]
    with pytest.raises(NoSuchKernel):
        ksm.get_kernel_spec("mine-fresh")


def test_allowed_kernelspecs_still_narrows_the_set(dirs):
    shared, home = dirs
    make_prefix(shared / "a")
    make_prefix(shared / "b")
    ksm = CondaEnvKernelSpecManager(allowed_kernelspecs={"shared-b"})
    assert list(ksm.find_kernel_specs()) == ["shared-b"]
    with pytest.raises(NoSuchKernel):
        ksm.get_kernel_spec("shared-a")


def test_returned_specs_are_copies(dirs):
    shared, home = dirs
    make_prefix(shared / "geo")
    ksm = CondaEnvKernelSpecManager()
    ksm.get_all_specs()["shared-geo"]["spec"]["env"]["PATH"] = "mutated"
    assert ksm.get_all_specs()["shared-geo"]["spec"]["env"]["PATH"] != "mutated"


def test_refusal_is_a_404_with_the_offered_names(dirs):
    """jupyter_server turns a bare NoSuchKernel into a 500 on POST /api/kernels; ours is a 404 that
    is still a NoSuchKernel for everyone who catches that."""
    shared, home = dirs
    make_prefix(shared / "geo")
    with pytest.raises(web.HTTPError) as info:
        CondaEnvKernelSpecManager().get_kernel_spec("python3")
    assert isinstance(info.value, NoSuchKernel) and isinstance(info.value, KeyError)
    assert info.value.status_code == 404
    assert info.value.log_message == (
        "No kernel 'python3': only the kernels of the shared environments and of your own "
        "environments can be started here (shared-geo)."
    )
    with pytest.raises(web.HTTPError) as info:
        CondaEnvKernelSpecManager().get_kernel_spec("<script>%s" * 50)
    assert "No kernel with this name:" in info.value.get_message()


def test_skipped_envs_are_logged_once_in_the_server_log(dirs, caplog):
    shared, home = dirs
    make_prefix(shared / "geo")
    nokernel = make_prefix(home / ".conda" / "envs" / "nokernel", ipykernel=False)
    ksm = CondaEnvKernelSpecManager()
    with caplog.at_level("INFO", logger=ksm.log.name):
        for _ in range(3):
            ksm.find_kernel_specs()
        lines = [r.getMessage() for r in caplog.records if "skipped" in r.getMessage()]
        reason = "an environment without any kernel (install ipykernel or a kernelspec into it)"
        assert lines == [f"user={getpass.getuser()} skipped {nokernel}: {reason}"]
        shutil.rmtree(nokernel)
        ksm.find_kernel_specs()
        make_prefix(nokernel, ipykernel=False)  # back again: logged again
        ksm.find_kernel_specs()
        assert sum("skipped" in r.getMessage() for r in caplog.records) == 2


async def test_refused_kernel_start_costs_the_server_log_no_traceback(dirs, caplog):
    """jupyter_client logs a failed start twice with a traceback; not for a refused name."""
    shared, home = dirs
    make_prefix(shared / "geo")
    mkm = AsyncMultiKernelManager(kernel_spec_manager=CondaEnvKernelSpecManager())
    with caplog.at_level("INFO"), pytest.raises(NoSuchKernel):
        await mkm.start_kernel(kernel_name="python3")
    assert [(r.levelname, r.getMessage()) for r in caplog.records] == [
        ("WARNING", "Refusing kernel 'python3': not one of this user's environments")
    ]


# ---- what the spawner passes to the server --------------------------------------------------

PASSED = [
    DiscoveryConfig(),
    DiscoveryConfig(
        shared_env_dirs=("/srv/a", "/srv/b"),
        user_env_dirs=("~/envs", "/scratch/{username}"),
        read_environments_txt=False,
        allow_venvs=True,
        shared_env_owners=("conda-admin", "1234"),
    ),
    DiscoveryConfig(user_env_dirs=()),
]


@pytest.mark.parametrize("config", PASSED, ids=["defaults", "all-set", "no-user-dirs"])
def test_the_server_reads_back_what_the_spawner_passed(config, monkeypatch):
    assert server_env.from_env(server_env.to_env(config)) == config
    for name, value in server_env.to_env(config).items():
        monkeypatch.setenv(name, value)
    assert DiscoveryConfig.of(CondaEnvKernelSpecManager()) == config


def test_without_the_spawner_the_manager_uses_the_defaults(monkeypatch):
    for name in server_env.to_env(DiscoveryConfig()):
        monkeypatch.delenv(name, raising=False)
    assert DiscoveryConfig.of(CondaEnvKernelSpecManager()) == DiscoveryConfig()
    assert server_env.from_env({server_env.ALLOW_VENVS: "yes"}).allow_venvs is True


def test_the_kernels_folder_loads_without_jupyterhub():
    """Every user's server imports it: no hub code may come along (checked in a fresh process)."""
    code = (
        "import pkgutil, importlib, sys\n"
        "import jupyterhub_lab_ext.kernels as k\n"
        "names = [m.name for m in pkgutil.iter_modules(k.__path__)]\n"
        "for n in names: importlib.import_module('jupyterhub_lab_ext.kernels.' + n)\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] == 'jupyterhub'\n"
        "             or m.startswith(('jupyterhub_lab_ext.spawner', 'jupyterhub_lab_ext.auth',\n"
        "                             'jupyterhub_lab_ext.services', 'jupyterhub_lab_ext.cli')))\n"
        "assert len(names) >= 7 and not bad, (names, bad)\n"
    )
    repo = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=repo, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
