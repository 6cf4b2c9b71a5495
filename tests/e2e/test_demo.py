"""The README's demo command: devtools/demo.py (what scripts/demo.sh runs after installing) shows
all four parts of the package, driven like a person would in headless Chromium.

The shared demo envs are built once under ``$JHLE_PREFIX/demo-envs`` and reused (a cold build
takes about a minute). Screenshots of each step go to test-artifacts/; the key ones are copied
into docs/_static/demo/, where docs/getting-started.md shows them.
"""

from __future__ import annotations

import json
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from harness import (
    ARTIFACTS,
    PREFIX,
    REPO,
    child_env,
    free_port,
    oidc_login,
    processes_of_uid,
    wait_until,
)

DEMO = REPO / "devtools" / "demo.py"
DOCS_IMAGES = REPO / "docs" / "_static" / "demo"
ENVS = PREFIX / "demo-envs"
READY = "Demo hub running"
NEWS_PROMPT = "official Jupyter news"


class Demo:
    """One ``devtools/demo.py`` run (its own process group, output in a log file)."""

    def __init__(self, tmp_path: Path, user_prefix: str, home_root: Path, *extra: str):
        self.port, self.provider_port = free_port(), free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.provider = f"http://127.0.0.1:{self.provider_port}"
        self.workdir = tmp_path / "demo"
        self.prefix = user_prefix
        self.log_path = tmp_path / f"demo-{self.port}.log"
        self._log = open(self.log_path, "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [sys.executable, str(DEMO), "--port", str(self.port),
             "--provider-port", str(self.provider_port), "--workdir", str(self.workdir),
             "--home-root", str(home_root), "--username-prefix", user_prefix, *extra],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=child_env(),
            start_new_session=True,
        )  # fmt: skip

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_ready(self) -> None:
        def ready():
            if self.proc.poll() is not None:
                raise AssertionError(f"demo exited ({self.proc.returncode}):\n{self.output()}")
            return READY in self.output()

        # a cold machine builds the shared envs first (pip): allow for that
        wait_until(ready, timeout=420, what=f"demo hub; output:\n{self.output()}")

    def name(self, login: str) -> str:
        return f"{self.prefix}{login}"

    def ctrl_c(self, timeout: float = 90) -> int:
        """What a terminal's Ctrl-C does: SIGINT to the demo's process group."""
        os.killpg(self.proc.pid, signal.SIGINT)
        return self.proc.wait(timeout)

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(90)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)
        self._log.close()


@pytest.fixture
def start_demo(tmp_path, user_prefix, home_root):
    runs: list[Demo] = []

    def factory(*extra: str) -> Demo:
        runs.append(Demo(tmp_path, user_prefix, home_root, *extra))
        return runs[-1]

    try:
        yield factory
    finally:
        for run in runs:
            run.stop()
            hub_log = run.workdir / "hub.log"
            if hub_log.exists():
                shutil.copy(hub_log, ARTIFACTS / f"demo-hub-{run.port}.log")


def shot(page, name: str) -> Path:
    path = ARTIFACTS / f"demo-{name}.png"
    page.screenshot(path=str(path))
    return path


# the docs show what `bash scripts/demo.sh` shows: default names and paths instead of this
# test's user prefix, temporary home root and JHLE_PREFIX (text nodes only, nothing else)
NORMALIZE = """pairs => {
  const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
  for (let node = walker.nextNode(); node; node = walker.nextNode()) {
    for (const [from, to] of pairs) node.nodeValue = node.nodeValue.split(from).join(to);
  }
}"""


def docs_shot(page, demo: Demo, home_root: Path, name: str, step: str) -> Path:
    """The step's screenshot for test-artifacts/, then the docs' copy with the demo's defaults."""
    shot(page, step)
    pairs = [
        (f"{home_root}/{demo.prefix}", "/home/"),
        (demo.prefix, ""),
        (str(PREFIX), "/opt/jupyterhub-lab-ext"),
    ]
    page.evaluate(NORMALIZE, pairs)
    path = ARTIFACTS / f"demo-docs-{name}.png"
    page.screenshot(path=str(path))
    return path


def browser_login(page, demo: Demo, login: str) -> None:
    """From the hub's front page through the provider's login and consent forms."""
    page.goto(f"{demo.url}/")
    page.get_by_text("Sign in with the demo provider").click()
    for _ in range(4):
        page.wait_for_load_state()
        if page.url.startswith(demo.url):
            break
        if page.locator("input[name=login]").count():
            page.fill("input[name=login]", login)
            page.fill("input[name=password]", "any password")
        page.locator("button[type=submit]").first.click()
    assert page.url.startswith(demo.url), page.url


