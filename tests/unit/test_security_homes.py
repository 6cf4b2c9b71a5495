"""Security properties of home creation and template copy, with simulated attackers.

Root writes into directories that users control. These tests play the user: squatting a
future home, planting links at template names, and swapping entries while root works (the
races are made deterministic by hooking the file-system call root makes just before). Run as
root: ownership changes are what is checked.
"""

from __future__ import annotations

import gzip
import os
import stat
import tarfile

import pytest

from jupyterhub_lab_ext.accounts import archive, home_template
from jupyterhub_lab_ext.accounts.home_template import copy_template
from jupyterhub_lab_ext.accounts.homes import HomeError, make_home, make_parents

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="ownership checks need root")

USER = (54321, 54322)  # the hub user whose home is filled
OTHER = 54999  # another local user


def owner_of(path) -> int:
    return os.lstat(path).st_uid


@pytest.fixture
def root_dir(tmp_path):
    r = tmp_path / "homes"
    r.mkdir(mode=0o755)
    r.chmod(0o755)
    return r


@pytest.fixture
def home(root_dir):
    h = root_dir / "alice"
    make_home(str(h), *USER, 0o700, adopt_root_owned=False)
    return h


@pytest.fixture
def secret(tmp_path):
    """A root-owned file standing in for /etc/shadow."""
    s = tmp_path / "shadow"
    s.write_text("root:$6$secret\n")
    s.chmod(0o600)
    return s


@pytest.fixture
def template(tmp_path):
    t = tmp_path / "template"
    (t / "nb").mkdir(parents=True)
    (t / "nb" / "intro.ipynb").write_text("{}")
    (t / "README.md").write_text("hello")
    (t / "link").symlink_to("README.md")
    return t


def fd_path(fd: int) -> str:
    return os.readlink(f"/proc/self/fd/{fd}")


# ---- the home root ----------------------------------------------------------------------------


@pytest.mark.parametrize("root_mode", [0o1777, 0o777, 0o775, 0o1775, 0o757], ids=oct)
def test_home_root_writable_by_others_is_refused(root_dir, root_mode):
    root_dir.chmod(root_mode)
    with pytest.raises(HomeError, match="writable by group or others"):
        make_home(str(root_dir / "alice"), *USER, 0o700, adopt_root_owned=True)
    assert not (root_dir / "alice").exists()


def test_home_squatted_by_other_user_is_refused(root_dir):
    squat = root_dir / "alice"
    squat.mkdir()
    os.chown(squat, OTHER, OTHER)
    with pytest.raises(HomeError, match="owned by uid"):
        make_home(str(squat), *USER, 0o700, adopt_root_owned=True)
    assert owner_of(squat) == OTHER


@pytest.mark.parametrize("target", ["secret", "dir"])
def test_symlink_at_future_home_is_refused(root_dir, secret, tmp_path, target):
    victim = secret if target == "secret" else tmp_path
    before = os.stat(victim)
    (root_dir / "alice").symlink_to(victim)
    with pytest.raises(HomeError, match="symlink"):
        make_home(str(root_dir / "alice"), *USER, 0o700, adopt_root_owned=True)
    after = os.stat(victim)
    assert (after.st_uid, after.st_mode) == (before.st_uid, before.st_mode)


def test_populated_root_directory_is_never_adopted(root_dir):
    d = root_dir / "alice"
    d.mkdir()
    (d / "keep").write_text("root's")
    with pytest.raises(HomeError, match="not empty"):
        make_home(str(d), *USER, 0o700, adopt_root_owned=True)
    assert owner_of(d) == 0


# ---- the template -----------------------------------------------------------------------------


def test_template_special_files_and_escaping_links_are_skipped(template, home, secret, tmp_path):
    (template / "shadow-abs").symlink_to(secret)
    (template / "shadow-rel").symlink_to(os.path.relpath(secret, template))
    (template / "nb" / "up").symlink_to("../../shadow")
    os.mkfifo(template / "fifo")
    os.mknod(template / "null", 0o666 | stat.S_IFCHR, os.makedev(1, 3))
    report = copy_template(str(template), str(home), *USER)
    assert sorted(report.skipped) == [
        "fifo",
        "nb/up",
        "null",
        "shadow-abs",
        "shadow-rel",
    ]
    for name in ("shadow-abs", "shadow-rel", "fifo", "null", "nb/up"):
        assert not os.path.lexists(home / name)
    assert os.readlink(home / "link") == "README.md" and owner_of(home / "link") == USER[0]


def test_template_root_symlinked_to_etc_like_dir_copies_only_regular_files(tmp_path, home):
    """home_template may itself be a symlink (admin's choice); links inside still may not
    leave the resolved template."""
    real = tmp_path / "real-template"
    real.mkdir()
    (real / "a.txt").write_text("a")
    (real / "out").symlink_to("../shadow")
    link = tmp_path / "tmpl-link"
    link.symlink_to(real)
    report = copy_template(str(link), str(home), *USER)
    assert report.copied == ["a.txt"] and report.skipped == ["out"]


# ---- the user plants things in the home before the copy ---------------------------------------


def test_planted_hardlink_at_template_name_is_never_written(template, home, secret):
    """(protected_hardlinks=0 machines) a hard link to a root file where README.md goes."""
    os.link(secret, home / "README.md")
    report = copy_template(str(template), str(home), *USER)
    assert "README.md" in report.kept
    st = os.stat(secret)
    assert (st.st_uid, stat.S_IMODE(st.st_mode)) == (0, 0o600)
    assert secret.read_text() == "root:$6$secret\n"


