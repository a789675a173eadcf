"""API keys: one tenant each, a set of permissions, shown once and stored as a slow hash.

A key reads `jf_<id>_<secret>`. The id finds the row; the secret is checked against its
scrypt hash. scrypt costs tens of milliseconds on purpose, so a verified key is remembered
in memory by its SHA-256 (a fast check of the same secret) while revocation is still read
from the database on every request.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import secrets
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from jobforge.errors import JobNotFound, ValidationError
from jobforge.jobs import iso, utcnow

if TYPE_CHECKING:
    from jobforge.store.sql import Row, SQLStore

PERMISSIONS = (
    "jobs:read",
    "jobs:write",
    "dependencies:read",
    "dependencies:write",
    "workflows:read",
    "workflows:write",
    "admin",
)
_TENANT = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
_TOKEN = re.compile(r"^jf_([0-9a-f]{12})_([A-Za-z0-9_-]{20,100})$")
_SCRYPT = {"n": 2**14, "r": 8, "p": 1}
TOUCH_EVERY = 60.0  # seconds between `last_used_at` writes for one key


class ApiKeyNotFound(JobNotFound):
    """No such API key."""

    code = "api_key_not_found"


@dataclass(frozen=True, slots=True)
class ApiKey:
    id: str
    tenant_id: str
    name: str | None
    permissions: frozenset[str]
    created_at: datetime
    revoked_at: datetime | None
    last_used_at: datetime | None

    def allows(self, permission: str) -> bool:
        return "admin" in self.permissions or permission in self.permissions

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "tenant": self.tenant_id,
            "name": self.name,
            "permissions": sorted(self.permissions),
            "created_at": iso(self.created_at),
            "revoked_at": iso(self.revoked_at),
            "last_used_at": iso(self.last_used_at),
        }


def check_tenant(tenant: str) -> str:
    if not _TENANT.match(tenant):
        raise ValidationError(
            f"Invalid tenant: {tenant!r} (letters, digits, '_', '.', '-'; at most 64)"
        )
    return tenant


def check_permissions(permissions: Iterable[str]) -> frozenset[str]:
    chosen = frozenset(p.strip() for p in permissions if p.strip())
    unknown = sorted(chosen - set(PERMISSIONS))
    if unknown:
        raise ValidationError(f"Unknown permission: {unknown[0]} (one of {', '.join(PERMISSIONS)})")
    if not chosen:
        raise ValidationError(f"No permissions given (one or more of {', '.join(PERMISSIONS)})")
    return chosen


def _hash(secret: str, salt: bytes) -> str:
    digest = hashlib.scrypt(secret.encode(), salt=salt, **_SCRYPT)
    cost = f"{_SCRYPT['n']}${_SCRYPT['r']}${_SCRYPT['p']}"
    return f"scrypt${cost}${base64.b64encode(salt).decode()}${base64.b64encode(digest).decode()}"


def _matches(secret: str, stored: str) -> bool:
    _, n, r, p, salt, digest = stored.split("$")
    got = hashlib.scrypt(secret.encode(), salt=base64.b64decode(salt), n=int(n), r=int(r), p=int(p))
    return hmac.compare_digest(got, base64.b64decode(digest))


def create(
    store: SQLStore, tenant: str, permissions: Iterable[str], name: str | None = None
) -> tuple[ApiKey, str]:
    """A new key and its token, which is never shown again."""
    tenant, perms = check_tenant(tenant), check_permissions(permissions)
    key_id, secret = secrets.token_hex(6), secrets.token_urlsafe(32)
    with store._tx() as cur:
        store._run(
            cur, "insert_api_key", id=key_id, tenant_id=tenant, name=name,
            permissions=json.dumps(sorted(perms)), hash=_hash(secret, secrets.token_bytes(16)),
            now=utcnow(),
        )  # fmt: skip
    return get(store, key_id), f"jf_{key_id}_{secret}"


def get(store: SQLStore, key_id: str) -> ApiKey:
    rows = store._select("get_api_key", id=key_id)
    if not rows:
        raise ApiKeyNotFound(f"API key not found: {key_id}")
    return _key(store, rows[0])


def list_keys(store: SQLStore, tenant: str | None = None) -> list[ApiKey]:
    return [_key(store, r) for r in store._select("list_api_keys", tenant=tenant)]


def revoke(store: SQLStore, key_id: str) -> ApiKey:
    """Revoke a key: every request with it is refused from now on."""
    with store._tx() as cur:
        row = store._run(cur, "revoke_api_key", id=key_id, now=utcnow()).fetchone()
    if row is None:
        get(store, key_id)  # unknown: ApiKeyNotFound
        raise ValidationError(f"API key {key_id} is already revoked")
    return _key(store, row)


def _key(store: SQLStore, r: Row) -> ApiKey:
    return ApiKey(
        id=r["id"],
        tenant_id=r["tenant_id"],
        name=r["name"],
        permissions=frozenset(store._decode_json(r["permissions"])),
        created_at=store._time(r["created_at"]),  # type: ignore[arg-type]
        revoked_at=store._time(r["revoked_at"]),
        last_used_at=store._time(r["last_used_at"]),
    )


class Verifier:
    """Turns a bearer token into its live key, paying for scrypt once per key and process."""

    def __init__(self, store: SQLStore) -> None:
        self._store = store
        self._known: dict[str, bytes] = {}  # key id -> SHA-256 of a token that passed scrypt
        self._touched: dict[str, float] = {}
        self._lock = threading.Lock()

    def verify(self, token: str) -> ApiKey | None:
        """The key, or None when the token is malformed, unknown, wrong or revoked."""
        m = _TOKEN.match(token.strip())
        if m is None:
            return None
        key_id, secret = m.groups()
        rows = self._store._select("get_api_key", id=key_id)
        if not rows or rows[0]["revoked_at"] is not None:
            return None
        fast = hashlib.sha256(token.encode()).digest()
        with self._lock:
            known = self._known.get(key_id)
        if known is None or not hmac.compare_digest(known, fast):
            if not _matches(secret, rows[0]["hash"]):
                return None
            with self._lock:
                self._known[key_id] = fast
        self._touch(key_id)
        return _key(self._store, rows[0])

    def _touch(self, key_id: str) -> None:
        now = time.monotonic()
        with self._lock:
            if now - self._touched.get(key_id, -TOUCH_EVERY) < TOUCH_EVERY:
                return
            self._touched[key_id] = now
        with self._store._autocommit() as cur:
            self._store._run(cur, "touch_api_key", id=key_id, now=utcnow())
