"""One FastAPI router per area of the operations API; `serve.app.build_app` assembles them."""

from serve.routers.dlq import dlq_router
from serve.routers.exceptions import exceptions_router
from serve.routers.health import health_router
from serve.routers.ingest import ingest_router
from serve.routers.metrics import metrics_router

__all__ = ["dlq_router", "exceptions_router", "health_router", "ingest_router", "metrics_router"]
