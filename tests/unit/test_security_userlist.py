"""Security properties of the userlist file: bad input names file:line and keeps the last good
list; odd files (FIFO, directory, symlink) never hang or break the hub; edits never inject."""

from __future__ import annotations

import logging
import os
import threading

import pytest

from jupyterhub_lab_ext.auth.userlist import UserlistParseError, parse_userlist
from jupyterhub_lab_ext.auth.userlist_file import (
    UserlistFile,
    load_userlist,
    remove_entry,
    set_entry,
)

GOOD = "alice@example.org admin\nbob\n"


def bump(path) -> None:
    """Make sure the next stat() sees a new file version even within one mtime tick."""
    st = os.stat(path)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 10_000_000))


def bounded(fn, path):
    """Run ``fn()`` in a thread; if it blocks on the FIFO at ``path``, unblock it (so no lock
    stays held for the next test) and fail. Returns ``fn()``'s result or raises its error."""
    box: dict = {}

    def run():
        try:
            box["value"] = fn()
        except BaseException as e:  # noqa: BLE001 - handed to the test
            box["error"] = e

    t = threading.Thread(target=run, daemon=True)
    t.start()
    t.join(30)
    if t.is_alive():
        for _ in range(3):  # a writer that opens and closes gives the reader EOF
            try:
                os.close(os.open(os.path.realpath(path), os.O_WRONLY | os.O_NONBLOCK))
            except OSError:
                pass
            t.join(5)
        pytest.fail(f"reading {path} blocked")
    if "error" in box:
        raise box["error"]
    return box["value"]


def get_bounded(ul: UserlistFile):
    return bounded(ul.get, ul.path)


@pytest.fixture
def path(tmp_path):
    p = tmp_path / "userlist"
    p.write_text(GOOD)
    return p


# ---- the file is replaced by something that is not a regular file ---------------------------


def _fifo(p):
    os.mkfifo(p)


def _directory(p):
    p.mkdir()


def _dangling(p):
    p.symlink_to(p.parent / "gone")


def _devnull(p):
    p.symlink_to("/dev/null")  # a device that reads as an empty list


@pytest.mark.parametrize("replace", [_fifo, _directory, _dangling, _devnull])
def test_replaced_by_non_file_keeps_last_good_list(path, replace, caplog):
    ul = UserlistFile(str(path), log=logging.getLogger("t"))
    assert [e.username for e in get_bounded(ul).entries] == ["alice-example-org", "bob"]
    path.unlink()
    replace(path)
    with caplog.at_level(logging.ERROR):
        current = get_bounded(ul)
    assert [e.username for e in current.entries] == ["alice-example-org", "bob"]
    assert ul.errors and str(ul.errors[0]).startswith(f"{path}:0:")
    assert "keeping the last good list" in caplog.text


def test_fifo_as_first_list_refuses_everyone_without_hanging(tmp_path):
    p = tmp_path / "userlist"
    os.mkfifo(p)
    with pytest.raises(Exception, match="could not be loaded"):
        get_bounded(UserlistFile(str(p)))


def test_admin_edit_of_fifo_does_not_hang(tmp_path):
    p = tmp_path / "userlist"
    os.mkfifo(p)
    with pytest.raises(OSError, match="not a regular file"):
        bounded(lambda: set_entry(str(p), "carol"), p)


def test_symlinked_userlist_is_read_and_stays_a_symlink(tmp_path):
    real = tmp_path / "real-userlist"
    real.write_text(GOOD)
    link = tmp_path / "userlist"
    link.symlink_to(real)
    assert len(load_userlist(str(link))) == 2
    assert set_entry(str(link), "carol")
    assert link.is_symlink() and real.read_text() == GOOD + "carol\n"


# ---- bad bytes and odd whitespace ------------------------------------------------------------


