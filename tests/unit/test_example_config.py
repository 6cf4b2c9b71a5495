"""The files in example_config/ are real configuration, not prose.

The hub config is loaded with traitlets (as JupyterHub does) for each login provider it offers;
every section and trait it sets must exist (as a config trait) on the classes the hub really
uses, resolved through the entry points; values must pass the traits' validation; roles may
only use scopes JupyterHub knows (plus the config's own custom scopes) and must stay
least-privilege; the services' command lines must parse with the real service applications.
The nginx site, the systemd units and the Docker files must agree with the hub config.

``test_checks_catch_mistakes`` breaks copies of the config on purpose, so these checks are
known to fail on real mistakes.
"""

from __future__ import annotations

import json
import re
import shlex
from importlib.metadata import entry_points
from importlib.util import find_spec
from pathlib import Path
from types import SimpleNamespace
from urllib.parse import urlparse

import pytest
import yaml
from dockerspawner import DockerSpawner, SwarmSpawner
from jupyterhub import roles as hub_roles
from jupyterhub import scopes as hub_scopes
from jupyterhub.app import JupyterHub
from jupyterhub.crypto import CryptKeeper
from jupyterhub.proxy import ConfigurableHTTPProxy
from jupyterhub.services.service import Service
from traitlets.config import Config, Configurable
from traitlets.config.loader import PyFileConfigLoader

from jupyterhub_lab_ext.services.culler.app import LabIdleCuller
from jupyterhub_lab_ext.services.user_limit.app import UserLimitApp

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "example_config"
HUB_CONFIG = EXAMPLES / "jupyterhub_config.py"
DOCKER_CONFIG = EXAMPLES / "docker" / "jupyterhub_docker_config.py"
PROVIDERS = ["oidc", "github", "google"]

# never granted to a service in the examples: they amount to (partial) hub admin
TOO_BROAD = {
    "inherit",
    "admin:users",
    "admin:servers",
    "admin:auth_state",
    "admin:groups",
    "admin:services",
    "users",
    "servers",
    "tokens",
    "proxy",
    "shutdown",
}


# -- loading ---------------------------------------------------------------------------------


@pytest.fixture
def env(tmp_path, monkeypatch):
    """Stub the environment the configs read; state (the hook secret) goes to tmp_path."""
    values = {
        "OAUTH_PROVIDER": "oidc",
        "OAUTH_CLIENT_ID": "lab-hub",
        "OAUTH_CLIENT_SECRET": "not-a-secret",
        "OIDC_ISSUER": "https://idp.example.org/realms/lab",
        "JUPYTERHUB_PUBLIC_URL": "https://hub.example.org/jupyter/",
        "JUPYTERHUB_STATE_DIR": str(tmp_path),
        "HUB_ADDRESS": "192.0.2.10",
        "JUPYTERHUB_BASE_CONFIG": str(HUB_CONFIG),
    }
    for key, value in values.items():
        monkeypatch.setenv(key, value)
    return monkeypatch


def load(path: Path) -> Config:
    return PyFileConfigLoader(path.name, path=str(path.parent)).load_config()


def entry_point_class(group: str, value):
    """A spawner/authenticator setting -> class, the way JupyterHub resolves it."""
    if not isinstance(value, str):
        return value
    for ep in entry_points(group=group):
        if ep.name == value:
            return ep.load()
    module, _, name = value.rpartition(".")
    if module:
        return getattr(__import__(module, fromlist=[name]), name)
    raise LookupError(f"no {group} entry point {value!r}")


def configurable_mro(cls) -> list[type]:
    return [k for k in cls.__mro__ if isinstance(k, type) and issubclass(k, Configurable)]


def hub_roots(cfg: Config) -> list[type]:
    """The classes the hub instantiates with this config."""
    hub = cfg.JupyterHub
    auth = entry_point_class("jupyterhub.authenticators", hub.get("authenticator_class", "pam"))
    spawner = entry_point_class("jupyterhub.spawners", hub.get("spawner_class", "default"))
    proxy = entry_point_class(
        "jupyterhub.proxies", hub.get("proxy_class", "configurable-http-proxy")
    )
    return [JupyterHub, auth, spawner, proxy, CryptKeeper]


# -- checks (return lists of problems, so they can be tested on broken configs) -------------


