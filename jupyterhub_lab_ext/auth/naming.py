"""Identity (login or email) -> safe POSIX username.

Pure functions: no I/O except :func:`load_system_names`, which reads ``/etc/login.defs`` (through
:mod:`jupyterhub_lab_ext.accounts.logindefs`) and the passwd database and is meant to be called
once and injected where reserved names are needed.

Rules of :func:`normalize_username`:

- the result matches ``[a-z_][a-z0-9_-]*`` and is at most :data:`MAX_LENGTH` (32) characters;
- letters are lowercased and accents dropped (``José`` -> ``jose``), every other character outside
  the charset becomes ``_``;
- an email ``local@domain`` keeps its domain, encoded as ``local-domain-with-dashes``
  (``alice@gmail.com`` -> ``alice-gmail-com``), unless the admin configured a rule for that
  domain: ``{"example.org": ""}`` strips it (``alice@example.org`` -> ``alice``),
  ``{"students.example.org": "stu"}`` replaces it by a short tag (``bob-stu``);
- an optional prefix is put in front (``jh-alice``);
- a name longer than 32 characters is cut and gets ``-`` plus an 8-hex-digit hash of the whole
  identity, so two long identities that share a beginning still get different names;
- it is idempotent: a name that already satisfies all of the above is returned unchanged
  (JupyterHub and oauthenticator both normalize the same name).

The mapping is readable, not injective (``a.b`` and ``a_b`` both give ``a_b``): collisions are
detected by the userlist parser, and the authenticator checks the full identity at login.
"""

from __future__ import annotations

import hashlib
import pwd
import re
import unicodedata
from collections.abc import Callable, Iterable, Mapping

from jupyterhub_lab_ext.accounts import logindefs

MAX_LENGTH = 32
HASH_LENGTH = 8

#: Names never handed out, whatever the passwd database says (Debian/RHEL system accounts and
#: a few names that would confuse admins or tools).
RESERVED_NAMES = frozenset(
    """
    root daemon bin sys adm sync games man lp mail news uucp proxy www-data backup list irc
    gnats nobody nogroup operator halt shutdown ftp postfix sshd messagebus systemd-network
    systemd-resolve systemd-timesync systemd-coredump systemd-journal polkitd _apt avahi
    dnsmasq ntp chrony tss uuidd tcpdump rpc rpcuser nfsnobody postgres mysql docker sudo
    wheel admin administrator staff users jupyterhub jupyter
    """.split()
)

_VALID_RE = re.compile(r"[a-z_][a-z0-9_-]*")
_BAD_CHARS_RE = re.compile(r"[^a-z0-9_-]")
_TAG_RE = re.compile(r"[a-z0-9_-]*")


class NamingError(ValueError):
    """An identity cannot be turned into a username (empty, or a bad rule/prefix)."""


def is_valid_posix_name(name: str, max_length: int = MAX_LENGTH) -> bool:
    """True if ``name`` is in the portable charset, starts with a letter or ``_`` and fits."""
    return 0 < len(name) <= max_length and _VALID_RE.fullmatch(name) is not None


def validate_prefix(prefix: str) -> str:
    """Check a username prefix (``""`` or a valid name start such as ``jh-``); return it."""
    if prefix and (_VALID_RE.fullmatch(prefix) is None or len(prefix) > MAX_LENGTH - 12):
        raise NamingError(
            f"username prefix {prefix!r} must match [a-z_][a-z0-9_-]* and be at most "
            f"{MAX_LENGTH - 12} characters"
        )
    return prefix


def validate_domain_rules(rules: Mapping[str, str] | None) -> dict[str, str]:
    """Check and lowercase per-domain rules ``{domain: tag}``; return the cleaned dict."""
    cleaned: dict[str, str] = {}
    for domain, tag in (rules or {}).items():
        d = str(domain).strip().lower().lstrip("@")
        if not d or "@" in d or any(c.isspace() for c in d):
            raise NamingError(f"domain rule key {domain!r} is not a domain name")
        if not isinstance(tag, str) or _TAG_RE.fullmatch(tag) is None or len(tag) > 16:
            raise NamingError(
                f"domain rule for {d!r}: tag {tag!r} must be '' (strip the domain) or "
                "up to 16 characters of [a-z0-9_-]"
            )
        cleaned[d] = tag
    return cleaned


