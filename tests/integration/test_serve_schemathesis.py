"""Property-based run of the API's own OpenAPI schema (schemathesis): no generated request, valid or
not, gets a 5xx. Against the real app on Ray Serve over loopback, with PostgreSQL, the broker and a
supervisor (no stage actors: nothing here needs events to flow), bounded to a few examples per
operation and credential."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given
from hypothesis import settings as hypothesis_settings
from schemathesis.checks import not_a_server_error
from schemathesis.errors import FailureGroup

from cluster import platform
from cluster.embedded import BundledBroker
from pipeline.settings import Settings
from tests.integration.serve_harness import (
    ADMIN_TOKEN,
    api_settings,
    create_key,
    module_database,
    operations_api,
    serve_shut_down,
)

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("ray_session")]

MAX_EXAMPLES = 20


@dataclass
class LiveApi:
    settings: Settings
    base_url: str
    schema: dict[str, object]
    tenant_key: str


@pytest.fixture(scope="module")
def live_api(broker: BundledBroker, template_database: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveApi]:
    with module_database(template_database) as url, serve_shut_down():
        settings = api_settings(broker, url, tmp_path_factory.mktemp("serve-schemathesis"))
        asyncio.run(platform.prepare_storage_and_topics(settings))
        deployment = platform.deploy(settings, (), sla_monitor=False)  # the supervisor alone: /health/workers answers (503)
        try:
            key = create_key(settings, "FIN_ACME").secret
            with operations_api(settings) as client:
                schema = client.get("/api/openapi.json", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}).json()
                yield LiveApi(settings, str(client.base_url).rstrip("/"), schema, key)
        finally:
            deployment.stop(grace_s=5)


# No stage runs beside the supervisor here, so /health/workers answers 503 `down` by design
# (test_health_workers_is_down_while_no_stage_runs): not a server error to look for.
_NOT_GENERATED = ("/health/workers",)


def _run_operations(api: LiveApi, secret: str, paths: tuple[str, ...], *, tenant_id: str | None = None) -> list[str]:
    """Every operation under `paths`, positive and negative data; returns the failures found.
    `tenant_id` pins that path parameter in the positive run (the caller's own tenant: deeper paths)."""
    schema = schemathesis.openapi.from_dict(api.schema)
    failures: list[str] = []
    headers = {"Authorization": f"Bearer {secret}"}
    with requests.Session() as session:
        for result in schema.get_all_operations():
            operation = result.ok()
            if not operation.path.startswith(paths) or operation.path in _NOT_GENERATED:
                continue
            for mode in (schemathesis.GenerationMode.POSITIVE, schemathesis.GenerationMode.NEGATIVE):
                pinned = {"tenant_id": tenant_id} if tenant_id and "{tenant_id}" in operation.path and mode.is_positive else None

                @given(case=operation.as_strategy(generation_mode=mode, path_parameters=pinned))
                @hypothesis_settings(max_examples=MAX_EXAMPLES, deadline=None, database=None,
                                     phases=[Phase.explicit, Phase.generate], suppress_health_check=list(HealthCheck))
                def check(case: schemathesis.Case) -> None:
                    response = case.call(base_url=api.base_url, session=session, headers=headers, timeout=30)
                    case.validate_response(response, checks=[not_a_server_error], headers=headers)

                try:
                    check()
                except FailureGroup as error:  # collect every operation's failures, then report them all
                    failures.append(f"{operation.label} ({mode.value}): {error}\n{error.exceptions[0]}")
    return failures


def test_health_workers_is_down_while_no_stage_runs(live_api: LiveApi) -> None:
    response = httpx.get(f"{live_api.base_url}/health/workers", timeout=15)
    assert response.status_code == 503, response.text
    report = response.json()
    assert report["status"] == "down"
    assert list(report["stages"]) == ["intake", "triage", "policy", "playbook", "tool", "feedback"]
    assert all(stage["consumers"]["alive"] == 0 for stage in report["stages"].values())


def test_no_generated_request_gets_a_server_error_as_admin(live_api: LiveApi) -> None:
    failures = _run_operations(live_api, ADMIN_TOKEN, ("/",))
    assert failures == []


def test_no_generated_request_gets_a_server_error_with_a_tenant_key(live_api: LiveApi) -> None:
    failures = _run_operations(live_api, live_api.tenant_key, ("/api/exceptions",), tenant_id="FIN_ACME")
    assert failures == []
    # The API still answers normally after the run.
    assert httpx.get(f"{live_api.base_url}/health/db", timeout=10).status_code == 200
