import logging
import os
import stat

import pytest

from jupyterhub_lab_ext.auth.naming import make_normalizer
from jupyterhub_lab_ext.auth.userlist import UserlistEntry, UserlistParseError, parse_userlist
from jupyterhub_lab_ext.auth.userlist_file import (
    UserlistFile,
    UserlistLoadError,
    load_userlist,
    remove_entry,
    set_entry,
)

NORM = make_normalizer(domain_rules={"example.org": ""})


def parse(text, **kw):
    kw.setdefault("username_for", NORM)
    return parse_userlist(text, path="ul", **kw)


def errors_of(text, **kw):
    with pytest.raises(UserlistParseError) as exc:
        parse(text, **kw)
    return [str(e) for e in exc.value.errors]


@pytest.mark.parametrize(
    "text",
    ["user.name@gmail.com admin\n", "jovyan admin\n", "jtyberg admin\njenny\nguido\n\n\n"],
    ids=["folberth-seed", "phi-seed", "deploy-docker-seed-trailing-blank"],
)
def test_seed_files_load_unchanged(text):
    ul = parse(text)
    assert ul.entries[0].admin is True
    assert all(e.groups == () for e in ul.entries)


def test_full_format():
    ul = parse(
        "# header comment\n"
        "\n"
        "  alice@example.org   admin  group:teachers   # the teacher\n"
        "bob@gmail.com group:physics group:physics GROUP:lab\n"
        "carol  # trailing comment\n"
        "dave\n",
    )
    assert ul.entries[0] == UserlistEntry("alice@example.org", "alice", True, ("teachers",), 3)
    assert ul.entries[1] == UserlistEntry(
        "bob@gmail.com", "bob-gmail-com", False, ("physics", "lab"), 4
    )
    assert ul.get("carol").lineno == 5
    assert ul.find_identity("ALICE@EXAMPLE.ORG").username == "alice"
    assert "alice" in ul.usernames and len(ul) == 4


def test_bom_at_start_is_ignored():
    assert parse("\ufeffjovyan admin\n").entries[0].identity == "jovyan"


@pytest.mark.parametrize(
    "text, expected",
    [
        ("alice admn\n", ["ul:1: unknown token 'admn' (expected 'admin' or 'group:NAME')"]),
        ("alice group:\n", ["ul:1: bad group token 'group:': expected group:NAME"]),
        ("admin alice\n", ["ul:1: line starts with 'admin', not an identity"]),
        ("alice\n\nAlice admin\n", ["ul:3: duplicate identity 'Alice' (first on line 1)"]),
        (
            "a.b@gmail.com\n# x\na_b@gmail.com\n",
            [
                "ul:3: identities 'a_b@gmail.com' (line 3) and 'a.b@gmail.com' (line 1) "
                "both map to system username 'a_b-gmail-com'"
            ],
        ),
        (
            "alice\nalice@example.org\n",
            [
                "ul:2: identities 'alice@example.org' (line 2) and 'alice' (line 1) "
                "both map to system username 'alice'"
            ],
        ),
        (
            "@example.org\n",
            [
                "ul:1: identity '@example.org': identity '@example.org' is not a valid email (empty part)"
            ],
        ),
        (
            "ok\nx y\nz group:a/b\n",
            [
                "ul:2: unknown token 'y' (expected 'admin' or 'group:NAME')",
                "ul:3: bad group token 'group:a/b': expected group:NAME",
            ],
        ),
    ],
    ids=[
        "typo",
        "empty-group",
        "no-identity",
        "duplicate",
        "collision",
        "strip-collision",
        "bad-email",
        "all-errors-reported",
    ],
)
def test_errors(text, expected):
    assert errors_of(text) == expected


def test_reserved_names_are_errors():
    errs = errors_of(
        "root admin\nsvc\nalice\n", reserved=lambda n: "reserved" if n in ("root", "svc") else None
    )
    assert errs == ["ul:1: identity 'root': reserved", "ul:2: identity 'svc': reserved"]


def test_load_userlist_utf8_and_errors(tmp_path):
    p = tmp_path / "userlist"
    p.write_bytes("josé@example.org admin\n".encode())
    assert load_userlist(str(p), username_for=NORM).entries[0].username == "jose"
    p.write_bytes(b"alice\nbob\xff\n")
    with pytest.raises(UserlistParseError) as exc:
        load_userlist(str(p))
    assert str(exc.value).startswith(f"{p}:2: not valid UTF-8")
    with pytest.raises(UserlistParseError, match="cannot read"):
        load_userlist(str(tmp_path / "missing"))


def test_hundred_thousand_lines(tmp_path):
    lines = [
        f"user{i}@gmail.com admin group:g{i % 5}" if i % 2 else f"login{i}" for i in range(100_000)
    ]
    p = tmp_path / "big"
    p.write_text("# big\n" + "\n".join(lines) + "\n")
    ul = load_userlist(str(p), username_for=NORM)
    assert len(ul) == 100_000
    assert ul.get("user99999-gmail-com").groups == ("g4",)
    assert ul.get("login99998").lineno == 100_000


# ---- hot reload ------------------------------------------------------------------------------


def bump(p, text):
    st = os.stat(p)
    p.write_text(text)
    os.utime(p, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000))


