"""pipeline.errors: one taxonomy; every class says whether a retry can help and what to do."""

from __future__ import annotations

import pytest

from pipeline import errors
from pipeline.errors import (
    ConfigurationError,
    DatabaseError,
    SentinaiError,
    ToolFailedError,
    TransientError,
    ValidationError,
    error_type_of,
    is_retryable,
)


def _subclasses(root: type[SentinaiError]) -> list[type[SentinaiError]]:
    """Every subclass defined in pipeline.errors (a test double subclassing one elsewhere does not count)."""
    found = []
    for child in root.__subclasses__():
        if child.__module__ == errors.__name__:
            found.append(child)
        found.extend(_subclasses(child))
    return found


ALL_ERRORS = [SentinaiError, *_subclasses(SentinaiError)]


def test_the_taxonomy_is_complete() -> None:
    defined = {
        name
        for name, value in vars(errors).items()
        if isinstance(value, type)
        and issubclass(value, SentinaiError)
        and value.__module__ == errors.__name__
    }
    assert {cls.__name__ for cls in ALL_ERRORS} == defined
    assert len(defined) >= 20


@pytest.mark.parametrize("cls", ALL_ERRORS, ids=lambda cls: cls.__name__)
def test_every_error_declares_retryable_error_type_and_a_docstring(cls: type[SentinaiError]) -> None:
    assert isinstance(cls.retryable, bool)
    assert isinstance(cls.error_type, str) and cls.error_type.strip()
    own_doc = cls.__dict__.get("__doc__")
    assert own_doc and own_doc.strip(), f"{cls.__name__} has no docstring of its own"
    assert cls.__name__.endswith("Error")


@pytest.mark.parametrize("cls", _subclasses(ValidationError), ids=lambda cls: cls.__name__)
def test_validation_errors_are_never_retried(cls: type[SentinaiError]) -> None:
    assert cls.retryable is False
    assert is_retryable(cls("bad event")) is False


@pytest.mark.parametrize("cls", [TransientError, *_subclasses(TransientError)], ids=lambda cls: cls.__name__)
def test_transient_errors_are_retried(cls: type[SentinaiError]) -> None:
    assert cls.retryable is True
    assert is_retryable(cls("dependency down")) is True


@pytest.mark.parametrize(
    "cls", [ConfigurationError, DatabaseError, ToolFailedError], ids=lambda cls: cls.__name__
)
def test_permanent_errors_outside_validation_are_not_retried(cls: type[SentinaiError]) -> None:
    assert is_retryable(cls("nope")) is False


def test_foreign_exceptions_are_internal_and_not_retryable() -> None:
    assert error_type_of(KeyError("x")) == "internal_error"
    assert is_retryable(ConnectionResetError()) is False
    assert error_type_of(errors.ToolUnavailableError("503")) == "tool_unavailable"
    assert error_type_of(errors.SchemaVersionError("v2")) == "unsupported_version"
