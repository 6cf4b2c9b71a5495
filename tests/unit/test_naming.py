import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jupyterhub_lab_ext.auth.naming import (
    MAX_LENGTH,
    RESERVED_NAMES,
    NamingError,
    load_system_names,
    make_normalizer,
    normalize_username,
    reserved_reason,
    validate_domain_rules,
    validate_prefix,
)
from jupyterhub_lab_ext.auth.userlist import UserlistParseError, parse_userlist

VALID = re.compile(r"[a-z_][a-z0-9_-]*")
RULES = validate_domain_rules({"example.org": "", "Students.Example.org": "stu"})


@pytest.mark.parametrize(
    "identity, prefix, expected",
    [
        ("jovyan", "", "jovyan"),
        ("Alice", "", "alice"),
        ("alice@example.org", "", "alice"),
        ("Alice@EXAMPLE.ORG", "", "alice"),
        ("bob@students.example.org", "", "bob-stu"),
        ("alice@gmail.com", "", "alice-gmail-com"),
        ("user.name@gmail.com", "", "user_name-gmail-com"),
        ("alice@evil-example.org", "", "alice-evil-example-org"),
        ("José.Müller@example.org", "", "jose_muller"),
        ("john smith", "", "john_smith"),
        ("123abc", "", "_123abc"),
        ("alice", "jh-", "jh-alice"),
        ("jh-alice", "jh-", "jh-alice"),
        ("alice@example.org", "jh-", "jh-alice"),
    ],
    ids=lambda v: v if isinstance(v, str) and v else "noprefix",
)
def test_normalize_table(identity, prefix, expected):
    assert normalize_username(identity, prefix=prefix, domain_rules=RULES) == expected


def test_domain_only_stripped_where_configured():
    n = make_normalizer(domain_rules={"example.org": ""})
    assert n("alice@example.org") == "alice"
    assert n("alice@sub.example.org") != "alice"
    assert n("alice@gmail.com") != "alice"


def test_long_names_are_cut_with_hash_and_stay_distinct():
    a = "a" * 40 + "@gmail.com"
    b = "a" * 40 + "x@gmail.com"
    na, nb = normalize_username(a), normalize_username(b)
    assert len(na) == MAX_LENGTH and len(nb) == MAX_LENGTH
    assert na != nb
    assert re.fullmatch(r"a+-[0-9a-f]{8}", na)
    assert normalize_username(na) == na


@pytest.mark.parametrize("bad", ["", "   ", "@gmail.com", "alice@"], ids=repr)
def test_bad_identities_raise(bad):
    with pytest.raises(NamingError):
        normalize_username(bad)


@pytest.mark.parametrize("prefix", ["1x-", "JH-", "a b", "x" * 30], ids=repr)
def test_bad_prefix(prefix):
    with pytest.raises(NamingError):
        validate_prefix(prefix)


@pytest.mark.parametrize(
    "rules", [{"": ""}, {"a@b": ""}, {"example.org": "Bad Tag"}, {"x.org": "x" * 17}], ids=repr
)
def test_bad_domain_rules(rules):
    with pytest.raises(NamingError):
        validate_domain_rules(rules)


def test_load_system_names_injected(tmp_path):
    defs = tmp_path / "login.defs"
    defs.write_text("UID_MIN 2000\n")
    passwd = [("root", "x", 0), ("svc", "x", 1500), ("alice", "x", 2000), ("nobody", "x", 65534)]
    names = load_system_names(str(defs), getpwall=lambda: passwd)
    assert {"root", "svc", "nobody"} <= names
    assert "alice" not in names
    assert RESERVED_NAMES <= names
    # no UID_MIN (or no file): 1000, so svc (1500) is a normal account then
    defs.write_text("# UID_MIN 2000\n")
    assert "svc" not in load_system_names(str(defs), getpwall=lambda: passwd)
    assert "svc" in load_system_names(str(defs), uid_min=1600, getpwall=lambda: passwd)


def test_reserved_reason():
    assert reserved_reason("root", set()) is not None
    assert reserved_reason("svc", {"svc"}) is not None
    assert reserved_reason("alice", lambda n: False) is None


# ---- properties ------------------------------------------------------------------------------

identities = st.one_of(
    st.text(min_size=1, max_size=60),
    st.builds(
        lambda a, b: f"{a}@{b}",
        st.text(st.characters(codec="utf-8"), min_size=1, max_size=40),
        st.sampled_from(["example.org", "gmail.com", "Students.Example.org", "x.y.z"]),
    ),
)
prefixes = st.sampled_from(["", "jh-", "u_"])


def _norm(identity, prefix):
    try:
        return normalize_username(identity, prefix=prefix, domain_rules=RULES)
    except NamingError:
        return None


@settings(max_examples=400, deadline=None)
@given(identities, prefixes)
def test_property_charset_length_idempotent(identity, prefix):
    name = _norm(identity, prefix)
    if name is None:
        return
    assert VALID.fullmatch(name), name
    assert len(name) <= MAX_LENGTH
    assert name.startswith(prefix)
    assert normalize_username(name, prefix=prefix, domain_rules=RULES) == name


@settings(max_examples=200, deadline=None)
@given(st.lists(identities, min_size=2, max_size=30), prefixes)
def test_property_collisions_never_silent(idents, prefix):
    """In a userlist, distinct identities either get distinct names or the parser says so."""
    tokens = [i for i in idents if i.split() == [i] and "#" not in i]
    unique = list({i.casefold(): i for i in tokens}.values())
    named = [(i, _norm(i, prefix)) for i in unique]
    named = [(i, n) for i, n in named if n is not None and i.lower() not in ("admin",)]
    named = [(i, n) for i, n in named if not i.lower().startswith("group:")]
    text = "\n".join(i for i, _ in named)
    names = [n for _, n in named]
    normalizer = make_normalizer(prefix=prefix, domain_rules=RULES)
    if len(set(names)) == len(names):
        ul = parse_userlist(text, username_for=normalizer)
        assert sorted(e.username for e in ul.entries) == sorted(names)
    else:
        with pytest.raises(UserlistParseError) as exc:
            parse_userlist(text, username_for=normalizer)
        assert "both map to system username" in str(exc.value)