def test_planted_fifo_at_template_name_does_not_block(template, home):
    os.mkfifo(home / "README.md")
    os.chown(home / "README.md", *USER)
    report = copy_template(str(template), str(home), *USER, manifest={"README.md": "x"})
    assert "README.md" in report.kept


# ---- races: the user swaps an entry right after root created it --------------------------------


def test_symlink_swapped_for_hardlink_before_chown_leaves_victim_alone(
    template, home, secret, monkeypatch
):
    """The user watches the home; as soon as root's template symlink appears they replace it
    by a hard link to a root file, hoping root's chown of the link lands on that file."""
    real_symlink = os.symlink

    def racing_symlink(target, name, *args, dir_fd=None, **kw):
        real_symlink(target, name, *args, dir_fd=dir_fd, **kw)
        planted = home / "link"
        if os.path.lexists(planted):
            planted.unlink()
        os.link(secret, planted)  # hard link to the root file, where the link goes

    monkeypatch.setattr(home_template.os, "symlink", racing_symlink)
    copy_template(str(template), str(home), *USER)
    st = os.stat(secret)
    assert (st.st_uid, st.st_gid) == (0, 0), "root chowned a file the user planted"


def test_new_dir_swapped_for_foreign_dir_is_not_chowned(template, home, tmp_path, monkeypatch):
    """The user replaces the directory root just made (nb/) by someone else's directory."""
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "data").write_text("not alice's")
    os.chown(foreign, OTHER, OTHER)
    real_mkdir = os.mkdir

    def racing_mkdir(path, mode=0o777, *, dir_fd=None):
        real_mkdir(path, mode, dir_fd=dir_fd)
        if dir_fd is not None and path == "nb" and fd_path(dir_fd) == str(home):
            os.rmdir(home / "nb")
            os.rename(foreign, home / "nb")

    monkeypatch.setattr(home_template.os, "mkdir", racing_mkdir)
    report = copy_template(str(template), str(home), *USER)
    assert owner_of(home / "nb") == OTHER
    assert not (home / "nb" / "intro.ipynb").exists()
    assert "nb/" in report.kept


def test_template_dir_replaced_by_user_symlink_is_not_entered(template, home, secret):
    (home / "nb").symlink_to(secret.parent)
    report = copy_template(str(template), str(home), *USER)
    assert "nb/" in report.kept
    assert not (secret.parent / "intro.ipynb").exists()


# ---- archive directory ------------------------------------------------------------------------


def test_archive_dir_through_user_owned_symlink_is_refused(tmp_path):
    user_dir = tmp_path / "userdir"
    user_dir.mkdir()
    os.chown(user_dir, OTHER, OTHER)
    (tmp_path / "archive").symlink_to(user_dir)
    with pytest.raises(HomeError, match="owned by uid"):
        make_parents(str(tmp_path / "archive" / "x"), 0o700)
    assert not (user_dir / "x").exists()


def test_archive_dir_under_world_writable_parent_is_refused(tmp_path):
    open_dir = tmp_path / "open"
    open_dir.mkdir()
    open_dir.chmod(0o777)
    with pytest.raises(HomeError, match="writable by group or others"):
        make_parents(str(open_dir / "archive"), 0o700)


# ---- archive: the (locked, but maybe still running) user swaps entries while root reads --------


def test_archive_swaps_during_read_never_pull_in_root_files(home, secret, tmp_path, monkeypatch):
    """Right after root looked at work.txt (a file) and sub/ (a directory), the user replaces
    them by symlinks to a root file and a root directory. The archive may miss them, but must
    never contain what the links point to."""
    (home / "work.txt").write_text("results")
    (home / "sub").mkdir()
    (home / "sub" / "mine.txt").write_text("mine")
    for p in (home / "work.txt", home / "sub", home / "sub" / "mine.txt"):
        os.lchown(p, *USER)
    swaps = {"work.txt": secret, "sub": secret.parent}
    real_stat, real_lstat = os.stat, os.lstat

    def swap_after(result, path):
        target = swaps.pop(os.path.basename(os.fspath(path)), None)
        if target is not None:
            entry = home / os.path.basename(os.fspath(path))
            if entry.is_dir() and not entry.is_symlink():
                (entry / "mine.txt").unlink()
                entry.rmdir()
            else:
                entry.unlink()
            entry.symlink_to(target)
        return result

    def racing_stat(path, *args, **kw):
        return swap_after(real_stat(path, *args, **kw), path)

    def racing_lstat(path, *args, **kw):
        return swap_after(real_lstat(path, *args, **kw), path)

    monkeypatch.setattr(os, "stat", racing_stat)
    monkeypatch.setattr(os, "lstat", racing_lstat)
    out = tmp_path / "archive"
    out.mkdir(mode=0o700)
    path = archive.archive_home(str(home), str(out / "alice.tar.gz"), USER[0])
    monkeypatch.undo()
    assert swaps == {}, "the race hook never ran"
    with open(path, "rb") as f:
        data = gzip.decompress(f.read())
    assert b"$6$secret" not in data
    with tarfile.open(path) as tar:
        names = tar.getnames()
    assert not any(n.startswith("alice/sub/shadow") for n in names), names


def test_template_link_on_a_file_system_without_hard_links(template, home, monkeypatch):
    """link() refused (some FUSE/SMB mounts): the symlink is still delivered, just root-owned,
    never chowned by name."""
    import errno

    def no_link(*args, **kwargs):
        raise OSError(errno.EPERM, "Operation not permitted")

    monkeypatch.setattr(home_template.os, "link", no_link)
    report = copy_template(str(template), str(home), *USER)
    assert "link" in report.copied and os.readlink(home / "link") == "README.md"
    assert owner_of(home / "link") == 0
    assert not [n for n in os.listdir(home) if n.startswith(".jhle-link-")]
