"""Home creation, template copy and archive on temporary directories.

Run as root (CI), files are handed to a made-up uid so ownership changes are checked; run as
an ordinary user, the user's own uid is used and the same properties are checked.
"""

from __future__ import annotations

import os
import stat
import tarfile
import tempfile
import threading
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jupyterhub_lab_ext.accounts.archive import archive_home
from jupyterhub_lab_ext.accounts.home_template import copy_template
from jupyterhub_lab_ext.accounts.homes import HomeError, make_home, make_parents


@pytest.fixture
def owner():
    if os.geteuid() == 0:
        return 54321, 54322
    return os.getuid(), os.getgid()


@pytest.fixture
def umask_077():
    old = os.umask(0o077)
    try:
        yield
    finally:
        os.umask(old)


def mode(path) -> int:
    return stat.S_IMODE(os.lstat(path).st_mode)


def owner_of(path) -> tuple[int, int]:
    st = os.lstat(path)
    return st.st_uid, st.st_gid


@pytest.fixture
def template(tmp_path):
    t = tmp_path / "template"
    (t / "nb" / "deep").mkdir(parents=True)
    (t / "nb" / "intro.ipynb").write_text('{"cells": []}')
    (t / "nb" / "deep" / "data.csv").write_text("a,b\n1,2\n")
    (t / "run.sh").write_text("#!/bin/sh\necho hi\n")
    (t / "run.sh").chmod(0o750)
    (t / "README.md").write_text("read me")
    os.utime(t / "README.md", ns=(1_600_000_000_000_000_000, 1_600_000_000_000_000_000))
    return t


@pytest.fixture
def home(tmp_path, owner):
    h = tmp_path / "homes" / "alice"
    make_home(str(h), *owner, 0o700, adopt_root_owned=False)
    return h


@pytest.fixture
def victim(tmp_path):
    """A directory outside the home that root must never write into."""
    v = tmp_path / "victim"
    v.mkdir()
    (v / "passwd").write_text("root:x:0:0::/root:/bin/bash\n")
    return v


def victim_untouched(victim):
    assert sorted(os.listdir(victim)) == ["passwd"]
    assert (victim / "passwd").read_text() == "root:x:0:0::/root:/bin/bash\n"


# -- make_home ------------------------------------------------------------------------------
@pytest.mark.parametrize("home_mode", [0o700, 0o750, 0o711], ids=oct)
def test_make_home_exact_mode_and_owner_despite_umask(tmp_path, owner, umask_077, home_mode):
    h = tmp_path / "nfs" / "homes" / "bob"
    assert make_home(str(h), *owner, home_mode, adopt_root_owned=False) is True
    assert owner_of(h) == owner and mode(h) == home_mode
    assert mode(h.parent) == 0o755 and mode(h.parent.parent) == 0o755  # parents made 0755
    # a second call keeps the home as it is (the user may have changed its mode)
    os.chmod(h, 0o755)
    assert make_home(str(h), *owner, home_mode, adopt_root_owned=False) is False
    assert mode(h) == 0o755


def test_make_home_refuses_symlink_and_file(tmp_path, owner, victim):
    root = tmp_path / "homes"
    root.mkdir()
    (root / "eve").symlink_to(victim)
    (root / "file").write_text("")
    for name in ("eve", "file"):
        with pytest.raises(HomeError, match="not a directory"):
            make_home(str(root / name), *owner, 0o700, adopt_root_owned=True)
    victim_untouched(victim)
    assert owner_of(victim) == (os.geteuid(), os.getegid())


def test_make_home_refuses_home_of_someone_else(home, owner):
    with pytest.raises(HomeError, match="owned by uid"):
        make_home(str(home), owner[0] + 1, owner[1], 0o700, adopt_root_owned=False)