def trait_problems(cfg: Config) -> list[str]:
    """Sections that apply to no class of the hub; keys that are no config trait of the
    class the section reaches (a subclass can drop a parent's trait: SwarmSpawner.remove)."""
    try:
        roots = hub_roots(cfg)
    except (LookupError, ImportError, AttributeError) as e:
        return [f"cannot resolve a class: {e}"]
    problems = []
    for section, values in cfg.items():
        if not isinstance(values, Config):
            problems.append(f"{section} = {values!r} is not a class section")
            continue
        owners = [r for r in roots if section in {k.__name__ for k in configurable_mro(r)}]
        if not owners:
            names = sorted({k.__name__ for r in roots for k in configurable_mro(r)})
            problems.append(f"section {section} applies to none of {names}")
            continue
        for owner in owners:
            known = set(owner.class_trait_names(config=True))
            for key in values:
                if key not in known:
                    problems.append(f"{section}.{key} is not a config trait of {owner.__name__}")
    return problems


def value_problems(cfg: Config) -> list[str]:
    """Instantiate the hub's classes with the config: the traits validate every value."""
    hub = cfg.JupyterHub
    try:
        auth = entry_point_class("jupyterhub.authenticators", hub.authenticator_class)
        spawner = entry_point_class("jupyterhub.spawners", hub.spawner_class)
    except (LookupError, ImportError, AttributeError) as e:
        return [f"cannot resolve a class: {e}"]
    problems = []
    for cls in (JupyterHub, auth, spawner, ConfigurableHTTPProxy):
        kwargs = {}
        if cls is spawner:  # DockerSpawner renders its templates with the user's name
            kwargs["user"] = SimpleNamespace(name="alice", escaped_name="alice", id=1)
        try:
            cls(config=cfg, **kwargs)
        except Exception as e:  # a TraitError, or a validator's ValueError
            problems.append(f"{cls.__name__}: {type(e).__name__}: {e}")
    return problems


def role_problems(cfg: Config, monkeypatch) -> list[str]:
    """Custom scopes well-formed; every role's name, scopes and members valid."""
    problems = []
    # define the custom scopes on a copy of the hub's table, as the hub does at start
    monkeypatch.setattr(hub_scopes, "scope_definitions", dict(hub_scopes.scope_definitions))
    try:
        hub_scopes.define_custom_scopes(dict(cfg.JupyterHub.get("custom_scopes", {})))
    except ValueError as e:
        problems.append(f"custom_scopes: {e}")
    services = {s["name"] for s in cfg.JupyterHub.get("services", [])}
    for role in cfg.JupyterHub.get("load_roles", []):
        name = role.get("name", "?")
        try:
            hub_roles._validate_role_name(name)
        except ValueError as e:
            problems.append(f"role {name}: {e}")
        extra = set(role) - {"name", "description", "scopes", "users", "services", "groups"}
        if extra:
            problems.append(f"role {name}: unknown keys {sorted(extra)}")
        try:
            hub_scopes._check_scopes_exist(role.get("scopes", []), who_for=f"role {name}")
        except hub_scopes.ScopeNotFound as e:
            problems.append(str(e))
        for member in role.get("services", []):
            if member not in services:
                problems.append(f"role {name}: no service named {member!r}")
    return problems


def service_app_class(command: list[str]):
    """The traitlets Application a service command runs (console script or ``-m module``)."""
    scripts = {ep.name: ep for ep in entry_points(group="console_scripts")}
    target = None
    if "-m" in command:
        module = command[command.index("-m") + 1]
        args = command[command.index("-m") + 2 :]
        matches = [ep for ep in scripts.values() if ep.value.startswith(module + ".")]
        target = matches[0] if len(matches) == 1 else None
    else:
        args = command[1:]
        target = scripts.get(Path(command[0]).name)
    if target is None or not target.value.startswith("jupyterhub_lab_ext."):
        return None, args
    main = target.load()
    return getattr(main, "__self__", None), args


