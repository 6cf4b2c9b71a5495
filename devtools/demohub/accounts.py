"""Make a demo user's system account before the hub starts, exactly as the hub would at their
first login: the authenticator is built from the demo's own config file and asked for the
username, the account spec and its system-users helper (so the hub later finds the account in
its registry as one it created, and fills the home from the template only once)."""

from __future__ import annotations

import asyncio
from pathlib import Path

from traitlets.config import PyFileConfigLoader


def load_config(config_file: Path):
    return PyFileConfigLoader(config_file.name, path=str(config_file.parent)).load_config()


async def _ensure(auth, identity: str):
    name = auth.username_for_identity(identity)
    su = auth.system_users
    account = await su.ensure_account(auth.account_spec_for(name))
    if account.created and auth.home_template:
        await su.populate_home(account, auth.home_template, readonly=auth.template_readonly)
    return account


def ensure_account(config_file: Path, identity: str):
    """The :class:`jupyterhub_lab_ext.accounts.system_users.Account` of ``identity`` (created if needed)."""
    from jupyterhub_lab_ext.auth.authenticator import UserlistOAuthenticator

    # built outside an event loop, the authenticator starts no background polling
    auth = UserlistOAuthenticator(config=load_config(config_file))
    return asyncio.run(_ensure(auth, identity))
