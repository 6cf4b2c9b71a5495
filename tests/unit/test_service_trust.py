# ruff: noqa: F811 (fixtures imported from test_culler_handlers)
"""Trust at the services' REST APIs, in-process against a fake hub: the token's own scopes decide,
revocation and demotion bounds, bodies capped and never read before authentication, deep JSON.

The same properties are checked on a real hub in tests/e2e/test_service_trust.py.
"""

from __future__ import annotations

import asyncio
import socket

import pytest
from test_culler_handlers import TOKENS, Running, clean_env, hub, start  # noqa: F401

from jupyterhub_lab_ext.services.common import scopes

ADMIN = TOKENS["admin"]


# -- the pure decision -------------------------------------------------------------------------
@pytest.mark.parametrize(
    "have, read, change",
    [
        (["access:services!service=idle-culler"], True, False),
        (["access:services"], True, False),
        (["access:services!service=user-limit"], False, False),
        (["access:services", "custom:idle-culler:admin"], True, True),
        (["access:services", "admin:servers"], True, True),
        # no read access: an admin scope alone changes nothing
        (["custom:idle-culler:admin", "admin:servers"], False, False),
        # filtered forms of the admin scopes never count
        (["access:services", "admin:servers!user=boss"], True, False),
        (["access:services", "custom:idle-culler:admin!user=boss"], True, False),
        (["access:services", "custom:user-limit:admin"], True, False),
        # what an admin's narrow token carries
        (["read:users:activity!user=boss"], False, False),
        ([], False, False),
    ],
)
def test_scope_decision(have, read, change):
    assert scopes.can_read(have, "idle-culler") is read
    assert scopes.can_change(have, "idle-culler") is change


def test_custom_admin_scope_name():
    have = ["access:services", "custom:ops:admin"]
    assert scopes.can_change(have, "idle-culler", "custom:ops:admin")
    assert not scopes.can_change(have, "idle-culler")


# -- revocation and demotion ---------------------------------------------------------------------
async def test_revoked_token_is_refused_for_changes_at_once_and_for_reads_within_the_ttl(
    start, hub
):
    api = await start("--ServiceApp.auth_cache_ttl=1")
    hub.tokens["temp"] = dict(ADMIN)
    assert (await api.call("GET", "api/status", token="temp"))[0] == 200
    assert (await api.call("POST", "api/passes?dry_run=1", token="temp"))[0] == 200
    del hub.tokens["temp"]  # revoked at the hub
    # a change asks the hub again: refused on the very next request
    assert (await api.call("POST", "api/passes?dry_run=1", token="temp"))[0] == 401
    # a read may use the cached answer for at most auth_cache_ttl
    await asyncio.sleep(1.2)
    assert (await api.call("GET", "api/status", token="temp"))[0] == 401


async def test_demoted_admin_token_loses_changes_at_once(start, hub):
    api = await start()
    hub.tokens["boss"] = dict(ADMIN)
    assert (await api.call("GET", "api/status", token="boss"))[0] == 200
    # demoted on the admin page: the hub now reports the token without the admin role's scopes
    hub.tokens["boss"] = {**ADMIN, "admin": False, "scopes": ["access:services"]}
    code, data, _ = await api.call("PUT", "api/exemptions/alice", token="boss", body={})
    assert code == 403 and "custom:idle-culler:admin" in data["message"]
    assert (await api.call("GET", "api/users/alice", token="admin"))[1]["exemption"] is None


async def test_token_answers_are_cached_for_reads_only(start, hub):
    api = await start()
    before = hub.count("GET", "/user")
    for _ in range(3):
        assert (await api.call("GET", "api/status", token="admin"))[0] == 200
    assert hub.count("GET", "/user") - before == 1
    for _ in range(3):
        assert (await api.call("POST", "api/passes?dry_run=1", token="admin"))[0] == 200
    assert hub.count("GET", "/user") - before == 4


@pytest.mark.parametrize(
    "trait, value, message",
    [
        ("auth_cache_ttl", 300, "should not be greater than 10"),
        ("auth_cache_ttl", -1, "should not be less than 0"),
        ("hub_concurrency", 0, "should not be less than 1"),
    ],
)
def test_service_options_are_bounded(trait, value, message):
    from traitlets import TraitError

    from jupyterhub_lab_ext.services.culler.app import LabIdleCuller

    with pytest.raises(TraitError, match=message):
        LabIdleCuller(**{trait: value})


