"""Create, populate, lock and archive the system accounts of hub users, without blocking.

:class:`SystemUsers` is the one object the authenticator and the ``homes`` CLI use:

- :meth:`~SystemUsers.ensure_account` makes sure an account (its primary group, supplementary
  groups and home directory) exists, creating it with ``useradd`` (or ``adduser`` where that
  is all there is, Debian or BusyBox style). It is idempotent and safe under many concurrent
  first logins: calls for one name are serialized, and the commands that rewrite
  ``/etc/passwd``/``/etc/group`` run one at a time and are retried with backoff when another
  process holds the password-file lock.
- it never hands out an account it did not create (see :mod:`.registry`) unless
  ``allow_existing``, and never one with a uid below ``UID_MIN`` of ``/etc/login.defs``,
  uid 0 or nobody, whatever ``allow_existing`` says (rules in :mod:`.policy`).
- :meth:`~SystemUsers.populate_home` copies a template directory into the home (see
  :mod:`.home_template` for the symlink and overwrite rules); :meth:`~SystemUsers.lock_account`
  and :meth:`~SystemUsers.archive_home` deprovision. Homes are never deleted.

Commands are argv lists run with :func:`asyncio.create_subprocess_exec` (never a shell) by an
injectable ``runner`` (``async (argv) -> (rc, stdout, stderr)``); every return code is checked.
Account lookups and file-system work run in worker threads.
"""

from __future__ import annotations

import asyncio
import logging
import random
import re
import time
import weakref
from collections.abc import Awaitable, Callable, Sequence

from jupyterhub_lab_ext.accounts import homes
from jupyterhub_lab_ext.accounts.archive import archive_home
from jupyterhub_lab_ext.accounts.commands import (
    ENV,
    build_add_to_groups_argvs,
    build_group_argv,
    build_lock_argvs,
    build_user_argv,
    detect_flavour,
    run_command,
)
from jupyterhub_lab_ext.accounts.home_template import CopyReport, copy_template
from jupyterhub_lab_ext.accounts.logindefs import DEFAULT_ID_MIN, LOGIN_DEFS, read_login_defs
from jupyterhub_lab_ext.accounts.nss import GroupEntry, NssLookup, UserEntry
from jupyterhub_lab_ext.accounts.policy import (
    NAME_RE,
    ExistingAccountError,
    SystemUserError,
    check_existing_account,
    check_existing_group,
    validate_spec,
)
from jupyterhub_lab_ext.accounts.registry import AccountRegistry, RegistryError, utcnow_iso
from jupyterhub_lab_ext.accounts.spec import Account, AccountSpec

__all__ = [
    "Account",
    "AccountSpec",
    "ExistingAccountError",
    "GroupEntry",
    "NssLookup",
    "SystemUserError",
    "SystemUsers",
    "UserEntry",
    "run_command",
]

Runner = Callable[[Sequence[str]], Awaitable[tuple[int, str, str]]]

# rc 10 is useradd's "cannot update/lock group file"; lock messages also come with rc 1
RETRY_RCS = frozenset({10})
_LOCK_MESSAGE = re.compile(r"cannot lock|unable to lock|try again later", re.IGNORECASE)