def command_problems(app_cls, args: list[str], settings: dict | None = None) -> list[str]:
    """Parse ``args`` as the service would; report unknown options and bad values."""
    problems = []
    app = app_cls()
    try:
        app.parse_command_line(args)
    except (SystemExit, Exception) as e:
        return [f"{app_cls.__name__} {args}: {e!r}"]
    known = {k.__name__: k for k in configurable_mro(app_cls)}
    for section, values in app.config.items():
        if not isinstance(values, Config) or section not in known:
            problems.append(f"{app_cls.__name__}: unrecognized option {section}")
            continue
        names = set(known[section].class_trait_names(config=True))
        problems += [f"{section}.{k} is not an option" for k in values if k not in names]
    if settings:
        names = set(app_cls.class_trait_names(config=True))
        problems += [f"{app_cls.__name__} has no option {k!r}" for k in settings if k not in names]
        if not problems:
            try:
                app_cls(config=Config({app_cls.__name__: settings}))
            except Exception as e:
                problems.append(f"{app_cls.__name__} settings {settings}: {e}")
    return problems


def service_problems(cfg: Config) -> list[str]:
    problems = []
    keys = set(Service.class_trait_names())
    ports = set()
    for svc in cfg.JupyterHub.get("services", []):
        name = svc.get("name", "?")
        unknown = set(svc) - keys
        if unknown:
            problems.append(f"service {name}: unknown keys {sorted(unknown)}")
        if svc.get("admin"):
            problems.append(f"service {name}: 'admin': True (use a role)")
        url = urlparse(svc.get("url", ""))
        if svc.get("url") and url.hostname != "127.0.0.1":
            problems.append(f"service {name}: url {svc['url']} is not on loopback")
        if url.port in ports:
            problems.append(f"service {name}: port {url.port} used twice")
        ports.add(url.port)
        if "command" not in svc:
            continue
        app_cls, args = service_app_class(svc["command"])
        if app_cls is None:
            problems.append(f"service {name}: {svc['command'][:3]} is no service of this package")
            continue
        raw = (svc.get("environment") or {}).get("JUPYTERHUB_USER_LIMIT_SETTINGS")
        settings = json.loads(raw) if raw else None
        problems += command_problems(app_cls, args, settings)
    return problems


def all_problems(cfg: Config, monkeypatch) -> list[str]:
    return (
        trait_problems(cfg)
        + value_problems(cfg)
        + role_problems(cfg, monkeypatch)
        + service_problems(cfg)
    )


def role_of(cfg: Config, service: str) -> set[str]:
    scopes = set()
    for role in cfg.JupyterHub.load_roles:
        if service in role.get("services", []):
            scopes |= set(role["scopes"])
    return scopes


def service(cfg: Config, name: str) -> dict:
    return next(s for s in cfg.JupyterHub.services if s["name"] == name)


def flag_on(command: list[str], flag: str) -> bool:
    for arg in command:
        if arg == f"--{flag}" or arg.lower() in (f"--{flag}=true", f"--{flag}=1"):
            return True
    return False


# -- the hub config --------------------------------------------------------------------------


@pytest.mark.parametrize("provider", PROVIDERS)
def test_hub_config_loads_and_every_setting_exists(env, provider):
    env.setenv("OAUTH_PROVIDER", provider)
    cfg = load(HUB_CONFIG)
    assert trait_problems(cfg) == []
    assert value_problems(cfg) == []


@pytest.mark.parametrize("provider", PROVIDERS)
def test_provider_blocks_pick_the_entry_points(env, provider):
    env.setenv("OAUTH_PROVIDER", provider)
    cfg = load(HUB_CONFIG)
    expected = {"oidc": "userlist", "github": "userlist-github", "google": "userlist-google"}
    assert cfg.JupyterHub.authenticator_class == expected[provider]
    assert cfg.JupyterHub.spawner_class == "conda-kernel"
    assert cfg.OAuthenticator.oauth_callback_url == (
        "https://hub.example.org/jupyter/hub/oauth_callback"
    )


def test_unknown_provider_is_refused(env):
    env.setenv("OAUTH_PROVIDER", "gitlab")
    with pytest.raises(ValueError, match="OAUTH_PROVIDER"):
        load(HUB_CONFIG)


def test_roles_and_custom_scopes_are_valid(env, monkeypatch):
    cfg = load(HUB_CONFIG)
    assert role_problems(cfg, monkeypatch) == []
    assert cfg.JupyterHub.custom_scopes  # the services' admin scopes are defined


def test_services_commands_parse_with_the_real_apps(env):
    cfg = load(HUB_CONFIG)
    names = [s["name"] for s in cfg.JupyterHub.services]
    assert sorted(names) == ["idle-culler", "user-limit"]
    assert service_problems(cfg) == []


