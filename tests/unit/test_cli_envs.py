"""``jupyterhub-lab-ext envs USER``: what a user would be offered, with the hub's settings."""

from __future__ import annotations

import getpass
import json
import os
import pwd

import pytest
from test_conda_envs import IR_SPEC, make_prefix

from jupyterhub_lab_ext.cli.envs import hub_discovery
from jupyterhub_lab_ext.cli.main import main
from jupyterhub_lab_ext.kernels.conda_envs import DiscoveryConfig


def write_config(tmp_path, text):
    path = tmp_path / "jupyterhub_config.py"
    path.write_text("c = get_config()  # noqa\n" + text)
    return str(path)


def test_settings_come_from_the_configured_spawner_sections(tmp_path):
    cfg = write_config(
        tmp_path,
        "c.JupyterHub.spawner_class = 'conda-kernel'\n"
        "c.CondaKernelSpawner.shared_env_dirs = ['/srv/envs']\n"
        "c.Spawner.default_env = 'shared/geo'\n"
        "c.LocalCondaKernelSpawner.allow_venvs = True\n",
    )
    config, default_env = hub_discovery(cfg, getpass.getuser())
    assert config == DiscoveryConfig(shared_env_dirs=("/srv/envs",), allow_venvs=True)
    assert default_env == "shared/geo"


@pytest.mark.parametrize("variant", ["conda-kernel-docker", "conda-kernel-swarm"])
def test_the_feature_section_and_the_variants_own_both_apply(tmp_path, variant):
    cfg = write_config(
        tmp_path,
        f"c.JupyterHub.spawner_class = {variant!r}\n"
        "c.CondaKernelDockerSpawner.shared_env_dirs = ['/docker/envs']\n"
        "c.CondaKernelSpawner.shared_env_dirs = ['/feature/envs']\n"
        "c.CondaKernelSpawner.default_env = 'shared/geo'\n",
    )
    config, default_env = hub_discovery(cfg, getpass.getuser())
    expected = "/docker/envs" if variant == "conda-kernel-docker" else "/feature/envs"
    assert (config.shared_env_dirs, default_env) == ((expected,), "shared/geo")


def test_a_spawner_that_reads_its_user_while_configured(tmp_path):
    """dockerspawner names the container after the user as soon as ``image`` is set."""
    cfg = write_config(
        tmp_path,
        "c.JupyterHub.spawner_class = 'conda-kernel-swarm'\n"
        "c.DockerSpawner.image = 'registry.example.org/lab:1'\n"
        "c.CondaKernelSpawner.shared_env_dirs = ['/srv/envs']\n",
    )
    assert hub_discovery(cfg, "alice")[0].shared_env_dirs == ("/srv/envs",)


def test_an_admins_subclass_is_configured_as_the_hub_configures_it(tmp_path):
    cfg = write_config(
        tmp_path,
        "from jupyterhub_lab_ext.spawner.local import LocalCondaKernelSpawner\n"
        "class CourseSpawner(LocalCondaKernelSpawner):\n"
        "    pass\n"
        "c.JupyterHub.spawner_class = CourseSpawner\n"
        "c.CondaKernelSpawner.shared_env_dirs = ['/srv/envs']\n"
        "c.CondaKernelSpawner.default_env = 'shared/not-this'\n"
        "c.CourseSpawner.default_env = 'shared/course'\n",
    )
    config, default_env = hub_discovery(cfg, getpass.getuser())
    assert (config.shared_env_dirs, default_env) == (("/srv/envs",), "shared/course")


def test_a_hub_without_a_conda_kernel_spawner_is_named(tmp_path, capsys):
    cfg = write_config(tmp_path, "c.JupyterHub.spawner_class = 'localprocess'\n")
    assert main(["envs", getpass.getuser(), "--config", cfg]) == 1
    err = capsys.readouterr().err
    assert "the hub's spawner LocalProcessSpawner has no shared_env_dirs" in err


def test_table_and_json_for_a_user(trusted_tmp_path, capsys):
    tmp_path = trusted_tmp_path
    shared = tmp_path / "shared"
    mine = tmp_path / "mine"
    make_prefix(shared / "geo", kernelspecs={"ir": IR_SPEC})
    make_prefix(shared / "base")
    make_prefix(mine / "ml")
    cfg = write_config(
        tmp_path,
        f"c.CondaKernelSpawner.shared_env_dirs = [{str(shared)!r}]\n"
        "c.CondaKernelSpawner.default_env = 'shared/geo'\n",
    )
    user = getpass.getuser()
    assert main(["envs", user, "--config", cfg, "--user-dir", str(mine)]) == 0
    out = capsys.readouterr().out
    assert f"Environments offered to {user}" in out
    assert "* shared/geo  [Python 3.11; kernels: Python, R]" in out
    assert "kernel shared-geo-ir: R (shared/geo)" in out
    assert "  mine/ml  [" in out

    assert main(["envs", user, "--config", cfg, "--user-dir", str(mine), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["preselected"] == "shared/geo"
    assert [e["name"] for e in data["environments"]] == ["shared/base", "shared/geo", "mine/ml"]
    geo = data["environments"][1]
    assert [k["name"] for k in geo["kernels"]] == ["shared-geo", "shared-geo-ir"]
    assert geo["kernels"][1]["argv0"] == str(shared / "geo" / "bin" / "R")


def test_unknown_user_and_broken_config(tmp_path, capsys):
    assert main(["envs", "no-such-user-jhle"]) == 1
    assert "no system user" in capsys.readouterr().err
    bad = write_config(tmp_path, "raise RuntimeError('boom')\n")
    assert main(["envs", getpass.getuser(), "--config", bad]) == 1
    assert capsys.readouterr().err == f"{bad}: cannot load hub config: RuntimeError: boom\n"


def test_refused_shared_env_is_shown_with_its_reason(trusted_tmp_path, capsys):
    safe, shared = trusted_tmp_path / "safe", trusted_tmp_path / "open"
    make_prefix(safe / "ok")
    planted = make_prefix(shared / "aaa")
    os.chown(planted, pwd.getpwnam("nobody").pw_uid, -1)
    shared.chmod(0o1777)
    user = getpass.getuser()
    dirs = ["--shared-dir", str(shared), "--shared-dir", str(safe), "--user-dir", "/nonexistent"]
    assert main(["envs", user, *dirs]) == 0
    out = capsys.readouterr().out
    assert "* shared/ok  [" in out and "shared/aaa" not in out
    assert out.splitlines()[-2:] == [
        "Not offered (refused or skipped):",
        f"  {planted}: unsafe shared location: {shared} is writable by others (mode 1777)",
    ]
    assert main(["envs", user, *dirs, "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert [e["name"] for e in data["environments"]] == ["shared/ok"]
    assert data["skipped"] == [
        {
            "path": planted,
            "reason": f"unsafe shared location: {shared} is writable by others (mode 1777)",
            "kind": "unsafe-shared",
        }
    ]