@pytest.mark.skipif(os.geteuid() != 0, reason="adopting a root-owned home needs root")
def test_make_home_adopts_root_owned_dir_for_a_new_account(tmp_path):
    h = tmp_path / "homes" / "new"
    h.mkdir(parents=True, mode=0o755)
    with pytest.raises(HomeError):
        make_home(str(h), 54321, 54321, 0o700, adopt_root_owned=False)
    assert make_home(str(h), 54321, 54321, 0o700, adopt_root_owned=True) is False
    assert owner_of(h) == (54321, 54321) and mode(h) == 0o700
    # a populated root-owned directory (think home_root="/" and a user called "etc") never is
    etc = tmp_path / "homes" / "etc"
    etc.mkdir(mode=0o755)
    (etc / "shadow").write_text("root:!:1::::::\n")
    with pytest.raises(HomeError, match="not empty"):
        make_home(str(etc), 54321, 54321, 0o700, adopt_root_owned=True)
    assert owner_of(etc) == (0, 0) and mode(etc) == 0o755


@pytest.mark.parametrize("bad_mode", [0o777, 0o775], ids=oct)
def test_parents_writable_by_others_are_refused(tmp_path, owner, bad_mode):
    root = tmp_path / "homes"
    root.mkdir()
    root.chmod(bad_mode)
    with pytest.raises(HomeError, match="writable by group or others"):
        make_home(str(root / "carol"), *owner, 0o700, adopt_root_owned=False)
    assert not (root / "carol").exists()
    root.chmod(0o1777)  # sticky, like /tmp: fine
    make_parents(str(root))


# -- copy_template --------------------------------------------------------------------------
def test_copy_files_owner_and_modes(template, home, owner):
    report = copy_template(str(template), str(home), *owner)
    assert sorted(report.copied) == ["README.md", "nb/deep/data.csv", "nb/intro.ipynb", "run.sh"]
    assert report.written == 4 and report.skipped == [] and report.kept == []
    for rel in report.copied:
        assert owner_of(home / rel) == owner
        assert (home / rel).read_bytes() == (template / rel).read_bytes()
    for d in ("nb", "nb/deep"):
        assert owner_of(home / d) == owner and mode(home / d) == 0o755
    assert mode(home / "README.md") == 0o644 and mode(home / "run.sh") == 0o755
    assert os.stat(home / "README.md").st_mtime_ns == 1_600_000_000_000_000_000
    assert set(report.manifest) == set(report.copied)


def test_readonly_modes(template, home, owner):
    copy_template(str(template), str(home), *owner, readonly=True)
    assert mode(home / "README.md") == 0o444 and mode(home / "nb/intro.ipynb") == 0o444
    assert mode(home / "run.sh") == 0o555
    assert mode(home / "nb") == 0o755  # users can still save their own copies next to them


def test_never_overwrites_user_files(template, home, owner):
    (home / "README.md").write_text("my notes")
    (home / "nb").mkdir()
    (home / "nb" / "intro.ipynb").write_text("my version")
    for path in ("README.md", "nb", "nb/intro.ipynb"):
        os.chown(home / path, *owner)  # made by the user
    report = copy_template(str(template), str(home), *owner)
    assert (home / "README.md").read_text() == "my notes"
    assert (home / "nb" / "intro.ipynb").read_text() == "my version"
    assert sorted(report.kept) == ["README.md", "nb/intro.ipynb"]
    assert sorted(report.copied) == ["nb/deep/data.csv", "run.sh"]
    assert "README.md" not in report.manifest  # never delivered: never updated later


def test_user_planted_symlinks_are_never_followed(template, home, owner, victim):
    (home / "nb").symlink_to(victim)  # ~/nb -> somewhere root must not write
    (home / "README.md").symlink_to(victim / "passwd")  # a file name pointing outside
    (home / "run.sh").symlink_to(victim / "newfile")  # dangling: O_CREAT would create it
    report = copy_template(str(template), str(home), *owner)
    victim_untouched(victim)
    assert sorted(report.kept) == ["README.md", "nb/", "run.sh"]
    assert report.copied == []
    assert owner_of(victim) == (os.geteuid(), os.getegid())


