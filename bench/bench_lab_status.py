"""The JupyterLab status extension's cost, on a real hub with real JupyterLab in headless Chromium.

1. Time to first render of JupyterLab (navigation until the launcher's first card is drawn) for
   a user whose server has the extension, and one whose server has it off (server extension not
   loaded, front end disabled in the page config), alternating, in the same run, same hub.
2. Polling cost: one JupyterLab tab open for ``--window`` seconds with the default refresh (30 s);
   the requests the hub and the two services saw for that user, per 30 s.

Run: ``JHLE_PREFIX=... python bench/bench_lab_status.py [--rounds 6] [--window 120]`` (root: it
makes two system users, removed afterwards).
"""

from __future__ import annotations

import argparse
import json
import re
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import report, summary, use_harness  # noqa: E402

use_harness()
from envs import make_conda_env, trusted_dir  # noqa: E402
from harness import Hub, OIDCProvider, free_port, remove_test_users  # noqa: E402

CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic"]  # fmt: skip


def hub_config(shared: Path, off_config: Path) -> str:
    return f"""
from jupyterhub_lab_ext.services.culler.hubconfig import enable_idle_culler
from jupyterhub_lab_ext.services.user_limit.hubconfig import enable_user_limit
c.JupyterHub.spawner_class = "conda-kernel"
c.CondaKernelSpawner.shared_env_dirs = [{str(shared)!r}]
enable_idle_culler(c, url="http://127.0.0.1:{free_port()}", args=["--timeout=3600"])
enable_user_limit(c, {{"max_active_servers": 40}}, url="http://127.0.0.1:{free_port()}")

def _lab_status_per_user(spawner):
    # the anchor: the status extension off (no server extension, front end disabled)
    if spawner.user.name.endswith("off"):
        spawner.lab_status = False
        spawner.environment = {{**spawner.environment, "JUPYTER_CONFIG_PATH": {str(off_config)!r}}}

c.Spawner.pre_spawn_hook = _lab_status_per_user
"""


def login(page, hub: Hub, name: str) -> None:
    page.goto(f"{hub.url}/hub/oauth_login?next=/hub/home")
    for _ in range(4):
        if page.url.startswith(hub.url):
            break
        if page.locator("input[name=login]").count():
            page.fill("input[name=login]", name)
            page.fill("input[name=password]", "pw")
        page.locator("button[type=submit]").first.click()
        page.wait_for_load_state()


def first_render(page, url: str) -> float:
    start = time.perf_counter()
    page.goto(url)
    page.wait_for_selector(".jp-LauncherCard", timeout=120_000)
    return time.perf_counter() - start


def count(log: str, pattern: str) -> int:
    return len(re.findall(pattern, log))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--window", type=float, default=120.0)
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    prefix = f"jb{secrets.token_hex(2)}-"
    work = Path(tempfile.mkdtemp(prefix="jhle-bench-lab-"))
    work.chmod(0o755)
    homes = work / "homes"
    homes.mkdir(mode=0o755)
    trusted = trusted_dir("bench-lab-")
    off_config = work / "off-config"
    (off_config / "labconfig").mkdir(parents=True)
    (off_config / "labconfig" / "page_config.json").write_text(
        json.dumps({"disabledExtensions": {"jupyterhub-lab-ext": True}})
    )
    subprocess.run(["chmod", "-R", "a+rX", str(off_config)], check=True)
    provider = OIDCProvider(work).start()
    users = {"on": f"{prefix}on", "off": f"{prefix}off"}
    hub = None
    try:
        for name in users.values():
            subprocess.run(["useradd", "-m", "-b", str(homes), name], check=True)
            provider.set_identity(name, email=f"{name}@example.org", email_verified=True)
        make_conda_env(trusted / "envs" / "data")
        (trusted / "envs").chmod(0o755)
        hub = Hub(work / "hub", provider=provider, authenticator="generic-local", home_root=homes,
                  username_prefix=prefix, config=hub_config(trusted / "envs", off_config))  # fmt: skip
        hub.start()
        for name in users.values():
            hub.api("POST", f"users/{name}")
            assert hub.start_server(name).status_code in (201, 202)
        times: dict[str, list[float]] = {"on": [], "off": []}
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
            pages = {}
            for key, name in users.items():
                ctx = browser.new_context(viewport={"width": 1280, "height": 800})
                pages[key] = ctx.new_page()
                login(pages[key], hub, name)
                first_render(pages[key], f"{hub.url}/user/{name}/lab")  # warm-up, not counted
            for i in range(args.rounds):
                order = ("on", "off") if i % 2 == 0 else ("off", "on")
                for key in order:
                    times[key].append(first_render(pages[key], f"{hub.url}/user/{users[key]}/lab"))
            # polling: only the "on" tab stays open
            pages["off"].goto("about:blank")
            page = pages["on"]
            page.goto(f"{hub.url}/user/{users['on']}/lab")
            page.locator(".jp-jhle-status").wait_for(timeout=60_000)
            before = hub.log_text()
            time.sleep(args.window)
            seen = hub.log_text()[len(before) :]
            browser.close()
        name = re.escape(users["on"])
        per30 = 30.0 / args.window
        polls = {
            "browser -> server (status)": count(
                seen, rf"GET /user/{name}/jupyterhub-lab-ext/status"
            ),
            "server -> culler": count(seen, rf"GET /services/idle-culler/api/users/{name}"),
            "server -> user-limit": count(seen, rf"GET /services/user-limit/api/users/{name}"),
            "-> hub (any, for this user)": count(seen, rf" /hub/api/users/{name}[/ ?]")
            + count(seen, rf" /hub/api/users/{name} "),
        }
        on, off = summary(times["on"]), summary(times["off"])
        ratio = on["median"] / off["median"]
        rows = [
            ["first render, with the extension (s)", on["median"], on["p90"], on["n"]],
            ["first render, without (s)", off["median"], off["p90"], off["n"]],
            ["ratio with / without", ratio, "", ""],
        ]
        report("lab_status_render", "JupyterLab time to first render", ["", "median", "p90", "n"],
               rows, {"with": on, "without": off, "ratio": ratio, "raw": times})  # fmt: skip
        rows = [[what, n, round(n * per30, 2)] for what, n in polls.items()]
        report("lab_status_polling", f"Polling cost ({args.window:g} s, one tab)",
               ["requests", "in the window", "per user per 30 s"], rows,
               {"window": args.window, "counts": polls})  # fmt: skip
        print(f"\nratio (median first render with / without): {statistics.median([ratio]):.3f}")
    finally:
        if hub is not None:
            hub.stop()
        provider.stop()
        remove_test_users(prefix, [homes])
        shutil.rmtree(work, ignore_errors=True)
        shutil.rmtree(trusted, ignore_errors=True)


if __name__ == "__main__":
    main()
