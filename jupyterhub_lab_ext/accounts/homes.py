"""Home directories: create them, fill them from a template, archive them.

Everything here is synchronous file-system work meant to run in a worker thread
(``asyncio.to_thread``); :mod:`jupyterhub_lab_ext.accounts.system_users` does that.

Root writes into directories that users control, so every step works on directory file
descriptors and never follows a symlink inside a home:

- a path component in a home is opened with ``O_NOFOLLOW | O_DIRECTORY`` relative to the
  already-open parent, so ``~/notebooks -> /etc`` is never entered;
- a file is created with ``O_CREAT | O_EXCL`` (which never follows a symlink and never
  opens an existing file), written, then ``fchown``/``fchmod``-ed through its descriptor;
- an existing file in the home is never overwritten, except for an *unmodified* copy of a
  template file whose template changed: that one is replaced by ``rename`` of a fresh file
  (rename replaces the directory entry, it does not write through it).

Template rules:

- regular files and directories are copied; FIFOs, sockets and devices are skipped;
- a symlink in the template is recreated as the same (relative) symlink only if it
  resolves to a path inside the template; absolute links and links leaving the template
  are skipped, so a template can never expose ``/etc/shadow`` to a user;
- copied files are owned by the user; modes are ``0644`` (``0755`` if the template file is
  executable), or with ``readonly`` ``0444`` (``0555``). Directories are ``0755`` in both
  cases, so users can still put their own copies next to read-only originals. A read-only
  file is a guard against accidental edits (the user owns it and can ``chmod`` it), not a
  security boundary.

Root must be able to create and chown files in the homes: on NFS that means an export
without ``root_squash`` for the home root (otherwise every step fails with a clear error).

What was delivered to a home (relative path -> sha256 of the delivered content) is kept by
the caller in a root-owned manifest; with it, a later sync copies only template files that
are new, re-delivers nothing the user deleted, and updates a copy only when the user has not
changed it.
"""

from __future__ import annotations

import errno
import hashlib
import os
import stat
import tarfile
import time
from dataclasses import dataclass, field

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_CHUNK = 1 << 20

# link() errors of file systems that have no hard links
_NO_HARDLINKS = frozenset(
    {errno.EPERM, errno.EOPNOTSUPP, errno.ENOTSUP, errno.EMLINK, errno.ENOSYS}
)

# manifest value of a delivered symlink: "link:" + target
_LINK = "link:"


class HomeError(RuntimeError):
    """A home directory could not be created or used safely."""


@dataclass
class CopyReport:
    """What a template copy did (or, with ``dry_run``, would do), as relative paths."""

    copied: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)  # exists in the home and was left alone
    removed_by_user: list[str] = field(default_factory=list)  # delivered before, now gone
    skipped: list[str] = field(default_factory=list)  # unsafe or unsupported in the template
    manifest: dict[str, str] = field(default_factory=dict)

    @property
    def written(self) -> int:
        return len(self.copied) + len(self.updated)

    def summary(self) -> str:
        return (
            f"{len(self.copied)} new, {len(self.updated)} updated, {len(self.kept)} kept, "
            f"{len(self.removed_by_user)} removed by user, {len(self.skipped)} skipped"
        )


def _check_trusted_dir(path: str) -> None:
    """Refuse a parent directory that someone other than root (or us) could change."""
    st = os.stat(path)
    if not stat.S_ISDIR(st.st_mode):
        raise HomeError(f"{path} is not a directory")
    if st.st_uid not in (0, os.geteuid()):
        raise HomeError(f"{path} is owned by uid {st.st_uid}, not by root")
    if st.st_mode & 0o022 and not st.st_mode & stat.S_ISVTX:
        raise HomeError(f"{path} is writable by group or others (mode {st.st_mode & 0o7777:o})")


def make_parents(parent: str, mode: int = 0o755) -> None:
    """Create missing parent directories (root-owned, exact ``mode``) and check them all."""
    parent = os.path.abspath(parent)
    missing = []
    path = parent
    while not os.path.lexists(path):
        missing.append(path)
        path = os.path.dirname(path)
    _check_trusted_chain(path)  # before creating anything in it (it may be a user's symlink)
    for path in reversed(missing):
        try:
            os.mkdir(path, mode)
        except FileExistsError:
            continue
        os.chmod(path, mode)  # never trust the umask
    _check_trusted_chain(parent)