def form_envs(page) -> tuple[list[str], list[str]]:
    page.wait_for_selector("#jhle-shared-envs")
    values = "els => els.map(e => e.value)"
    shared = page.locator("#jhle-shared-envs input[type=radio]").evaluate_all(values)
    mine = page.locator("#jhle-user-envs input[type=radio]").evaluate_all(values)
    return sorted(shared), sorted(mine)


def start_from_form(page, env: str | None = None) -> None:
    if env:
        page.check(f"input[value='{env}']")
    page.locator("form input[type=submit], form button[type=submit]").last.click()


def launcher_kernels(page) -> list[str]:
    page.wait_for_selector("#jp-main-dock-panel", timeout=180_000)
    section = page.locator(".jp-Launcher-section", has_text="Notebook").first
    section.locator(".jp-LauncherCard").first.wait_for(timeout=60_000)
    labels = section.locator(".jp-LauncherCard-label").all_inner_texts()
    return sorted(" ".join(label.split()) for label in labels)


FETCH = """async url => {
  const xsrf = (document.cookie.match(/(?:^|; )_xsrf=([^;]*)/) || [])[1] || "";
  const r = await fetch(url, {headers: {"X-XSRFToken": decodeURIComponent(xsrf)}});
  return [r.status, await r.json()];
}"""


def fetch_json(page, url: str) -> tuple[int, dict]:
    """GET ``url`` from the page, as JupyterLab's own scripts do (cookie + xsrf header)."""
    status, body = page.evaluate(FETCH, url)
    return status, body


def open_json(page, url: str) -> tuple[int, dict]:
    """Open ``url`` in the browser (a service logs the person in through the hub's OAuth on the
    first visit) and read the JSON it shows."""
    resp = page.goto(url)
    return resp.status, json.loads(page.inner_text("body"))


