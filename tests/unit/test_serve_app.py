"""The operations API without Ray, PostgreSQL or Kafka: `build_app` over fake services.

Covers who may call what (401 / 403 / 404), input bounds (body size, ids, page size), the ingest
shapes with per-item rejection, approvals' publication, and 503 (not 500) when the database is down.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr

from pipeline.errors import DatabaseUnavailableError
from pipeline.events import decode_event
from pipeline.metrics import MetricsSnapshot
from pipeline.packs import PackRegistry
from pipeline.records import OutboundRecord
from pipeline.settings import ServeSettings, Settings
from pipeline.storage.api_keys import ApiKey
from serve.app import build_app

ADMIN_TOKEN = "admin-secret-token"
ACME_KEY = "sk_acme-test-key"
GLOBEX_KEY = "sk_globex-test-key"


class FakeServices:
    """The services with no database (every query fails as PostgreSQL being down would)."""

    def __init__(self, settings: Settings, packs: PackRegistry, health: dict[str, Any] | None = None) -> None:
        self.settings = settings
        self._packs = packs
        self.health = health
        self.published: list[OutboundRecord] = []
        self.keys = {ACME_KEY: ApiKey("key_acme", "FIN_ACME", None), GLOBEX_KEY: ApiKey("key_globex", "FIN_GLOBEX", None)}
        self.exported: list[tuple[MetricsSnapshot, list[Any]]] = []
        self.closed = False

    async def engine(self) -> Any:
        raise DatabaseUnavailableError("PostgreSQL unreachable: unit tests have no database")

    async def publish(self, records: list[OutboundRecord]) -> None:
        self.published.extend(records)

    async def supervisor_health(self, timeout_s: float) -> dict[str, Any] | None:
        return self.health

    async def packs(self, *, refresh: bool = False) -> PackRegistry:
        return self._packs

    async def authenticate(self, secret: str) -> ApiKey | None:
        return self.keys.get(secret)

    def export_metrics(self, snapshot: MetricsSnapshot, gauges: list[Any]) -> None:
        self.exported.append((snapshot, gauges))

    async def close(self) -> None:
        self.closed = True


def _settings(base: Settings, **serve: Any) -> Settings:
    options = {"admin_token": SecretStr(ADMIN_TOKEN), "max_body_bytes": 4096, "max_batch_items": 3, "max_page_size": 10,
               **serve}
    kafka = base.kafka.model_copy(update={"bootstrap_servers": "127.0.0.1:9", "topic_prefix": "unit."})
    return base.model_copy(update={"serve": ServeSettings(**options), "kafka": kafka})


@pytest.fixture
def services(settings: Settings, packs: PackRegistry) -> FakeServices:
    return FakeServices(_settings(settings), packs)


@pytest.fixture
def client(services: FakeServices) -> Iterator[TestClient]:
    with TestClient(build_app(services.settings, services=services), raise_server_exceptions=False) as test_client:
        yield test_client
    assert services.closed


def _auth(secret: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret}"}


def _exception(exception_id: str = "EXC-1") -> dict[str, Any]:
    return {"exception_id": exception_id, "source_system": "murex", "exception_type": "SETTLEMENT_FAIL",
            "description": "DVP failed at DTC", "attributes": {"amount": 1000, "currency": "USD"}}


# --- who may call what -----------------------------------------------------------------------


def test_health_is_public_and_the_api_is_not(client: TestClient) -> None:
    assert client.get("/health").json() == {"status": "ok"}
    for method, path in [("GET", "/api/exceptions/FIN_ACME"), ("POST", "/api/exceptions/FIN_ACME"),
                         ("GET", "/api/exceptions/FIN_ACME/EXC-1/trace"), ("GET", "/api/admin/dlq"),
                         ("GET", "/api/openapi.json")]:
        response = client.request(method, path)
        assert response.status_code == 401, (method, path)
        assert response.headers["www-authenticate"] == "Bearer"
        assert "credentials required" in response.json()["detail"]


def test_unknown_key_is_401_and_both_headers_work(client: TestClient) -> None:
    assert client.get("/api/exceptions/FIN_ACME", headers=_auth("sk_nope")).status_code == 401
    assert client.get("/api/exceptions/FIN_ACME", headers={"Authorization": "Basic abc"}).status_code == 401
    # A valid key gets past authentication (then the fake database is down: 503, never 500).
    assert client.get("/api/exceptions/FIN_ACME", headers=_auth(ACME_KEY)).status_code == 503
    assert client.get("/api/exceptions/FIN_ACME", headers={"X-API-Key": ACME_KEY}).status_code == 503


def test_a_tenant_key_never_reaches_another_tenant(client: TestClient) -> None:
    for method, path in [("GET", "/api/exceptions/FIN_GLOBEX"), ("GET", "/api/exceptions/FIN_GLOBEX/EXC-1"),
                         ("GET", "/api/exceptions/FIN_GLOBEX/EXC-1/trace"), ("GET", "/api/exceptions/NOBODY/EXC-1"),
                         ("GET", "/api/exceptions/EXC-1/events?tenant_id=FIN_GLOBEX"),
                         ("POST", "/api/exceptions/FIN_GLOBEX/EXC-1/approve"),
                         ("POST", "/api/exceptions/FIN_GLOBEX/EXC-1/reject")]:
        response = client.request(method, path, headers=_auth(ACME_KEY))
        assert (response.status_code, response.json()) == (404, {"detail": "not found"}), (method, path)
    response = client.post("/api/exceptions/FIN_GLOBEX", headers=_auth(ACME_KEY), json={"exception": _exception()})
    assert (response.status_code, response.json()) == (404, {"detail": "not found"})


def test_admin_routes_refuse_tenant_keys_with_403(client: TestClient) -> None:
    for method, path in [("GET", "/api/admin/dlq"), ("GET", "/api/admin/dlq/stats"), ("GET", "/api/admin/dlq/1"),
                         ("POST", "/api/admin/dlq/1/replay"), ("POST", "/api/admin/dlq/replay?tenant_id=FIN_ACME"),
                         ("DELETE", "/api/admin/dlq?tenant_id=FIN_ACME")]:
        assert client.request(method, path, headers=_auth(ACME_KEY)).status_code == 403, (method, path)
        assert client.request(method, path, headers=_auth(ADMIN_TOKEN)).status_code == 503, (method, path)


def test_without_an_admin_token_the_admin_api_is_closed(settings: Settings, packs: PackRegistry) -> None:
    services = FakeServices(_settings(settings, admin_token=None), packs)
    with TestClient(build_app(services.settings, services=services)) as client:
        response = client.get("/api/admin/dlq", headers=_auth(ACME_KEY))
        assert response.status_code == 403 and "disabled" in response.json()["detail"]
        # No token configured means no token matches: an empty or guessed one is just an unknown key.
        assert client.get("/api/admin/dlq", headers=_auth("")).status_code == 401


def test_health_and_metrics_can_require_credentials(settings: Settings, packs: PackRegistry) -> None:
    services = FakeServices(_settings(settings, public_health=False, public_metrics=False), packs)
    with TestClient(build_app(services.settings, services=services), raise_server_exceptions=False) as client:
        for path in ("/health", "/health/db", "/health/workers", "/metrics"):
            assert client.get(path).status_code == 401, path
        assert client.get("/health", headers=_auth(ACME_KEY)).status_code == 200


def test_admin_bad_requests_are_4xx(client: TestClient) -> None:
    admin = _auth(ADMIN_TOKEN)
    response = client.post("/api/admin/dlq/replay", headers=admin)
    assert (response.status_code, response.json()["detail"]) == (400, "give at least one of tenant_id, stage, error_type")
    assert client.delete("/api/admin/dlq", headers=admin).status_code == 400
    assert client.delete("/api/admin/dlq?stage=intake", headers=admin).status_code == 400
    for path in ("/api/admin/dlq/0/replay", "/api/admin/dlq/-3/replay", "/api/admin/dlq/abc/replay",
                 f"/api/admin/dlq/{2**64}/replay"):
        assert client.post(path, headers=admin).status_code == 422, path
    assert client.get("/api/admin/dlq?stage=nowhere", headers=admin).status_code == 422
    assert client.get("/api/admin/dlq?limit=11", headers=admin).status_code == 422
    assert client.get("/api/admin/dlq?tenant_id=bad%20id", headers=admin).status_code == 422


# --- input bounds ----------------------------------------------------------------------------


def test_ids_and_page_sizes_are_bounded(client: TestClient) -> None:
    key = _auth(ACME_KEY)
    for path in ("/api/exceptions/FIN_ACME/" + "x" * 129, "/api/exceptions/FIN_ACME/bad%20id",
                 "/api/exceptions/FIN_ACME/a%2Fb/trace", "/api/exceptions/FIN_ACME?limit=0",
                 "/api/exceptions/FIN_ACME?limit=11", "/api/exceptions/FIN_ACME?offset=-1",
                 "/api/exceptions/FIN_ACME?severity=URGENT", "/api/exceptions/FIN_ACME?status=" + "s" * 65):
        response = client.get(path, headers=key)
        assert response.status_code in (404, 422), path
        assert "detail" in response.json()
    response = client.get("/api/exceptions/" + "T" * 65, headers=_auth(ADMIN_TOKEN))
    assert response.status_code == 422


def test_body_size_is_checked_by_header_and_by_bytes(client: TestClient) -> None:
    big = json.dumps({"exception": {**_exception(), "description": "x" * 5000}})
    response = client.post("/api/exceptions/FIN_ACME", headers=_auth(ACME_KEY), content=big)
    assert response.status_code == 413 and "4096" in response.json()["detail"]

    def chunks() -> Iterator[bytes]:  # no Content-Length: the middleware counts what arrives
        for _ in range(10):
            yield b" " * 1000

    response = client.post("/api/exceptions/FIN_ACME", headers={**_auth(ACME_KEY), "content-type": "application/json"},
                           content=chunks())
    assert response.status_code == 413
    response = client.post("/api/exceptions/FIN_ACME", headers={**_auth(ACME_KEY), "content-length": "abc"}, content=b"{}")
    assert response.status_code == 400


def test_malformed_bodies_are_4xx(client: TestClient) -> None:
    key = {**_auth(ACME_KEY), "content-type": "application/json"}
    for body in (b"{", b"not json", b"\xff\xfe", b"42", b'"text"', b"null", b"[" * 2000 + b"]" * 2000):
        response = client.post("/api/exceptions/FIN_ACME", headers=key, content=body)
        assert 400 <= response.status_code < 500, (body[:20], response.status_code, response.text[:200])
        assert "detail" in response.json()
    response = client.post("/api/exceptions/FIN_ACME/EXC-1/approve", headers=key, content=b'{"approved": "maybe"}')
    assert response.status_code == 422


# --- ingest ------------------------------------------------------------------------------------


@pytest.mark.parametrize("body", [
    {"exception": _exception("EXC-A")},
    _exception("EXC-A"),
    {"exceptions": [_exception("EXC-A")]},
    [_exception("EXC-A")],
])
def test_ingest_accepts_each_documented_shape(client: TestClient, services: FakeServices, body: Any) -> None:
    response = client.post("/api/exceptions/FIN_ACME", headers=_auth(ACME_KEY), json=body)
    assert response.status_code == 202, response.text
    assert response.json()["exception_ids"] == ["EXC-A"]
    [record] = services.published
    event = decode_event(record.value)
    assert (record.topic, record.key) == ("unit.exceptions", b"FIN_ACME:EXC-A")
    assert (event.tenant_id, event.exception_id, event.event_type.value) == ("FIN_ACME", "EXC-A", "ExceptionIngested")
    assert event.metadata["source"] == "api:key_acme"


def test_ingest_rejects_bad_items_and_accepts_the_rest(client: TestClient, services: FakeServices) -> None:
    body = {"exceptions": [_exception("EXC-1"), "not an object", {**_exception("EXC-2"), "exception_id": "bad id!"},
                           {**_exception("EXC-3"), "tenant_id": "FIN_GLOBEX"}, ]}
    response = client.post("/api/exceptions/FIN_ACME", headers=_auth(ADMIN_TOKEN), json=body)
    assert response.status_code == 413  # four items, at most three
    body["exceptions"].pop()
    response = client.post("/api/exceptions/FIN_ACME", headers=_auth(ADMIN_TOKEN), json=body)
    assert response.status_code == 202
    answer = response.json()
    assert [item["exception_id"] for item in answer["accepted"]] == ["EXC-1"]
    assert [(item["index"], item["error_type"]) for item in answer["rejected"]] == [(1, "validation_error"),
                                                                                    (2, "validation_error")]
    assert len(services.published) == 1
    assert decode_event(services.published[0].value).metadata["source"] == "api:admin"


def test_ingest_with_nothing_valid_is_422_with_reasons(client: TestClient, services: FakeServices) -> None:
    response = client.post("/api/exceptions/FIN_ACME", headers=_auth(ACME_KEY), json=[1, 2])
    assert response.status_code == 422
    assert [item["index"] for item in response.json()["rejected"]] == [0, 1]
    response = client.post("/api/exceptions/NOBODY", headers=_auth(ADMIN_TOKEN), json=_exception())
    assert response.status_code == 422 and response.json()["rejected"][0]["error_type"] == "unknown_tenant"
    for body in ([], {"exceptions": []}, {"exceptions": {}}, {"exception": {}, "extra": 1}):
        assert client.post("/api/exceptions/FIN_ACME", headers=_auth(ACME_KEY), json=body).status_code == 422, body
    assert services.published == []


# --- health and metrics ------------------------------------------------------------------------


def test_database_and_supervisor_outages_are_503_with_the_reason(client: TestClient) -> None:
    response = client.get("/health/db")
    assert response.status_code == 503 and response.json()["detail"].startswith("database_connection")
    response = client.get("/health/workers")
    assert response.status_code == 503 and response.json()["detail"] == "the supervisor actor is unreachable"
    assert client.get("/metrics").status_code == 503


def test_worker_health_reports_lag_per_partition(settings: Settings, packs: PackRegistry) -> None:
    health = {"status": "degraded", "supervisor": {"pid": 1}, "stages": {"intake": {
        "group_id": "intake-workers", "consumers": {"alive": 1, "configured": 2}, "pool": {"alive": 1, "configured": 1},
        "lag": {"exceptions[0]": 3, "exceptions[1]": 0}, "in_flight": 5, "last_poll_at": 1_700_000_000.0}}}
    services = FakeServices(_settings(settings), packs, health=health)
    with TestClient(build_app(services.settings, services=services)) as client:
        response = client.get("/health/workers")
        assert response.status_code == 200
        intake = response.json()["stages"]["intake"]
        assert intake["lag"] == [{"topic": "exceptions", "partition": 0, "lag": 3},
                                 {"topic": "exceptions", "partition": 1, "lag": 0}]
        assert intake["total_lag"] == 3 and intake["last_heartbeat"].startswith("2023-11-14T22:13:20")
        services.health = {**health, "status": "down"}
        assert client.get("/health/workers").status_code == 503


def test_the_openapi_schema_needs_credentials_and_lists_every_route(client: TestClient) -> None:
    schema = client.get("/api/openapi.json", headers=_auth(ACME_KEY)).json()
    assert set(schema["paths"]) == {
        "/health", "/health/db", "/health/workers", "/metrics", "/api/exceptions/{tenant_id}",
        "/api/exceptions/{exception_id}/events", "/api/exceptions/{tenant_id}/{exception_id}",
        "/api/exceptions/{tenant_id}/{exception_id}/trace", "/api/exceptions/{tenant_id}/{exception_id}/approve",
        "/api/exceptions/{tenant_id}/{exception_id}/reject", "/api/admin/dlq", "/api/admin/dlq/stats",
        "/api/admin/dlq/{dlq_id}", "/api/admin/dlq/replay", "/api/admin/dlq/{dlq_id}/replay",
    }
    assert {"HTTPBearer", "APIKeyHeader"} <= set(schema["components"]["securitySchemes"])
