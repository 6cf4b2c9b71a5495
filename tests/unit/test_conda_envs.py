"""Discovery of conda-layout environments over trees built in tmp dirs (no conda, no subprocess).

The trees live in ``trusted_tmp_path`` (root-owned up to ``/``), so that shared envs pass the trust
rule; tests of that rule itself are in test_env_trust.py."""

from __future__ import annotations

import json
import os
import re
import shutil

import pytest
from hypothesis import given
from hypothesis import strategies as st

from jupyterhub_lab_ext.kernels import env_skips
from jupyterhub_lab_ext.kernels.conda_envs import (
    DiscoveryConfig,
    EnvScanner,
    UserContext,
    expand_user_dir,
    scan,
)
from jupyterhub_lab_ext.kernels.env_prefix import slugify


def make_prefix(
    path,
    *,
    python="3.11",
    ipykernel=True,
    conda=True,
    venv=False,
    kernelspecs=None,
    activate=None,
    conda_meta_python=None,
):
    """A conda-layout prefix: conda-meta/history, bin/python, site-packages[/ipykernel], specs."""
    path = os.fspath(path)
    os.makedirs(os.path.join(path, "bin"), exist_ok=True)
    if conda:
        os.makedirs(os.path.join(path, "conda-meta"), exist_ok=True)
        with open(os.path.join(path, "conda-meta", "history"), "w") as f:
            f.write("==> 2026-11-22 <==\n")
        if conda_meta_python:
            name = f"python-{conda_meta_python}-h2_0_cpython.json"
            with open(os.path.join(path, "conda-meta", name), "w") as f:
                f.write("{}")
    if venv:
        with open(os.path.join(path, "pyvenv.cfg"), "w") as f:
            f.write(f"home = /usr/bin\nversion = {python}.2\n")
    if python:
        sp = os.path.join(path, "lib", f"python{python}", "site-packages")
        os.makedirs(sp, exist_ok=True)
        with open(os.path.join(path, "bin", "python"), "w") as f:
            f.write("#!/bin/sh\nexit 99\n")  # never executed by discovery
        os.chmod(os.path.join(path, "bin", "python"), 0o755)
        if ipykernel:
            os.makedirs(os.path.join(sp, "ipykernel"), exist_ok=True)
    for name, spec in (kernelspecs or {}).items():
        kdir = os.path.join(path, "share", "jupyter", "kernels", name)
        os.makedirs(kdir, exist_ok=True)
        with open(os.path.join(kdir, "kernel.json"), "w") as f:
            f.write(spec if isinstance(spec, str) else json.dumps(spec))
    for name, text in (activate or {}).items():
        d = os.path.join(path, "etc", "conda", "activate.d")
        os.makedirs(d, exist_ok=True)
        with open(os.path.join(d, name), "w") as f:
            f.write(text)
    return path


IR_SPEC = {
    "argv": ["R", "--slave", "-e", "IRkernel::main()", "--args", "{connection_file}"],
    "display_name": "R",
    "language": "R",
}
PY_SPEC = {
    "argv": ["python", "-m", "ipykernel_launcher", "-f", "{connection_file}"],
    "display_name": "Python 3 (ipykernel)",
    "language": "python",
}


@pytest.fixture
def tree(trusted_tmp_path):
    """shared root + a home for the current uid; returns (config, user, paths)."""
    tmp_path = trusted_tmp_path
    shared = tmp_path / "opt" / "conda" / "envs"
    home = tmp_path / "home" / "alice"
    shared.mkdir(parents=True)
    (home / ".conda" / "envs").mkdir(parents=True)
    user = UserContext(name="alice", uid=os.getuid(), home=str(home))
    config = DiscoveryConfig(shared_env_dirs=(str(shared),))
    return config, user, {"shared": shared, "home": home, "root": tmp_path}


def names(envs):
    return [e.name for e in envs]


def discover(config, user):
    """What discovery offers (a fresh scan, no cache)."""
    return scan(config, user).envs


def skipped(config, user):
    """{path: kind} of what discovery left out."""
    return {s.path: s.kind for s in scan(config, user).skipped}


def test_shared_and_user_envs_in_two_groups(tree):
    config, user, p = tree
    make_prefix(p["shared"] / "geo")
    make_prefix(p["shared"] / "stats", python=None, kernelspecs={"ir": IR_SPEC})
    (p["shared"] / "not-an-env").mkdir()
    (p["shared"] / "README").write_text("hi")
    make_prefix(p["home"] / ".conda" / "envs" / "ml")
    envs = discover(config, user)
    assert names(envs) == ["shared/geo", "shared/stats", "mine/ml"]
    assert [e.group for e in envs] == ["shared", "shared", "mine"]


