"""pipeline.storage.database.classify_database_error: PostgreSQL errors by SQLSTATE class, never text."""

from __future__ import annotations

import pytest
from sqlalchemy import exc as sa_exc

from pipeline.errors import (
    ConfigurationError,
    DatabaseError,
    DatabaseUnavailableError,
    SentinaiError,
    ToolInputError,
)
from pipeline.storage.database import classify_database_error, sqlstate_of


class FakeDriverError(Exception):
    """What asyncpg raises: an exception carrying `sqlstate`."""

    def __init__(self, sqlstate: str, message: str = "server said no") -> None:
        super().__init__(message)
        self.sqlstate = sqlstate


@pytest.mark.parametrize(
    ("sqlstate", "expected", "retryable"),
    [
        ("08006", DatabaseUnavailableError, True),  # connection failure
        ("08001", DatabaseUnavailableError, True),
        ("40001", DatabaseUnavailableError, True),  # serialization failure
        ("40P01", DatabaseUnavailableError, True),  # deadlock
        ("53300", DatabaseUnavailableError, True),  # too many connections
        ("57P01", DatabaseUnavailableError, True),  # admin shutdown
        ("57014", DatabaseUnavailableError, True),  # statement timeout
        ("23505", DatabaseError, False),  # unique violation
        ("22P02", DatabaseError, False),  # invalid text representation
        ("42P01", ConfigurationError, False),  # undefined table: migrations not run
        ("42501", ConfigurationError, False),  # insufficient privilege
        ("28P01", ConfigurationError, False),  # bad password
        ("3D000", ConfigurationError, False),  # database does not exist
    ],
)
def test_sqlstate_classes(sqlstate: str, expected: type[SentinaiError], retryable: bool) -> None:
    classified = classify_database_error(FakeDriverError(sqlstate))
    assert type(classified) is expected
    assert classified.retryable is retryable
    assert f"SQLSTATE {sqlstate}" in str(classified)
    assert "server said no" in str(classified)


def test_message_text_is_never_matched() -> None:
    classified = classify_database_error(
        FakeDriverError("23505", "connection refused, server closed the connection")
    )
    assert type(classified) is DatabaseError


def test_sqlstate_through_sqlalchemy_wrapping() -> None:
    wrapped = sa_exc.DBAPIError("UPDATE exceptions ...", {}, FakeDriverError("40001"))
    assert sqlstate_of(wrapped) == "40001"
    assert type(classify_database_error(wrapped)) is DatabaseUnavailableError


def test_sqlstate_through_the_cause_chain() -> None:
    outer = RuntimeError("wrapper")
    outer.__cause__ = FakeDriverError("42P01")
    assert sqlstate_of(outer) == "42P01"
    assert type(classify_database_error(outer)) is ConfigurationError


def test_psycopg_style_pgcode() -> None:
    error = Exception("x")
    error.pgcode = "53100"  # type: ignore[attr-defined]
    assert type(classify_database_error(error)) is DatabaseUnavailableError


@pytest.mark.parametrize(
    "error",
    [
        ConnectionRefusedError(),
        ConnectionResetError("reset by peer"),
        OSError("no route to host"),
        TimeoutError(),
    ],
    ids=["refused", "reset", "oserror", "timeout"],
)
def test_network_errors_are_unavailability(error: BaseException) -> None:
    classified = classify_database_error(error)
    assert type(classified) is DatabaseUnavailableError
    assert classified.retryable is True
    assert str(classified).startswith("PostgreSQL unreachable: ")


def test_invalidated_connection_is_unavailability() -> None:
    lost = sa_exc.DBAPIError("SELECT 1", {}, Exception("gone"), connection_invalidated=True)
    classified = classify_database_error(lost)
    assert type(classified) is DatabaseUnavailableError
    assert str(classified).startswith("PostgreSQL connection lost: ")


def test_our_own_errors_pass_through_unchanged() -> None:
    ours = ToolInputError("bad input")
    assert classify_database_error(ours) is ours


def test_anything_else_is_a_permanent_database_error() -> None:
    classified = classify_database_error(ValueError("weird"))
    assert type(classified) is DatabaseError
    assert classified.retryable is False
    assert str(classified) == "database error: weird"
