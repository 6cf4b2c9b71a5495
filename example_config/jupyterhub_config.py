# jupyterhub_config.py: a complete single-machine jupyterhub-lab-ext hub.
#
# Install it unchanged as /etc/jupyterhub/jupyterhub_config.py (root:root 0644; no secrets in
# it). What differs between sites comes from the environment: /etc/jupyterhub/jupyterhub.env
# (root:root 0600), read by the systemd unit. docs/deployment.md ("The environment file") lists
# every variable; four are needed:
#   JUPYTERHUB_PUBLIC_URL  public URL with the base URL, e.g. https://hub.example.org/jupyter/
#   OAUTH_CLIENT_ID        the hub's client at the login provider
#   OAUTH_CLIENT_SECRET
#   OIDC_ISSUER            the provider's issuer URL (OAUTH_PROVIDER=oidc, the default)
# The others have the defaults of the layout below.
#
# Layout (docs/deployment.md):
#   /etc/jupyterhub/jupyterhub_config.py   this file
#   /etc/jupyterhub/userlist               who may log in (next to this file; the hub rewrites it
#                                          when an admin adds or deletes users on the admin page)
#   /srv/jupyterhub/home-template/         notebooks copied into every new home
#   /opt/conda/envs/                       shared conda environments (root-owned, read-only to users)
#   /var/lib/jupyterhub/                   hub state: database, cookie secret, hook secret (0700)
#   /var/lib/jupyterhub-services/          the two services' state (owned by jupyterhub-services)
#   /var/lib/jupyterhub-lab-ext/           record of the system accounts the hub created
#
# The hub runs as root: it creates system users and homes and starts each user's server as
# that user. nginx terminates TLS in front of it and forwards https://hub.example.org/jupyter/
# to the proxy on 127.0.0.1:8000 (example_config/nginx/jupyterhub.conf).
#
# Loading this file reads and writes nothing but the environment, and needs none of the
# secrets: `jupyterhub upgrade-db` and `jupyterhub-lab-ext userlist check --config` load it too.

import os
import sys
from urllib.parse import urlparse

from jupyterhub_lab_ext.services.culler.hubconfig import enable_idle_culler
from jupyterhub_lab_ext.services.user_limit.hubconfig import HookOptions, enable_user_limit

c = get_config()  # noqa: F821 (provided by traitlets when JupyterHub loads this file)


def site(name: str, default: str = "") -> str:
    """A site value from the hub's environment file (docs/deployment.md)."""
    return os.environ.get(name, default)


PUBLIC_URL = site("JUPYTERHUB_PUBLIC_URL", "https://hub.example.org/jupyter/")
PROVIDER = site("OAUTH_PROVIDER", "oidc")
STATE = site("JUPYTERHUB_STATE_DIR", "/var/lib/jupyterhub")
# the services' own state, apart from the hub's: /var/lib/jupyterhub stays root-only (0700)
SERVICE_STATE = f"{STATE}-services"
SERVICES_USER = site("JUPYTERHUB_SERVICES_USER", "jupyterhub-services")
# "hub": the hub starts the two services; "systemd": they run as their own units
# (example_config/systemd/jupyterhub-idle-culler.service, jupyterhub-user-limit.service)
SERVICES = site("JUPYTERHUB_SERVICES", "hub")
CONFIG_DIR = os.path.dirname(os.path.abspath(__file__))
# users' servers run from the hub's own (world-readable) venv
VENV = sys.prefix

# ---------------------------------------------------------------------------------------------
# Network: only nginx talks to the proxy; the hub API and the services listen on loopback.
# The ports are the nginx site's upstream and the services' units' URLs: change them together.
# ---------------------------------------------------------------------------------------------
c.JupyterHub.ip = "127.0.0.1"
c.JupyterHub.port = int(site("JUPYTERHUB_PORT", "8000"))
# Everything (hub, users' servers, services) lives under the public URL's path, /jupyter/.
# nginx forwards the path unchanged (proxy_pass without a URI part): no rewriting anywhere.
c.JupyterHub.base_url = urlparse(PUBLIC_URL).path.rstrip("/") + "/"
c.JupyterHub.hub_ip = "127.0.0.1"
c.JupyterHub.hub_port = int(site("JUPYTERHUB_HUB_PORT", "8081"))
# The hub starts configurable-http-proxy itself (found on PATH, see the systemd unit); its
# REST API stays on loopback. CONFIGPROXY_AUTH_TOKEN is generated when unset.
c.ConfigurableHTTPProxy.api_url = f"http://127.0.0.1:{site('JUPYTERHUB_PROXY_API_PORT', '8001')}"
c.ConfigurableHTTPProxy.pid_file = f"{STATE}/jupyterhub-proxy.pid"
# the hub is behind nginx: trust X-Forwarded-* from it only
c.JupyterHub.trusted_downstream_ips = ["127.0.0.1"]
CULLER_URL = f"http://127.0.0.1:{site('IDLE_CULLER_PORT', '10101')}"
USER_LIMIT_URL = f"http://127.0.0.1:{site('USER_LIMIT_PORT', '10102')}"

