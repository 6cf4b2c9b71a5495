"""The demo's pure pieces (devtools/demohub): who may log in, the generated hub config, the
ports, the relocation of alice's env, the banner. The demo itself runs in tests/e2e/test_demo.py."""

from __future__ import annotations

import json
import os
import socket
import sys
from pathlib import Path

import pytest
from traitlets.config.loader import PyFileConfigLoader

from jupyterhub_lab_ext.auth.userlist import parse_userlist

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "devtools"))

from demohub import banner, config, envs, people  # noqa: E402
from demohub.layout import Layout, PortBusy, choose_ports, free_port, port_is_free  # noqa: E402


def layout(tmp_path: Path, port: int = 8765) -> Layout:
    return Layout(
        prefix=tmp_path / "prefix", workdir=tmp_path / "work", envs_dir=tmp_path / "envs",
        home_root=tmp_path / "homes", username_prefix="", port=port, provider_port=9765,
        hub_port=port + 1, proxy_api_port=port + 2, culler_port=port + 3, limit_port=port + 4,
    )  # fmt: skip


def verdicts(text: str) -> dict[str, tuple[bool, str]]:
    return {v.login: (v.admitted, v.why) for v in people.verdicts(parse_userlist(text))}


@pytest.mark.parametrize(
    "userlist, expected",
    [
        (people.USERLIST, {
            "alice": (True, "admin, group staff"), "bob": (True, "group students"),
            "carol": (True, "group students"), "eve": (False, "not in the userlist"),
            "mallory": (False, "the provider says the email is not verified")}),
        ("bob\nEve group:guests\n", {
            "bob": (True, ""), "eve": (True, "group guests"), "alice": (False, "not in the userlist"),
            "carol": (False, "not in the userlist"), "mallory": (False, "not in the userlist")}),
        ("dave admin\n", {"dave": (True, "admin"), "alice": (False, "not in the userlist"),
                          "bob": (False, "not in the userlist"),
                          "carol": (False, "not in the userlist"),
                          "eve": (False, "not in the userlist"),
                          "mallory": (False, "not in the userlist")}),
    ],
    ids=["shipped", "edited", "someone-new"],
)  # fmt: skip
def test_who_may_log_in_follows_the_userlist(userlist, expected):
    assert verdicts(userlist) == expected


def test_hub_config_has_all_four_parts_on_loopback(tmp_path):
    lay = layout(tmp_path)
    lay.workdir.mkdir()
    lay.config_file.write_text(config.hub_config(lay, "s3cret"))
    c = PyFileConfigLoader(lay.config_file.name, path=str(lay.workdir)).load_config()
    assert c.JupyterHub.authenticator_class == "userlist"
    assert c.UserlistOAuthenticator.userlist_file == str(lay.userlist)
    assert c.JupyterHub.spawner_class == "conda-kernel"
    assert c.CondaKernelSpawner.shared_env_dirs == [str(lay.envs_dir)]
    assert c.CondaKernelSpawner.default_env == "shared/base"
    services = {s["name"]: s for s in c.JupyterHub.services}
    assert set(services) == {"idle-culler", "user-limit"}
    assert {"--timeout=600", "--cull-every=60"} <= set(services["idle-culler"]["command"])
    settings = json.loads(services["user-limit"]["environment"]["JUPYTERHUB_USER_LIMIT_SETTINGS"])
    assert settings["max_active_servers"] == 2
    for url in [s["url"] for s in services.values()] + [c.ConfigurableHTTPProxy.api_url]:
        assert url.startswith("http://127.0.0.1:"), url
    assert c.JupyterHub.ip == c.JupyterHub.hub_ip == "127.0.0.1"
    assert str(lay.workdir) in c.JupyterHub.db_url  # SQLite in the demo's state dir


def test_jupyterlab_defaults_turn_off_the_news_prompt():
    settings = json.loads(config.lab_settings_text())
    notification = settings["@jupyterlab/apputils-extension:notification"]
    assert notification == {"fetchNews": "false", "checkForUpdates": False}


def test_busy_public_port_is_a_clear_error():
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        busy = held.getsockname()[1]
        with pytest.raises(PortBusy, match=f"port {busy} for the hub is in use"):
            choose_ports(busy, free_port())
        with pytest.raises(PortBusy, match="--provider-port"):
            choose_ports(free_port(), busy)


def test_internal_ports_follow_the_public_one_unless_taken():
    for _ in range(20):  # a held port whose predecessor is free (almost always the first)
        with socket.socket() as held:
            held.bind(("127.0.0.1", 0))
            held.listen()
            taken = held.getsockname()[1]
            if not port_is_free(taken - 1):
                continue
            ports = choose_ports(taken - 1, free_port())
            break
    assert ports["hub_port"] != taken  # public + 1 is held: another free port instead
    assert len(set(ports.values())) == 6
    assert all(port_is_free(p) for p in ports.values())


def test_personal_env_is_a_relocated_copy_made_once(tmp_path):
    base = tmp_path / "envs" / "base"
    (base / "bin").mkdir(parents=True)
    (base / "conda-meta").mkdir()
    (base / "bin" / "pip").write_text(f"#!{base}/bin/python\nimport pip\n")
    (base / "bin" / "activate").write_text(f'VIRTUAL_ENV="{base}"\n')
    (base / "bin" / "python").symlink_to("/usr/bin/python3")
    (base / "pyvenv.cfg").write_text(f"home = /usr/bin\ncommand = python3 -m venv {base}\n")
    (base / envs.STAMP).write_text("{}")
    home = tmp_path / "home"
    home.mkdir()
    prefix = envs.ensure_personal(home, os.getuid(), os.getgid(), base, say=lambda _: None)
    assert prefix == home / ".conda" / "envs" / "scratch"
    assert (prefix / "bin" / "pip").read_text().startswith(f"#!{prefix}/bin/python\n")
    assert str(base) not in (prefix / "bin" / "activate").read_text()
    assert str(base) not in (prefix / "pyvenv.cfg").read_text()
    assert os.readlink(prefix / "bin" / "python") == "/usr/bin/python3"
    assert not (prefix / envs.STAMP).exists()
    assert (prefix / "conda-meta" / "history").read_text().startswith("==> ")
    # made once: a later run finds it and changes nothing
    (prefix / "bin" / "pip").write_text("changed by the user\n")
    assert envs.ensure_personal(home, os.getuid(), os.getgid(), base) == prefix
    assert (prefix / "bin" / "pip").read_text() == "changed by the user\n"
    # a user's own ~/.conda without it: left alone
    other = tmp_path / "other"
    (other / ".conda").mkdir(parents=True)
    assert envs.ensure_personal(other, os.getuid(), os.getgid(), base) is None
    assert not (other / ".conda" / "envs").exists()


def test_banner_says_what_is_where(tmp_path):
    lay = layout(tmp_path, port=8800)
    text = banner.banner(lay, people.verdicts(parse_userlist(people.USERLIST)))
    assert f"{banner.READY} at http://127.0.0.1:8800/" in text
    for expected in (
        str(lay.userlist),
        str(lay.hub_log),
        "http://127.0.0.1:8800/services/user-limit/queue",
        "http://127.0.0.1:8800/services/user-limit/api/status",
        "http://127.0.0.1:8800/services/idle-culler/health",
        "http://127.0.0.1:8800/services/idle-culler/metrics",
        "alice    admin, group staff; has her own env mine/scratch",
        "eve      refused: not in the userlist",
        "at most 2 running servers",
        "Ctrl-C",
    ):
        assert expected in text, expected