def python_version() -> str:
    out = subprocess.run(
        ["/usr/bin/python3", "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    return out.stdout.strip()


def port_closed(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(1)
        return sock.connect_ex(("127.0.0.1", port)) != 0


def test_demo_shows_every_part_in_a_browser(start_demo, browser, home_root):
    ARTIFACTS.mkdir(exist_ok=True)
    demo = start_demo()
    demo.wait_ready()
    out = demo.output()
    for expected in (
        f"{demo.url}/services/user-limit/queue",
        f"{demo.url}/services/idle-culler/health",
        f"{demo.url}/services/idle-culler/dashboard",
        f"{demo.url}/services/user-limit/dashboard",
        str(demo.workdir / "userlist"),
        "eve      refused: not in the userlist",
        "mallory  refused: the provider says the email is not verified",
    ):
        assert expected in out, (expected, out)
    ver = python_version()
    alice, bob, carol = (demo.name(n) for n in ("alice", "bob", "carol"))
    contexts = [browser.new_context(viewport={"width": 1280, "height": 800}) for _ in range(3)]
    pa, pb, pc = (ctx.new_page() for ctx in contexts)
    for page in (pa, pb, pc):
        page.set_default_timeout(120_000)  # a loaded machine: bounds, not timings
    shots = {}
    try:
        # 1. alice logs in and gets the spawn form: both shared envs and her own
        pa.goto(f"{demo.url}/")
        pa.get_by_text("Sign in with the demo provider").wait_for()
        shots["login"] = docs_shot(pa, demo, home_root, "login", "01-login")
        browser_login(pa, demo, "alice")
        assert form_envs(pa) == (["shared/base", "shared/data"], ["mine/scratch"])
        assert "/home" not in pa.inner_text("#jhle-shared-envs")  # shared: not in anyone's home
        shots["spawn-form"] = docs_shot(pa, demo, home_root, "spawn-form", "02-spawn-form")

        # 2. she picks the data env: JupyterLab with exactly the envs' kernels, hers the default
        start_from_form(pa, "shared/data")
        assert launcher_kernels(pa) == [
            f"Python {ver} (mine/scratch)",
            f"Python {ver} (shared/base)",
            f"Python {ver} (shared/data)",
        ]
        status, specs = fetch_json(pa, f"/user/{alice}/api/kernelspecs")
        assert status == 200 and specs["default"] == "shared-data"
        assert set(specs["kernelspecs"]) == {"shared-base", "shared-data", "mine-scratch"}
        # the JupyterLab status item (on by default for the conda-kernel spawner) names the env
        pa.locator(".jp-jhle-status", has_text="shared/data").wait_for(timeout=60_000)
        shots["jupyterlab"] = docs_shot(pa, demo, home_root, "jupyterlab", "03-jupyterlab")

        # 3. a notebook in the default kernel: numpy and a matplotlib plot from the data env
        pa.locator(".jp-Launcher-section", has_text="Notebook").first.locator(
            ".jp-LauncherCard", has_text="shared/data"
        ).click()
        pa.get_by_text(f"Python {ver} (shared/data) | Idle").wait_for(timeout=120_000)
        editor = pa.locator(".jp-Notebook .jp-Cell .cm-content").first
        editor.click()
        pa.keyboard.insert_text(
            "import sys, numpy, matplotlib.pyplot as plt\n"
            "print('numpy', numpy.__version__, 'from', sys.prefix)\n"
            "plt.plot(numpy.sin(numpy.linspace(0, 6.3, 100)));"
        )
        pa.wait_for_function(
            "el => el.textContent.includes('linspace(0, 6.3, 100)')", arg=editor.element_handle()
        )
        pa.keyboard.press("Shift+Enter")
        pa.locator(".jp-OutputArea-output", has_text="from ").first.wait_for(timeout=120_000)
        output = pa.locator(".jp-OutputArea-output").first.inner_text()
        assert f"from {ENVS / 'data'}" in output, output
        pa.wait_for_selector(".jp-OutputArea-output img", timeout=60_000)  # the plot
        kernel_name = pa.locator(".jp-Toolbar-kernelName").first.inner_text()
        assert "shared/data" in kernel_name, kernel_name
        # JupyterLab's first-run "get notified about official Jupyter news?" prompt never came
        assert NEWS_PROMPT not in pa.inner_text("body")
        shots["notebook"] = docs_shot(pa, demo, home_root, "notebook", "04-notebook-numpy")

        # 4. bob starts the default env; the hub is now at its cap of 2 running servers
        browser_login(pb, demo, "bob")
        assert form_envs(pb) == (["shared/base", "shared/data"], [])
        start_from_form(pb)
        assert len(launcher_kernels(pb)) == 2
        shot(pb, "05-bob-jupyterlab")

        # 5. carol, the third listed user, lands on the live queue page
        browser_login(pc, demo, "carol")
        start_from_form(pc, "shared/data")
        pc.wait_for_url("**/services/user-limit/queue*", timeout=120_000)
        pc.wait_for_selector("[data-testid=queue-position]:visible", timeout=30_000)
        assert pc.inner_text("[data-testid=queue-position]") == "1"
        shots["queue"] = docs_shot(pc, demo, home_root, "queue", "06-queue")

        # the admin dashboards, as alice (admin) opens them from the hub's Services menu
        pa.goto(f"{demo.url}/services/user-limit/")
        pa.wait_for_url("**/services/user-limit/dashboard")
        pa.wait_for_selector("[data-testid=gauge-servers][data-used='2'][data-cap='2']")
        pa.wait_for_selector(f"#queue tr[data-user='{carol}']")
        shots["dashboard-user-limit"] = docs_shot(
            pa, demo, home_root, "dashboard-user-limit", "06b-user-limit-dashboard"
        )
        pa.goto(f"{demo.url}/services/idle-culler/")
        pa.wait_for_url("**/services/idle-culler/dashboard")
        for name in (alice, bob):
            pa.wait_for_selector(f"#servers tr[data-user='{name}']")
        shots["dashboard-culler"] = docs_shot(
            pa, demo, home_root, "dashboard-culler", "06c-culler-dashboard"
        )

        # the services' REST APIs, as alice (admin) sees them in her browser
        status, limits = open_json(pa, f"{demo.url}/services/user-limit/api/status")
        assert status == 200, limits
        assert limits["limits"]["max_active_servers"] == 2
        assert limits["usage"]["active_servers"] == 2 and limits["queue_length"] == 1
        status, queue = open_json(pa, f"{demo.url}/services/user-limit/api/queue")
        assert status == 200 and [e["user"] for e in queue["entries"]] == [carol], queue
        status, culler = open_json(pa, f"{demo.url}/services/idle-culler/api/status")
        assert status == 200, culler
        assert (culler["config"]["timeout"], culler["config"]["cull_every"]) == (600, 60)
        metrics = pa.goto(f"{demo.url}/services/idle-culler/metrics")
        assert metrics.status == 200 and "jhle_culler" in pa.inner_text("body")

        # 6. alice stops her server on the hub's home page; carol's starts by itself
        pa.goto(f"{demo.url}/hub/home")
        pa.click("#stop")
        pc.wait_for_selector("#jp-main-dock-panel", timeout=180_000)
        assert f"/user/{carol}/" in pc.url
        assert len(launcher_kernels(pc)) == 2
        shot(pc, "07-queue-admitted")
    finally:
        for who, page in zip(("alice", "bob", "carol"), (pa, pb, pc), strict=True):
            page.screenshot(path=str(ARTIFACTS / f"demo-last-{who}.png"))  # what each one saw
        for ctx in contexts:
            ctx.close()

    # the key screenshots illustrate docs/getting-started.md
    DOCS_IMAGES.mkdir(parents=True, exist_ok=True)
    for name in (
        "login",
        "spawn-form",
        "jupyterlab",
        "notebook",
        "queue",
        "dashboard-user-limit",
        "dashboard-culler",
    ):
        shutil.copy(shots[name], DOCS_IMAGES / f"{name}.png")

    # Ctrl-C stops all of it: servers, services, proxy, hub, provider
    uids = [pwd.getpwnam(n).pw_uid for n in (alice, bob, carol)]
    assert any(processes_of_uid(uid) for uid in uids)  # bob's and carol's servers run
    assert demo.ctrl_c() == 0, demo.output()
    assert "demo: stopped" in demo.output()
    assert port_closed(demo.port) and port_closed(demo.provider_port)
    wait_until(
        lambda: not any(processes_of_uid(uid) for uid in uids),
        timeout=10,
        what="no process of the demo users left",
    )


def test_demo_check_verifies_every_part(start_demo):
    demo = start_demo("--check")
    rc = demo.proc.wait(600)
    out = demo.output()
    assert rc == 0, out
    for step in ("login", "spawn form", "kernel in a shared env", "idle culler", "user limit"):
        assert f"check: ok   {step}: " in out, (step, out)
    assert f"in {ENVS / 'data'}" in out
    assert "check: all parts work" in out
    # alice's account was made before the hub started, as the hub makes it: home from the
    # template, her own env, owned by her
    account = pwd.getpwnam(demo.name("alice"))
    home = Path(account.pw_dir)
    assert (home / "welcome" / "Welcome.ipynb").is_file()
    env = home / ".conda" / "envs" / "scratch"
    assert (env / "conda-meta" / "history").read_text().startswith("==> ")
    assert env.stat().st_uid == account.pw_uid
    assert str(ENVS / "base") not in (env / "bin" / "pip").read_text()  # relocated
    # and everything stopped: --check leaves nothing running
    assert port_closed(demo.port) and port_closed(demo.provider_port)
    assert not processes_of_uid(account.pw_uid)


def test_demo_check_fails_when_a_part_is_broken(start_demo, tmp_path):
    # an admin's edit removed alice from the userlist: the check must say so and exit 1
    (tmp_path / "demo").mkdir(mode=0o700)
    (tmp_path / "demo" / "userlist").write_text("bob group:students\n")
    demo = start_demo("--check")
    rc = demo.proc.wait(600)
    out = demo.output()
    assert rc == 1, out
    assert "check: FAIL login: " in out and "HTTP 403" in out
    assert "check: FAIL spawn form: not checked: login failed" in out
    assert "check: FAILED: login, spawn form, kernel in a shared env" in out
    assert "alice    refused: not in the userlist" in out  # the banner reads the live file


def test_demo_refuses_unlisted_and_unverified(start_demo):
    demo = start_demo()
    demo.wait_ready()
    for refused in ("eve", "mallory"):  # not listed / unverified email
        _, resp = oidc_login(demo.url, demo.provider, refused)
        assert resp.status_code == 403, (refused, resp.status_code, resp.text[:300])
    client, resp = oidc_login(demo.url, demo.provider, "alice", next_url="/hub/home")
    me = client.get(f"{demo.url}/hub/api/user", headers={"Referer": f"{demo.url}/hub/home"})
    assert json.loads(me.text)["admin"] is True
    # a listed user added live logs in without a restart
    with open(demo.workdir / "userlist", "a") as f:
        f.write("eve\n")
    _, resp = oidc_login(demo.url, demo.provider, "eve")
    assert resp.status_code == 200, resp.text[:300]