def test_admin_scopes_are_the_ones_the_services_check(env):
    cfg = load(HUB_CONFIG)
    defined = set(cfg.JupyterHub.custom_scopes)
    assert LabIdleCuller.class_traits()["admin_scope"].default_value in defined
    limit_settings = json.loads(
        service(cfg, "user-limit")["environment"]["JUPYTERHUB_USER_LIMIT_SETTINGS"]
    )
    assert (
        limit_settings.get("admin_scope", UserLimitApp.class_traits()["admin_scope"].default_value)
        in defined
    )


def test_culler_role_is_least_privilege(env):
    cfg = load(HUB_CONFIG)
    command = service(cfg, "idle-culler")["command"]
    granted = role_of(cfg, "idle-culler")
    required = {"list:users", "read:users:activity", "read:servers", "delete:servers"}
    if flag_on(command, "cull-users"):
        required.add("delete:users")
    if flag_on(command, "kernel-aware"):
        required.add("access:servers")
    assert required <= granted
    # group timeouts need the groups; nothing else beyond what the flags need
    assert granted - required <= {"read:users:groups", "read:users:name"}
    assert not granted & TOO_BROAD


def test_user_limit_role_is_least_privilege(env):
    cfg = load(HUB_CONFIG)
    granted = role_of(cfg, "user-limit")
    required = {"list:users", "read:users:groups", "read:servers", "start:servers"}
    assert required <= granted
    assert granted - required <= {"read:users:name"}
    assert not granted & TOO_BROAD


def test_no_role_hands_out_broad_scopes(env):
    cfg = load(HUB_CONFIG)
    for role in cfg.JupyterHub.load_roles:
        assert not set(role["scopes"]) & TOO_BROAD, role["name"]


def test_user_limit_hooks_are_installed(env):
    cfg = load(HUB_CONFIG)
    assert callable(cfg.Spawner.pre_spawn_hook)
    assert callable(cfg.Spawner.post_stop_hook)
    assert callable(cfg.Authenticator.post_auth_hook)


def test_state_stays_under_the_state_dir(env, tmp_path):
    cfg = load(HUB_CONFIG)
    assert cfg.JupyterHub.db_url == f"sqlite:///{tmp_path}/jupyterhub.sqlite"
    assert cfg.JupyterHub.cookie_secret_file.startswith(str(tmp_path))
    # the services' stores are apart from the hub's root-only directory
    services_dir = f"{tmp_path}-services"
    for svc in cfg.JupyterHub.services:
        assert svc["cwd"] == services_dir
        assert svc["user"] == "jupyterhub-services"
        settings = svc.get("environment", {}).get("JUPYTERHUB_USER_LIMIT_SETTINGS", "")
        dbs = re.findall(r"sqlite:///(/[^\s\"']+)", " ".join(svc["command"]) + settings)
        assert dbs and all(db.startswith(services_dir + "/") for db in dbs), svc["name"]
    assert list(tmp_path.iterdir()) == [], "loading the config writes nothing"
    # the hook secret is made in the state dir, private, when the hub starts the service
    env = service(cfg, "user-limit")["environment"]
    secret = env["JUPYTERHUB_USER_LIMIT_HOOK_TOKEN"](None)
    token = tmp_path / "user-limit-hook-token"
    assert token.stat().st_mode & 0o777 == 0o600 and token.read_text() == secret


SITE_VARIABLES = re.compile(r"""site\(\s*["']([A-Z_]+)["']""")


def test_loads_without_the_environment_file_and_writes_nothing(monkeypatch, tmp_path):
    """Admin commands (upgrade-db, userlist check --config) in a root shell: no secrets set."""
    names = set(SITE_VARIABLES.findall(HUB_CONFIG.read_text()))
    assert {"OAUTH_CLIENT_SECRET", "IDLE_CULLER_API_TOKEN", "USER_LIMIT_HOOK_TOKEN"} <= names
    for name in names:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)
    cfg = load(HUB_CONFIG)
    assert cfg.JupyterHub.db_url == "sqlite:////var/lib/jupyterhub/jupyterhub.sqlite"
    assert list(tmp_path.iterdir()) == []


def test_every_site_variable_is_documented():
    documented = (REPO / "docs" / "deployment.md").read_text()
    for name in set(SITE_VARIABLES.findall(HUB_CONFIG.read_text())):
        assert f"`{name}`" in documented, name