def test_python_kernel_has_absolute_argv_and_version(tree):
    config, user, p = tree
    prefix = make_prefix(p["shared"] / "geo", python="3.12", conda_meta_python="3.12.7")
    (env,) = discover(config, None)
    (kernel,) = env.kernels
    assert kernel.argv[0] == os.path.join(prefix, "bin", "python")
    assert kernel.argv[1:] == ("-m", "ipykernel_launcher", "-f", "{connection_file}")
    assert env.python_version == "3.12.7"
    assert env.default_kernel_name == "shared-geo"


@pytest.mark.parametrize(
    "kwargs, expected",
    [
        ({"conda_meta_python": "3.10.14"}, "3.10.14"),
        ({"python": "3.9"}, "3.9"),
        ({"venv": True, "conda": True, "python": "3.11"}, "3.11.2"),
    ],
    ids=["conda-meta", "lib-dir", "pyvenv-cfg"],
)
def test_python_version_sources(tree, kwargs, expected):
    config, user, p = tree
    make_prefix(p["shared"] / "e", **kwargs)
    (env,) = discover(config, None)
    assert env.python_version == expected


def test_ipykernel_spec_in_env_is_not_a_duplicate(tree):
    config, user, p = tree
    prefix = make_prefix(p["shared"] / "geo", kernelspecs={"python3": PY_SPEC, "ir": IR_SPEC})
    (env,) = discover(config, None)
    assert [k.key for k in env.kernels] == ["python", "ir"]
    assert env.kernels[0].resource_dir == os.path.join(prefix, "share/jupyter/kernels/python3")
    assert env.kernels[1].argv[0] == os.path.join(prefix, "bin", "R")  # relative -> env's bin
    assert [env.kernel_name(k) for k in env.kernels] == ["shared-geo", "shared-geo-ir"]


def test_python_spec_without_ipykernel_dir_still_gives_one_python_kernel(tree):
    config, user, p = tree
    prefix = make_prefix(p["shared"] / "a", ipykernel=False, kernelspecs={"python3": PY_SPEC})
    (env,) = discover(config, None)
    assert [(k.key, k.argv[0]) for k in env.kernels] == [("python", f"{prefix}/bin/python")]


@pytest.mark.parametrize(
    "spec",
    ["{not json", json.dumps({"argv": []}), json.dumps({"argv": "R"}), json.dumps([1])],
    ids=["invalid-json", "empty-argv", "argv-not-list", "not-an-object"],
)
def test_broken_kernel_json_is_skipped(tree, spec):
    config, user, p = tree
    make_prefix(p["shared"] / "a", kernelspecs={"bad": spec, "ir": IR_SPEC})
    (env,) = discover(config, None)
    assert [k.key for k in env.kernels] == ["python", "ir"]


def test_env_without_any_kernel_is_skipped(tree):
    config, user, p = tree
    nokernel = make_prefix(p["shared"] / "nokernel", ipykernel=False)
    make_prefix(p["shared"] / "ok")
    found = scan(config, None)
    assert names(found.envs) == ["shared/ok"]
    (skip,) = found.skipped
    assert (skip.path, skip.kind) == (nokernel, env_skips.NO_KERNEL)
    assert "without any kernel" in skip.reason


def test_broken_kernelspec_and_plain_dirs_are_reported_but_hidden_ones_are_not(tree):
    config, user, p = tree
    make_prefix(p["shared"] / "a", kernelspecs={"bad": "{", "ir": IR_SPEC})
    (p["shared"] / "not-an-env").mkdir()
    (p["shared"] / ".trash").mkdir()
    (p["shared"] / "README").write_text("hi")
    assert skipped(config, None) == {
        str(p["shared"] / "a" / "share" / "jupyter" / "kernels" / "bad"): env_skips.BAD_KERNELSPEC,
        str(p["shared"] / "not-an-env"): env_skips.NOT_AN_ENV,
    }


def test_activate_scripts_recorded(tree):
    config, user, p = tree
    make_prefix(p["shared"] / "a", activate={"b.sh": "export B=1\n", "a.sh": "", "x.csh": ""})
    (env,) = discover(config, None)
    assert [os.path.basename(s) for s in env.activate_scripts] == ["a.sh", "b.sh"]


def test_venvs_only_when_allowed(tree):
    config, user, p = tree
    make_prefix(p["shared"] / "v", conda=False, venv=True)
    assert discover(config, None) == []
    (env,) = discover(
        DiscoveryConfig(shared_env_dirs=config.shared_env_dirs, allow_venvs=True), None
    )
    assert env.is_venv and env.name == "shared/v"