def test_template_symlinks(template, home, owner):
    (template / "abs").symlink_to("/etc/passwd")
    (template / "up").symlink_to("../victim")
    (template / "nb" / "sneaky").symlink_to("../../template/../victim")
    (template / "inner").symlink_to("nb/intro.ipynb")
    (template / "nbdir").symlink_to("nb")
    report = copy_template(str(template), str(home), *owner)
    assert sorted(report.skipped) == ["abs", "nb/sneaky", "up"]
    for name in ("abs", "up", "nb/sneaky"):
        assert not os.path.lexists(home / name)
    assert os.readlink(home / "inner") == "nb/intro.ipynb"
    assert os.readlink(home / "nbdir") == "nb"
    assert owner_of(home / "inner") == owner  # lchown'd, the link itself
    assert report.manifest["inner"] == "link:nb/intro.ipynb"


def test_special_files_in_template_are_skipped(template, home, owner):
    os.mkfifo(template / "pipe")
    done = threading.Event()
    result = {}

    def run():
        result["report"] = copy_template(str(template), str(home), *owner)
        done.set()

    threading.Thread(target=run, daemon=True).start()
    assert done.wait(10), "copying blocked on a FIFO"
    assert "pipe" in result["report"].skipped and not os.path.lexists(home / "pipe")


def test_home_must_be_a_real_directory_of_the_user(template, home, owner, tmp_path, victim):
    with pytest.raises(HomeError, match="not owned"):
        copy_template(str(template), str(home), owner[0] + 1, owner[1])
    link = tmp_path / "homes" / "link"
    link.symlink_to(victim)
    with pytest.raises(HomeError, match="symlink"):
        copy_template(str(template), str(link), *owner)
    victim_untouched(victim)


def test_subdirectory_of_someone_else_is_not_entered(template, home, owner):
    if os.geteuid() != 0:
        pytest.skip("needs root to make a directory owned by another uid")
    (home / "nb").mkdir()
    os.chown(home / "nb", 0, 0)
    report = copy_template(str(template), str(home), *owner)
    assert "nb/" in report.kept and os.listdir(home / "nb") == []


# -- sync semantics with a manifest ---------------------------------------------------------
def test_sync_updates_only_unmodified_copies(template, home, owner):
    first = copy_template(str(template), str(home), *owner, readonly=True)
    (home / "nb" / "intro.ipynb").chmod(0o644)
    (home / "nb" / "intro.ipynb").write_text("edited by alice")  # user changed it
    (home / "nb" / "deep" / "data.csv").unlink()  # user deleted it
    (template / "README.md").write_text("read me, v2")
    (template / "nb" / "intro.ipynb").write_text('{"cells": ["v2"]}')
    (template / "nb" / "deep" / "data.csv").write_text("v2")
    (template / "new.md").write_text("new")
    dry = copy_template(str(template), str(home), *owner, manifest=first.manifest, dry_run=True)
    assert not (home / "new.md").exists() and (home / "README.md").read_text() == "read me"
    second = copy_template(str(template), str(home), *owner, readonly=True, manifest=first.manifest)
    for report in (dry, second):
        assert report.copied == ["new.md"]
        assert report.updated == ["README.md"]
        assert sorted(report.kept) == ["nb/intro.ipynb", "run.sh"]
        assert report.removed_by_user == ["nb/deep/data.csv"]
    assert (home / "README.md").read_text() == "read me, v2"
    assert mode(home / "README.md") == 0o444 and owner_of(home / "README.md") == owner
    assert (home / "nb" / "intro.ipynb").read_text() == "edited by alice"
    assert not (home / "nb" / "deep" / "data.csv").exists()
    assert [n for n in os.listdir(home) if n.startswith(".")] == []  # no temp files left
    assert second.manifest["nb/intro.ipynb"] == first.manifest["nb/intro.ipynb"]
    third = copy_template(str(template), str(home), *owner, manifest=second.manifest)
    assert third.written == 0