def test_ports_and_base_url_come_from_the_environment(env):
    env.setenv("JUPYTERHUB_PUBLIC_URL", "https://lab.example.org/hub-a/")
    for name, port in [
        ("JUPYTERHUB_PORT", "18000"),
        ("JUPYTERHUB_HUB_PORT", "18081"),
        ("JUPYTERHUB_PROXY_API_PORT", "18001"),
        ("IDLE_CULLER_PORT", "20101"),
        ("USER_LIMIT_PORT", "20102"),
    ]:
        env.setenv(name, port)
    cfg = load(HUB_CONFIG)
    hub = cfg.JupyterHub
    assert (hub.port, hub.hub_port, hub.base_url) == (18000, 18081, "/hub-a/")
    assert cfg.ConfigurableHTTPProxy.api_url == "http://127.0.0.1:18001"
    assert service(cfg, "idle-culler")["url"] == "http://127.0.0.1:20101"
    assert service(cfg, "user-limit")["url"] == "http://127.0.0.1:20102"
    assert (
        cfg.OAuthenticator.oauth_callback_url == "https://lab.example.org/hub-a/hub/oauth_callback"
    )


def test_services_as_units(env, monkeypatch):
    env.setenv("JUPYTERHUB_SERVICES", "systemd")
    for name in ("IDLE_CULLER_API_TOKEN", "USER_LIMIT_API_TOKEN", "USER_LIMIT_HOOK_TOKEN"):
        env.setenv(name, name.lower() * 2)
    cfg = load(HUB_CONFIG)
    for name in ("idle-culler", "user-limit"):
        svc = service(cfg, name)
        assert not {"command", "environment", "user", "cwd"} & set(svc), name
        # a hub restart must not wait JupyterHub's default 30 s for a unit that is not up yet
        assert svc["timeout"] == 2
    assert service(cfg, "idle-culler")["api_token"] == "idle_culler_api_token" * 2
    assert all_problems(cfg, monkeypatch) == []
    # the same least-privilege role as when the hub runs the culler
    env.setenv("JUPYTERHUB_SERVICES", "hub")
    assert role_of(load(HUB_CONFIG), "idle-culler") == role_of(cfg, "idle-culler")


def test_services_as_units_without_the_tokens_still_load(env):
    env.setenv("JUPYTERHUB_SERVICES", "systemd")
    with pytest.warns(UserWarning, match="empty, so service") as warned:
        cfg = load(HUB_CONFIG)
    assert len(warned) == 2
    assert "api_token" not in service(cfg, "idle-culler")


def test_unknown_services_mode_is_refused(env):
    env.setenv("JUPYTERHUB_SERVICES", "docker")
    with pytest.raises(ValueError, match="JUPYTERHUB_SERVICES"):
        load(HUB_CONFIG)


# -- the checks themselves fail on real mistakes ---------------------------------------------

MISTAKES = {
    "typo-in-trait": (
        "c.CondaKernelSpawner.shared_env_dirs",
        "c.CondaKernelSpawner.shared_env_dir",
    ),
    "wrong-class-for-provider": (
        "c.UserlistOAuthenticator.oidc_issuer",
        "c.UserlistGitHubOAuthenticator.oidc_issuer",
    ),
    "unknown-entry-point": ('"conda-kernel"', '"conda-kernels"'),
    "bad-value": ("home_mode = 0o700", 'home_mode = "private"'),
    "unknown-scope": ('"access:services!service=idle-culler",', '"access:service!idle-culler",'),
    "undefined-custom-scope": ('"custom:idle-culler:admin",\n', '"custom:idle-culler:admn",\n'),
    "unknown-culler-flag": ('"--timeout=3600"', '"--timout=3600"'),
    "bad-culler-value": ('"--cull-every=300"', '"--cull-every=often"'),
    "unknown-limit-setting": ('"max_users": 200', '"max_user": 200'),
    "role-for-missing-service": ('"groups": ["teachers"]', '"services": ["culler"]'),
}


def problems_of(path: Path, monkeypatch) -> list[str]:
    """Loading fails (the hub would not start) or the checks find something."""
    try:
        cfg = load(path)
    except (Exception, SystemExit) as e:  # traitlets exits on a bad command-line value
        return [f"load: {type(e).__name__}: {e}"]
    return all_problems(cfg, monkeypatch)


