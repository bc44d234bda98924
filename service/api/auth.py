"""API keys and roles: who may call what.

A key is a bearer token (``Authorization: Bearer <key>``). The configuration (setting
``API_KEYS``) holds only each key's SHA-256; ``python -m service hash-key`` prints an entry.

Why a plain SHA-256 and not a salted PBKDF2/scrypt string: a key is checked on every request of
a gateway posting many strips a second, and a deliberately slow hash costs tens of milliseconds
of CPU each time; worse, salted hashes cannot be looked up, so every unknown key would cost one
slow hash per configured entry, turning junk requests into a denial of service. Slow hashing
only protects secrets that can be guessed, so instead ``hash-key`` refuses keys shorter than
``MIN_KEY_LENGTH``: a random key of that length (``secrets.token_urlsafe(32)``) cannot be found
from its SHA-256 by any search, leaked configuration or not.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
from collections import Counter
from collections.abc import Sequence
from typing import get_args

from service.api.errors import ApiError
from service.config import ApiKey, Role

ROLES: tuple[Role, ...] = get_args(Role)
GRANTS: dict[Role, frozenset[Role]] = {
    "inspect": frozenset({"inspect"}),
    "read": frozenset({"read"}),
    "admin": frozenset(ROLES),
}
"""The roles each key role satisfies: admin implies the others."""

MIN_KEY_LENGTH = 32
REALM = 'Bearer realm="strip-inspection"'
LOOPBACK_NAMES = frozenset({"localhost"})


class InsecureBind(ValueError):
    """Asked to serve beyond this machine with no API keys configured."""


def key_digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def key_entry(key: str, *, name: str, role: Role) -> ApiKey:
    """The configuration entry of ``key``; refuses keys short enough to be searched for."""
    if len(key) < MIN_KEY_LENGTH:
        raise ValueError(
            f"the key has {len(key)} characters; use at least {MIN_KEY_LENGTH} random ones, "
            "e.g. python -c 'import secrets; print(secrets.token_urlsafe(32))'"
        )
    return ApiKey(name=name, role=role, sha256=key_digest(key))


class KeyRing:
    """The configured keys; with none, the API is open (see ``check_bind``)."""

    def __init__(self, keys: Sequence[ApiKey]) -> None:
        for field in ("name", "sha256"):
            repeated = [v for v, n in Counter(getattr(k, field) for k in keys).items() if n > 1]
            if repeated:
                raise ValueError(f"API_KEYS: {field} repeated: {', '.join(repeated)}")
        self._keys = [(bytes.fromhex(key.sha256), key) for key in keys]

    @property
    def open(self) -> bool:
        return not self._keys

    def identify(self, key: str) -> ApiKey | None:
        """The entry of ``key``; every entry is compared, in constant time, whatever matches."""
        digest = hashlib.sha256(key.encode()).digest()
        found = None
        for expected, entry in self._keys:
            if hmac.compare_digest(digest, expected):
                found = entry
        return found

    def holder(self, authorization: str | None) -> ApiKey | None:
        """The valid key an Authorization header carries, whatever its role; None without one."""
        token = _bearer_token(authorization)
        return None if token is None else self.identify(token)

    def authorize(self, authorization: str | None, role: Role) -> ApiKey | None:
        """The key sent in an Authorization header if it grants ``role`` (None while open).

        Raises 401 without a key or with an unknown one, 403 when the key lacks the role.
        """
        if self.open:
            return None
        token = _bearer_token(authorization)
        if token is None:
            raise ApiError(
                401,
                "missing_api_key",
                "this endpoint needs an API key: send 'Authorization: Bearer <key>'",
                {"WWW-Authenticate": REALM},
            )
        key = self.identify(token)
        if key is None:
            raise ApiError(
                401,
                "invalid_api_key",
                "the API key is not valid",
                {"WWW-Authenticate": f'{REALM}, error="invalid_token"'},
            )
        if role not in GRANTS[key.role]:
            raise ApiError(
                403,
                "forbidden",
                f"the key {key.name!r} has the role {key.role!r}; this endpoint needs {role!r}",
                {"WWW-Authenticate": f'{REALM}, error="insufficient_scope"'},
            )
        return key


def _bearer_token(authorization: str | None) -> str | None:
    scheme, _, token = (authorization or "").partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


def _is_loopback(host: str) -> bool:
    if host.lower() in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:  # a host name: it may resolve to anything
        return False


def check_bind(host: str, keys: Sequence[ApiKey]) -> None:
    """Refuse to serve an open API (no keys) on anything but a loopback address."""
    if keys or _is_loopback(host):
        return
    raise InsecureBind(
        f"refusing to serve on {host} without API keys: anyone who can reach it could post "
        "strips and read every result. Either bind a loopback address (--host 127.0.0.1) or "
        "configure keys: for each key run `python -m service hash-key --name NAME --role "
        f"{{{','.join(ROLES)}}}` with the key on stdin, and set API_KEYS (environment or .env) "
        "to the JSON list of the printed entries."
    )
