"""Who is calling: the admin (SENTINAI_SERVE__ADMIN_TOKEN) or one tenant (an API key).

Credentials come as `Authorization: Bearer <key>` or `X-API-Key: <key>`. Answers:

- no credentials, or a key that is unknown or revoked: 401;
- a tenant key on `/api/admin/*`: 403 (the admin API's existence is no secret; no tenant data is in
  the answer); the admin API with no admin token configured: 403 for everyone;
- a tenant key on another tenant's path or exception: 404, the very answer a nonexistent exception
  gets, so a key cannot even learn whether another tenant exists.
"""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from fastapi import Depends, HTTPException, Security
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer

from serve.services import ApiServices

NOT_FOUND = "not found"
_bearer = HTTPBearer(auto_error=False, description="a tenant API key (sentinai tenant key) or the admin token")
_api_key = APIKeyHeader(name="X-API-Key", auto_error=False, description="same as the bearer token")


@dataclass(frozen=True)
class Caller:
    """The authenticated caller. `tenant_id` is None for the admin."""

    tenant_id: str | None
    key_id: str | None

    @property
    def is_admin(self) -> bool:
        return self.tenant_id is None

    @property
    def name(self) -> str:
        """What approvals record as `decided_by`, and logs as `caller=`."""
        return "admin" if self.is_admin else str(self.key_id)

    def tenant_scope(self, tenant_id: str) -> str:
        """`tenant_id` when the caller may see it; 404 otherwise (never 403: no existence leak)."""
        if self.is_admin or self.tenant_id == tenant_id:
            return tenant_id
        raise HTTPException(status_code=404, detail=NOT_FOUND)


ADMIN = Caller(tenant_id=None, key_id=None)


def unauthorized(detail: str) -> HTTPException:
    return HTTPException(status_code=401, detail=detail, headers={"WWW-Authenticate": "Bearer"})


def caller_dependency(services: ApiServices) -> Callable[..., Awaitable[Caller]]:
    admin_token = services.settings.serve.admin_token
    admin_secret = admin_token.get_secret_value().encode() if admin_token else None

    async def authenticated_caller(
        bearer: HTTPAuthorizationCredentials | None = Security(_bearer),
        api_key: str | None = Security(_api_key),
    ) -> Caller:
        secret = bearer.credentials if bearer is not None else api_key
        if not secret:
            raise unauthorized("credentials required: Authorization: Bearer <API key> or X-API-Key")
        if admin_secret is not None and hmac.compare_digest(secret.encode(), admin_secret):
            return ADMIN
        key = await services.authenticate(secret)
        if key is None:
            raise unauthorized("invalid or revoked API key")
        return Caller(tenant_id=key.tenant_id, key_id=key.key_id)

    return authenticated_caller


def admin_dependency(services: ApiServices, caller: Callable[..., Awaitable[Caller]]) -> Callable[..., Awaitable[Caller]]:
    enabled = services.settings.serve.admin_token is not None

    async def admin_caller(who: Caller = Depends(caller)) -> Caller:
        if not enabled:
            raise HTTPException(status_code=403, detail="the admin API is disabled: set SENTINAI_SERVE__ADMIN_TOKEN")
        if not who.is_admin:
            raise HTTPException(status_code=403, detail="the admin API needs the admin token")
        return who

    return admin_caller


def optional_caller(services: ApiServices, public: bool,
                    caller: Callable[..., Awaitable[Caller]]) -> Callable[..., Awaitable[Caller | None]]:
    """For /health and /metrics: nobody needs to authenticate when `public`; anyone valid otherwise."""

    async def maybe_caller(
        bearer: HTTPAuthorizationCredentials | None = Security(_bearer),
        api_key: str | None = Security(_api_key),
    ) -> Caller | None:
        if public:
            return None
        return await caller(bearer, api_key)

    return maybe_caller
