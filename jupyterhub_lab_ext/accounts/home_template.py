"""Fill a home from a template directory, and keep it in sync with later template changes.

Synchronous file-system work for a worker thread, on directory descriptors as described in
:mod:`.homes`; in addition, an existing file in the home is never overwritten, except for an
*unmodified* copy of a template file whose template changed: that one is replaced by ``rename``
of a fresh file (rename replaces the directory entry, it does not write through it).

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
import time
from dataclasses import dataclass, field

from jupyterhub_lab_ext.accounts.homes import DIR_FLAGS, HomeError, lstat_at

_CHUNK = 1 << 20

# link() errors of file systems that have no hard links
_NO_HARDLINKS = frozenset(
    {errno.EPERM, errno.EOPNOTSUPP, errno.ENOTSUP, errno.EMLINK, errno.ENOSYS}
)

# manifest value of a delivered symlink: "link:" + target
_LINK = "link:"


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
            st = lstat_at(name, tfd)
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
        sub_t = os.open(name, DIR_FLAGS, dir_fd=tfd)
        try:
            hst = lstat_at(name, hfd) if hfd is not None else None
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
                sub_h = os.open(name, DIR_FLAGS, dir_fd=hfd)
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
        hst = lstat_at(name, hfd) if hfd is not None else None
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
            pfd = os.open(private, DIR_FLAGS, dir_fd=hfd)
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
            hfd = os.open(home, DIR_FLAGS)
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
