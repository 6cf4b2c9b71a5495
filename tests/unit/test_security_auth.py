"""Security properties of the userlist authenticator, driven through a fake provider.

Hostile identities (look-alikes, control characters, option-like names, reserved names),
email_verified claims in odd shapes, and the admin page "add user" with hostile names: a
forged identity never gets someone else's account and nothing hostile reaches the userlist.
"""

from __future__ import annotations

import os
from types import SimpleNamespace

import pytest
from fakes_oauth import FakeHTTPClient, FakeProvider
from tornado.web import HTTPError

from jupyterhub_lab_ext.accounts.policy import validate_spec
from jupyterhub_lab_ext.accounts.system_users import Account, ExistingAccountError
from jupyterhub_lab_ext.auth.authenticator import UserlistOAuthenticator
from jupyterhub_lab_ext.auth.userlist import parse_userlist

USERLIST = """\
alice@example.org admin
kate
sam@gmail.com
bob
"""


class FakeSystemUsers:
    def __init__(self, existing=()):
        self.existing = set(existing)
        self.ensured: list[str] = []

    async def ensure_account(self, spec):
        validate_spec(spec, 1000, 1000)  # the real checks on what would reach useradd
        self.ensured.append(spec.name)
        if spec.name in self.existing:
            raise ExistingAccountError(f"account {spec.name!r} exists and is not ours")
        return Account(spec.name, 2000, 2000, spec.home, created=True)

    async def populate_home(self, account, template, *, readonly=False):
        return 0

    def accounts(self):
        return {}


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
    return FakeSystemUsers(existing={"olduser"})


@pytest.fixture
def make_auth(userlist, provider, fake_su):
    made = []

    def make(**kw):
        cfg = dict(provider.config)
        cfg.update(
            userlist_file=str(userlist),
            username_claim="email",
            domain_rules={"example.org": ""},
            system_users=fake_su,
            system_names_loader=lambda uid_min: frozenset({"daemon", "svc"}),
            home_root="/srv/homes",
            userlist_poll_interval=0,
        )
        cfg.update(kw)
        auth = UserlistOAuthenticator(**cfg)
        made.append(auth)
        return auth

    yield make
    for a in made:
        a.background.stop_polling()


async def login(auth, provider, **claims):
    return await auth.get_authenticated_user(provider.handler_for(claims), None)


async def refused(auth, provider, **claims) -> str:
    with pytest.raises(HTTPError) as exc:
        await login(auth, provider, **claims)
    assert exc.value.status_code == 403
    return exc.value.log_message


# ---- look-alike identities -------------------------------------------------------------------

LOOKALIKES = [
    ("kelvin-sign", "\u212aate"),  # casefold() gives "kate", NFKD gives "Kate"
    ("long-s", "\u017fam@gmail.com"),  # casefold() and NFKD give "sam"
    ("fullwidth", "\uff42\uff4f\uff42"),  # NFKD gives "bob"
    ("fullwidth-email", "\uff41lice@example.org"),
    ("zero-width", "bob\u200b"),
    ("combining", "bo\u0301b"),
    ("turkish-dotted-I", "\u0130kate"),
    ("trailing-space", "bob "),
    ("leading-space", " bob"),
    ("nul", "bob\x00"),
    ("newline", "bob\n"),
    ("other-domain", "alice@example.org.evil.com"),
    ("domain-at-trick", "alice@evil.com@example.org"),
]


@pytest.mark.parametrize("identity", [c[1] for c in LOOKALIKES], ids=[c[0] for c in LOOKALIKES])
async def test_lookalike_identity_never_gets_the_listed_account(
    make_auth, provider, fake_su, identity
):
    auth = make_auth()
    await refused(auth, provider, email=identity)
    assert fake_su.ensured == []


