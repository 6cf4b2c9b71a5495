"""``jupyterhub-lab-ext userlist ...``: validate and inspect a userlist file.

- ``jupyterhub-lab-ext userlist check FILE``: exit 0 when the file is valid, else 1 with one
  ``file:line: message`` line per problem;
- ``jupyterhub-lab-ext userlist show FILE``: identity -> system username -> admin/groups.

Both apply the same naming rules as the hub: pass ``--config jupyterhub_config.py`` to take
``username_prefix``, ``domain_rules``, ``reserved_usernames`` and ``uid_min`` (and
``userlist_file`` when FILE is omitted) from the hub's authenticator, as the hub configures it
(:mod:`.hubconfig`), or give ``--prefix`` / ``--domain-rule`` directly. Without either, no prefix
and no domain rules apply (so clashes they would cause go unnoticed); ``check`` says which rules
it used on its second line.
"""

from __future__ import annotations

import argparse
import json
import sys

from jupyterhub_lab_ext.auth import naming
from jupyterhub_lab_ext.auth.userlist import Userlist, UserlistParseError
from jupyterhub_lab_ext.auth.userlist_file import load_userlist
from jupyterhub_lab_ext.cli.hubconfig import HubConfig, HubConfigError

#: what the userlist commands take from the hub's authenticator
HUB_SETTINGS = ("userlist_file", "username_prefix", "domain_rules", "reserved_usernames", "uid_min")


def hub_settings(config_file: str, userlist_file: str | None = None) -> dict:
    """The userlist settings of the hub's authenticator under ``config_file``.

    ``userlist_file`` (the command's FILE) replaces the config's, as a command-line option would.
    """
    overrides = {"userlist_file": userlist_file} if userlist_file else {}
    return HubConfig.load(config_file).authenticator_settings(HUB_SETTINGS, **overrides)


def _domain_rule(text: str) -> tuple[str, str]:
    domain, sep, tag = text.partition("=")
    if not sep:
        raise argparse.ArgumentTypeError(f"{text!r}: expected DOMAIN=TAG (TAG may be empty)")
    return domain, tag


def naming_summary(prefix: str, rules: dict[str, str], source: str) -> str:
    """The line ``userlist check`` prints about the naming rules it applied."""
    parts = [f"username prefix {prefix!r}" if prefix else "no username prefix"]
    if rules:
        shown = (f"{d} -> {t!r}" if t else f"{d} dropped" for d, t in sorted(rules.items()))
        parts.append("domain rules " + ", ".join(shown))
    else:
        parts.append("no domain rules")
    return f"naming: {'; '.join(parts)} ({source})"


def _source(args) -> str:
    if args.config:
        return f"from {args.config}"
    if args.prefix is not None or args.domain_rule:
        return "from the command line"
    return "none given: pass --config with the hub's jupyterhub_config.py to check with its rules"


def _load(args) -> tuple[str, Userlist | None, list[str]]:
    """Resolve settings, parse the file; return (path, list or None, error lines).

    Sets ``args.naming`` to the :func:`naming_summary` of the rules used.
    """
    try:
        settings = hub_settings(args.config, args.file) if args.config else {}
    except HubConfigError as e:
        return "", None, [str(e)]
    path = args.file or settings.get("userlist_file")
    if not path:
        return "", None, ["no FILE given and no userlist_file in --config"]
    prefix = args.prefix if args.prefix is not None else settings.get("username_prefix", "")
    rules = dict(settings.get("domain_rules", {}))
    rules.update(dict(args.domain_rule or ()))
    args.naming = naming_summary(prefix, rules, _source(args))
    try:
        username_for = naming.make_normalizer(prefix=prefix, domain_rules=rules)
    except naming.NamingError as e:
        return path, None, [f"bad naming settings: {e}"]
    reserved = set(settings.get("reserved_usernames", ()))
    if not args.no_system_accounts:
        uid_min = args.uid_min if args.uid_min is not None else settings.get("uid_min")
        reserved |= naming.load_system_names(uid_min=uid_min)

    def reserved_check(name: str) -> str | None:
        return naming.reserved_reason(name, reserved)

    try:
        ul = load_userlist(path, username_for=username_for, reserved=reserved_check)
    except UserlistParseError as e:
        return path, None, [str(err) for err in e.errors]
    return path, ul, []


def _cmd_check(args) -> int:
    path, ul, errors = _load(args)
    if ul is None:
        for line in errors:
            print(line, file=sys.stderr)
        return 1
    admins = sum(e.admin for e in ul.entries)
    print(f"{path}: OK, {len(ul)} users ({admins} admins)")
    print(args.naming)
    return 0


def _table(rows: list[dict]) -> list[str]:
    table = [("IDENTITY", "USERNAME", "ADMIN", "GROUPS")]
    table += [
        (r["identity"], r["username"], "yes" if r["admin"] else "", ",".join(r["groups"]))
        for r in rows
    ]
    widths = [max(len(row[i]) for row in table) for i in range(4)]
    return [
        "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
        for row in table
    ]


def _cmd_show(args) -> int:
    path, ul, errors = _load(args)
    if ul is None:
        for line in errors:
            print(line, file=sys.stderr)
        return 1
    rows = [
        {
            "identity": e.identity,
            "username": e.username,
            "admin": e.admin,
            "groups": list(e.groups),
            "line": e.lineno,
        }
        for e in ul.entries
    ]
    print(json.dumps(rows, indent=1) if args.json else "\n".join(_table(rows)))
    return 0


def _common_options() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "file",
        nargs="?",
        metavar="FILE",
        help="the userlist file (default: userlist_file of --config)",
    )
    common.add_argument(
        "--config", metavar="PATH", help="jupyterhub_config.py to take naming settings from"
    )
    common.add_argument("--prefix", default=None, help="username prefix, e.g. jh-")
    common.add_argument(
        "--domain-rule",
        action="append",
        type=_domain_rule,
        metavar="DOMAIN=TAG",
        help="strip (empty TAG) or replace a domain in usernames; repeatable",
    )
    common.add_argument(
        "--no-system-accounts",
        action="store_true",
        help="do not read this machine's passwd database for reserved names",
    )
    common.add_argument("--uid-min", type=int, default=None, help="override UID_MIN")
    return common


def register(subparsers) -> argparse.ArgumentParser:
    """Add ``userlist check`` and ``userlist show``."""
    top = subparsers.add_parser("userlist", help="validate and inspect a userlist file")
    top.set_defaults(func=lambda args: (top.print_help(), 2)[1])
    sub = top.add_subparsers(dest="userlist_command")
    common = _common_options()
    p = sub.add_parser(
        "check", parents=[common], help="exit 0 if valid, else print file:line errors"
    )
    p.set_defaults(func=_cmd_check)
    p = sub.add_parser("show", parents=[common], help="identity -> username -> admin/groups table")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(func=_cmd_show)
    return top