def test_shared_root_may_itself_be_a_prefix(tree):
    config, user, p = tree
    base = make_prefix(p["root"] / "miniforge")
    envs = discover(DiscoveryConfig(shared_env_dirs=(base, str(p["shared"]))), None)
    assert names(envs) == ["shared/miniforge"]


def test_same_name_in_two_roots_gets_a_suffix(tree):
    config, user, p = tree
    other = p["root"] / "srv" / "envs"
    make_prefix(p["shared"] / "geo")
    make_prefix(other / "geo")
    envs = discover(DiscoveryConfig(shared_env_dirs=(str(p["shared"]), str(other))), None)
    assert names(envs) == ["shared/geo", "shared/geo-2"]
    assert envs[1].kernel_name(envs[1].kernels[0]) == "shared-geo-2"


def test_names_are_readable_slugs(tree):
    config, user, p = tree
    make_prefix(p["home"] / ".conda" / "envs" / "My Env (GPU)")
    (env,) = discover(config, user)
    assert env.name == "mine/my-env-gpu"
    assert re.fullmatch(r"[a-z0-9._-]+", env.default_kernel_name)


@given(st.text(max_size=40))
def test_slugify_always_gives_a_valid_kernel_name_part(text):
    assert re.fullmatch(r"[a-z0-9._-]+", slugify(text))


# ---- the user's own envs: ownership, roots, symlinks, environments.txt ----------------------


def write_environments_txt(home, *lines):
    path = home / ".conda" / "environments.txt"
    path.write_text("".join(f"{line}\n" for line in lines))
    return path


def test_environments_txt_entries_in_home_are_offered(tree):
    config, user, p = tree
    proj = make_prefix(p["home"] / "projects" / "thesis" / "env")
    write_environments_txt(p["home"], proj, "# comment", "", "relative/path")
    assert names(discover(config, user)) == ["mine/env"]
    assert skipped(config, user) == {"relative/path": env_skips.NOT_AN_ENV}


def test_listed_paths_that_are_not_envs_are_reported(tree):
    config, user, p = tree
    plain = p["home"] / "plain"
    plain.mkdir()
    (p["home"] / "file").write_text("x")
    gone = p["home"] / "deleted-env"
    write_environments_txt(p["home"], plain, p["home"] / "file", gone)
    found = scan(config, user)
    assert found.envs == []
    reasons = {s.path: s.reason for s in found.skipped}
    assert reasons == {
        str(plain): "not an environment (no conda-meta/)",
        str(p["home"] / "file"): "not a directory",
        str(gone): "does not exist",
    }
    assert {s.kind for s in found.skipped} == {env_skips.NOT_AN_ENV}


def test_entry_outside_allowed_roots_is_ignored(tree):
    config, user, p = tree
    elsewhere = make_prefix(p["root"] / "tmp" / "stolen")
    write_environments_txt(p["home"], elsewhere)
    assert discover(config, user) == []
    assert skipped(config, user) == {elsewhere: env_skips.OUTSIDE}


def test_symlink_out_of_the_home_is_ignored(tree):
    config, user, p = tree
    bob_env = make_prefix(p["root"] / "home" / "bob" / ".conda" / "envs" / "secret")
    os.symlink(bob_env, p["home"] / ".conda" / "envs" / "secret")
    os.symlink(bob_env, p["home"] / "link-to-bob")
    write_environments_txt(p["home"], str(p["home"] / "link-to-bob"))
    assert discover(config, user) == []
    found = scan(config, user)
    assert {s.path: s.kind for s in found.skipped} == {
        str(p["home"] / ".conda" / "envs" / "secret"): env_skips.OUTSIDE,
        str(p["home"] / "link-to-bob"): env_skips.OUTSIDE,
    }
    assert all(f"(to {bob_env})" in s.reason for s in found.skipped)


def test_envs_dir_symlinked_to_another_home_is_ignored(tree):
    config, user, p = tree
    make_prefix(p["root"] / "home" / "bob" / ".conda" / "envs" / "secret")
    envs_dir = p["home"] / ".conda" / "envs"
    envs_dir.rmdir()
    os.symlink(p["root"] / "home" / "bob" / ".conda" / "envs", envs_dir)
    assert discover(config, user) == []
    assert skipped(config, user) == {str(envs_dir): env_skips.OUTSIDE}


def test_envs_not_owned_by_the_user_are_ignored(tree):
    config, user, p = tree
    make_prefix(p["home"] / ".conda" / "envs" / "ml")
    other_uid = UserContext(name=user.name, uid=os.getuid() + 1, home=user.home)
    assert discover(config, other_uid) == []
    (skip,) = scan(config, other_uid).skipped
    assert skip.kind == env_skips.NOT_OWNED and skip.reason.endswith(f"not by {user.name}")
    assert names(discover(config, user)) == ["mine/ml"]


