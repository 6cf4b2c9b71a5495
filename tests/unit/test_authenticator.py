"""The userlist authenticator driven through a full get_authenticated_user() on a fake provider."""

from __future__ import annotations

import asyncio
import logging
import os
from types import SimpleNamespace

import pytest
from fakes_oauth import FakeHTTPClient, FakeProvider
from jupyterhub import orm
from tornado.web import HTTPError
from traitlets import TraitError
from traitlets.config import Config, Configurable

from jupyterhub_lab_ext.accounts.system_users import Account, ExistingAccountError, SystemUserError
from jupyterhub_lab_ext.auth.authenticator import (
    UserlistAuthenticator,
    UserlistGitHubOAuthenticator,
    UserlistGoogleOAuthenticator,
    UserlistOAuthenticator,
)
from jupyterhub_lab_ext.auth.identities import IdentityMemo

USERLIST = """\
# test userlist
alice@example.org admin group:teachers   # teacher
bob@example.org group:physics
carol@gmail.com
dave
"""


class FakeSystemUsers:
    """Records what the authenticator asks for; ``existing`` names raise ExistingAccountError."""

    def __init__(self, existing=(), fail=()):
        self.existing, self.fail = set(existing), set(fail)
        self.records: dict[str, dict] = {}
        self.calls: list[tuple] = []

    async def ensure_account(self, spec):
        self.calls.append(("ensure", spec.name, spec.home, spec.home_mode))
        if spec.name in self.existing:
            raise ExistingAccountError(f"account {spec.name!r} exists and was not created by us")
        if spec.name in self.fail:
            raise SystemUserError("useradd failed", argv=["useradd"], rc=9, stderr="boom")
        created = spec.name not in self.records
        self.records.setdefault(spec.name, {"uid": 2000 + len(self.records)})
        rec = self.records[spec.name]
        return Account(spec.name, rec["uid"], rec["uid"], spec.home, created=created)

    async def populate_home(self, account, template, *, readonly=False):
        self.calls.append(("populate", account.name, template, readonly))
        return 3

    async def lock_account(self, name):
        self.calls.append(("lock", name))
        self.records[name]["locked"] = "now"

    async def unlock_account(self, name):
        self.calls.append(("unlock", name))
        self.records[name]["locked"] = None

    async def archive_home(self, name, archive_dir):
        self.calls.append(("archive", name, archive_dir))
        return f"{archive_dir}/{name}.tar.gz"

    def created_by_us(self, name):
        return name in self.records

    def accounts(self):
        return dict(self.records)

    def names(self, op):
        return [c[1] for c in self.calls if c[0] == op]


@pytest.fixture
def userlist(tmp_path):
    p = tmp_path / "userlist"
    p.write_text(USERLIST)
    return p


@pytest.fixture
def provider():
    return FakeProvider(FakeHTTPClient())


@pytest.fixture
def fake_su():
    return FakeSystemUsers()


@pytest.fixture
def make_auth(userlist, provider, fake_su):
    made = []

    def make(cls=UserlistOAuthenticator, **kw):
        cfg = dict(provider.config)
        cfg.update(
            userlist_file=str(userlist),
            username_claim="email",
            domain_rules={"example.org": ""},
            system_users=fake_su,
            system_names_loader=lambda uid_min: frozenset({"svc"}),
            home_root="/srv/homes",
            userlist_poll_interval=0,
        )
        cfg.update(kw)
        auth = cls(**cfg)
        made.append(auth)
        return auth

    yield make
    for a in made:
        a.background.stop_polling()


def edit(path, text):
    st = os.stat(path)
    path.write_text(text)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 10_000_000))


async def login(auth, provider, **claims):
    return await auth.get_authenticated_user(provider.handler_for(claims), None)


async def refused(auth, provider, **claims) -> str:
    with pytest.raises(HTTPError) as exc:
        await login(auth, provider, **claims)
    assert exc.value.status_code == 403
    return exc.value.log_message


# ---- table: who gets in, as what -------------------------------------------------------------