def _check_trusted_chain(path: str) -> None:
    """:func:`_check_trusted_dir` on the resolved ``path`` and every ancestor of it."""
    path = os.path.realpath(path)
    while True:
        _check_trusted_dir(path)
        if path == os.path.dirname(path):
            break
        path = os.path.dirname(path)


def make_home(home: str, uid: int, gid: int, mode: int, *, adopt_root_owned: bool) -> bool:
    """Ensure ``home`` is a directory owned by ``uid:gid``; return True if it was created.

    A new home gets exactly ``mode``. An existing home must be a real directory owned by the
    user; it keeps its mode (users may have opened it up on purpose). An existing *empty* home
    owned by root is taken over (chowned, ``mode`` applied) only with ``adopt_root_owned`` (for
    an account created just now, e.g. an admin made the directory in advance).
    """
    home = os.path.abspath(home)
    parent, base = os.path.split(home)
    if not base or base in (".", ".."):
        raise HomeError(f"refusing home directory {home!r}")
    make_parents(parent)
    pfd = os.open(parent, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        pmode = os.fstat(pfd).st_mode
        if pmode & 0o022:  # even with the sticky bit, anyone could squat a future home name
            raise HomeError(
                f"home root {parent} is writable by group or others (mode {pmode & 0o7777:o})"
            )
        created = False
        try:
            os.mkdir(base, 0o700, dir_fd=pfd)
            created = True
        except FileExistsError:
            pass
        try:
            hfd = os.open(base, _DIR_FLAGS, dir_fd=pfd)
        except OSError as e:
            raise HomeError(f"{home} exists and is not a directory (or is a symlink): {e}") from e
        try:
            st = os.fstat(hfd)
            adopt = not created and st.st_uid == 0 and st.st_uid != uid and adopt_root_owned
            if adopt and os.listdir(hfd):  # never hand over a populated root directory (/etc)
                raise HomeError(f"{home} exists, is owned by root and is not empty")
            if created or adopt:
                os.fchown(hfd, uid, gid)
                os.fchmod(hfd, mode)
            elif st.st_uid != uid:
                raise HomeError(f"{home} exists and is owned by uid {st.st_uid}, not {uid}")
        finally:
            os.close(hfd)
        return created
    finally:
        os.close(pfd)


def _file_mode(template_mode: int, readonly: bool) -> int:
    executable = bool(template_mode & 0o111)
    if readonly:
        return 0o555 if executable else 0o444
    return 0o755 if executable else 0o644


def _sha256_fd(fd: int) -> str:
    h = hashlib.sha256()
    while chunk := os.read(fd, _CHUNK):
        h.update(chunk)
    return h.hexdigest()


def _lstat_at(name: str, dir_fd: int) -> os.stat_result | None:
    try:
        return os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        return None


@dataclass(frozen=True)
class CopyOptions:
    """How :func:`copy_template` treats one home (see its parameters)."""

    uid: int
    gid: int
    readonly: bool = False
    dry_run: bool = False
    update_unmodified: bool = True


class _Copier:
    def __init__(self, template_real: str, opts: CopyOptions, manifest: dict, digests: dict):
        self.root = template_real
        self.digests = digests
        self.uid, self.gid = opts.uid, opts.gid
        self.readonly, self.dry_run = opts.readonly, opts.dry_run
        self.old = dict(manifest)
        self.update_unmodified = opts.update_unmodified
        self.report = CopyReport(manifest=dict(manifest))

    # -- template side -------------------------------------------------------------------
    def _link_target_inside(self, rel: str, target: str) -> bool:
        if os.path.isabs(target):
            return False
        resolved = os.path.realpath(os.path.join(self.root, os.path.dirname(rel), target))
        return resolved == self.root or resolved.startswith(self.root + os.sep)

    def walk(self, tfd: int, hfd: int | None, prefix: str) -> None:
        """Copy the template directory open at ``tfd`` into the home directory at ``hfd``.

        ``hfd`` is None in a dry run for a directory that does not exist in the home yet.
        """
        with os.scandir(tfd) as it:
            names = sorted(entry.name for entry in it)
        for name in names:
            rel = prefix + name
            st = _lstat_at(name, tfd)
            if st is None:
                continue
            if stat.S_ISLNK(st.st_mode):
                target = os.readlink(name, dir_fd=tfd)
                if self._link_target_inside(rel, target):
                    self._place(hfd, name, rel, _LINK + target, st, link=target)
                else:
                    self.report.skipped.append(rel)
            elif stat.S_ISDIR(st.st_mode):
                self._dir(tfd, hfd, name, rel)
            elif stat.S_ISREG(st.st_mode):
                self._file(tfd, hfd, name, rel)
            else:
                self.report.skipped.append(rel)

    def _file(self, tfd: int, hfd: int | None, name: str, rel: str) -> None:
        flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
        src = os.open(name, flags, dir_fd=tfd)
        try:
            st = os.fstat(src)
            if not stat.S_ISREG(st.st_mode):  # replaced since the lstat
                self.report.skipped.append(rel)
                return
            # one hash per template file version, however many homes are synced
            key = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
            digest = self.digests.get(key)
            if digest is None:
                digest = self.digests[key] = _sha256_fd(src)
            self._place(hfd, name, rel, digest, st, src=src)
        finally:
            os.close(src)

    def _dir(self, tfd: int, hfd: int | None, name: str, rel: str) -> None:
        sub_t = os.open(name, _DIR_FLAGS, dir_fd=tfd)
        try:
            hst = _lstat_at(name, hfd) if hfd is not None else None
            made = False
            if hst is None:
                if self.dry_run:
                    self.walk(sub_t, None, rel + "/")
                    return
                try:
                    os.mkdir(name, 0o700, dir_fd=hfd)
                    made = True
                except FileExistsError:  # appeared meanwhile: treat it like an existing one
                    pass
            elif not stat.S_ISDIR(hst.st_mode):
                self.report.kept.append(rel + "/")  # user's file or symlink: leave it
                return
            try:
                sub_h = os.open(name, _DIR_FLAGS, dir_fd=hfd)
            except OSError as e:
                if e.errno in (errno.ELOOP, errno.ENOTDIR):  # swapped for a symlink meanwhile
                    self.report.kept.append(rel + "/")
                    return
                raise
            try:
                if made:
                    if os.fstat(sub_h).st_uid != os.geteuid() or os.listdir(sub_h):
                        # swapped (by the user) for some other directory since our mkdir
                        self.report.kept.append(rel + "/")
                        return
                    os.fchown(sub_h, self.uid, self.gid)
                    os.fchmod(sub_h, 0o755)
                elif os.fstat(sub_h).st_uid != self.uid:
                    self.report.kept.append(rel + "/")  # not the user's directory: stay out
                    return
                self.walk(sub_t, sub_h, rel + "/")
            finally:
                os.close(sub_h)
        finally:
            os.close(sub_t)

    # -- home side -----------------------------------------------------------------------
    def _place(self, hfd, name, rel, digest, tst, *, src=None, link=None) -> None:
        report = self.report
        hst = _lstat_at(name, hfd) if hfd is not None else None
        if hst is None:
            if rel in self.old:
                report.removed_by_user.append(rel)  # the user deleted it: do not bring it back
                return
            if not self.dry_run:
                try:
                    self._write(hfd, name, tst, src=src, link=link)
                except FileExistsError:
                    report.kept.append(rel)
                    return
            report.copied.append(rel)
            report.manifest[rel] = digest
            return
        delivered = self.old.get(rel)
        if delivered is None or delivered == digest or not self.update_unmodified:
            report.kept.append(rel)
            return
        if self._current_digest(hfd, name, hst) != delivered:
            report.kept.append(rel)  # changed by the user
            return
        if not self.dry_run:
            tmp = f".{name}.jhle-{os.getpid()}-{time.monotonic_ns()}"
            self._write(hfd, tmp, tst, src=src, link=link)
            os.rename(tmp, name, src_dir_fd=hfd, dst_dir_fd=hfd)
        report.updated.append(rel)
        report.manifest[rel] = digest

    def _current_digest(self, hfd: int, name: str, hst: os.stat_result) -> str | None:
        if stat.S_ISLNK(hst.st_mode):
            return _LINK + os.readlink(name, dir_fd=hfd)
        if not stat.S_ISREG(hst.st_mode) or hst.st_uid != self.uid:
            return None
        fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, dir_fd=hfd)
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                return None
            return _sha256_fd(fd)
        finally:
            os.close(fd)

    def _write_link(self, hfd: int, name: str, link: str) -> None:
        """Create symlink ``name`` -> ``link`` owned by the user, without a chown by name in
        the home: the user could swap the new link for a hard link to a root file (e.g.
        ``/etc/shadow``) between ``symlink`` and ``lchown``. The link is made and chowned in a
        private root-owned directory, then hard-linked into place (never replacing a file)."""
        private = f".jhle-link-{os.getpid()}-{time.monotonic_ns()}"
        os.mkdir(private, 0o700, dir_fd=hfd)
        try:
            pfd = os.open(private, _DIR_FLAGS, dir_fd=hfd)
        except OSError as e:
            raise HomeError(f"private directory {private} was replaced: {e}") from e
        try:
            pst = os.fstat(pfd)
            if pst.st_uid != os.geteuid() or pst.st_mode & 0o077:
                raise HomeError(f"private directory {private} was replaced")
            os.symlink(link, "l", dir_fd=pfd)
            os.chown("l", self.uid, self.gid, dir_fd=pfd, follow_symlinks=False)
            try:
                os.link("l", name, src_dir_fd=pfd, dst_dir_fd=hfd, follow_symlinks=False)
            except OSError as e:
                if e.errno not in _NO_HARDLINKS:
                    raise
                # a file system without hard links (some FUSE/SMB mounts): the link stays
                # owned by root rather than being chowned by name (the user can still remove it)
                os.symlink(link, name, dir_fd=hfd)
        finally:
            try:
                os.unlink("l", dir_fd=pfd)
            except FileNotFoundError:
                pass
            os.close(pfd)
            try:
                os.rmdir(private, dir_fd=hfd)
            except OSError:
                pass

    def _write(self, hfd: int, name: str, tst: os.stat_result, *, src=None, link=None) -> None:
        if link is not None:
            self._write_link(hfd, name, link)
            return
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        dst = os.open(name, flags, 0o600, dir_fd=hfd)
        try:
            os.lseek(src, 0, os.SEEK_SET)
            while chunk := os.read(src, _CHUNK):
                view = memoryview(chunk)
                while view:
                    view = view[os.write(dst, view) :]
            os.fchown(dst, self.uid, self.gid)
            os.fchmod(dst, _file_mode(tst.st_mode, self.readonly))
            os.utime(dst, ns=(tst.st_atime_ns, tst.st_mtime_ns))
        finally:
            os.close(dst)


