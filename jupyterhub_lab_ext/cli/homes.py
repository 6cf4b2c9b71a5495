"""``jupyterhub-lab-ext homes ...``: admin commands for the homes of the hub's system users.

- ``homes list``: the accounts this package created (uid, home, created, locked).
- ``homes sync-template --template DIR [--user NAME ...] [--readonly] [--dry-run]``: push new
  template files into existing homes without touching what users changed: files the user
  edited or deleted stay as they are, unmodified copies of changed template files are updated
  (see :mod:`.homes`). Without ``--user`` it covers every account in the registry that is not
  locked; named users need not be in the registry (an admin naming them is explicit consent)
  but must have a uid of at least ``UID_MIN``. Prints one summary line per user.
- ``homes lock NAME ...`` / ``homes unlock NAME ...``: lock (password locked, account expired,
  so SSH keys stop working too) or unlock accounts.
- ``homes archive NAME ... --to DIR``: write each home to ``DIR/NAME-<UTC time>.tar.gz``
  (mode 0600); homes are never deleted.

Run as root. Pass ``--config jupyterhub_config.py`` to take the hub's ``system_users_state_dir``
(and for ``sync-template`` its ``home_template`` and ``template_readonly``) from the hub's
authenticator, as the hub configures it (:mod:`.hubconfig`); ``--state-dir``, ``--template`` and
``--readonly`` win over the config. Without ``--config``, ``--state-dir`` must match the hub's
``system_users_state_dir`` (default ``/var/lib/jupyterhub-lab-ext``).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Callable, Sequence

from jupyterhub_lab_ext.accounts.system_users import Account, SystemUserError, SystemUsers
from jupyterhub_lab_ext.cli.hubconfig import HubConfig, HubConfigError

DEFAULT_STATE_DIR = "/var/lib/jupyterhub-lab-ext"
#: what the homes commands take from the hub's authenticator
HUB_SETTINGS = ("system_users_state_dir", "home_template", "template_readonly")


async def sync_template(
    su: SystemUsers,
    template: str,
    users: Sequence[str] = (),
    *,
    readonly: bool = False,
    dry_run: bool = False,
    include_locked: bool = False,
    verbose: bool = False,
    out: Callable[[str], None] = print,
) -> int:
    """Sync ``template`` into the homes of ``users`` (default: all registry accounts).

    Returns the number of users that failed (0 = success).
    """
    records = await asyncio.to_thread(su.accounts)
    names = list(users) or sorted(records)
    failed = skipped = 0
    prefix = "(dry run) " if dry_run else ""
    for name in names:
        if (records.get(name) or {}).get("locked") and not include_locked:
            out(f"{prefix}{name}: skipped (account locked)")
            skipped += 1
            continue
        try:
            pw = await asyncio.to_thread(su.lookup.user, name)
            if pw is None:
                raise SystemUserError(f"no system account {name!r}")
            account = Account(name, pw.uid, pw.gid, pw.home, created=False)
            report = await su.sync_home(account, template, readonly=readonly, dry_run=dry_run)
        except SystemUserError as e:
            failed += 1
            out(f"{prefix}{name}: error: {e}")
            continue
        out(f"{prefix}{name}: {report.summary()}")
        if verbose:
            for label, paths in (("new", report.copied), ("updated", report.updated)):
                for path in paths:
                    out(f"    {label}: {path}")
    synced = len(names) - failed - skipped
    out(f"{prefix}{template}: {synced} homes synced, {skipped} skipped, {failed} failed")
    return failed


def _system_users(args, *, allow_existing: bool = False) -> SystemUsers:
    return SystemUsers(state_dir=args.state_dir, allow_existing=allow_existing)


async def _cmd_list(args) -> int:
    su = _system_users(args)
    records = await asyncio.to_thread(su.accounts)
    print(f"{'name':<24} {'uid':>7}  {'home':<40} {'created':<20} locked")
    for name in sorted(records):
        r = records[name]
        uid = r.get("uid")
        print(
            f"{name:<24} {uid if uid is not None else '?':>7}  {r.get('home', ''):<40} "
            f"{r.get('created', ''):<20} {r.get('locked') or '-'}"
        )
    return 0


async def _cmd_sync(args) -> int:
    su = _system_users(args, allow_existing=bool(args.user) or args.allow_existing)
    failed = await sync_template(
        su,
        args.template,
        args.user or (),
        readonly=args.readonly,
        dry_run=args.dry_run,
        include_locked=args.include_locked,
        verbose=args.verbose,
    )
    return 1 if failed else 0


async def _each(args, action: Callable) -> int:
    su = _system_users(args, allow_existing=args.allow_existing)
    failed = 0
    for name in args.names:
        try:
            result = await action(su, name)
        except SystemUserError as e:
            failed += 1
            print(f"{name}: error: {e}", file=sys.stderr)
            continue
        print(f"{name}: {result}")
    return 1 if failed else 0


async def _cmd_lock(args) -> int:
    async def lock(su, name):
        await su.lock_account(name)
        return "locked"

    return await _each(args, lock)


async def _cmd_unlock(args) -> int:
    async def unlock(su, name):
        await su.unlock_account(name)
        return "unlocked"

    return await _each(args, unlock)


async def _cmd_archive(args) -> int:
    async def archive(su, name):
        return f"archived to {await su.archive_home(name, args.to)}"

    return await _each(args, archive)


def with_hub_settings(args) -> None:
    """Fill in what the command line left open from the hub's config (``--config``)."""
    hub = HubConfig.load(args.config).authenticator_settings(HUB_SETTINGS) if args.config else {}
    if args.state_dir is None:
        args.state_dir = hub.get("system_users_state_dir") or DEFAULT_STATE_DIR
    if "template" in args:
        args.template = args.template or hub.get("home_template") or None
        args.readonly = args.readonly or bool(hub.get("template_readonly"))
        if not args.template:
            raise HubConfigError("no --template given and no home_template in --config")