CASES = [
    ("admin-with-group", {"email": "alice@example.org"}, ("alice", True, ["teachers"])),
    ("case-insensitive", {"email": "Bob@Example.ORG"}, ("bob", False, ["physics"])),
    ("other-domain-kept", {"email": "carol@gmail.com"}, ("carol-gmail-com", False, [])),
    (
        "verified-true",
        {"email": "carol@gmail.com", "email_verified": True},
        ("carol-gmail-com", False, []),
    ),
    ("login-identity", {"email": "dave"}, ("dave", False, [])),
    ("unlisted", {"email": "eve@example.org"}, "not on this hub's user list"),
    ("same-local-other-domain", {"email": "alice@evil.org"}, "not on this hub's user list"),
    ("name-collision-other-identity", {"email": "alice"}, "alice is not on this hub's user list"),
    ("unverified-email", {"email": "carol@gmail.com", "email_verified": False}, "is not verified"),
    (
        "google-style-unverified",
        {"email": "bob@example.org", "verified_email": False},
        "is not verified",
    ),
    ("reserved-name", {"email": "root"}, "reserved or system account"),
    ("system-account-name", {"email": "svc"}, "reserved or system account"),
]


@pytest.mark.parametrize("claims, expected", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
async def test_login_table(make_auth, provider, claims, expected):
    auth = make_auth()
    if isinstance(expected, str):
        assert expected in await refused(auth, provider, **claims)
        return
    model = await login(auth, provider, **claims)
    assert (model["name"], model["admin"], model["groups"]) == expected
    assert model["auth_state"]["oauth_user"]["email"] == claims["email"]


async def test_unverified_allowed_when_configured(make_auth, provider):
    auth = make_auth(require_verified_email=False)
    model = await login(auth, provider, email="carol@gmail.com", email_verified=False)
    assert model["name"] == "carol-gmail-com"


async def test_prefix_and_normalize_idempotent(make_auth, provider):
    auth = make_auth(username_prefix="jh-")
    model = await login(auth, provider, email="alice@example.org")
    assert model["name"] == "jh-alice"
    assert auth.normalize_username("jh-alice") == "jh-alice"
    assert auth.normalize_username(auth.normalize_username("Alice@Example.org")) == "jh-alice"


async def test_manage_groups_off_gives_no_groups(make_auth, provider):
    model = await login(make_auth(manage_groups=False), provider, email="alice@example.org")
    assert "groups" not in model and model["admin"] is True


async def test_admin_users_config_still_makes_admin(make_auth, provider):
    model = await login(make_auth(admin_users={"bob"}), provider, email="bob@example.org")
    assert model["admin"] is True


# ---- hot reload ------------------------------------------------------------------------------


async def test_edits_apply_without_restart(make_auth, provider, userlist, caplog):
    auth = make_auth()
    assert (await login(auth, provider, email="alice@example.org"))["admin"] is True
    await refused(auth, provider, email="eve@example.org")

    edit(
        userlist,
        USERLIST.replace("alice@example.org admin", "alice@example.org") + "eve@example.org\n",
    )
    assert (await login(auth, provider, email="alice@example.org"))["admin"] is False
    assert (await login(auth, provider, email="eve@example.org"))["name"] == "eve"

    edit(userlist, "alice@example.org\n")
    await refused(auth, provider, email="eve@example.org")

    caplog.set_level(logging.ERROR)
    edit(userlist, "alice@example.org\neve@example.org admn\n")
    await refused(auth, provider, email="eve@example.org")  # last good list in force
    assert (await login(auth, provider, email="alice@example.org"))["name"] == "alice"
    assert f"{userlist}:2: unknown token 'admn'" in caplog.text


async def test_initial_load_failure_is_reported_then_recovers(
    make_auth, provider, userlist, caplog
):
    userlist.write_text("alice@example.org admn\n")
    caplog.set_level(logging.ERROR)
    auth = make_auth()
    assert f"{userlist}:1: unknown token" in caplog.text
    assert "could not be loaded" in await refused(auth, provider, email="alice@example.org")
    edit(userlist, "alice@example.org\n")
    assert (await login(auth, provider, email="alice@example.org"))["name"] == "alice"


def test_userlist_file_is_required(provider):
    with pytest.raises(ValueError, match="userlist_file must be set"):
        UserlistOAuthenticator(**provider.config)


def test_userlist_file_counts_as_allow_config(make_auth):
    assert make_auth().any_allow_config is True
    trait = UserlistOAuthenticator.class_traits()["userlist_file"]
    assert trait.metadata["config"] and trait.metadata["allow_config"]


# ---- refresh_user: revocation on the next request ---------------------------------------------


class FakeUser(SimpleNamespace):
    async def get_auth_state(self):
        return self.auth_state


async def test_refresh_user_follows_the_file(make_auth, userlist):
    auth = make_auth()
    alice = FakeUser(name="alice", auth_state=None)
    assert await auth.refresh_user(alice) == {"admin": True, "groups": ["teachers"]}
    edit(userlist, "alice@example.org group:x\n")
    assert await auth.refresh_user(alice) == {"admin": False, "groups": ["x"]}
    edit(userlist, "bob@example.org\n")
    assert await auth.refresh_user(alice) is False


async def test_refresh_user_with_auth_state_refreshes_tokens(make_auth, provider, userlist):
    auth = make_auth(enable_auth_state=True)
    model = await login(auth, provider, email="bob@example.org")
    bob = FakeUser(name="bob", auth_state=model["auth_state"])
    provider.expire_access_tokens()  # forces the refresh_token grant
    refreshed = await auth.refresh_user(bob)
    assert refreshed["admin"] is False and refreshed["groups"] == ["physics"]
    assert refreshed["auth_state"]["access_token"] != model["auth_state"]["access_token"]
    provider.refresh_tokens.clear()
    provider.expire_access_tokens()
    assert await auth.refresh_user(bob) is False  # tokens dead: fresh login needed


# ---- system users ----------------------------------------------------------------------------


async def test_first_login_creates_account_and_home_once(make_auth, provider, fake_su):
    auth = make_auth(home_template="/srv/template", template_readonly=True, home_mode=0o750)
    await login(auth, provider, email="alice@example.org")
    await login(auth, provider, email="alice@example.org")
    user = SimpleNamespace(name="alice", admin=True)
    await auth.add_user(user)
    await auth.pre_spawn_start(user, SimpleNamespace(args=[]))
    assert fake_su.calls == [
        ("ensure", "alice", "/srv/homes/alice", 0o750),
        ("populate", "alice", "/srv/template", True),
    ]


async def test_hub_start_add_user_is_cheap(make_auth, fake_su, caplog):
    auth = make_auth()
    caplog.set_level(logging.WARNING)
    await auth.add_user(orm.User(name="alice"))
    await auth.add_user(orm.User(name="zed"))
    assert fake_su.calls == []
    assert "user=zed is in the hub database but not in the userlist" in caplog.text
    spawner = SimpleNamespace(args=["--debug"])
    # after restart: ensured here
    await auth.pre_spawn_start(SimpleNamespace(name="alice"), spawner)
    # and the server re-asks the hub about cookies within auth_refresh_age / 2
    assert spawner.args == ["--debug", "--HubOAuth.cache_max_age=30"]
    assert fake_su.names("ensure") == ["alice"]
    assert fake_su.names("populate") == []  # no template configured


async def test_existing_account_refused(make_auth, provider, fake_su):
    fake_su.existing.add("dave")
    msg = await refused(make_auth(), provider, email="dave")
    assert "existing account that this hub did not create" in msg


async def test_account_failure_is_500(make_auth, provider, fake_su):
    fake_su.fail.add("dave")
    with pytest.raises(HTTPError) as exc:
        await login(make_auth(), provider, email="dave")
    assert exc.value.status_code == 500


async def test_no_system_users_when_disabled(make_auth, provider, fake_su):
    await login(make_auth(create_system_users=False), provider, email="dave")
    assert fake_su.calls == []


# ---- admin page sync ---------------------------------------------------------------------------


async def test_admin_page_add_writes_identity(make_auth, userlist, fake_su):
    auth = make_auth()
    name = auth.normalize_username("Frank@Example.org")  # what POST /hub/api/users does first
    await auth.add_user(SimpleNamespace(name=name, admin=True))
    await auth.add_user(SimpleNamespace(name="gina", admin=False))  # POST /users/gina: raw name
    assert userlist.read_text() == USERLIST + "Frank@Example.org admin\ngina\n"
    assert auth.userlist_entry("frank").admin is True
    assert fake_su.names("ensure") == ["frank", "gina"]


async def test_admin_page_add_without_sync_leaves_file(make_auth, userlist):
    auth = make_auth(sync_admin_page_changes=False)
    await auth.add_user(SimpleNamespace(name="gina", admin=False))
    assert userlist.read_text() == USERLIST


async def test_admin_page_add_reserved_name_fails(make_auth):
    with pytest.raises(ValueError, match="reserved"):
        await make_auth().add_user(SimpleNamespace(name="svc", admin=False))


async def test_admin_page_delete_removes_line_and_locks(make_auth, provider, userlist, fake_su):
    auth = make_auth(on_removal="lock", removed_homes_archive_dir="/srv/archive")
    await login(auth, provider, email="bob@example.org")
    await auth.delete_user(SimpleNamespace(name="bob"))
    await auth.background.wait()
    assert "bob@" not in userlist.read_text()
    assert "# teacher" in userlist.read_text()
    assert fake_su.calls[-2:] == [("lock", "bob"), ("archive", "bob", "/srv/archive")]
    # back in the list: unlocked at the next login
    edit(userlist, userlist.read_text() + "bob@example.org\n")
    await login(auth, provider, email="bob@example.org")
    assert fake_su.names("unlock") == ["bob"]


# ---- removal actions -----------------------------------------------------------------------------


class FakeSpawner(SimpleNamespace):
    pending = None


class FakeHubUser:
    def __init__(self, name, servers):
        self.name = name
        self.spawners = {s: FakeSpawner(name=s, active=True) for s in servers}
        self.stopped = []

    async def stop(self, server_name):
        self.stopped.append(server_name)
        self.spawners[server_name].active = False


class FakeApp(Configurable):
    def __init__(self, users):
        super().__init__()
        self.users = users
        self.routes_deleted = []
        self.proxy = SimpleNamespace(delete_user=self._delete_route)

    async def _delete_route(self, user, server_name):
        self.routes_deleted.append((user.name, server_name))


@pytest.mark.parametrize(
    "mode, stops, locks",
    [("revoke", [], []), ("stop", ["", "gpu"], []), ("lock", ["", "gpu"], ["bob"])],
    ids=["revoke", "stop", "lock"],
)
async def test_removal_from_file(make_auth, provider, userlist, fake_su, mode, stops, locks):
    bob = FakeHubUser("bob", ["", "gpu"])
    app = FakeApp({"bob": bob})
    auth = make_auth(on_removal=mode, parent=app)
    await login(auth, provider, email="bob@example.org")
    edit(userlist, USERLIST.replace("bob@example.org group:physics\n", ""))
    await auth.poll_userlist()
    await auth.poll_userlist()  # second poll: no second removal
    await auth.background.wait()
    assert bob.stopped == stops
    assert app.routes_deleted == [("bob", s) for s in stops]
    assert fake_su.names("lock") == locks


# ---- presets --------------------------------------------------------------------------------------


async def test_github_preset_uses_login(make_auth, provider, userlist):
    userlist.write_text("Octo-Cat admin\n")
    auth = make_auth(UserlistGitHubOAuthenticator, username_claim="login")
    model = await login(auth, provider, login="octo-cat", email=None)
    assert (model["name"], model["admin"]) == ("octo-cat", True)


async def test_google_preset_keeps_domain_and_checks_verified(make_auth, provider, userlist):
    auth = make_auth(UserlistGoogleOAuthenticator, domain_rules={})
    assert auth.strip_domain is False
    model = await login(auth, provider, email="carol@gmail.com", verified_email=True, hd="")
    assert model["name"] == "carol-gmail-com"
    msg = await refused(auth, provider, email="carol@gmail.com", verified_email=False)
    assert "is not verified" in msg


def test_mixin_applies_to_any_oauthenticator(provider, userlist):
    from oauthenticator.gitlab import GitLabOAuthenticator

    class UserlistGitLab(UserlistAuthenticator, GitLabOAuthenticator):
        pass

    auth = UserlistGitLab(userlist_file=str(userlist), system_users=FakeSystemUsers())
    assert auth.userlist_entry("dave").identity == "dave"
    assert auth.manage_groups is True


@pytest.mark.parametrize("mode", [0o600, 0o1777, -1], ids=oct)
def test_bad_home_mode_rejected(make_auth, mode):
    with pytest.raises(TraitError, match="home_mode"):
        make_auth(home_mode=mode)


def test_archive_without_stop_warns(make_auth, caplog):
    caplog.set_level(logging.WARNING)
    make_auth(removed_homes_archive_dir="/srv/archive")
    assert "removed_homes_archive_dir needs on_removal" in caplog.text


async def test_background_poll_starts_with_the_loop(make_auth, userlist, fake_su):
    auth = make_auth(userlist_poll_interval=0.01, on_removal="lock")
    await auth.provisioner.ensure("bob")
    assert auth.background.polling
    edit(userlist, USERLIST.replace("bob@example.org group:physics\n", ""))
    for _ in range(200):
        if fake_su.names("lock"):
            break
        await asyncio.sleep(0.01)
    assert fake_su.names("lock") == ["bob"]


async def test_admin_groups_from_file_groups(make_auth, provider, userlist):
    auth = make_auth(admin_groups={"physics"})
    model = await login(auth, provider, email="bob@example.org")
    assert model["admin"] is True
    bob = FakeUser(name="bob", auth_state=None)
    assert (await auth.refresh_user(bob))["admin"] is True  # refresh agrees with login
    edit(userlist, "bob@example.org group:chemistry\n")
    assert (await auth.refresh_user(bob))["admin"] is False
    assert (await login(auth, provider, email="bob@example.org"))["admin"] is False


@pytest.mark.parametrize("identity", ["@gmail.com", "   "], ids=["empty-local-part", "blank"])
async def test_unmappable_identity_is_rejected_cleanly(make_auth, provider, identity):
    auth = make_auth()
    assert await login(auth, provider, email=identity) is None
    assert auth.validate_username("alice") and not auth.validate_username("Alice@x")


async def test_admin_page_add_rolled_back_when_the_line_would_not_apply(make_auth, userlist):
    auth = make_auth(username_prefix="jh-")
    # POST /users/jh-zoe (no normalization): "jh-zoe" is a valid name, it maps to itself
    await auth.add_user(SimpleNamespace(name="jh-zoe", admin=False))
    assert "jh-zoe\n" in userlist.read_text()
    # "zed" would be user jh-zed, never zed: refused, file unchanged
    before = userlist.read_text()
    with pytest.raises(ValueError, match="could not be added to the userlist as 'zed'"):
        await auth.add_user(SimpleNamespace(name="zed", admin=False))
    assert userlist.read_text() == before
    # a broken file: the error is reported and the line is not left behind
    edit(userlist, before + "oops admn\n")
    with pytest.raises(ValueError, match="unknown token 'admn'"):
        await auth.add_user(SimpleNamespace(name="jh-amy", admin=False))
    assert userlist.read_text() == before + "oops admn\n"


async def test_reserved_usernames_config(make_auth, provider, userlist):
    userlist.write_text("dave\nops-bot\n")
    auth = make_auth(reserved_usernames={"ops-bot"})
    assert auth.userlist_entry("dave") is None  # an invalid file is not used at all
    assert [str(e).split(": ", 1)[1] for e in auth.userlist.file.errors] == [
        "identity 'ops-bot': 'ops-bot' is a reserved or system account name and is never handed out"
    ]
    assert "reserved or system account" in await refused(auth, provider, email="ops-bot")


# ---- one config section for the feature ----------------------------------------------------------

LOGIN_CLASSES = [UserlistOAuthenticator, UserlistGitHubOAuthenticator, UserlistGoogleOAuthenticator]


def by_config(cls, cfg, fake_su):
    return cls(config=cfg, system_users=fake_su, system_names_loader=lambda uid_min: ())


@pytest.mark.parametrize("cls", LOGIN_CLASSES, ids=lambda c: c.__name__)
def test_one_section_configures_every_login_class(cls, userlist, fake_su):
    cfg = Config()
    cfg.UserlistAuthenticator.userlist_file = str(userlist)
    cfg.UserlistAuthenticator.home_root = "/srv/people"
    cfg.UserlistAuthenticator.on_removal = "lock"
    cfg.UserlistAuthenticator.removed_homes_archive_dir = "/srv/archive"
    auth = by_config(cls, cfg, fake_su)
    auth.background.stop_polling()
    assert auth.userlist_entry("dave").identity == "dave"
    assert (auth.home_root, auth.on_removal) == ("/srv/people", "lock")
    assert auth.account_spec_for("dave").home == "/srv/people/dave"
    assert auth.removal.archive_dir == "/srv/archive"


@pytest.mark.parametrize("cls", LOGIN_CLASSES, ids=lambda c: c.__name__)
def test_no_option_lives_in_a_mixin_section(cls):
    ours = [k for k in cls.mro() if k.__module__.startswith("jupyterhub_lab_ext")]
    sections = {k.__name__ for k in ours}
    assert not {s for s in sections if s.endswith("Mixin") or s == "UserlistAuthConfig"}
    owners = {}
    for name in cls.class_trait_names(config=True):
        owner = next(k for k in cls.mro() if name in vars(k))
        if owner.__module__.startswith("jupyterhub_lab_ext"):
            owners[name] = owner.__name__
    assert owners["userlist_file"] == owners["on_removal"] == "UserlistAuthenticator"
    assert set(owners.values()) <= {"UserlistAuthenticator", "OIDCDiscovery"}
    # test seams are constructor arguments, not options
    assert not {"system_users", "system_names_loader"} & set(cls.class_trait_names())


def test_old_section_names_configure_nothing(userlist, fake_su):
    cfg = Config()
    cfg.UserlistAuthenticatorMixin.userlist_file = str(userlist)
    cfg.UserlistAuthConfig.userlist_file = str(userlist)
    with pytest.raises(ValueError, match="userlist_file must be set"):
        by_config(UserlistOAuthenticator, cfg, fake_su)


def test_default_system_users_follow_the_options(userlist, tmp_path):
    cfg = Config()
    cfg.UserlistAuthenticator.userlist_file = str(userlist)
    cfg.UserlistAuthenticator.system_users_state_dir = str(tmp_path / "state")
    cfg.UserlistAuthenticator.allow_existing_system_users = True
    auth = UserlistOAuthenticator(config=cfg, system_names_loader=lambda uid_min: ())
    auth.background.stop_polling()
    assert auth.system_users.registry.state_dir == str(tmp_path / "state")
    assert auth.system_users.allow_existing is True


@pytest.mark.parametrize(
    "option, value",
    [
        ("userlist_poll_interval", -1.0),
        ("uid_min", 0),
        ("system_gid", 0),
        ("home_mode", 0o055),
        ("username_prefix", "Jh-"),
        ("domain_rules", {"example.org": "Not a tag"}),
    ],
)
def test_bad_values_from_a_config_file_are_refused(userlist, fake_su, option, value):
    cfg = Config()
    cfg.UserlistAuthenticator.userlist_file = str(userlist)
    cfg.UserlistAuthenticator[option] = value
    with pytest.raises(TraitError, match=option):
        by_config(UserlistOAuthenticator, cfg, fake_su)


# ---- the admin-page identity memo (pure, with a clock) ------------------------------------------


def test_identity_memo_remembers_typed_identities_briefly_and_never_provider_ones():
    now = [0.0]
    memo = IdentityMemo(size=2, ttl=120.0, clock=lambda: now[0])
    memo.normalized("Frank@Example.org", "frank")
    assert memo.identity_for("frank") == "Frank@Example.org"
    assert memo.identity_for("frank") == "frank"  # used once
    memo.from_provider("Eve@Example.org")  # a login: oauthenticator normalizes it next
    memo.normalized("Eve@Example.org", "eve")
    assert memo.identity_for("eve") == "eve"
    memo.normalized("Gina@Example.org", "gina")
    now[0] = 120.0
    assert memo.identity_for("gina") == "gina"  # too old
    for n in range(3):  # bounded: the oldest goes first
        memo.normalized(f"u{n}@x.org", f"u{n}")
    assert [memo.identity_for(f"u{n}") for n in range(3)] == ["u0", "u1@x.org", "u2@x.org"]