def test_sync_does_not_write_through_a_replaced_file(template, home, owner, victim):
    first = copy_template(str(template), str(home), *owner)
    (home / "README.md").unlink()
    (home / "README.md").symlink_to(victim / "passwd")
    (template / "README.md").write_text("v2")
    report = copy_template(str(template), str(home), *owner, manifest=first.manifest)
    assert report.kept.count("README.md") == 1 and report.updated == []
    victim_untouched(victim)
    assert os.readlink(home / "README.md") == str(victim / "passwd")


# -- archive --------------------------------------------------------------------------------
def test_archive(home, owner, tmp_path, victim):
    (home / "work.txt").write_text("results")
    (home / "link").symlink_to(victim / "passwd")
    os.mkfifo(home / "pipe")
    out = tmp_path / "archive"
    out.mkdir(mode=0o700)
    path = archive_home(str(home), str(out / "alice.tar.gz"), owner[0])
    assert mode(path) == 0o600 and os.listdir(out) == ["alice.tar.gz"]
    with tarfile.open(path) as tar:
        members = {m.name: m for m in tar.getmembers()}
        assert tar.extractfile("alice/work.txt").read() == b"results"
    assert members["alice/link"].issym() and members["alice/pipe"].isfifo()
    assert "root:x" not in open(path, "rb").read().decode("latin-1")
    with pytest.raises(FileExistsError):  # an existing archive is never replaced
        archive_home(str(home), path, owner[0])
    again = archive_home(str(home), path, owner[0], unique=True)
    assert again == str(out / "alice-1.tar.gz") and mode(again) == 0o600
    assert sorted(os.listdir(out)) == ["alice-1.tar.gz", "alice.tar.gz"]  # no temp files
    with pytest.raises(HomeError, match="owned by uid"):
        archive_home(str(home), str(out / "other.tar.gz"), owner[0] + 1)


# -- the homes sync-template command ----------------------------------------------------------
async def test_sync_template_command(tmp_path, template, owner):
    from test_system_users import FakeSystem  # the fake account database of the sibling tests

    from jupyterhub_lab_ext.accounts.system_users import (
        Account,
        AccountSpec,
        SystemUsers,
        UserEntry,
    )
    from jupyterhub_lab_ext.cli.homes import sync_template

    fake = FakeSystem()
    uid, gid = owner
    root = tmp_path / "homes"
    su = SystemUsers(
        fake,
        lookup=fake,
        state_dir=str(tmp_path / "state"),
        uid_min=min(uid, 1000),
        gid_min=1000,
        flavour="useradd",
    )
    names = ["ann", "ben", "cat"]
    for name in names:  # accounts the package created earlier, owned by a uid we may chown to
        fake.users[name] = UserEntry(name, uid, gid, str(root / name), "/bin/bash")
        su.registry.set_user(name, uid=uid, gid=gid, home=str(root / name))
        await su.ensure_account(AccountSpec(name, str(root / name)))
    ann = Account("ann", uid, gid, str(root / "ann"), created=False)
    assert await su.populate_home(ann, str(template)) == 4
    (root / "ann" / "README.md").write_text("ann's notes")  # ann changed a delivered file
    await su.lock_account("cat")
    (template / "new.ipynb").write_text("{}")
    lines = []
    failed = await sync_template(su, str(template), dry_run=True, out=lines.append)
    assert failed == 0 and not (root / "ann" / "new.ipynb").exists()
    assert lines[0] == "(dry run) ann: 1 new, 0 updated, 4 kept, 0 removed by user, 0 skipped"
    lines.clear()
    failed = await sync_template(su, str(template), verbose=True, out=lines.append)
    assert lines == [
        "ann: 1 new, 0 updated, 4 kept, 0 removed by user, 0 skipped",
        "    new: new.ipynb",
        "ben: 5 new, 0 updated, 0 kept, 0 removed by user, 0 skipped",
        *[
            f"    new: {p}"
            for p in "README.md nb/deep/data.csv nb/intro.ipynb new.ipynb run.sh".split()
        ],
        "cat: skipped (account locked)",
        f"{template}: 2 homes synced, 1 skipped, 0 failed",
    ]
    assert (root / "ann" / "README.md").read_text() == "ann's notes"
    assert owner_of(root / "ben" / "new.ipynb") == owner
    assert not (root / "cat" / "new.ipynb").exists()
    lines.clear()
    assert await sync_template(su, str(template), ["olduser", "nosuch"], out=lines.append) == 2
    assert "olduser: error:" in lines[0] and "not created by" in lines[0]
    assert "nosuch: error: no system account" in lines[1]


