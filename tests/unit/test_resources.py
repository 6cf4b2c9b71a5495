"""Resource limits and placement per group and per env: the policy and its mapping on the spawners."""

from __future__ import annotations

import os
import pwd

import pytest
from jupyterhub.objects import Hub
from test_spawner import FakeUser, make_prefix
from traitlets import TraitError
from traitlets.config import Config

from jupyterhub_lab_ext.kernels.conda_envs import UserContext
from jupyterhub_lab_ext.spawner import docker as docker_spawner
from jupyterhub_lab_ext.spawner import resources
from jupyterhub_lab_ext.util import lab_status as names

M = 1024**2
G = 1024**3

LIMITS = {
    "*": {"mem_limit": "1G", "cpu_limit": 1},
    "group:students": {"mem_limit": "256M"},
    "group:staff": {"mem_limit": "4G", "cpu_limit": 4, "cpu_guarantee": 0.5},
    "env:shared/cuda": {"mem_limit": "16G", "mem_guarantee": "8G"},
}


@pytest.mark.parametrize(
    "value, expected",
    [("256M", 256 * M), ("1G", G), ("1.5g", int(1.5 * G)), (" 512 K ", 512 * 1024), (4096, 4096)],
)
def test_sizes(value, expected):
    assert resources.parse_size(value) == expected


@pytest.mark.parametrize("value", ["256MB", "lots", "", "-1M", 0, True, None, 1.5, "1P"])
def test_bad_sizes(value):
    with pytest.raises(ValueError):
        resources.parse_size(value)


@pytest.mark.parametrize(
    "config, message",
    [
        ({"group:": {}}, "unknown key 'group:'"),
        ({"user:bob": {}}, "unknown key 'user:bob'"),
        ({"env:shared geo": {}}, "unknown key"),
        ({"*": {"memory": "1G"}}, "resource_limits['*']: unknown resource 'memory'"),
        ({"group:a": {"mem_limit": "1 GB"}}, "resource_limits['group:a']['mem_limit']"),
        ({"env:shared/x": {"cpu_limit": "2"}}, "['cpu_limit']: '2' is not a positive number"),
        ({"*": {"cpu_guarantee": 0}}, "not a positive number of CPUs"),
        ({"*": "1G"}, "resource_limits['*'] must be a dict"),
    ],
)
def test_bad_limits_name_the_entry(config, message):
    with pytest.raises(ValueError, match=None) as e:
        resources.check_limits(config)
    assert message in str(e.value)


def test_resolution_env_then_most_generous_group_then_everyone():
    limits = resources.check_limits(LIMITS)
    nobody = resources.resolve(limits, "shared/py", [])
    assert nobody.values == {"mem_limit": G, "cpu_limit": 1.0}
    assert nobody.origins == {"mem_limit": "*", "cpu_limit": "*"}
    student = resources.resolve(limits, "shared/py", ["students", "unknown"])
    assert student.values == {"mem_limit": 256 * M, "cpu_limit": 1.0}
    assert student.origins == {"mem_limit": "group:students", "cpu_limit": "*"}
    both = resources.resolve(limits, "shared/py", ["students", "staff"])
    assert both.values == {"mem_limit": 4 * G, "cpu_limit": 4.0, "cpu_guarantee": 0.5}
    assert both.origins["mem_limit"] == "group:staff"
    cuda = resources.resolve(limits, "shared/cuda", ["students"])
    assert cuda.values == {"mem_limit": 16 * G, "mem_guarantee": 8 * G, "cpu_limit": 1.0}
    assert cuda.origins == {"mem_limit": "env:shared/cuda", "mem_guarantee": "env:shared/cuda",
                            "cpu_limit": "*"}  # fmt: skip
    assert resources.resolve({}, "shared/py", ["staff"]) == resources.Resolved()


def test_constraints_add_up():
    placement = resources.check_constraints(
        {
            "*": ["node.role == worker"],
            "env:shared/cuda": ["node.labels.gpu == true"],
            "group:physics": ["node.labels.site == physics", "node.role == worker"],
        }  # fmt: skip
    )
    assert resources.constraints_for(placement, "shared/cuda", ["physics", "other"]) == [
        "node.role == worker",
        "node.labels.gpu == true",
        "node.labels.site == physics",
    ]
    assert resources.constraints_for(placement, None, []) == ["node.role == worker"]
    for bad in ({"*": "node.role == worker"}, {"*": [""]}, {"gpu": []}):
        with pytest.raises(ValueError, match="placement_constraints|unknown key"):
            resources.check_constraints(bad)


@pytest.mark.parametrize(
    "values, text",
    [
        ({"mem_limit": 256 * M, "cpu_limit": 1.0}, "256 MB · 1 CPU"),
        ({"mem_limit": int(1.5 * G), "cpu_limit": 0.5}, "1.5 GB · 0.5 CPU"),
        ({"cpu_limit": 2.0}, "2 CPUs"),
        ({"mem_guarantee": G}, ""),
    ],
)
def test_limits_text(values, text):
    assert resources.limits_text(values) == text


# ---- on the spawners ---------------------------------------------------------------------------


class Group:
    def __init__(self, name):
        self.name = name


class GroupUser(FakeUser):
    def __init__(self, name, groups=()):
        super().__init__(name)
        self.groups = [Group(g) for g in groups]


def _spawner(cls_name, shared, groups=(), **kw):
    me = pwd.getpwuid(os.getuid())
    cls = getattr(docker_spawner, cls_name)

    class S(cls):
        def conda_user_context(self):
            return UserContext(name=me.pw_name, uid=me.pw_uid, home=me.pw_dir)

    return S(user=GroupUser(me.pw_name, groups), hub=Hub(), shared_env_dirs=[str(shared)], **kw)