def test_invalid_utf8_names_line_and_keeps_last_good(path):
    ul = UserlistFile(str(path))
    get_bounded(ul)
    path.write_bytes(b"alice@example.org admin\nbob\ncar\xffol\n")
    bump(path)
    assert len(get_bounded(ul)) == 2
    assert [str(e) for e in ul.errors] == [f"{path}:3: not valid UTF-8 (invalid start byte)"]


@pytest.mark.parametrize(
    "text, expected",
    [
        ("\ufeffalice admin\r\nbob\r\n", [("alice", True), ("bob", False)]),
        ("alice\tadmin\n\n   bob   \n", [("alice", True), ("bob", False)]),
        ("alice admin # note\r\n# bob\r\n", [("alice", True)]),
        ("alice\u00a0admin\n", [("alice", True)]),  # NBSP separates tokens, as any whitespace
        ("alice\rbob\n", [("alice", False), ("bob", False)]),  # lone CR ends a line
    ],
    ids=["bom-crlf", "tabs-blank", "comments", "nbsp", "lone-cr"],
)
def test_odd_whitespace_parses_predictably(text, expected):
    entries = parse_userlist(text).entries
    assert [(e.identity, e.admin) for e in entries] == expected


@pytest.mark.parametrize(
    "text, lineno, message",
    [
        ("alice\nbob root\n", 2, "unknown token 'root'"),
        ("alice\nadmin\n", 2, "not an identity"),
        ("alice\ngroup:x\n", 2, "not an identity"),
        ("alice\nbob group:\n", 2, "bad group token"),
        ("alice\nALICE\n", 2, "duplicate identity"),
        ("kate\n\u212aate\n", 2, "both map to system username 'kate'"),
        ("sam\n\u017fam\n", 2, "both map to system username 'sam'"),
        ("alice\nroot\n", 2, "reserved"),
        ("alice\n@example.org\n", 2, "not a valid email"),
    ],
)
def test_bad_lines_name_the_line(text, lineno, message):
    with pytest.raises(UserlistParseError) as exc:
        parse_userlist(text, path="/etc/ul", reserved=lambda n: "reserved" if n == "root" else None)
    assert f"/etc/ul:{lineno}: " in str(exc.value) and message in str(exc.value)


# ---- edits: never a second line, never a broken file -----------------------------------------

HOSTILE_IDENTITIES = [
    "eve\nalice admin",
    "eve\r\nx admin",
    "eve\radmin",
    "eve\u2028admin",
    "eve\u2029admin",
    "eve\x85admin",
    "eve\x0badmin",
    "eve\x0cadmin",
    "eve\x1cadmin",
    "eve\x1eadmin",
    "eve admin",
    "eve\u00a0admin",
    "eve\u3000admin",
    "eve#admin",
    "eve\x00",
    "eve\x1b[2J",
    "eve\u200b",
    "eve\u202e",
    "admin",
    "Admin",
    "group:staff",
    "",
]


@pytest.mark.parametrize("identity", HOSTILE_IDENTITIES, ids=repr)
def test_set_entry_refuses_hostile_identity(path, identity):
    with pytest.raises(ValueError):
        set_entry(str(path), identity)
    assert path.read_text() == GOOD


@pytest.mark.parametrize("group", ["a b", "a\nb", "a#b", "a,b", "a/b", ""], ids=repr)
def test_set_entry_refuses_hostile_group(path, group):
    with pytest.raises(ValueError):
        set_entry(str(path), "carol", groups=[group])
    assert path.read_text() == GOOD


def test_remove_entry_finds_first_line_of_bom_file(tmp_path):
    """A file saved with a BOM: deleting its first user must really revoke them."""
    p = tmp_path / "userlist"
    p.write_bytes("\ufeffalice@example.org admin\r\nbob\r\n".encode())
    assert remove_entry(str(p), "alice@example.org")
    assert [e.identity for e in load_userlist(str(p)).entries] == ["bob"]