@pytest.mark.parametrize(
    "identity, name",
    [("KATE", "kate"), ("Kate", "kate"), ("SAM@GMAIL.COM", "sam-gmail-com"), ("Bob", "bob")],
)
async def test_ascii_case_still_matches(make_auth, provider, identity, name):
    model = await login(make_auth(), provider, email=identity)
    assert model["name"] == name


# ---- reserved, system and foreign accounts ---------------------------------------------------

RESERVED = ["root", "Root", "ROOT", "daemon", "svc", "nobody", "admin", "sudo", "www-data"]


@pytest.mark.parametrize("identity", RESERVED)
async def test_reserved_names_refused_even_when_listed(
    make_auth, provider, userlist, fake_su, identity
):
    userlist.write_text(USERLIST + f"{identity}\n")
    auth = make_auth()
    assert auth.userlist_entry(identity.lower()) is None  # the line itself is rejected
    await refused(auth, provider, email=identity)
    assert fake_su.ensured == []


async def test_existing_foreign_account_refused(make_auth, provider, userlist, fake_su):
    userlist.write_text(USERLIST + "olduser\n")
    message = await refused(make_auth(), provider, email="olduser")
    assert "did not create" in message


# ---- names that reach useradd ----------------------------------------------------------------

HOSTILE = [
    "-rf",
    "--help",
    "-o",
    "-u0",
    "..",
    "../../etc",
    "a/b",
    "x" * 200,
    "a:b",
    "$(id)",
    "`id`",
    "a;b",
    "\u212aate",
    "-",
    "_",
]


@pytest.mark.parametrize("identity", HOSTILE)
async def test_hostile_identity_is_listed_as_a_safe_name(make_auth, provider, userlist, identity):
    """Even a listed hostile identity becomes a plain name; argv never sees an option."""
    userlist.write_text(f"{identity}\n")
    auth = make_auth()
    model = await login(auth, provider, email=identity)
    name = model["name"]
    assert auth.validate_username(name) and not name.startswith("-") and len(name) <= 32
    assert auth.home_for(name) == os.path.join("/srv/homes", name)


# ---- email_verified --------------------------------------------------------------------------

UNVERIFIED = [False, "false", "False", "FALSE", " false ", 0, "0", "no", ""]


@pytest.mark.parametrize("value", UNVERIFIED, ids=repr)
@pytest.mark.parametrize("claim", ["email_verified", "verified_email"])
async def test_unverified_email_in_any_shape_refused(make_auth, provider, fake_su, claim, value):
    message = await refused(make_auth(), provider, email="sam@gmail.com", **{claim: value})
    assert "not verified" in message
    assert fake_su.ensured == []


@pytest.mark.parametrize("claims", [{}, {"email_verified": True}, {"email_verified": "true"}])
async def test_verified_or_absent_claim_accepted(make_auth, provider, claims):
    model = await login(make_auth(), provider, email="sam@gmail.com", **claims)
    assert model["name"] == "sam-gmail-com"


# ---- admin page "add user" -------------------------------------------------------------------


async def admin_add(auth, raw: str, admin: bool = False):
    """What POST /hub/api/users does: normalize, validate (400), then add_user."""
    name = auth.normalize_username(raw)
    if not auth.validate_username(name):
        return "invalid"
    try:
        await auth.add_user(SimpleNamespace(name=name, admin=admin))
    except ValueError as e:
        return f"refused: {e}"
    return name


INJECTIONS = [
    "mallory\nalice@example.org admin",
    "mallory\radmin",
    "mallory\r\nmallory2 admin",
    "mallory\u2028admin",
    "mallory\u0085admin",
    "mallory\x0badmin",
    "mallory\x1cadmin",
    "mallory admin",
    "mallory\tadmin",
    "mallory#admin",
    "mallory\x00",
    "mallory\u200b",
    "group:staff",
    "GROUP:staff",
    "admin",
]


