"""Login: the userlist OAuth authenticator and everything it decides.

The authenticator classes an admin selects and their one config section, ``UserlistAuthenticator``
(``authenticator``; what each option means and accepts: ``options``), are glue over one object or
module per job: the userlist format (``userlist``) and file (``userlist_file``), the list in
force and its changes (``watch``), identity -> system username (``naming``), provider identities
(``identities``), the checks of one login (``login``), OIDC discovery (``oidc_discovery``),
admin-page edits of the file (``admin_page``), the hub-side access pass that revokes removed
users' credentials (``access``), what else happens to removed users (``removal``), system
accounts at login (``provisioning``), background tasks (``background``) and the pages refused
users read (``refusal``).

Runs in the hub process. May import ``accounts`` and ``util``; never ``spawner``, ``kernels``,
``services`` or ``cli``.
"""