# -- bodies --------------------------------------------------------------------------------------
def _raw(port: int, head: bytes, body: bytes = b"", timeout: float = 10) -> tuple[int, bytes]:
    """Send ``head`` (and ``body``) on a fresh socket; the status and the whole response."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(head + body)
        data = b""
        while b"\r\n\r\n" not in data or not _complete(data):
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    return int(data.split(b" ", 2)[1]), data


def _complete(data: bytes) -> bool:
    head, _, rest = data.partition(b"\r\n\r\n")
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            return len(rest) >= int(line.split(b":")[1])
    return False


def _head(method: str, path: str, *, length: int | None, token: str | None = None) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1", "Content-Type: application/json"]
    if length is None:
        lines.append("Transfer-Encoding: chunked")
    else:
        lines.append(f"Content-Length: {length}")
    if token:
        lines.append(f"Authorization: token {token}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


async def _in_thread(fn, *args):
    return await asyncio.get_running_loop().run_in_executor(None, fn, *args)


@pytest.mark.parametrize("token", [None, "not-a-token", "admin"])
async def test_declared_body_over_the_cap_is_413_before_it_is_read(api_port, token):
    # 90 MB declared, not one byte sent: the answer must come without waiting for the body
    head = _head("PUT", "/services/idle-culler/api/exemptions/alice", length=90 << 20, token=token)
    status, data = await _in_thread(_raw, api_port, head)
    assert status == 413 and b"max_body_size" in data


@pytest.mark.parametrize("token, status", [(None, 401), ("not-a-token", 401), ("read", 403)])
async def test_a_caller_without_rights_is_answered_before_the_body_is_read(api_port, token, status):
    head = _head("PUT", "/services/idle-culler/api/exemptions/alice", length=1000, token=token)
    got, data = await _in_thread(_raw, api_port, head)  # the 1000 bytes are never sent
    assert got == status and b'"status": %d' % status in data


async def test_chunked_body_over_the_cap_is_413(api_port):
    head = _head("PUT", "/services/idle-culler/api/exemptions/alice", length=None, token="admin")
    chunk = b"x" * 8192
    body = b"".join(b"%x\r\n%s\r\n" % (len(chunk), chunk) for _ in range(20)) + b"0\r\n\r\n"
    status, data = await _in_thread(_raw, api_port, head, body)
    assert status == 413 and b"max_body_size" in data


async def test_body_under_the_cap_still_works(api):
    reason = "r" * 1000
    code, data, _ = await api.call(
        "PUT", "api/exemptions/alice", token="admin", body={"reason": reason}
    )
    assert code == 201 and data["reason"] == reason


async def test_keep_alive_connection_survives_early_refusals(api_port):
    # refused before the body is read: the answer goes out at once, the body is thrown away as
    # it arrives, and the same connection serves the next request
    steps = [
        ("read", b"{}", 403),
        (None, b"x" * 5000, 401),
        ("admin", b"y" * (200 << 10), 413),
        ("admin", b"", 200),
    ]
    assert await _in_thread(_one_connection, api_port, steps) == [s for *_, s in steps]


def _one_connection(port: int, steps) -> list[int]:
    got = []
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        f = s.makefile("rb")
        for token, body, _ in steps:
            method = "PUT" if body else "GET"
            path = "/services/idle-culler/api/" + ("exemptions/alice" if body else "status")
            s.sendall(_head(method, path, length=len(body), token=token) + body)
            got.append(int(f.readline().split()[1]))
            length = 0
            while (line := f.readline()) not in (b"\r\n", b""):
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":")[1])
            f.read(length)
    return got


@pytest.mark.parametrize("body", [b"[" * 60_000, b'{"a":' * 12_000, b"[" * 2000 + b"]" * 2000])
async def test_deeply_nested_json_is_400(api, body):
    code, data, _ = await api.call("PUT", "api/exemptions/alice", token="admin", body=body)
    assert code == 400, data
    assert "JSON" in data["message"]


@pytest.fixture
async def api(start):
    return await start()


@pytest.fixture
def api_port(api):
    return api.port
