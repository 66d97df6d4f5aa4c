"""One error taxonomy for the whole platform.

Every error says whether retrying can help (`retryable`) and carries a short `error_type` that
lands in `dead_letter_queue.error_type`, `event_processing_log.error_type` and the `error_type`
label of `failures_total`. Third-party errors are classified once, where they enter our code (see
`pipeline.storage.database.classify_database_error` and `pipeline.kafka.client`), never by matching
message text.
"""

from __future__ import annotations

from typing import ClassVar


class SentinaiError(Exception):
    """Root of every error the platform raises on purpose."""

    retryable: ClassVar[bool] = False
    error_type: ClassVar[str] = "internal_error"


# --- Validation: dead-lettered at once, never retried -------------------------------------------


class ValidationError(SentinaiError):
    """The event itself is wrong. Fix the producer, then replay the DLQ entry."""

    error_type = "validation_error"


class EventDecodeError(ValidationError):
    """The record's bytes are not UTF-8 JSON, or the JSON is not an event envelope."""

    error_type = "validation_error"


class SchemaVersionError(ValidationError):
    """The envelope's `version` is one this build does not understand: upgrade the platform."""

    error_type = "unsupported_version"


class MissingIdentifierError(ValidationError):
    """tenant_id or exception_id is missing where one is required."""

    error_type = "missing_identifier"


class UnknownTenantError(ValidationError):
    """The tenant is not registered: create it (`sentinai tenant create`) and replay."""

    error_type = "unknown_tenant"


class TenantSuspendedError(ValidationError):
    """The tenant is suspended: its events are parked in the DLQ until it is reactivated."""

    error_type = "tenant_suspended"


class PayloadTooLargeError(ValidationError):
    """The event is larger than `SENTINAI_MAX_EVENT_BYTES`."""

    error_type = "payload_too_large"


class ToolInputError(ValidationError):
    """A tool's input does not match its JSON schema: fix the playbook or the exception's fields."""

    error_type = "tool_input_invalid"


class ToolNotEnabledError(ValidationError):
    """The tenant has not enabled this tool: enable it in the tenant pack, then replay."""

    error_type = "tool_not_enabled"


class UnexpectedEventError(ValidationError):
    """A stage received an event type it does not handle: check topic routing."""

    error_type = "unexpected_event"


class InternalError(SentinaiError):
    """A bug in the platform. The log has the traceback: report it, and replay the entry after the fix."""

    error_type = "internal_error"


# --- Configuration: fatal at start-up ---------------------------------------------------------


class ConfigurationError(SentinaiError):
    """Configuration or a pack is invalid. The message names the key; fix it and restart."""

    error_type = "configuration_error"


class PackError(ConfigurationError):
    """A domain or tenant pack is malformed. The message names the file and the key."""

    error_type = "pack_error"


# --- Transient: retried with backoff, then dead-lettered --------------------------------------


class TransientError(SentinaiError):
    """A dependency failed in a way that may heal by itself. Retried with backoff."""

    retryable = True
    error_type = "transient_error"


class DatabaseUnavailableError(TransientError):
    """PostgreSQL is unreachable or shed the request (SQLSTATE classes 08, 53, 57, 40)."""

    error_type = "database_connection"


class DatabaseError(SentinaiError):
    """PostgreSQL rejected the statement as permanently wrong (SQLSTATE 22, 23, 42...)."""

    error_type = "database_error"


class StageTimeoutError(TransientError):
    """A call took longer than its timeout."""

    error_type = "timeout"


class RateLimitedError(TransientError):
    """A tenant or a downstream service is over its rate limit."""

    error_type = "rate_limited"


class ToolUnavailableError(TransientError):
    """An HTTP tool answered 5xx or could not be reached."""

    error_type = "tool_unavailable"


class KafkaUnavailableError(TransientError):
    """The Kafka client reported a retriable error (its own `retriable` flag)."""

    error_type = "kafka_unavailable"


class ToolFailedError(SentinaiError):
    """An HTTP tool answered 4xx: its input or its configuration is wrong; not retried."""

    error_type = "tool_failed"


def error_type_of(exc: BaseException) -> str:
    return exc.error_type if isinstance(exc, SentinaiError) else "internal_error"


def is_retryable(exc: BaseException) -> bool:
    return isinstance(exc, SentinaiError) and exc.retryable