# ---------------------------------------------------------------------------------------------
# State. SQLite is fine for one machine; see docs/deployment.md for PostgreSQL.
# ---------------------------------------------------------------------------------------------
c.JupyterHub.db_url = f"sqlite:///{STATE}/jupyterhub.sqlite"
c.JupyterHub.cookie_secret_file = f"{STATE}/jupyterhub_cookie_secret"
# Keep users' servers running when the hub restarts (upgrades, config changes): the hub
# finds them again from its database. Set True to stop every server when the hub stops.
c.JupyterHub.cleanup_servers = False
# Activity from the proxy every minute (the default is 5 min): the idle culler's idle times
# are at most this much too short.
c.JupyterHub.last_activity_interval = 60

# ---------------------------------------------------------------------------------------------
# Login: OAuth2/OpenID Connect, restricted by the userlist file.
# ---------------------------------------------------------------------------------------------
# Set on oauthenticator's base class, these apply to whichever login class is picked below.
c.OAuthenticator.client_id = site("OAUTH_CLIENT_ID")
c.OAuthenticator.client_secret = site("OAUTH_CLIENT_SECRET")
# Register exactly this URL as the redirect/callback URL at the provider.
c.OAuthenticator.oauth_callback_url = PUBLIC_URL.rstrip("/") + "/hub/oauth_callback"

if PROVIDER == "oidc":
    # Any OpenID Connect provider (Keycloak, Authentik, Dex, Okta, Entra ID, ...): at the first
    # login the hub reads $OIDC_ISSUER/.well-known/openid-configuration and takes the
    # authorization, token and userinfo endpoints from it.
    c.JupyterHub.authenticator_class = "userlist"
    c.UserlistOAuthenticator.oidc_issuer = site("OIDC_ISSUER", "https://idp.example.org/realms/lab")
    c.UserlistOAuthenticator.scope = ["openid", "profile", "email"]
    # The claim matched against the userlist: "email" for a list of addresses,
    # "preferred_username" for a list of logins.
    c.UserlistOAuthenticator.username_claim = site("OIDC_USERNAME_CLAIM", "email")
    c.UserlistOAuthenticator.login_service = site("OIDC_LOGIN_SERVICE", "Example University login")
elif PROVIDER == "github":
    # https://github.com/settings/developers -> OAuth Apps. The userlist holds GitHub logins.
    c.JupyterHub.authenticator_class = "userlist-github"
elif PROVIDER == "google":
    # Google Cloud console -> APIs & Services -> Credentials -> OAuth client ID (web app).
    # The userlist holds email addresses.
    c.JupyterHub.authenticator_class = "userlist-google"
    # Optional: only offer accounts of your Google Workspace domain on Google's login page.
    # c.UserlistGoogleOAuthenticator.hosted_domain = ["example.org"]
else:
    raise ValueError(f"OAUTH_PROVIDER must be oidc, github or google, not {PROVIDER!r}")

# Who may log in, who is admin, which hub groups (IDENTITY [admin] [group:NAME ...]).
# Re-read on change; check an edit with:
#   jupyterhub-lab-ext userlist check --config /etc/jupyterhub/jupyterhub_config.py
c.UserlistAuthenticator.userlist_file = os.path.join(CONFIG_DIR, "userlist")
# Refuse emails the provider has not verified (the default; keep it with an email userlist).
c.UserlistAuthenticator.require_verified_email = True
# Your own domain is dropped from system usernames (alice@example.org -> alice); other
# domains stay encoded (bob@gmail.com -> bob-gmail-com), so they never share an account.
c.UserlistAuthenticator.domain_rules = {site("JUPYTERHUB_EMAIL_DOMAIN", "example.org"): ""}
# What a removed line does: "revoke" (login refused), "stop" (also stop servers),
# "lock" (also lock the system account). Homes are never deleted.
c.UserlistAuthenticator.on_removal = "stop"
# With "stop" or "lock", also archive a removed user's home here (<username>-<UTC time>.tar.gz).
# c.UserlistAuthenticator.removed_homes_archive_dir = "/srv/jupyterhub/removed-homes"

# ---------------------------------------------------------------------------------------------
# System users and homes (created asynchronously at first login).
# ---------------------------------------------------------------------------------------------
c.UserlistAuthenticator.create_system_users = True
# e.g. an NFS mount; homes are <home_root>/<username>
c.UserlistAuthenticator.home_root = site("JUPYTERHUB_HOME_ROOT", "/home")
c.UserlistAuthenticator.home_mode = 0o700
# copied into each new home; push later additions with: jupyterhub-lab-ext homes sync-template
c.UserlistAuthenticator.home_template = site(
    "JUPYTERHUB_HOME_TEMPLATE", "/srv/jupyterhub/home-template"
)
# one group for all hub users makes file sharing and quotas easier
c.UserlistAuthenticator.system_group = site("JUPYTERHUB_USERS_GROUP", "jupyterusers")
# where the hub records which accounts it created (it never touches other accounts)
c.UserlistAuthenticator.system_users_state_dir = f"{STATE}-lab-ext"

