"""The services' self views in-process: the user's own server token reads its own user only."""

from __future__ import annotations

import pytest
from test_culler_handlers import api, clean_env, hub, start  # noqa: F401 (fixtures)

SERVER_TOKENS = {
    # what the hub answers for alice's single-user server token ($JUPYTERHUB_API_TOKEN)
    "alice-server": {
        "kind": "user",
        "name": "alice",
        "scopes": [
            "users:activity!user=alice",
            "access:servers!server=alice/",
            "read:users:name!user=alice",
        ],
    },
    "alice-browser": {"kind": "user", "name": "alice", "scopes": ["access:servers!server=alice/"]},
}


@pytest.fixture
async def self_api(hub, start):  # noqa: F811
    hub.tokens.update(SERVER_TOKENS)
    return await start("--warning-period=300", "--cull-every=60")


async def test_culler_self_view_for_the_own_server_only(self_api):
    code, view, _ = await self_api.call("GET", "api/users/alice", token="alice-server")
    assert code == 200, view
    assert view["name"] == "alice"
    assert view["warning_seconds"] == 300 and view["cull_every_seconds"] == 60
    assert view["servers"][""]["cull_at"]
    for path in ("api/users/idle", "api/status", ""):
        code, body, _ = await self_api.call("GET", path, token="alice-server")
        assert code == 403, (path, body)
    # the browser's server cookie token (no users:activity) gets nothing either
    assert (await self_api.call("GET", "api/users/alice", token="alice-browser"))[0] == 403
    # changes stay admin-only
    code, _, _ = await self_api.call("PUT", "api/exemptions/alice", token="alice-server", body={})
    assert code == 403