def test_userlist_file_hot_reload(tmp_path, caplog):
    p = tmp_path / "userlist"
    p.write_text("alice admin\n")
    uf = UserlistFile(str(p), username_for=NORM, log=logging.getLogger("t"))
    first = uf.get()
    assert first.get("alice").admin and uf.generation == 1
    assert uf.get() is first  # unchanged file: cached object
    bump(p, "alice\nbob\n")
    second = uf.get()
    assert not second.get("alice").admin and second.get("bob") and uf.generation == 2

    caplog.set_level(logging.ERROR, "t")
    bump(p, "alice\nbob bogus\n")
    assert uf.get() is second  # last good list stays in force
    assert uf.get() is second
    assert [str(e) for e in uf.errors] == [
        f"{p}:2: unknown token 'bogus' (expected 'admin' or 'group:NAME')"
    ]
    assert len([r for r in caplog.records if "is invalid" in r.getMessage()]) == 1  # logged once
    bump(p, "alice\nbob bogus2\n")
    uf.get()
    assert len([r for r in caplog.records if "is invalid" in r.getMessage()]) == 2  # new version

    p.unlink()
    assert uf.get() is second
    assert "cannot read" in str(uf.errors[0])
    p.write_text("carol\n")
    assert uf.get().get("carol")


def test_userlist_file_first_load_failure(tmp_path):
    p = tmp_path / "userlist"
    p.write_text("alice nope\n")
    uf = UserlistFile(str(p))
    with pytest.raises(UserlistLoadError) as exc:
        uf.get()
    assert f"{p}:1: unknown token" in str(exc.value)
    with pytest.raises(UserlistLoadError):
        UserlistFile(str(tmp_path / "absent")).get()


# ---- edits -----------------------------------------------------------------------------------

ORIGINAL = "# staff\nalice admin   # teacher\n\nbob group:physics\n# end\n"


@pytest.mark.parametrize(
    "identity, kw, expected",
    [
        ("carol", {}, ORIGINAL + "carol\n"),
        (
            "carol@x.org",
            {"admin": True, "groups": ["a", "b"]},
            ORIGINAL + "carol@x.org admin group:a group:b\n",
        ),
        ("BOB", {"admin": True}, ORIGINAL.replace("bob group:physics", "bob admin group:physics")),
        (
            "alice",
            {"admin": False},
            ORIGINAL.replace("alice admin   # teacher", "alice   # teacher"),
        ),
        (
            "alice",
            {"groups": ["x"]},
            ORIGINAL.replace("alice admin   #", "alice admin group:x   #"),
        ),
    ],
    ids=["add", "add-admin-groups", "set-admin", "unset-admin-keeps-comment", "set-groups"],
)
def test_set_entry(tmp_path, identity, kw, expected):
    p = tmp_path / "userlist"
    p.write_text(ORIGINAL)
    os.chmod(p, 0o640)
    assert set_entry(str(p), identity, **kw) is True
    assert p.read_text() == expected
    assert stat.S_IMODE(os.stat(p).st_mode) == 0o640
    assert [f for f in os.listdir(tmp_path)] == ["userlist"]  # no temp files left


def test_set_entry_unchanged_and_missing_newline(tmp_path):
    p = tmp_path / "userlist"
    p.write_text("alice admin")
    ino = os.stat(p).st_ino
    assert set_entry(str(p), "alice", admin=True) is False
    assert os.stat(p).st_ino == ino
    assert set_entry(str(p), "bob") is True
    assert p.read_text() == "alice admin\nbob\n"
    new = tmp_path / "new"
    assert set_entry(str(new), "x") and new.read_text() == "x\n"


@pytest.mark.parametrize("bad", ["", "a b", "a#b"], ids=repr)
def test_set_entry_rejects_bad_identity(tmp_path, bad):
    with pytest.raises(ValueError):
        set_entry(str(tmp_path / "u"), bad)


def test_remove_entry(tmp_path):
    p = tmp_path / "userlist"
    p.write_text(ORIGINAL)
    assert remove_entry(str(p), "ALICE") is True
    assert p.read_text() == "# staff\n\nbob group:physics\n# end\n"
    assert remove_entry(str(p), "alice") is False
    assert remove_entry(str(p), "staff") is False  # comments are not identities
    parse(p.read_text())


def test_owner_and_mode_kept_on_edit(tmp_path):
    p = tmp_path / "userlist"
    p.write_text("alice\n")
    os.chmod(p, 0o600)
    owner = (65534, 65534) if os.geteuid() == 0 else (os.getuid(), os.getgid())
    if os.geteuid() == 0:
        os.chown(p, *owner)
    set_entry(str(p), "bob")
    st = os.stat(p)
    assert (st.st_uid, st.st_gid, st.st_mode & 0o777) == (*owner, 0o600)


def test_edit_through_symlink_keeps_the_link(tmp_path):
    real = tmp_path / "config" / "userlist"
    real.parent.mkdir()
    real.write_text("alice\n")
    link = tmp_path / "userlist"
    link.symlink_to(real)
    assert set_entry(str(link), "bob") and remove_entry(str(link), "alice")
    assert link.is_symlink() and real.read_text() == "bob\n"