@pytest.mark.parametrize("mistake", sorted(MISTAKES))
def test_checks_catch_mistakes(env, tmp_path, monkeypatch, mistake):
    old, new = MISTAKES[mistake]
    text = HUB_CONFIG.read_text()
    assert old in text, f"fixture out of date: {old!r} not in the example config"
    broken = tmp_path / "broken" / "jupyterhub_config.py"
    broken.parent.mkdir()
    broken.write_text(text.replace(old, new, 1))
    assert problems_of(broken, monkeypatch), f"{mistake} went unnoticed"


def test_the_untouched_config_has_no_problems(env, monkeypatch):
    assert all_problems(load(HUB_CONFIG), monkeypatch) == []


# -- nginx -----------------------------------------------------------------------------------

NGINX = EXAMPLES / "nginx" / "jupyterhub.conf"


def nginx_directives(text: str) -> list[str]:
    lines = (line.split("#", 1)[0].strip() for line in text.splitlines())
    return [" ".join(line.split()) for line in lines if line]


def nginx_location(text: str, path: str) -> str:
    m = re.search(r"location\s+" + re.escape(path) + r"\s*\{(.*?)\n\s*\}", text, re.S)
    assert m, f"no location {path}"
    return m.group(1)


def test_nginx_proxies_websockets(env):
    text = NGINX.read_text()
    directives = nginx_directives(text)
    assert "map $http_upgrade $connection_upgrade {" in directives
    block = nginx_directives(nginx_location(text, load(HUB_CONFIG).JupyterHub.base_url))
    assert "proxy_http_version 1.1;" in block
    assert "proxy_set_header Upgrade $http_upgrade;" in block
    assert "proxy_set_header Connection $connection_upgrade;" in block
    timeouts = [d for d in block if d.startswith("proxy_read_timeout")]
    assert timeouts and int(re.sub(r"\D", "", timeouts[0])) > 60


def test_nginx_matches_the_hub_config(env):
    cfg = load(HUB_CONFIG)
    text = NGINX.read_text()
    block = nginx_directives(nginx_location(text, cfg.JupyterHub.base_url))
    # the path goes through unchanged: no URI part after host:port
    assert f"proxy_pass http://{cfg.JupyterHub.ip}:{cfg.JupyterHub.port};" in block
    for header in ("X-Forwarded-For", "X-Forwarded-Proto", "Host"):
        assert any(d.startswith(f"proxy_set_header {header} ") for d in block), header
    directives = nginx_directives(text)
    assert any(d.startswith("listen 443 ssl") for d in directives)
    assert any(d.startswith("ssl_certificate ") for d in directives)
    size = next(d for d in directives if d.startswith("client_max_body_size"))
    assert re.fullmatch(r"client_max_body_size \d+[mg];", size)
    assert cfg.JupyterHub.trusted_downstream_ips == ["127.0.0.1"]


# -- systemd ---------------------------------------------------------------------------------

SYSTEMD = EXAMPLES / "systemd"


def unit(name: str) -> dict[str, list[str]]:
    """``Key`` -> values of a unit file (continuation lines joined)."""
    text = (SYSTEMD / name).read_text().replace("\\\n", " ")
    values: dict[str, list[str]] = {}
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith(("#", ";", "[")) and "=" in line:
            key, _, value = line.partition("=")
            values.setdefault(key, []).append(value)
    return values


def test_hub_unit_runs_the_hub_as_root_with_the_example_config(env):
    hub = unit("jupyterhub.service")
    assert hub["User"] == ["root"]
    argv = shlex.split(hub["ExecStart"][0])
    assert Path(argv[0]).name == "jupyterhub"
    assert "--config=/etc/jupyterhub/jupyterhub_config.py" in argv
    path = next(v for v in hub["Environment"] if v.startswith("PATH="))
    assert "/node_modules/.bin" in path  # configurable-http-proxy
    # the state dir of the config is the unit's working directory
    assert hub["WorkingDirectory"] == ["/var/lib/jupyterhub"]


