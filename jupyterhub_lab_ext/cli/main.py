"""``jupyterhub-lab-ext``: the admin command line.

A small argparse dispatcher. Each area registers its subcommands with a
``register(subparsers)`` function listed in :data:`REGISTRARS`; every leaf parser sets
``func`` (``args -> exit code``). To add an area, write ``register`` in your module and add
one line to :data:`REGISTRARS`.

``userlist`` commands (this module):

- ``jupyterhub-lab-ext userlist check FILE``: exit 0 when the file is valid, else 1 with one
  ``file:line: message`` line per problem;
- ``jupyterhub-lab-ext userlist show FILE``: identity -> system username -> admin/groups.

Both apply the same naming rules as the hub: pass ``--config jupyterhub_config.py`` to read
``username_prefix``, ``domain_rules`` and ``reserved_usernames`` (and ``userlist_file`` when
FILE is omitted) from it, or give ``--prefix`` / ``--domain-rule`` directly. Without either,
no prefix and no domain rules apply (so clashes they would cause go unnoticed); ``check``
says which rules it used on its second line.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable, Sequence

from jupyterhub_lab_ext import __version__
from jupyterhub_lab_ext.auth import naming
from jupyterhub_lab_ext.auth.userlist import Userlist, UserlistParseError
from jupyterhub_lab_ext.auth.userlist_file import load_userlist
from jupyterhub_lab_ext.cli import envs as cli_envs
from jupyterhub_lab_ext.cli import homes as cli_homes

_AUTH_SECTIONS = (
    "UserlistAuthenticator",
    "UserlistOAuthenticator",
    "UserlistGitHubOAuthenticator",
    "UserlistGoogleOAuthenticator",
)
_AUTH_KEYS = ("userlist_file", "username_prefix", "domain_rules", "reserved_usernames")


def hub_settings(config_file: str) -> dict:
    """The userlist settings of a ``jupyterhub_config.py`` (later sections win).

    The file is executed as JupyterHub would (it is Python); run the CLI where it can run.
    """
    from traitlets.config.loader import PyFileConfigLoader

    loader = PyFileConfigLoader(os.path.basename(config_file), os.path.dirname(config_file) or ".")
    cfg = loader.load_config()
    found: dict = {}
    for section in _AUTH_SECTIONS:
        if section in cfg:
            for key in _AUTH_KEYS:
                if key in cfg[section]:
                    found[key] = cfg[section][key]
    return found


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
        settings = hub_settings(args.config) if args.config else {}
    except Exception as e:  # the config file is Python: anything can go wrong in it
        return "", None, [f"{args.config}: cannot load hub config: {type(e).__name__}: {e}"]
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
        reserved |= naming.load_system_names(uid_min=args.uid_min)

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
    if args.json:
        print(json.dumps(rows, indent=1))
        return 0
    table = [("IDENTITY", "USERNAME", "ADMIN", "GROUPS")]
    table += [
        (r["identity"], r["username"], "yes" if r["admin"] else "", ",".join(r["groups"]))
        for r in rows
    ]
    widths = [max(len(row[i]) for row in table) for i in range(4)]
    for row in table:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())
    return 0


def register_userlist(subparsers) -> argparse.ArgumentParser:
    """Add ``userlist check`` and ``userlist show``."""
    top = subparsers.add_parser("userlist", help="validate and inspect a userlist file")
    top.set_defaults(func=lambda args: (top.print_help(), 2)[1])
    sub = top.add_subparsers(dest="userlist_command")
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
    p = sub.add_parser(
        "check", parents=[common], help="exit 0 if valid, else print file:line errors"
    )
    p.set_defaults(func=_cmd_check)
    p = sub.add_parser("show", parents=[common], help="identity -> username -> admin/groups table")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(func=_cmd_show)
    return top


#: One ``register(subparsers)`` per area; add yours here.
REGISTRARS: list[Callable[[argparse._SubParsersAction], object]] = [
    register_userlist,
    cli_homes.register,
    cli_envs.register,
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="jupyterhub-lab-ext", description="Admin commands of jupyterhub-lab-ext."
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for register in REGISTRARS:
        register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    func = getattr(args, "func", None)
    if func is None:
        parser.print_help()
        return 2
    return int(func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
