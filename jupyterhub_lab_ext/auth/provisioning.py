"""A hub user's system account and home, made at first login and checked before each spawn.

:class:`Provisioner` asks :class:`~jupyterhub_lab_ext.accounts.system_users.SystemUsers` for the
account once per process per user: it unlocks an account locked at removal when the user is
back and fills a new home from the template. Refusals become pages the user can read.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from jupyterhub_lab_ext.accounts.policy import ExistingAccountError, SystemUserError
from jupyterhub_lab_ext.accounts.spec import AccountSpec
from jupyterhub_lab_ext.accounts.system_users import SystemUsers
from jupyterhub_lab_ext.auth import refusal


class Provisioner:
    """Ensure account and home of hub users through ``system_users``.

    :param system_users: None when the authenticator manages no system accounts
        (``create_system_users`` off): then :meth:`ensure` does nothing.
    :param spec_for: ``username -> AccountSpec`` (the authenticator's ``account_spec_for``).
    :param home_template: directory copied into a new home (``""``: nothing is copied).
    :param template_readonly: make the copied files read-only.
    """

    def __init__(
        self,
        system_users: SystemUsers | None,
        *,
        spec_for: Callable[[str], AccountSpec],
        home_template: str,
        template_readonly: bool,
        log: logging.Logger | logging.LoggerAdapter,
    ):
        self.system_users = system_users
        self.spec_for = spec_for
        self.home_template = home_template
        self.template_readonly = template_readonly
        self.log = log
        self._ensured: set[str] = set()

    def forget(self, username: str) -> None:
        """Check ``username`` again at the next call (they left the userlist)."""
        self._ensured.discard(username)

    async def ensure(self, username: str, *, during_login: bool = False) -> None:
        """Ensure the account and home of ``username`` (once per process per user).

        Refusals raise 403/500 pages with a clear message when ``during_login``; otherwise a
        failed account creation raises :class:`SystemUserError`.
        """
        if self.system_users is None or username in self._ensured:
            return
        try:
            await self._ensure(username)
        except ExistingAccountError as e:
            self.log.error("user=%s refused: %s", username, e)
            raise refusal.existing_account(username) from None
        except SystemUserError as e:
            self.log.error("user=%s: creating the system account failed: %s", username, e)
            if during_login:
                raise refusal.account_failed() from None
            raise
        self._ensured.add(username)

    async def _ensure(self, username: str) -> None:
        su = self.system_users
        record = await asyncio.to_thread(lambda: su.accounts().get(username) or {})
        if record.get("locked"):
            await su.unlock_account(username)
        account = await su.ensure_account(self.spec_for(username))
        if account.created and self.home_template:
            n = await su.populate_home(account, self.home_template, readonly=self.template_readonly)
            self.log.info(
                "user=%s home %s filled with %d template files", username, account.home, n
            )
