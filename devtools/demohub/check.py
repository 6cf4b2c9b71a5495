"""``demo.py --check``: verify every part of the running demo over HTTP, as a person would use it.

alice logs in through the provider's forms, reads the spawn form, starts her server with the
``data`` env, runs ``import numpy`` in its default kernel over the kernel's websocket, then asks
the idle culler and the user limit for their health and status with a token she made for
herself (revoked at the end, and her server stopped). Each step prints one line; a step whose
prerequisite failed counts as failed too.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from html.parser import HTMLParser
from urllib.parse import urljoin

import httpx

from .envs import PERSONAL, SHARED
from .layout import CULLER, MAX_ACTIVE_SERVERS, USER_LIMIT, Layout

PROBE = (
    "import json, sys, numpy, matplotlib\n"
    "print(json.dumps({'prefix': sys.prefix, 'numpy': numpy.__version__}))"
)
CHOICE = "shared/data"


@dataclass
class Step:
    name: str
    ok: bool
    detail: str


class CheckFailed(Exception):
    pass


# ----------------------------------------------------------------------------- provider forms


class _Forms(HTMLParser):
    def __init__(self):
        super().__init__()
        self.forms: list[dict] = []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "form":
            self.forms.append({"action": attrs.get("action") or "", "inputs": {}})
        elif tag == "input" and self.forms and attrs.get("name"):
            kind = attrs.get("type", "text")
            if kind not in ("submit", "checkbox", "radio") or "checked" in attrs:
                self.forms[-1]["inputs"][attrs["name"]] = attrs.get("value") or ""


def forms_of(html: str) -> list[dict]:
    parser = _Forms()
    parser.feed(html)
    return parser.forms


def radio_values(html: str, name: str) -> list[str]:
    """Values of the radio buttons called ``name`` (the spawn form's environments)."""
    found: list[str] = []

    class Radios(HTMLParser):
        def handle_starttag(self, tag, attrs):
            attrs = dict(attrs)
            if tag == "input" and attrs.get("type") == "radio" and attrs.get("name") == name:
                found.append(attrs.get("value") or "")

    Radios().feed(html)
    return found


def login(client: httpx.Client, layout: Layout, who: str, next_url: str) -> httpx.Response:
    """Log in through the provider's login and consent forms; the hub's final answer."""
    resp = client.get(f"{layout.hub_url}/hub/oauth_login", params={"next": next_url})
    for _ in range(4):  # the provider's login form, then its consent form
        if not str(resp.url).startswith(layout.provider_url):
            break
        forms = forms_of(resp.text)
        if not forms:
            break
        data = dict(forms[0]["inputs"])
        if "login" in data:
            data.update(login=who, password="demo")
        resp = client.post(urljoin(str(resp.url), forms[0]["action"]), data=data)
    return resp


# ----------------------------------------------------------------------------- kernel


async def execute(ws_url: str, token: str, code: str, timeout: float) -> str:
    """Run ``code`` in a kernel over its websocket; its stdout (raise on an error reply)."""
    from tornado.httpclient import HTTPRequest
    from tornado.websocket import websocket_connect

    request = HTTPRequest(ws_url, headers={"Authorization": f"token {token}"})
    conn = await asyncio.wait_for(websocket_connect(request), timeout)
    msg_id = uuid.uuid4().hex
    header = {"msg_id": msg_id, "username": "demo-check", "session": uuid.uuid4().hex,
              "msg_type": "execute_request", "version": "5.3", "date": ""}  # fmt: skip
    content = {"code": code, "silent": False, "store_history": False, "user_expressions": {},
               "allow_stdin": False, "stop_on_error": True}  # fmt: skip
    conn.write_message(json.dumps({"header": header, "parent_header": {}, "metadata": {},
                                   "channel": "shell", "buffers": [], "content": content}))  # fmt: skip
    stdout = ""
    deadline = time.monotonic() + timeout
    try:
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise CheckFailed("the kernel did not finish the cell in time")
            raw = await asyncio.wait_for(conn.read_message(), left)
            if raw is None:
                raise CheckFailed("the kernel's websocket closed")
            msg = json.loads(raw)
            if msg.get("parent_header", {}).get("msg_id") != msg_id:
                continue
            kind = msg["header"]["msg_type"]
            if kind == "stream" and msg["content"].get("name") == "stdout":
                stdout += msg["content"]["text"]
            elif kind == "error":
                raise CheckFailed(f"{msg['content']['ename']}: {msg['content']['evalue']}")
            elif kind == "status" and msg["content"]["execution_state"] == "idle":
                return stdout
    finally:
        conn.close()


# ----------------------------------------------------------------------------- the checks


class DemoCheck:
    """The checks, in order; ``run()`` returns one :class:`Step` per check."""

    def __init__(self, layout: Layout, *, who: str = "alice", say: Callable = print):
        self.layout = layout
        self.who = who
        self.user = layout.username(who)
        self.say = say
        self.client = httpx.Client(follow_redirects=True, timeout=60)
        self.token = ""
        self.token_id = ""
        self.form_html = ""

    # -- helpers
    def hub_api(self, method: str, path: str, **kw) -> httpx.Response:
        return self.client.request(
            method,
            f"{self.layout.hub_url}/hub/api/{path}",
            headers={"Authorization": f"token {self.token}"},
            **kw,
        )

    def service(self, name: str, path: str, *, auth: bool = True) -> httpx.Response:
        headers = {"Authorization": f"token {self.token}"} if auth else {}
        return httpx.get(self.layout.service_url(name) + path, headers=headers, timeout=30)

    def require_healthy(self, name: str) -> None:
        health = self.service(name, "health", auth=False)
        if health.status_code != 200:
            raise CheckFailed(f"health: HTTP {health.status_code} {health.text[:200]}")

    def wait(self, predicate: Callable[[], object], timeout: float, what: str):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = predicate()
            if value:
                return value
            time.sleep(0.5)
        raise CheckFailed(f"{what}: not within {timeout:.0f} s")

    # -- steps (each returns a detail line or raises CheckFailed)
    def check_login(self) -> str:
        resp = login(self.client, self.layout, self.who, "/hub/spawn")
        if resp.status_code != 200 or not str(resp.url).startswith(self.layout.hub_url):
            raise CheckFailed(f"{self.who}: HTTP {resp.status_code} at {resp.url}")
        self.form_html = resp.text
        xsrf = self.client.cookies.get("_xsrf", path="/hub/") or ""
        made = self.client.post(
            f"{self.layout.hub_url}/hub/api/users/{self.user}/tokens",
            json={"note": "demo.py --check", "expires_in": 900},
            headers={"X-XSRFToken": xsrf},
        )
        if made.status_code != 201:
            raise CheckFailed(f"logged in, but no API token: HTTP {made.status_code}")
        self.token, self.token_id = made.json()["token"], made.json()["id"]
        return f"{self.who} logged in through the provider as hub user {self.user}"

    def check_form(self) -> str:
        offered = radio_values(self.form_html, "profile")
        expected = {f"shared/{s.name}" for s in SHARED} | {f"mine/{PERSONAL.name}"}
        if set(offered) != expected:
            raise CheckFailed(f"the spawn form offers {offered}, expected {sorted(expected)}")
        return f"the spawn form offers {', '.join(offered)}"

    def check_kernel(self) -> str:
        base = f"{self.layout.hub_url}/hub"
        xsrf = self.client.cookies.get("_xsrf", path="/hub/") or ""
        self.client.post(f"{base}/spawn/{self.user}", data={"profile": CHOICE, "_xsrf": xsrf})

        def ready():
            model = self.hub_api("GET", f"users/{self.user}").json()
            server = model.get("servers", {}).get("")
            return server if server and server.get("ready") else None

        server = self.wait(ready, 120, f"{self.user}'s server ready")
        if server.get("user_options", {}).get("profile") != CHOICE:
            raise CheckFailed(f"server started with {server.get('user_options')}, not {CHOICE}")
        api = f"{self.layout.hub_url}/user/{self.user}/api"
        auth = {"Authorization": f"token {self.token}"}
        specs = self.client.get(f"{api}/kernelspecs", headers=auth).json()
        default = specs.get("default")
        kernel = self.client.post(f"{api}/kernels", json={}, headers=auth)
        if kernel.status_code != 201:
            raise CheckFailed(f"starting the default kernel: HTTP {kernel.status_code}")
        ws = api.replace("http://", "ws://") + f"/kernels/{kernel.json()['id']}/channels"
        out = asyncio.run(execute(ws, self.token, PROBE, 90))
        facts = json.loads(out.strip().splitlines()[-1])
        expected_prefix = str(self.layout.envs_dir / CHOICE.split("/")[1])
        if facts["prefix"] != expected_prefix:
            raise CheckFailed(f"the default kernel ({default}) runs in {facts['prefix']}")
        self.client.delete(f"{api}/kernels/{kernel.json()['id']}", headers=auth)
        return f"kernel {default} ran `import numpy` (numpy {facts['numpy']}) in {facts['prefix']}"

    def check_culler(self) -> str:
        self.require_healthy(CULLER)
        status = self.service(CULLER, "api/status")
        metrics = self.service(CULLER, "metrics")
        if status.status_code != 200 or metrics.status_code != 200:
            raise CheckFailed(f"api/status {status.status_code}, metrics {metrics.status_code}")
        return f"idle culler healthy; api/status and metrics answer ({self.layout.service_url(CULLER)})"

    def check_user_limit(self) -> str:
        self.require_healthy(USER_LIMIT)
        status = self.service(USER_LIMIT, "api/status")
        if status.status_code != 200:
            raise CheckFailed(f"api/status: HTTP {status.status_code} {status.text[:200]}")
        cap = status.json()["limits"].get("max_active_servers")
        if cap != MAX_ACTIVE_SERVERS:
            raise CheckFailed(f"max_active_servers is {cap}, expected {MAX_ACTIVE_SERVERS}")
        used = status.json()["usage"]["active_servers"]
        return f"user limit healthy: {used} of {cap} servers in use"

    def cleanup(self) -> None:
        if not self.token:
            return
        try:
            self.hub_api("DELETE", f"users/{self.user}/server")
            self.hub_api("DELETE", f"users/{self.user}/tokens/{self.token_id}")
        except httpx.HTTPError:
            pass

    def run(self) -> list[Step]:
        plan = [
            ("login", self.check_login, None),
            ("spawn form", self.check_form, "login"),
            ("kernel in a shared env", self.check_kernel, "login"),
            ("idle culler", self.check_culler, "login"),
            ("user limit", self.check_user_limit, "login"),
        ]
        steps: list[Step] = []
        try:
            for name, fn, needs in plan:
                if needs and not next(s.ok for s in steps if s.name == needs):
                    step = Step(name, False, f"not checked: {needs} failed")
                else:
                    try:
                        step = Step(name, True, fn())
                    except Exception as e:  # any failure of a step is reported, not raised
                        step = Step(name, False, f"{type(e).__name__}: {e}")
                self.say(f"check: {'ok  ' if step.ok else 'FAIL'} {name}: {step.detail}")
                steps.append(step)
        finally:
            self.cleanup()
            self.client.close()
        return steps
