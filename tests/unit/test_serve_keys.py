"""API keys and the `sentinai tenant` commands' arguments, without a database."""

from __future__ import annotations

import asyncio
import hashlib
from typing import Any

import pytest

from cluster.cli import _parser
from pipeline.storage import api_keys


def test_keys_are_random_prefixed_and_stored_as_sha256() -> None:
    generated = [api_keys.generate_key() for _ in range(50)]
    assert len({key_id for key_id, _ in generated}) == 50 and len({secret for _, secret in generated}) == 50
    key_id, secret = generated[0]
    assert key_id.startswith("key_") and secret.startswith(api_keys.KEY_PREFIX)
    assert len(secret) >= 40  # 32 random bytes, url-safe base64
    assert api_keys.hash_key(secret) == hashlib.sha256(secret.encode()).hexdigest()


@pytest.mark.parametrize("secret", ["", "admin-token", "Bearer sk_x", "sk_" + "x" * 300])
def test_tokens_that_cannot_be_keys_are_refused_without_a_query(secret: str) -> None:
    class NoEngine:
        def begin(self) -> Any:
            raise AssertionError("no query for a token that cannot be a key")

    assert asyncio.run(api_keys.authenticate(NoEngine(), secret)) is None  # type: ignore[arg-type]


def test_the_tenant_commands_parse_as_documented() -> None:
    parser = _parser()
    args = parser.parse_args(["tenant", "create", "ACME_EU", "--name", "Acme Europe", "--domain", "finance",
                              "--enable-tool", "create_ticket", "--enable-tool", "reconcile_position", "--label", "ops"])
    assert (args.tenant_id, args.name, args.domain, args.label) == ("ACME_EU", "Acme Europe", "finance", "ops")
    assert args.enabled_tools == ["create_ticket", "reconcile_position"]
    assert parser.parse_args(["tenant", "key", "ACME_EU"]).label is None
    assert parser.parse_args(["tenant", "revoke-key", "key_0123"]).key_id == "key_0123"
    assert callable(parser.parse_args(["tenant", "list"]).handler)
    with pytest.raises(SystemExit):
        parser.parse_args(["tenant", "create", "ACME_EU", "--domain", "finance"])  # --name is required