@pytest.mark.parametrize("name", ["idle-culler", "user-limit"])
def test_service_units_match_the_hub_config(env, name):
    cfg = load(HUB_CONFIG)
    hub = cfg.JupyterHub
    svc = unit(f"jupyterhub-{name}.service")
    envs = dict(v.split("=", 1) for v in svc["Environment"])
    assert envs["JUPYTERHUB_SERVICE_NAME"] == name
    assert envs["JUPYTERHUB_API_URL"] == (
        f"http://{hub.hub_ip}:{hub.hub_port}{hub.base_url}hub/api"
    )
    assert envs["JUPYTERHUB_SERVICE_URL"] == service(cfg, name)["url"]
    assert envs["JUPYTERHUB_SERVICE_PREFIX"] == f"{hub.base_url}services/{name}/"
    assert envs["JUPYTERHUB_CLIENT_ID"] == f"service-{name}"
    assert svc["User"] != ["root"]
    app_cls, args = service_app_class(shlex.split(svc["ExecStart"][0]))
    assert app_cls is not None
    assert command_problems(app_cls, args) == []


@pytest.mark.parametrize("name", ["idle-culler", "user-limit"])
def test_service_units_start_and_stop_with_the_hub_in_parallel(name):
    svc = unit(f"jupyterhub-{name}.service")
    assert svc["PartOf"] == ["jupyterhub.service"]
    assert svc["WantedBy"] == ["jupyterhub.service"]
    # no ordering after the hub: they start together, the hub waits at most 2 s for them
    assert "jupyterhub.service" not in " ".join(svc.get("After", []))
    assert any(v.startswith("/etc/jupyterhub/") for v in svc["EnvironmentFile"])


def test_culler_unit_runs_the_flags_its_role_was_made_for(env):
    """The role of the external culler comes from CULLER_ARGS in the config."""
    env.setenv("JUPYTERHUB_SERVICES", "hub")
    managed = service(load(HUB_CONFIG), "idle-culler")["command"]
    flags = [a for a in managed if a.startswith("--") and not a.startswith("--db-url")]
    argv = shlex.split(unit("jupyterhub-idle-culler.service")["ExecStart"][0])
    assert [a for a in argv[1:] if not a.startswith("--db-url")] == flags


def test_user_limit_unit_has_the_limits_of_the_managed_service(env):
    env_ = service(load(HUB_CONFIG), "user-limit")["environment"]
    managed = json.loads(env_["JUPYTERHUB_USER_LIMIT_SETTINGS"])
    app = UserLimitApp()
    app.parse_command_line(shlex.split(unit("jupyterhub-user-limit.service")["ExecStart"][0])[1:])
    from_unit = dict(app.config.UserLimitApp)
    for key in ("max_active_servers", "max_users", "max_servers_per_user", "group_quotas"):
        value = from_unit[key]
        assert (dict(value) if key == "group_quotas" else int(value)) == managed[key], key


def test_nginx_certificate_paths_exist_before_certbot():
    """The site's TLS paths are the ones the docs' first step fills with a self-signed pair."""
    directives = nginx_directives(NGINX.read_text())
    assert "ssl_certificate /etc/nginx/tls/jupyterhub.crt;" in directives
    assert "ssl_certificate_key /etc/nginx/tls/jupyterhub.key;" in directives
    docs = (REPO / "docs" / "deployment.md").read_text()
    first = docs.index("-keyout /etc/nginx/tls/jupyterhub.key -out /etc/nginx/tls/jupyterhub.crt")
    assert (
        first < docs.index("nginx -t && systemctl reload", first) < docs.index("certbot certonly")
    )


# -- Docker ----------------------------------------------------------------------------------

DOCKER = EXAMPLES / "docker"


@pytest.mark.parametrize("mode", ["docker", "swarm"])
def test_docker_hub_config_is_valid(env, monkeypatch, mode):
    env.setenv("JHLE_DOCKER_MODE", mode)
    if find_spec("dockerspawner") is None:
        pytest.fail("dockerspawner is not installed (pip install 'jupyterhub-lab-ext[docker]')")
    cfg = load(DOCKER_CONFIG)
    assert cfg.JupyterHub.spawner_class in ("conda-kernel-docker", "conda-kernel-swarm") or (
        isinstance(cfg.JupyterHub.spawner_class, type)
    )
    assert trait_problems(cfg) == []
    assert value_problems(cfg) == []
    assert role_problems(cfg, monkeypatch) == []
    assert service_problems(cfg) == []


def compose_files():
    return [DOCKER / "docker-compose.yml", DOCKER / "stack.yml"]