# -- property: whatever the user planted, root writes only new files inside the home ------------
NAMES = st.sampled_from(["a", "b", "c"])
PATHS = st.lists(NAMES, min_size=1, max_size=3).map(tuple)
TEMPLATE_TREES = st.dictionaries(PATHS, st.sampled_from(["file", "dir"]), max_size=8)
HOME_TREES = st.dictionaries(
    PATHS, st.sampled_from(["file", "dir", "link-dir", "link-file", "dangling"]), max_size=6
)


def _build(root, tree, victim=None):
    """Create ``tree`` under ``root``; return the entries actually made (conflicts dropped)."""
    made = {}
    for path in sorted(tree, key=len):
        if any(made.get(path[:i], "dir") != "dir" for i in range(1, len(path))):
            continue  # a parent is a file or a link: cannot nest here
        target = root.joinpath(*path)
        target.parent.mkdir(parents=True, exist_ok=True)
        for i in range(1, len(path)):
            made.setdefault(path[:i], "dir")  # parents made on the way
        kind = tree[path]
        if kind == "file":
            target.write_text("/".join(path))
        elif kind == "dir":
            target.mkdir(exist_ok=True)
        elif kind == "link-dir":
            target.symlink_to(victim)
        elif kind == "link-file":
            target.symlink_to(victim / "passwd")
        else:
            target.symlink_to(victim / "missing")
        made[path] = kind
    return made


def _snapshot(root):
    result = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            p = os.path.join(dirpath, name)
            st_ = os.lstat(p)
            rel = os.path.relpath(p, root)
            if stat.S_ISLNK(st_.st_mode):
                result[rel] = ("link", os.readlink(p))
            elif stat.S_ISDIR(st_.st_mode):
                result[rel] = ("dir", None)
            else:
                result[rel] = ("file", open(p).read())
    return result


@settings(max_examples=60, deadline=None)
@given(template_tree=TEMPLATE_TREES, home_tree=HOME_TREES)
def test_property_only_new_files_inside_home(template_tree, home_tree):
    uid, gid = (54321, 54322) if os.geteuid() == 0 else (os.getuid(), os.getgid())
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        victim = base / "victim"
        victim.mkdir()
        (victim / "passwd").write_text("secret")
        template = base / "template"
        template.mkdir()
        made_template = _build(template, template_tree)
        home = base / "home"
        make_home(str(home), uid, gid, 0o700, adopt_root_owned=False)
        made_home = _build(home, home_tree, victim)
        for path in made_home:
            os.lchown(home.joinpath(*path), uid, gid)  # the user's own entries
        before = _snapshot(home)

        report = copy_template(str(template), str(home), uid, gid)

        assert _snapshot(victim) == {"passwd": ("file", "secret")}
        after = _snapshot(home)
        for rel, entry in before.items():
            assert after[rel] == entry  # nothing the user had was changed
        expected = sorted(
            "/".join(p)
            for p, kind in made_template.items()
            if kind == "file"
            and p not in made_home
            and all(made_home.get(p[:i], "dir") == "dir" for i in range(1, len(p)))
        )
        assert sorted(report.copied) == expected
        for rel in expected:
            assert after[rel] == ("file", rel) and os.lstat(home / rel).st_uid == uid
        new = set(after) - set(before)
        assert all(after[r][0] == "dir" or r in expected for r in new)
