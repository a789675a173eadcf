"""Who is calling: the bearer key's tenant and permissions, checked on every request."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from fastapi import Request

from jobforge.api.errors import ApiError
from jobforge.apikeys import Verifier
from jobforge.jobs import DEFAULT_TENANT


@dataclass(frozen=True, slots=True)
class Caller:
    """tenant None: auth is off and the caller sees every tenant."""

    tenant: str | None
    permissions: frozenset[str]
    key_id: str | None = None

    def owns(self, tenant_id: str | None) -> bool:
        return self.tenant is None or (tenant_id or DEFAULT_TENANT) == self.tenant

    def allows(self, permission: str) -> bool:
        return "admin" in self.permissions or permission in self.permissions


ANONYMOUS = Caller(None, frozenset({"admin"}))


def bearer(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


def requires(*permissions: str) -> Callable[[Request], Caller]:
    """A FastAPI dependency: the caller, if its key holds one of `permissions` (admin holds
    all of them)."""

    def check(request: Request) -> Caller:
        verifier: Verifier | None = request.app.state.verifier
        if verifier is None:
            return ANONYMOUS
        token = bearer(request)
        if token is None:
            raise ApiError(401, "unauthorized", "Missing API key (Authorization: Bearer KEY)")
        key = verifier.verify(token)
        if key is None:
            raise ApiError(401, "unauthorized", "Invalid or revoked API key")
        if not any(key.allows(p) for p in permissions):
            wanted = " or ".join(permissions)
            raise ApiError(403, "forbidden", f"This API key lacks the {wanted} permission")
        return Caller(key.tenant_id, key.permissions, key.id)

    check.__name__ = "requires_" + "_or_".join(p.replace(":", "_") for p in permissions)
    return check