def test_environments_txt_must_be_a_regular_file_of_the_user(tree):
    config, user, p = tree
    proj = make_prefix(p["home"] / "p" / "env")
    real = p["home"] / "list.txt"
    real.write_text(f"{proj}\n")
    os.symlink(real, p["home"] / ".conda" / "environments.txt")
    assert discover(config, user) == []


def test_conda_dir_linked_to_another_home_is_ignored(tree):
    config, user, p = tree
    bob_conda = p["root"] / "home" / "bob" / ".conda"
    proj = make_prefix(p["home"] / "p" / "env")  # alice's own env, named in bob's file
    bob_conda.mkdir(parents=True)
    (bob_conda / "environments.txt").write_text(f"{proj}\n")
    shutil.rmtree(p["home"] / ".conda")
    os.symlink(bob_conda, p["home"] / ".conda")
    assert discover(config, user) == []
    assert skipped(config, user) == {
        str(p["home"] / ".conda"): env_skips.OUTSIDE,
        str(p["home"] / ".conda" / "envs"): env_skips.OUTSIDE,
    }


def test_home_behind_a_symlink_still_works(tree):
    config, user, p = tree
    proj = make_prefix(p["home"] / "p" / "env")
    write_environments_txt(p["home"], proj)
    make_prefix(p["home"] / ".conda" / "envs" / "ml")
    link = p["root"] / "home-link"
    os.symlink(p["home"], link)
    linked = UserContext(name=user.name, uid=user.uid, home=str(link))
    assert names(discover(config, linked)) == ["mine/env", "mine/ml"]


def test_shared_env_in_environments_txt_is_not_listed_twice(tree):
    config, user, p = tree
    geo = make_prefix(p["shared"] / "geo")
    write_environments_txt(p["home"], geo)
    assert names(discover(config, user)) == ["shared/geo"]


def test_admin_user_env_dirs_with_username(tree):
    config, user, p = tree
    scratch = p["root"] / "scratch" / "alice" / "envs"
    make_prefix(scratch / "big")
    cfg = DiscoveryConfig(
        shared_env_dirs=config.shared_env_dirs,
        user_env_dirs=("~/.conda/envs", str(p["root"] / "scratch" / "{username}" / "envs")),
    )
    assert names(discover(cfg, user)) == ["mine/big"]


def test_expand_user_dir_uses_the_users_home_not_the_hubs():
    user = UserContext(name="alice", uid=1000, home="/home/alice")
    assert expand_user_dir("~/.conda/envs", user) == "/home/alice/.conda/envs"
    assert expand_user_dir("/scratch/{username}/envs", user) == "/scratch/alice/envs"


# ---- stat-based cache -----------------------------------------------------------------------


def test_cache_reuses_records_and_sees_changes(tree):
    config, user, p = tree
    scanner = EnvScanner()
    make_prefix(p["shared"] / "geo")
    first = scanner.scan(config, user).envs
    again = scanner.scan(config, user).envs
    assert again[0] is first[0]  # unchanged tree: same immutable record, nothing re-read

    make_prefix(p["home"] / ".conda" / "envs" / "new")
    assert names(scanner.scan(config, user).envs) == ["shared/geo", "mine/new"]

    make_prefix(p["shared"] / "geo", activate={"x.sh": "export X=1\n"})
    (geo, _) = scanner.scan(config, user).envs
    assert geo.activate_scripts and geo is not first[0]

    shutil.rmtree(p["home"] / ".conda" / "envs" / "new")
    assert names(scanner.scan(config, user).envs) == ["shared/geo"]


def test_cache_notices_ipykernel_installed_later(tree):
    config, user, p = tree
    scanner = EnvScanner()
    prefix = make_prefix(p["shared"] / "late", ipykernel=False)
    assert scanner.scan(config, None).envs == []
    os.makedirs(os.path.join(prefix, "lib", "python3.11", "site-packages", "ipykernel"))
    assert names(scanner.scan(config, None).envs) == ["shared/late"]


def test_environments_txt_change_is_noticed(tree):
    config, user, p = tree
    scanner = EnvScanner()
    a = make_prefix(p["home"] / "a" / "env-a")
    b = make_prefix(p["home"] / "b" / "env-b")
    write_environments_txt(p["home"], a)
    assert names(scanner.scan(config, user).envs) == ["mine/env-a"]
    write_environments_txt(p["home"], a, b)
    assert names(scanner.scan(config, user).envs) == ["mine/env-a", "mine/env-b"]
