"""Real fault sources for the failure tests: an HTTP tool server on loopback whose answers the test
controls, and a small domain pack whose playbook calls it."""

from __future__ import annotations

import json
import threading
import time
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

FAULTS_DOMAIN = """
pack: faults
version: "1.0.0"
description: A one-type domain whose playbook calls an HTTP tool the tests control.
fallback_type: UNCLASSIFIED_FAULT
exception_types:
  REMOTE_CHECK:
    description: An exception resolved by asking a remote system.
    default_severity: MEDIUM
    aliases: [remote_check]
    keywords: [remote]
    examples: ["remote check needed", "remote system must confirm", "ask the remote ledger"]
    playbook: remote_check
  UNCLASSIFIED_FAULT:
    description: Anything else.
    default_severity: LOW
    examples: ["unknown one", "unknown two", "unknown three"]
sla_minutes: {LOW: 600, MEDIUM: 120, HIGH: 60, CRITICAL: 15}
guardrails:
  min_confidence: 0.5
  approval_severities: [CRITICAL]
playbooks:
  remote_check:
    description: Ask the remote system, then resolve.
    steps:
      - action: assign_owner
        params: {team: remote-ops}
      - action: call_tool
        tool: remote_confirm
        input: {reference: "{attributes.reference}", amount: "{attributes.amount}"}
      - action: set_status
        params: {status: resolved}
tools:
  remote_confirm:
    description: The remote system confirms a reference.
    kind: http
    url: http://127.0.0.1:9/unused
    timeout_s: 2
    input_schema:
      type: object
      additionalProperties: false
      required: [reference, amount]
      properties:
        reference: {type: string, pattern: "^REF-[0-9]+$"}
        amount: {type: number}
"""

TENANT = """
tenant_id: FAULT_TENANT
name: Fault injection tenant
domain: faults
enabled_tools: [remote_confirm]
tool_base_urls: {{remote_confirm: "http://127.0.0.1:{port}/confirm"}}
"""

SUSPENDED_TENANT = """
tenant_id: SUSPENDED_TENANT
name: A suspended tenant
domain: faults
status: suspended
enabled_tools: [remote_confirm]
"""


@dataclass
class ToolServerBehaviour:
    """Answer 503 to the first `fail_first` calls of each idempotency key (all calls when
    `always_fail`), then 200 with `{"outcome": "succeeded"}`."""

    fail_first: int = 0
    always_fail: bool = False
    calls: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    lock: threading.Lock = field(default_factory=threading.Lock)

    def answer(self, key: str) -> int:
        with self.lock:
            self.calls[key].append(time.time())
            count = len(self.calls[key])
        return 503 if self.always_fail or count <= self.fail_first else 200


@contextmanager
def tool_server(behaviour: ToolServerBehaviour) -> Iterator[int]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - http.server's naming
            self.rfile.read(int(self.headers.get("Content-Length", "0")))
            status = behaviour.answer(self.headers.get("Idempotency-Key", ""))
            body = json.dumps({"outcome": "succeeded", "confirmed": True} if status == 200 else {"error": "busy"}).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


def write_fault_packs(directory: Path, port: int) -> Path:
    (directory / "tenants").mkdir(parents=True, exist_ok=True)
    (directory / "faults.yaml").write_text(FAULTS_DOMAIN)
    (directory / "tenants" / "fault_tenant.yaml").write_text(TENANT.format(port=port))
    (directory / "tenants" / "suspended_tenant.yaml").write_text(SUSPENDED_TENANT)
    return directory


def remote_check(index: int, *, amount: object = 100.0) -> dict[str, object]:
    return {
        "exception_id": f"RC-{index:05d}",
        "exception_type": "REMOTE_CHECK",
        "description": f"remote check {index}",
        "attributes": {"reference": f"REF-{index}", "amount": amount},
    }
