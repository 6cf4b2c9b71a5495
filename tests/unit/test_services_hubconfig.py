"""What the services' ``enable_*`` calls write into a hub config for a service run outside the
hub (e.g. its own systemd unit), and how the managed user limit gets its secret."""

from __future__ import annotations

import copy
import json

import pytest
from traitlets.config import Config

from jupyterhub_lab_ext.services.common.hubconfig import ResolvedAtStart
from jupyterhub_lab_ext.services.culler.hubconfig import enable_idle_culler


def entry(c: Config, name: str) -> dict:
    return next(s for s in c.JupyterHub.services if s["name"] == name)


def test_external_culler_keeps_its_role_and_waits_briefly():
    c = Config()
    enable_idle_culler(c, args=["--cull-users=True"], managed=False, api_token="t" * 32)
    svc = entry(c, "idle-culler")
    assert svc["api_token"] == "t" * 32 and svc["timeout"] == 2
    assert not {"command", "environment", "user", "cwd"} & set(svc)
    (role,) = c.JupyterHub.load_roles
    assert "delete:users" in role["scopes"]  # the flags still decide the role


@pytest.mark.parametrize(
    "kwargs, named",
    [
        ({"db_url": "sqlite:///x.sqlite"}, "db_url"),
        ({"environment": {"A": "1"}}, "environment"),
        ({"service_options": {"user": "svc"}}, "user"),
        ({"service_options": {"command": ["x"], "display": False}}, "command"),
    ],
)
def test_external_culler_refuses_what_only_a_managed_one_uses(kwargs, named):
    with pytest.raises(ValueError, match=f"enable_idle_culler\\(managed=False\\) got {named},"):
        enable_idle_culler(Config(), managed=False, api_token="t", **kwargs)


def test_external_culler_without_its_token_loads_with_a_warning():
    c = Config()
    with pytest.warns(UserWarning, match="api_token empty"):
        enable_idle_culler(c, managed=False, api_token=None)
    assert "api_token" not in entry(c, "idle-culler")


def test_other_service_options_still_apply():
    c = Config()
    enable_idle_culler(c, managed=False, api_token="t", service_options={"timeout": 5})
    assert entry(c, "idle-culler")["timeout"] == 5


def test_resolved_at_start_is_called_by_the_hub_and_stored_empty():
    calls = []
    value = ResolvedAtStart(lambda: calls.append(1) or "s3cret")
    assert calls == []  # nothing at config time
    assert callable(value) and value(object()) == "s3cret" and calls == [1]
    assert json.dumps({"K": value}) == '{"K": ""}'
    assert copy.deepcopy(value)() == "s3cret"