@pytest.mark.parametrize("path", compose_files(), ids=lambda p: p.name)
def test_compose_files_use_host_network_and_read_only_shared_envs(env, path):
    doc = yaml.safe_load(path.read_text())
    hub = doc["services"]["hub"]
    if "network_mode" in hub:
        assert hub["network_mode"] == "host"
    else:
        assert "hostnet" in hub["networks"]
        assert doc["networks"]["hostnet"] == {"external": True, "name": "host"}
    volumes = [v if isinstance(v, str) else f"{v['source']}:{v['target']}" for v in hub["volumes"]]
    mounts = {v.split(":")[1]: v for v in volumes}
    # shared envs read-only at the same path; homes at the same path
    cfg = load(DOCKER_CONFIG)
    for shared in cfg.CondaKernelSpawner.shared_env_dirs:
        assert mounts[shared] == f"{shared}:{shared}:ro"
    assert mounts["/home"].startswith("/home:/home")
    assert "/var/run/docker.sock" in mounts
    # the hub replaces the userlist by rename: a bind-mounted single file would fail (EBUSY);
    # it is next to the config, in the mounted directory
    userlist = Path(cfg.UserlistAuthenticator.userlist_file)
    assert userlist == HUB_CONFIG.parent / "userlist"
    assert "/etc/jupyterhub" in mounts and "/etc/jupyterhub/userlist" not in mounts
    assert "/etc" in mounts  # the account database outlives the container


def test_dockerfiles_install_the_package():
    for name, extra in (("Dockerfile.hub", "docker"), ("Dockerfile.singleuser", "server")):
        text = (DOCKER / name).read_text()
        assert f'ARG JHLE_SPEC="jupyterhub-lab-ext[{extra}]"' in text, name
        assert re.search(r"/opt/jupyterhub-lab-ext/venv/bin/pip install .*\"\$JHLE_SPEC\"", text)
    assert "configurable-http-proxy" in (DOCKER / "Dockerfile.hub").read_text()


def test_docker_check_catches_a_wrong_docker_option(env, tmp_path):
    text = DOCKER_CONFIG.read_text()
    old = 'c.DockerSpawner.network_name = "host"'
    assert old in text
    broken = tmp_path / "jupyterhub_docker_config.py"
    broken.write_text(text.replace(old, 'c.DockerSpawner.network = "host"'))
    problems = trait_problems(load(broken))
    assert any("DockerSpawner.network " in p for p in problems), problems


def test_docker_check_catches_an_option_the_swarm_spawner_drops(env, tmp_path):
    # DockerSpawner.remove is a trait, but SwarmSpawner replaces it by a plain attribute
    env.setenv("JHLE_DOCKER_MODE", "swarm")
    broken = tmp_path / "jupyterhub_docker_config.py"
    broken.write_text(DOCKER_CONFIG.read_text() + "\nc.DockerSpawner.remove = True\n")
    problems = trait_problems(load(broken))
    assert any("DockerSpawner.remove" in p for p in problems), problems


# -- the docs' snippets ----------------------------------------------------------------------

DOC_PAGES = [REPO / "docs" / "getting-started.md", REPO / "docs" / "deployment.md"]
SETTING = re.compile(r"^\s*c\.(\w+)\.(\w+)(?:\s*=|\.append\()", re.M)


def all_config_classes() -> dict[str, type]:
    """Every class a setting in the docs may address: the hub's, ours, dockerspawner's."""
    roots = [JupyterHub, ConfigurableHTTPProxy, CryptKeeper, DockerSpawner, SwarmSpawner]
    roots += [LabIdleCuller, UserLimitApp]
    for group in ("jupyterhub.authenticators", "jupyterhub.spawners"):
        roots += [
            ep.load()
            for ep in entry_points(group=group)
            if ep.value.startswith("jupyterhub_lab_ext")
        ]
    return {k.__name__: k for r in roots for k in configurable_mro(r)}


@pytest.mark.parametrize("page", DOC_PAGES, ids=lambda p: p.name)
def test_settings_in_the_docs_exist(page):
    classes = all_config_classes()
    found = SETTING.findall(page.read_text())
    assert found, f"no c.Class.trait settings found in {page.name}"
    for section, key in found:
        assert section in classes, f"{page.name}: c.{section} is no class of the hub"
        assert key in classes[section].class_trait_names(config=True), (
            f"{page.name}: c.{section}.{key}"
        )