def _fold(text: str) -> str:
    """Lowercase and drop accents; other non-ASCII characters become ``_`` later."""
    text = text.strip().lower()
    if text.isascii():
        return text
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(c for c in decomposed if not unicodedata.combining(c)).lower()


def _short_hash(identity: str) -> str:
    return hashlib.sha256(identity.encode("utf-8")).hexdigest()[:HASH_LENGTH]


def _is_fixed_point(name: str, prefix: str, max_length: int) -> bool:
    return name.startswith(prefix) and is_valid_posix_name(name, max_length)


def normalize_username(
    identity: str,
    *,
    prefix: str = "",
    domain_rules: Mapping[str, str] | None = None,
    max_length: int = MAX_LENGTH,
) -> str:
    """Map a login or email to a POSIX username (see the module docstring for the rules).

    ``domain_rules`` must already be cleaned by :func:`validate_domain_rules` (lowercase keys);
    ``prefix`` by :func:`validate_prefix`. Raises :class:`NamingError` for an empty identity.
    """
    if _is_fixed_point(identity, prefix, max_length):
        return identity
    folded = _fold(identity)
    if not folded:
        raise NamingError("empty identity")
    local, at, domain = folded.rpartition("@")
    if not at:
        local, domain = folded, ""
    if at and not (local and domain):
        raise NamingError(f"identity {identity!r} is not a valid email (empty part)")
    body = _BAD_CHARS_RE.sub("_", local)
    if at:
        tag = (domain_rules or {}).get(domain)
        if tag is None:
            tag = _BAD_CHARS_RE.sub("_", domain.replace(".", "-"))
        if tag:
            body = f"{body}-{tag}"
    if not prefix and not (body[0].isalpha() or body[0] == "_"):
        body = "_" + body
    name = prefix + body
    if len(name) > max_length:
        keep = max_length - HASH_LENGTH - 1
        name = f"{name[:keep]}-{_short_hash(folded)}"
    return name


def make_normalizer(
    *, prefix: str = "", domain_rules: Mapping[str, str] | None = None
) -> Callable[[str], str]:
    """Return ``identity -> username`` with validated, bound rules (what parsers take)."""
    prefix = validate_prefix(prefix)
    rules = validate_domain_rules(domain_rules)

    def normalize(identity: str) -> str:
        return normalize_username(identity, prefix=prefix, domain_rules=rules)

    return normalize


def system_names(passwd: Iterable[tuple[str, int]], uid_min: int) -> frozenset[str]:
    """Names of accounts with a uid below ``uid_min`` (plus ``nobody``-like high uids)."""
    return frozenset(
        name for name, uid in passwd if uid < uid_min or uid >= 65534 or name in RESERVED_NAMES
    )


def load_system_names(
    login_defs: str = logindefs.LOGIN_DEFS,
    *,
    uid_min: int | None = None,
    getpwall: Callable[[], Iterable] = pwd.getpwall,
) -> frozenset[str]:
    """I/O edge: reserved names of this machine (system accounts) plus :data:`RESERVED_NAMES`.

    Reads ``UID_MIN`` from ``login_defs`` unless ``uid_min`` is given, and lists the passwd
    database with ``getpwall`` (default :func:`pwd.getpwall`). Inject both in tests.
    """
    if uid_min is None:
        uid_min = logindefs.uid_min(login_defs)
    entries = ((p[0], p[2]) for p in getpwall())
    return RESERVED_NAMES | system_names(entries, uid_min)


def reserved_reason(name: str, reserved: Iterable[str] | Callable[[str], bool]) -> str | None:
    """A human message if ``name`` must not be handed out, else None."""
    hit = reserved(name) if callable(reserved) else name in reserved
    if hit or name in RESERVED_NAMES:
        return f"'{name}' is a reserved or system account name and is never handed out"
    return None