@pytest.fixture
def shared(trusted_tmp_path):
    root = trusted_tmp_path.resolve() / "envs"
    for name in ("py", "cuda"):
        make_prefix(root / name)
    return root


def test_bad_config_is_refused_at_load_naming_the_key():
    config = Config()
    config.CondaKernelContainerSpawner.resource_limits = {"group:x": {"mem_limit": "huge"}}
    with pytest.raises(TraitError, match=r"resource_limits\['group:x'\]\['mem_limit'\]"):
        docker_spawner.CondaKernelDockerSpawner(config=config)
    config = Config()
    config.CondaKernelSwarmSpawner.placement_constraints = {"gpu": ["node.labels.gpu == true"]}
    with pytest.raises(TraitError, match="unknown key 'gpu'"):
        docker_spawner.CondaKernelSwarmSpawner(config=config)


async def _spawn(s, env):
    await s.apply_conda_user_options({"profile": env})
    s.run_pre_spawn_hook()


async def test_docker_applies_the_limits_of_the_env_and_groups_per_spawn(shared):
    s = _spawner(
        "CondaKernelDockerSpawner",
        shared,
        groups=["students"],
        resource_limits=LIMITS,
        extra_host_config={"pids_limit": 100},
    )
    await _spawn(s, "shared/py")
    assert (s.mem_limit, s.cpu_limit) == (256 * M, 1.0)
    assert s.extra_host_config == {"pids_limit": 100, "memswap_limit": 256 * M}
    assert s.get_env()[names.ENV_MEM_LIMIT_FROM] == "group:students"
    # the next spawn, same spawner object, another env: nothing left over from the first
    await _spawn(s, "shared/cuda")
    assert (s.mem_limit, s.cpu_limit) == (16 * G, 1.0)
    assert s.extra_host_config == {
        "pids_limit": 100,
        "memswap_limit": 16 * G,
        "mem_reservation": 8 * G,
    }
    assert s.get_env()[names.ENV_MEM_LIMIT_FROM] == "env:shared/cuda"


async def test_without_resource_limits_the_configured_limits_stay(shared):
    s = _spawner("CondaKernelDockerSpawner", shared, mem_limit="2G", cpu_limit=2.0)
    await _spawn(s, "shared/py")
    assert (s.mem_limit, s.cpu_limit, s.extra_host_config) == (2 * G, 2.0, {})
    assert names.ENV_MEM_LIMIT_FROM not in s.get_env()
    # an unknown group (not in resource_limits) gets "*"; a missing resource keeps the configured
    s = _spawner("CondaKernelDockerSpawner", shared, groups=["nobody"], cpu_limit=3.0,
                 resource_limits={"*": {"mem_limit": "512M"}})  # fmt: skip
    await _spawn(s, "shared/py")
    assert (s.mem_limit, s.cpu_limit) == (512 * M, 3.0)
    assert s.get_env()[names.ENV_MEM_LIMIT_FROM] == "*"


async def test_swarm_maps_limits_and_merges_placement(shared):
    s = _spawner(
        "CondaKernelSwarmSpawner",
        shared,
        groups=["staff"],
        resource_limits=LIMITS,
        placement_constraints={
            "env:shared/cuda": ["node.labels.gpu == true"],
            "group:staff": ["node.role == worker"],
        },  # fmt: skip
        extra_placement_spec={"constraints": ["node.role == worker"], "preferences": ["x"]},
    )
    await _spawn(s, "shared/cuda")
    assert (s.mem_limit, s.mem_guarantee, s.cpu_limit, s.cpu_guarantee) == (16 * G, 8 * G, 4.0, 0.5)
    assert s.extra_placement_spec == {
        "constraints": ["node.role == worker", "node.labels.gpu == true"],
        "preferences": ["x"],
    }
    await _spawn(s, "shared/py")
    assert s.extra_placement_spec == {"constraints": ["node.role == worker"], "preferences": ["x"]}
    assert s.mem_guarantee is None


async def test_form_shows_the_limits_next_to_each_env_escaped(shared):
    limits = {**LIMITS, "env:shared/py": {"cpu_limit": 0.5}}
    s = _spawner("CondaKernelDockerSpawner", shared, groups=["students"], resource_limits=limits)
    form = await s.get_options_form()
    py = form[form.index('data-env-name="shared/py"') :]
    cuda = form[form.index('data-env-name="shared/cuda"') :]
    assert "Limits: 256 MB · 0.5 CPU" in py[: py.index("</label>")]
    assert "Limits: 16 GB · 1 CPU" in cuda[: cuda.index("</label>")]
    plain = _spawner("CondaKernelDockerSpawner", shared)
    assert "Limits:" not in await plain.get_options_form()


async def test_docker_keeps_a_callable_extra_host_config(shared):
    def per_user(spawner):
        return {"pids_limit": 50, "memswap_limit": 1}

    s = _spawner("CondaKernelDockerSpawner", shared, groups=["students"], resource_limits=LIMITS,
                 extra_host_config=per_user)  # fmt: skip
    await _spawn(s, "shared/py")
    assert await s.extra_host_config(s) == {"pids_limit": 50, "memswap_limit": 256 * M}
    await _spawn(s, "shared/cuda")
    assert await s.extra_host_config(s) == {
        "pids_limit": 50,
        "memswap_limit": 16 * G,
        "mem_reservation": 8 * G,
    }
