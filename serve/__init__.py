"""The operations API: a FastAPI app (health, metrics, traces, ingest, DLQ, approvals) deployed on
Ray Serve. `build_app` needs no Ray (unit tests fake its services); `serve.deploy` puts it on Serve."""

from serve.app import build_app
from serve.services import ApiServices, PlatformServices

__all__ = ["ApiServices", "PlatformServices", "build_app"]