def test_set_entry_updates_first_line_of_bom_file_in_place(tmp_path):
    p = tmp_path / "userlist"
    p.write_bytes("\ufeffalice@example.org\r\nbob\r\n".encode())
    assert set_entry(str(p), "ALICE@example.org", admin=True)
    entries = load_userlist(str(p)).entries
    assert [(e.identity, e.admin) for e in entries] == [("alice@example.org", True), ("bob", False)]


def test_lookalike_edit_does_not_touch_listed_line(path):
    """Removing "\\u212aate" must not delete the line of "kate" (and vice versa)."""
    path.write_text(GOOD + "kate\n")
    assert not remove_entry(str(path), "\u212aate")
    assert "kate\n" in path.read_text()


def test_long_identity_written_and_read_back(path):
    identity = "a" * 300 + "@example.org"
    assert set_entry(str(path), identity)
    entry = load_userlist(str(path)).find_identity(identity)
    assert entry is not None and len(entry.username) == 32


# ---- the admin CLI on odd files -----------------------------------------------------------------


def test_cli_check_of_fifo_fails_fast_naming_the_file(tmp_path, capsys):
    from jupyterhub_lab_ext.cli import main as cli

    p = tmp_path / "userlist"
    os.mkfifo(p)
    rc = bounded(lambda: cli.main(["userlist", "check", str(p), "--no-system-accounts"]), p)
    assert rc == 1
    assert f"{p}:0: cannot read" in capsys.readouterr().err


def test_cli_check_names_bad_line_of_crlf_bom_file(tmp_path, capsys):
    from jupyterhub_lab_ext.cli import main as cli

    p = tmp_path / "userlist"
    p.write_bytes("\ufeffalice admin\r\nbob superuser\r\n".encode())
    assert cli.main(["userlist", "check", str(p), "--no-system-accounts"]) == 1
    assert f"{p}:2: unknown token 'superuser'" in capsys.readouterr().err


# ---- a list any local user could rewrite -------------------------------------------------------

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="chown to another uid needs root")


@needs_root
@pytest.mark.parametrize(
    "file_mode, dir_mode, file_owner, message",
    [
        (0o666, 0o755, 0, "writable by everyone (mode 666)"),
        (0o646, 0o755, 0, "writable by everyone"),
        (0o644, 0o777, 0, "is writable by everyone (mode 777)"),
        (0o644, 0o1777, 4242, "any local user could replace it"),  # planted in /tmp-like dir
    ],
)
def test_world_writable_list_is_refused_and_last_good_kept(
    tmp_path, file_mode, dir_mode, file_owner, message
):
    d = tmp_path / "etc"
    d.mkdir()
    p = d / "userlist"
    p.write_text(GOOD)
    ul = UserlistFile(str(p))
    assert len(get_bounded(ul)) == 2
    p.write_text(GOOD + "mallory admin\n")
    p.chmod(file_mode)
    os.chown(p, file_owner, file_owner)
    d.chmod(dir_mode)
    bump(p)
    assert [e.identity for e in get_bounded(ul).entries] == ["alice@example.org", "bob"]
    assert message in str(ul.errors[0]) and str(ul.errors[0]).startswith(f"{p}:0:")
    with pytest.raises(OSError):  # the admin page does not edit it either
        set_entry(str(p), "carol")


@needs_root
@pytest.mark.parametrize(
    "file_mode, dir_mode, file_owner",
    [(0o644, 0o755, 0), (0o664, 0o775, 4242), (0o600, 0o1777, 0), (0o640, 0o700, 4242)],
)
def test_private_or_group_managed_list_loads(tmp_path, file_mode, dir_mode, file_owner):
    d = tmp_path / "etc"
    d.mkdir()
    p = d / "userlist"
    p.write_text(GOOD)
    p.chmod(file_mode)
    os.chown(p, file_owner, file_owner)
    d.chmod(dir_mode)
    assert len(load_userlist(str(p))) == 2