@pytest.mark.parametrize("raw", INJECTIONS, ids=repr)
async def test_admin_add_never_injects_lines(make_auth, userlist, fake_su, raw):
    auth = make_auth(username_prefix="jh-")
    await admin_add(auth, raw)
    text = userlist.read_text()
    assert text.startswith(USERLIST)
    added = text[len(USERLIST) :]
    assert added.count("\n") <= 1 and "admin" not in added.lower()
    parsed = parse_userlist(text, username_for=auth.username_for_identity)
    assert [e.identity for e in parsed.entries if e.admin] == ["alice@example.org"]
    assert all(e.identity.isprintable() for e in parsed.entries)


async def test_admin_add_name_containing_newline_reaches_no_account(make_auth, userlist, fake_su):
    auth = make_auth()
    result = await admin_add(auth, "eve\nalice@example.org admin")
    assert result.startswith("refused") or result == "invalid"
    assert userlist.read_text() == USERLIST
    assert fake_su.ensured == []


async def test_failed_login_cannot_plant_identity_for_admin_add(make_auth, provider, userlist):
    """An unlisted look-alike login must not decide what the admin's "add bob2" writes."""
    auth = make_auth()
    await refused(auth, provider, email="\uff42\uff4f\uff42\uff12")  # fullwidth "bob2"
    assert await admin_add(auth, "bob2") == "bob2"
    assert userlist.read_text() == USERLIST + "bob2\n"
    # and the look-alike still cannot log in as bob2
    await refused(auth, provider, email="\uff42\uff4f\uff42\uff12")
    assert (await login(auth, provider, email="bob2"))["name"] == "bob2"


async def test_login_between_normalize_and_add_cannot_swap_identity(make_auth, provider, userlist):
    """POST /users normalizes every name first, then awaits add_user per name."""
    auth = make_auth()
    name = auth.normalize_username("carol@x.org")  # the admin's request
    await refused(auth, provider, email="carol@x-org")  # same POSIX name, other person
    await auth.add_user(SimpleNamespace(name=name, admin=False))
    assert userlist.read_text() == USERLIST + "carol@x.org\n"
    await refused(auth, provider, email="carol@x-org")


async def test_admin_add_of_lookalike_cannot_take_listed_account(make_auth, userlist):
    auth = make_auth()
    result = await admin_add(auth, "\u212aate")  # maps to "kate", which is listed
    assert auth.userlist_entry("kate").identity == "kate"
    assert result == "kate" and userlist.read_text() == USERLIST  # nothing rewritten


# ---- prefix tricks ---------------------------------------------------------------------------


@pytest.mark.parametrize("identity", ["jh-kate", "JH-KATE", "jh-\u212aate", "jh_kate"])
async def test_identity_spelling_the_prefixed_name_is_not_the_listed_user(
    make_auth, provider, fake_su, identity
):
    """With prefix jh-, 'kate' becomes jh-kate; an identity 'jh-kate' must not log in as her."""
    auth = make_auth(username_prefix="jh-")
    await refused(auth, provider, email=identity)
    assert fake_su.ensured == []


async def test_prefixed_spelling_and_plain_identity_in_one_file_is_an_error(
    make_auth, userlist, caplog
):
    userlist.write_text("kate\njh-kate\n")
    auth = make_auth(username_prefix="jh-")
    assert auth.userlist_entry("jh-kate") is None
    assert "both map to system username 'jh-kate'" in caplog.text


# ---- provider data of the wrong shape ----------------------------------------------------------


@pytest.mark.parametrize(
    "claims",
    [
        {"name": "bob"},
        {"email": None},
        {"email": ""},
        {"email": 5},
        {"email": ["bob"]},
        {"email": {"bob": 1}},
        {"email": True},
    ],
    ids=["missing", "null", "empty", "number", "list", "object", "bool"],
)
async def test_unusable_identity_claim_is_a_403_not_a_500(make_auth, provider, fake_su, claims):
    message = await refused(make_auth(), provider, **claims)
    assert "did not send a usable login or email" in message
    assert fake_su.ensured == []