def _runner(coro_fn):
    def run(args) -> int:
        try:
            with_hub_settings(args)
        except HubConfigError as e:
            print(e, file=sys.stderr)
            return 1
        return asyncio.run(coro_fn(args))

    return run


def _common(p, *, allow_existing: bool = True) -> None:
    p.add_argument(
        "--config",
        metavar="PATH",
        help="jupyterhub_config.py to take system_users_state_dir (and the home template) from",
    )
    p.add_argument(
        "--state-dir",
        default=None,
        help="registry of the accounts the hub created (the hub's system_users_state_dir; "
        f"default: from --config, else {DEFAULT_STATE_DIR})",
    )
    if allow_existing:
        p.add_argument(
            "--allow-existing",
            action="store_true",
            help="also act on accounts this package did not create (uid >= UID_MIN only)",
        )


def _add_sync_template(sub) -> None:
    p = sub.add_parser(
        "sync-template",
        help="copy new template files into existing homes, keeping what users changed",
    )
    _common(p)
    p.add_argument("--template", help="the template directory (default: home_template of --config)")
    p.add_argument(
        "--user",
        action="append",
        metavar="NAME",
        help="only this user (repeatable); default: every unlocked account in the registry",
    )
    p.add_argument("--readonly", action="store_true", help="make new files read-only (0444)")
    p.add_argument(
        "--dry-run", action="store_true", help="report what would change, change nothing"
    )
    p.add_argument("--include-locked", action="store_true", help="also sync locked accounts")
    p.add_argument("-v", "--verbose", action="store_true", help="list every new or updated file")
    p.set_defaults(func=_runner(_cmd_sync))


def register(subparsers) -> argparse.ArgumentParser:
    """Add the ``homes`` command (with its subcommands) to an argparse ``subparsers`` object.

    Each leaf parser sets ``func``: call ``args.func(args)`` and exit with its return value.
    """
    homes = subparsers.add_parser(
        "homes", help="manage the homes of the hub's system users (template sync, lock, archive)"
    )
    homes.set_defaults(func=lambda args: (homes.print_help(), 2)[1])
    sub = homes.add_subparsers(dest="homes_command", metavar="COMMAND")

    p = sub.add_parser("list", help="list the accounts created by jupyterhub-lab-ext")
    _common(p, allow_existing=False)
    p.set_defaults(func=_runner(_cmd_list))

    _add_sync_template(sub)

    for name, func, what in (
        ("lock", _cmd_lock, "lock accounts (password locked and expired; homes stay)"),
        ("unlock", _cmd_unlock, "unlock accounts locked before"),
    ):
        p = sub.add_parser(name, help=what)
        _common(p)
        p.add_argument("names", nargs="+", metavar="NAME")
        p.set_defaults(func=_runner(func))

    p = sub.add_parser("archive", help="archive homes as NAME-<time>.tar.gz (mode 0600)")
    _common(p)
    p.add_argument("names", nargs="+", metavar="NAME")
    p.add_argument("--to", required=True, metavar="DIR", help="archive directory (made 0700)")
    p.set_defaults(func=_runner(_cmd_archive))
    return homes


def main(argv: Sequence[str] | None = None) -> int:
    """Standalone entry point: ``python -m jupyterhub_lab_ext.cli.homes homes ...``."""
    parser = argparse.ArgumentParser(prog="jupyterhub-lab-ext")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