# ---------------------------------------------------------------------------------------------
# Spawner: each user picks a shared or a personal conda environment on the spawn form.
# ---------------------------------------------------------------------------------------------
c.JupyterHub.spawner_class = "conda-kernel"
# c.CondaKernelSpawner.* applies to conda-kernel and to conda-kernel-docker/-swarm alike
# (docker/jupyterhub_docker_config.py reuses this file).
# shared envs, offered as shared/<name>; root-owned, mode 755
c.CondaKernelSpawner.shared_env_dirs = [site("JUPYTERHUB_SHARED_ENVS", "/opt/conda/envs")]
# users' own envs, offered as mine/<name> (the first entry is where `conda create -n` puts them)
c.CondaKernelSpawner.user_env_dirs = ["~/.conda/envs"]
# preselected on the spawn form; when it is missing the form says so and preselects the first
c.CondaKernelSpawner.default_env = "shared/python3"
# The single-user server runs from the hub's venv; kernels run in the envs.
c.Spawner.cmd = [f"{VENV}/bin/jupyterhub-singleuser"]
c.Spawner.default_url = "/lab"
c.Spawner.notebook_dir = "~"
# first starts on a busy machine or NFS can be slow
c.Spawner.start_timeout = 120
c.Spawner.http_timeout = 60

# ---------------------------------------------------------------------------------------------
# Services: the idle culler and the user limit. Their REST APIs and pages are under
# /jupyter/services/<name>/; browser visits need no consent page. Each call adds the service,
# its least-privilege role and its admin scope (custom:<name>:admin, which hub admins hold).
# ---------------------------------------------------------------------------------------------
CULLER_ARGS = [
    "--timeout=3600",  # stop servers idle for an hour
    "--cull-every=300",
    "--concurrency=10",  # at most 10 Hub API requests (and stops) in flight
    # a pass stops as many servers at once as keeps the hub's median answer time within 25 ms
    # of its idle median (the default; "off": always --concurrency stops)
    "--hub-latency-budget=25",
    "--pending-timeout=900",  # stop spawns stuck for 15 min
    # also delete inactive hub users (its role then gets read:users and delete:users):
    # "--cull-users=True",
    # keep servers whose kernels are busy (its role then gets access:servers); servers are
    # asked through the proxy:
    # "--kernel-aware=True",
    # "--LabIdleCuller.server_base_url=http://127.0.0.1:8000",
]

if SERVICES == "hub":
    # Managed: the hub starts them, restarts them and gives them a token. They run as an
    # unprivileged account (create it first, docs/deployment.md) instead of root.
    as_services_user = {"user": SERVICES_USER, "cwd": SERVICE_STATE}
    enable_idle_culler(
        c,
        url=CULLER_URL,
        args=CULLER_ARGS,
        db_url=f"sqlite:///{SERVICE_STATE}/idle-culler.sqlite",  # exemptions
        service_options=as_services_user,
    )
    # Caps, seats, group quotas and a waiting queue; the hub asks the service before every
    # spawn (Spawner.oauth_client_allowed_scopes, see docs/user-limit.md) and login
    # (Authenticator.post_auth_hook).
    enable_user_limit(
        c,
        {
            "max_active_servers": 40,  # servers running at once on this machine
            "max_users": 200,  # seats: distinct users who may log in
            "group_quotas": {"physics-101": 30},  # servers per hub group at once
            "max_servers_per_user": 2,
            "db_url": f"sqlite:///{SERVICE_STATE}/user-limit.sqlite",
        },
        url=USER_LIMIT_URL,
        hook=HookOptions(
            # shared secret of hook and service, created 0600 when the hub first starts it
            token_file=f"{STATE}/user-limit-hook-token",
            # when the service is down: refuse spawns with a clear message (False) or let
            # them through
            fail_open=False,
        ),
        service_options=as_services_user,
    )
elif SERVICES == "systemd":
    # Their own units run them with their own flags and limits (keep the culler's flags the
    # same as CULLER_ARGS: they decide its role). The tokens are shared with the units' env
    # files; the hub waits at most 2 s for a unit that is not up yet when it starts.
    enable_idle_culler(
        c,
        url=CULLER_URL,
        args=CULLER_ARGS,
        managed=False,
        api_token=site("IDLE_CULLER_API_TOKEN"),
    )
    enable_user_limit(
        c,
        url=USER_LIMIT_URL,
        managed=False,
        api_token=site("USER_LIMIT_API_TOKEN"),
        hook=HookOptions(token=site("USER_LIMIT_HOOK_TOKEN"), fail_open=False),
    )
else:
    raise ValueError(f"JUPYTERHUB_SERVICES must be hub or systemd, not {SERVICES!r}")

# People who run the lab without being hub admins: members of the hub group "teachers"
# (group:teachers in the userlist) read and manage both services.
c.JupyterHub.load_roles.append(
    {
        "name": "lab-operators",
        "description": "Read and manage the idle culler and the user limit.",
        "scopes": [
            "access:services!service=idle-culler",
            "access:services!service=user-limit",
            "custom:idle-culler:admin",
            "custom:user-limit:admin",
        ],
        "groups": ["teachers"],
    }
)
