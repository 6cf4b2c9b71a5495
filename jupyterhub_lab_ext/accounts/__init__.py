"""System accounts: users, groups and home directories on this machine.

The account we want and the one we got (``spec``), pure account policy (``policy``), the
name-service lookups (``nss``), the one reader of ``/etc/login.defs`` (``logindefs``), the
useradd/groupadd command lines (``commands``), the registry of accounts the package made
(``registry``), home creation (``homes``), the template copy into homes (``home_template``), home
archives (``archive``) and the async front door that ties them together (``system_users``).

Used by the authenticator in the hub process and by the admin CLI. Imports only ``util`` and the
standard library: no jupyterhub, no tornado, so the CLI and tests use it without a hub.
"""