def copy_template(
    template: str,
    home: str,
    uid: int,
    gid: int,
    *,
    readonly: bool = False,
    manifest: dict[str, str] | None = None,
    update_unmodified: bool = True,
    dry_run: bool = False,
    digest_cache: dict | None = None,
) -> CopyReport:
    """Copy what is missing from ``template`` into ``home`` (owned by ``uid``); see module doc.

    ``manifest`` is what an earlier call delivered (``report.manifest`` of that call); pass it
    back to get sync semantics. The home itself must be a real directory owned by ``uid``.
    ``digest_cache`` (any dict, reused across calls) saves re-hashing unchanged template files.
    """
    template_real = os.path.realpath(template)
    tfd = os.open(template_real, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        try:
            hfd = os.open(home, _DIR_FLAGS)
        except OSError as e:
            raise HomeError(f"home {home} is not a directory (or is a symlink): {e}") from e
        try:
            if os.fstat(hfd).st_uid != uid:
                raise HomeError(f"home {home} is not owned by uid {uid}")
            opts = CopyOptions(uid, gid, readonly, dry_run, update_unmodified)
            digests = {} if digest_cache is None else digest_cache
            copier = _Copier(template_real, opts, manifest or {}, digests)
            copier.walk(tfd, hfd, "")
            return copier.report
        finally:
            os.close(hfd)
    finally:
        os.close(tfd)


def archive_home(home: str, archive_path: str, uid: int, *, unique: bool = False) -> str:
    """Write ``home`` as a gzip'ed tar to ``archive_path`` (mode 0600, created exclusively).

    An existing archive is never replaced: with ``unique`` the name gets a ``-1``, ``-2`` ...
    suffix instead, otherwise :class:`FileExistsError` is raised. Returns the path written.

    Symlinks are stored as links (never followed); FIFOs and devices as their entries (never
    read); sockets are left out. The archive is written to a temporary name and renamed.
    """
    try:
        hfd = os.open(home, _DIR_FLAGS)
    except OSError as e:
        raise HomeError(f"home {home} is not a directory (or is a symlink): {e}") from e
    try:
        st = os.fstat(hfd)
        if st.st_uid != uid:
            raise HomeError(f"home {home} is owned by uid {st.st_uid}, not {uid}")
        return _write_archive(hfd, st, home, archive_path, unique)
    finally:
        os.close(hfd)


def _tar_info(arcname: str, st: os.stat_result, kind: bytes) -> tarfile.TarInfo:
    info = tarfile.TarInfo(arcname)
    info.type = kind
    info.mode = stat.S_IMODE(st.st_mode)
    info.uid, info.gid, info.mtime = st.st_uid, st.st_gid, int(st.st_mtime)
    info.size = st.st_size if kind == tarfile.REGTYPE else 0
    if kind in (tarfile.CHRTYPE, tarfile.BLKTYPE):
        info.devmajor, info.devminor = os.major(st.st_rdev), os.minor(st.st_rdev)
    return info


def _tar_dir(tar: tarfile.TarFile, dfd: int, arcname: str, st: os.stat_result) -> None:
    """Add the directory open at ``dfd`` recursively, through descriptors only: the user may
    swap entries while root reads (a file for a symlink to /etc/shadow, a directory for a
    symlink to /etc); nothing is ever opened through a symlink."""
    tar.addfile(_tar_info(arcname, st, tarfile.DIRTYPE))
    with os.scandir(dfd) as it:
        names = sorted(entry.name for entry in it)
    for name in names:
        lst = _lstat_at(name, dfd)
        path = f"{arcname}/{name}"
        if lst is None:
            continue
        if stat.S_ISDIR(lst.st_mode):
            try:
                sub = os.open(name, _DIR_FLAGS, dir_fd=dfd)
            except OSError:  # replaced meanwhile (by a symlink): left out
                continue
            try:
                _tar_dir(tar, sub, path, os.fstat(sub))
            finally:
                os.close(sub)
        elif stat.S_ISREG(lst.st_mode):
            flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
            try:
                fd = os.open(name, flags, dir_fd=dfd)
            except OSError:
                continue
            with os.fdopen(fd, "rb") as f:
                fst = os.fstat(fd)
                if stat.S_ISREG(fst.st_mode):
                    tar.addfile(_tar_info(path, fst, tarfile.REGTYPE), f)
        elif stat.S_ISLNK(lst.st_mode):
            info = _tar_info(path, lst, tarfile.SYMTYPE)
            info.linkname = os.readlink(name, dir_fd=dfd)
            tar.addfile(info)
        elif stat.S_ISFIFO(lst.st_mode):
            tar.addfile(_tar_info(path, lst, tarfile.FIFOTYPE))
        elif stat.S_ISCHR(lst.st_mode) or stat.S_ISBLK(lst.st_mode):
            kind = tarfile.CHRTYPE if stat.S_ISCHR(lst.st_mode) else tarfile.BLKTYPE
            tar.addfile(_tar_info(path, lst, kind))  # the entry only, never read


def _write_archive(hfd: int, st: os.stat_result, home: str, archive_path: str, unique: bool):
    directory, base = os.path.split(archive_path)
    tmp = os.path.join(directory, f".{base}.partial-{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    try:
        with os.fdopen(fd, "wb") as raw, tarfile.open(fileobj=raw, mode="w:gz") as tar:
            _tar_dir(tar, hfd, os.path.basename(home.rstrip("/")), st)
            tar.close()
            raw.flush()
            os.fsync(raw.fileno())
        stem = archive_path.removesuffix(".tar.gz")
        for n in range(1000 if unique else 1):
            candidate = archive_path if n == 0 else f"{stem}-{n}.tar.gz"
            try:
                os.link(tmp, candidate)  # fails instead of replacing an existing archive
                archive_path = candidate
                break
            except FileExistsError:
                if not unique or n == 999:
                    raise
    finally:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
    return archive_path