class SystemUsers:
    """Ensure, populate, lock and archive system accounts; see the module docstring.

    :param runner: ``async (argv) -> (rc, stdout, stderr)``; default :func:`run_command`.
    :param log: a :class:`logging.Logger` (the hub passes ``self.log``).
    :param state_dir: root-owned directory for the registry of created accounts.
    :param allow_existing: also accept accounts (and personal groups) that exist but were not
        created by this package; uid 0 and uids below ``uid_min`` are refused regardless.
    :param uid_min: lowest uid handed out; default ``UID_MIN`` from ``/etc/login.defs`` (1000).
    :param gid_min: lowest gid of a personal group; default ``GID_MIN`` (1000).
    :param allowed_system_groups: supplementary groups with a gid below ``gid_min`` that accounts
        may join (e.g. ``{"audio"}``); any other such group is refused.
    :param flavour: ``"auto"`` (detect), ``"useradd"``, ``"adduser"`` (Debian) or ``"busybox"``.
    :param lookup: account database access (default :class:`NssLookup`: pwd/grp in threads).
    :param lock_retries: how often a command that met the password-file lock is retried.
    :param retry_delay: first backoff delay in seconds; doubles per retry (with jitter).
    """

    def __init__(
        self,
        runner: Runner | None = None,
        *,
        log: logging.Logger | None = None,
        state_dir: str = "/var/lib/jupyterhub-lab-ext",
        allow_existing: bool = False,
        uid_min: int | None = None,
        gid_min: int | None = None,
        allowed_system_groups: Sequence[str] = (),
        flavour: str = "auto",
        lookup: NssLookup | None = None,
        login_defs: str = LOGIN_DEFS,
        lock_retries: int = 8,
        retry_delay: float = 0.05,
        max_retry_delay: float = 2.0,
    ):
        if flavour not in ("auto", "useradd", "adduser", "busybox"):
            raise ValueError(f"unknown flavour {flavour!r}")
        self.runner = runner or run_command
        self.log = log or logging.getLogger(__name__)
        self.registry = AccountRegistry(state_dir)
        self.allow_existing = allow_existing
        self.allowed_system_groups = frozenset(allowed_system_groups)
        self.lookup = lookup or NssLookup()
        self.login_defs = login_defs
        self.lock_retries = lock_retries
        self.retry_delay = retry_delay
        self.max_retry_delay = max_retry_delay
        self._uid_min, self._gid_min, self._flavour = uid_min, gid_min, flavour
        self._name_locks: weakref.WeakValueDictionary[str, asyncio.Lock] = (
            weakref.WeakValueDictionary()
        )
        self._db_lock = asyncio.Lock()
        self._digests: dict = {}  # template file version -> sha256, shared by all homes

    # -- configuration resolved lazily (file reads off the event loop) ---------------------
    async def _limits(self) -> tuple[int, int]:
        if self._uid_min is None or self._gid_min is None:
            defs = await asyncio.to_thread(read_login_defs, self.login_defs)
            if self._uid_min is None:
                self._uid_min = defs.get("UID_MIN", DEFAULT_ID_MIN)
            if self._gid_min is None:
                self._gid_min = defs.get("GID_MIN", DEFAULT_ID_MIN)
        return self._uid_min, self._gid_min

    async def flavour(self) -> str:
        """The user-management tool set in use: ``useradd``, ``adduser`` or ``busybox``."""
        if self._flavour == "auto":
            self._flavour = await asyncio.to_thread(detect_flavour, ENV["PATH"])
            self.log.debug("system users: using %s", self._flavour)
        return self._flavour

    def _lock_for(self, name: str) -> asyncio.Lock:
        lock = self._name_locks.get(name)
        if lock is None:
            lock = self._name_locks[name] = asyncio.Lock()
        return lock

    async def _reg(self, method: str, *args, **kwargs):
        """Call a registry method in a thread; its failures become SystemUserError."""
        try:
            return await asyncio.to_thread(getattr(self.registry, method), *args, **kwargs)
        except (RegistryError, OSError) as e:
            raise SystemUserError(f"account registry {self.registry.state_dir}: {e}") from e

    # -- running commands --------------------------------------------------------------------
    async def _run(self, argv: list[str], what: str) -> str:
        """Run a command that changes the account database: one at a time, retried on lock."""
        delay = self.retry_delay
        for attempt in range(self.lock_retries + 1):
            async with self._db_lock:
                rc, out, err = await self.runner(argv)
            if rc == 0:
                return out
            retryable = rc in RETRY_RCS or bool(_LOCK_MESSAGE.search(err))
            if not retryable or attempt == self.lock_retries:
                raise SystemUserError(what, argv=argv, rc=rc, stderr=err)
            self.log.warning(
                "system users: %s met the account-file lock (rc=%s), retry %s/%s",
                argv[0],
                rc,
                attempt + 1,
                self.lock_retries,
            )
            await asyncio.sleep(delay * (0.5 + random.random()))  # noqa: S311 (jitter)
            delay = min(delay * 2, self.max_retry_delay)
        raise AssertionError("unreachable")

    # -- checks ------------------------------------------------------------------------------
    async def _check_usable(self, pw: UserEntry) -> bool:
        """Raise unless we may use existing account ``pw``; return True if we created it."""
        uid_min, _ = await self._limits()
        record = await self._reg("user", pw.name)
        return check_existing_account(pw.name, pw.uid, record, uid_min, self.allow_existing)

    async def _ensure_group(self, name: str, gid: int | None, *, personal: bool) -> GroupEntry:
        """Create group ``name`` if missing; refuse existing groups we may not use
        (:func:`.policy.check_existing_group`)."""
        _, gid_min = await self._limits()
        gr = await asyncio.to_thread(self.lookup.group, name)
        if gr is None:
            if gid is not None and await asyncio.to_thread(self.lookup.group_by_gid, gid):
                raise SystemUserError(f"gid {gid} for group {name!r} is already in use")
            await self._reg("set_group", name, None)  # intent first, as for accounts
            try:
                await self._run(
                    build_group_argv(await self.flavour(), name, gid), "groupadd failed"
                )
            except SystemUserError as e:
                if e.rc == 9 or await asyncio.to_thread(self.lookup.group, name) is None:
                    await self._reg("drop_group", name)
                raise
            gr = await asyncio.to_thread(self.lookup.group, name)
            if gr is None:
                raise SystemUserError(f"group {name!r} missing after creating it")
            await self._reg("set_group", name, gr.gid)
            self.log.info("system users: created group %s (gid %s)", name, gr.gid)
            return gr
        if gid is not None and gr.gid != gid:
            raise SystemUserError(f"group {name!r} exists with gid {gr.gid}, not {gid}")
        check_existing_group(
            name,
            gr.gid,
            await self._reg("group", name),
            personal=personal,
            gid_min=gid_min,
            allow_existing=self.allow_existing,
            allowed=self.allowed_system_groups,
        )
        return gr

    # -- public API --------------------------------------------------------------------------
    async def ensure_account(self, spec: AccountSpec) -> Account:
        """Make sure the account of ``spec`` exists with its groups and home; see class doc."""
        validate_spec(spec, *await self._limits())
        async with self._lock_for(spec.name):
            pw = await asyncio.to_thread(self.lookup.user, spec.name)
            if pw is not None:
                return await self._existing(spec, pw)
            return await self._create(spec)

    async def _existing(self, spec: AccountSpec, pw: UserEntry) -> Account:
        ours = await self._check_usable(pw)
        if spec.uid is not None and spec.uid != pw.uid:
            raise SystemUserError(f"account {pw.name!r} has uid {pw.uid}, not {spec.uid}")
        if ours:
            record = await self._reg("user", pw.name)
            if record.get("uid") is None:  # crashed between useradd and the record last time
                await self._reg("set_user", pw.name, uid=pw.uid, gid=pw.gid)
        missing = []
        if spec.supplementary_groups:
            have = await asyncio.to_thread(self.lookup.group_names_of, pw.name, pw.gid)
            missing = [g for g in spec.supplementary_groups if g not in have]
        for group in missing:
            await self._ensure_group(group, None, personal=False)
        for argv in build_add_to_groups_argvs(await self.flavour(), pw.name, missing):
            await self._run(argv, "adding to groups failed")
        if pw.home == spec.home:
            await self._make_home(pw, spec.home_mode, adopt=False)  # e.g. after a restore
        else:  # not our layout (e.g. an LDAP account): leave it alone
            self.log.warning(
                "user=%s has home %s, not %s: not touched", pw.name, pw.home, spec.home
            )
        return Account(pw.name, pw.uid, pw.gid, pw.home, created=False)

    async def _create(self, spec: AccountSpec) -> Account:
        if spec.uid is not None:
            other = await asyncio.to_thread(self.lookup.user_by_uid, spec.uid)
            if other is not None:
                raise SystemUserError(f"uid {spec.uid} is already used by {other.name!r}")
        group = spec.group or spec.name
        await self._ensure_group(group, spec.gid, personal=spec.group is None)
        for extra in spec.supplementary_groups:
            await self._ensure_group(extra, None, personal=False)
        # record the intent first: a crash after useradd still leaves the account ours
        await self._reg("set_user", spec.name, uid=None, home=spec.home)
        argv = build_user_argv(await self.flavour(), spec, group)
        started = time.monotonic()
        try:
            await self._run(argv, f"creating system user {spec.name} failed")
        except SystemUserError as e:
            # rc 9: the name was taken meanwhile by someone else; otherwise nothing was made
            if e.rc == 9 or await asyncio.to_thread(self.lookup.user, spec.name) is None:
                await self._reg("drop_user", spec.name)
            raise
        flavour = await self.flavour()
        if flavour != "useradd":  # adduser cannot set supplementary groups on creation
            for extra in build_add_to_groups_argvs(flavour, spec.name, spec.supplementary_groups):
                await self._run(extra, "adding to groups failed")
        pw = await asyncio.to_thread(self.lookup.user, spec.name)
        if pw is None:
            raise SystemUserError(f"account {spec.name!r} missing after {argv[0]} succeeded")
        await self._reg("set_user", spec.name, uid=pw.uid, gid=pw.gid)
        await self._check_usable(pw)
        await self._make_home(pw, spec.home_mode, adopt=True)
        elapsed_ms = 1000 * (time.monotonic() - started)
        self.log.info(
            "user=%s system account created (uid %s, gid %s, home %s) in %.0f ms",
            pw.name,
            pw.uid,
            pw.gid,
            pw.home,
            elapsed_ms,
        )
        return Account(pw.name, pw.uid, pw.gid, pw.home, created=True)

    async def _make_home(self, pw: UserEntry, mode: int, *, adopt: bool) -> None:
        try:
            made = await asyncio.to_thread(
                homes.make_home, pw.home, pw.uid, pw.gid, mode, adopt_root_owned=adopt
            )
        except (OSError, homes.HomeError) as e:
            raise SystemUserError(f"home of {pw.name} ({pw.home}): {e}") from e
        if made:
            self.log.info("user=%s created home %s (mode %o)", pw.name, pw.home, mode)

    async def sync_home(
        self, account: Account, template: str, *, readonly: bool = False, dry_run: bool = False
    ) -> CopyReport:
        """Copy new template files into the home; never overwrite a file the user changed."""
        async with self._lock_for(account.name):
            pw = await self._owned_account(account.name)
            if (pw.uid, pw.home) != (account.uid, account.home):
                raise SystemUserError(f"{account} does not match the system account {pw}")
            manifest = await self._reg("manifest", account.name)
            try:
                report = await asyncio.to_thread(
                    copy_template,
                    template,
                    account.home,
                    account.uid,
                    account.gid,
                    readonly=readonly,
                    manifest=manifest,
                    dry_run=dry_run,
                    digest_cache=self._digests,
                )
            except (OSError, homes.HomeError) as e:
                raise SystemUserError(f"template copy into {account.home} failed: {e}") from e
            if not dry_run and report.manifest != manifest:
                await self._reg("set_manifest", account.name, report.manifest)
        self.log.info("user=%s template %s: %s", account.name, template, report.summary())
        return report

    async def populate_home(
        self, account: Account, template: str, *, readonly: bool = False
    ) -> int:
        """Copy the template into the home; return how many files were written."""
        report = await self.sync_home(account, template, readonly=readonly)
        return report.written

    async def _owned_account(self, name: str) -> UserEntry:
        if not NAME_RE.match(name):
            raise SystemUserError(f"invalid account name {name!r}")
        pw = await asyncio.to_thread(self.lookup.user, name)
        if pw is None:
            raise SystemUserError(f"no system account {name!r}")
        await self._check_usable(pw)
        return pw

    async def lock_account(self, name: str) -> None:
        """Lock the password and expire the account (SSH keys stop working too)."""
        async with self._lock_for(name):
            pw = await self._owned_account(name)
            for argv in build_lock_argvs(await self.flavour(), name):
                await self._run(argv, f"locking {name} failed")
            if await self._reg("user", name) is not None:
                await self._reg("set_user", name, locked=utcnow_iso())
        self.log.info("user=%s system account locked (uid %s)", name, pw.uid)

    async def unlock_account(self, name: str) -> None:
        """Undo :meth:`lock_account` (e.g. the user is back in the userlist)."""
        async with self._lock_for(name):
            await self._owned_account(name)
            for argv in build_lock_argvs(await self.flavour(), name, unlock=True):
                await self._run(argv, f"unlocking {name} failed")
            if await self._reg("user", name) is not None:
                await self._reg("set_user", name, locked=None)
        self.log.info("user=%s system account unlocked", name)

    async def archive_home(self, name: str, archive_dir: str) -> str:
        """Write the home of ``name`` to ``archive_dir/<name>-<UTC time>.tar.gz`` (mode 0600).

        The home stays in place. Lock the account first so nothing changes while archiving.
        """
        async with self._lock_for(name):
            pw = await self._owned_account(name)
            stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
            path = f"{archive_dir.rstrip('/')}/{name}-{stamp}.tar.gz"

            def work() -> str:
                homes.make_parents(archive_dir, 0o700)
                return archive_home(pw.home, path, pw.uid, unique=True)

            try:
                result = await asyncio.to_thread(work)
            except (OSError, homes.HomeError) as e:
                raise SystemUserError(f"archiving {pw.home} to {path} failed: {e}") from e
        self.log.info("user=%s home archived to %s", name, result)
        return result

    def created_by_us(self, name: str) -> bool:
        """True if this package's registry records ``name`` as created by it.

        Reads the (small, cached) registry file; :meth:`ensure_account` additionally checks
        that the uid still matches the recorded one.
        """
        return self.registry.user(name) is not None

    def accounts(self) -> dict[str, dict]:
        """The registry records of all accounts created by this package (name -> record)."""
        return self.registry.users()
