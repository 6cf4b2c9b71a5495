"""Archive a home directory into a gzip'ed tar, safely as root (the user may be changing it).

Synchronous file-system work for a worker thread, on directory descriptors as described in
:mod:`.homes`: nothing is ever opened through a symlink.
"""

from __future__ import annotations

import os
import stat
import tarfile

from jupyterhub_lab_ext.accounts.homes import DIR_FLAGS, HomeError, lstat_at


def archive_home(home: str, archive_path: str, uid: int, *, unique: bool = False) -> str:
    """Write ``home`` as a gzip'ed tar to ``archive_path`` (mode 0600, created exclusively).

    An existing archive is never replaced: with ``unique`` the name gets a ``-1``, ``-2`` ...
    suffix instead, otherwise :class:`FileExistsError` is raised. Returns the path written.

    Symlinks are stored as links (never followed); FIFOs and devices as their entries (never
    read); sockets are left out. The archive is written to a temporary name and renamed.
    """
    try:
        hfd = os.open(home, DIR_FLAGS)
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
        lst = lstat_at(name, dfd)
        path = f"{arcname}/{name}"
        if lst is None:
            continue
        if stat.S_ISDIR(lst.st_mode):
            try:
                sub = os.open(name, DIR_FLAGS, dir_fd=dfd)
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
