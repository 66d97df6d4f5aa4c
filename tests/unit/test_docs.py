"""The reference docs keep up with the code: every setting, error type and command is documented.

Adding a setting to `pipeline.settings`, an error to `pipeline.errors` or a command (or option) to
`sentinai` without documenting it fails here, naming what is missing.
"""

from __future__ import annotations

import argparse
import ast
import re
from collections.abc import Iterator
from pathlib import Path

from pydantic import BaseModel

from cluster.cli import _parser
from pipeline import errors, processing
from pipeline.errors import SentinaiError
from pipeline.settings import STAGE_NAMES, Settings, StagesSettings

REPOSITORY = Path(__file__).resolve().parents[2]
DOCS = REPOSITORY / "docs"
RUNBOOK_SQL_TEST = REPOSITORY / "tests" / "integration" / "test_processing_and_runbook_sql.py"

STAGE_PLACEHOLDER = "<STAGE>"


def _doc(name: str) -> str:
    return (DOCS / name).read_text(encoding="utf-8")


# --- (a) settings -> docs/configuration.md ---------------------------------------------------------


def _setting_variables(model: type[BaseModel], path: tuple[str, ...] = ()) -> Iterator[str]:
    """The environment variable of every leaf setting. The runbook's own names (fields with a
    validation alias: DATABASE_URL, KAFKA_BOOTSTRAP_SERVERS, RAY_ADDRESS) are yielded as such.
    Fields of the per-stage models are yielded once, with `<STAGE>` for the stage."""
    for name, field in model.model_fields.items():
        alias = field.validation_alias
        if alias is not None:
            choices = getattr(alias, "choices", [alias])
            yield str(choices[0])
            continue
        annotation = field.annotation
        if model is StagesSettings:
            name = STAGE_PLACEHOLDER
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            yield from _setting_variables(annotation, (*path, name))
            continue
        yield "SENTINAI_" + "__".join(part.upper() for part in (*path, name))


def _unique(items: Iterator[str]) -> list[str]:
    return list(dict.fromkeys(items))


def test_the_walk_finds_every_kind_of_setting() -> None:
    variables = _unique(_setting_variables(Settings))
    assert "SENTINAI_KAFKA__PARTITIONS" in variables
    assert f"SENTINAI_STAGES__{STAGE_PLACEHOLDER}__CONCURRENCY" in variables
    assert "SENTINAI_RETRY__DEFAULT__MAX_RETRIES" in variables
    assert "SENTINAI_RETRY__ERROR_TYPES" in variables  # a dict of policies is one variable (JSON)
    assert {"DATABASE_URL", "KAFKA_BOOTSTRAP_SERVERS", "RAY_ADDRESS"} <= set(variables)
    assert "SENTINAI_DATABASE_URL" not in variables


def test_every_setting_is_in_the_configuration_reference() -> None:
    text = _doc("configuration.md")
    missing = [name for name in _unique(_setting_variables(Settings)) if f"`{name}`" not in text]
    assert missing == [], f"document these in docs/configuration.md: {missing}"


def test_every_stage_is_named_in_the_configuration_reference() -> None:
    text = _doc("configuration.md")
    assert set(StagesSettings.model_fields) == set(STAGE_NAMES)
    missing = [stage for stage in STAGE_NAMES if f"`{stage.upper()}`" not in text]
    assert missing == [], f"list these as values of {STAGE_PLACEHOLDER} in docs/configuration.md: {missing}"


def test_the_worker_variables_are_in_the_configuration_reference() -> None:
    text = _doc("configuration.md")
    missing = [name for name in ("WORKER_TYPE", "CONCURRENCY", "GROUP_ID") if f"`{name}`" not in text]
    assert missing == []


# --- (b) error types -> docs/operations.md ---------------------------------------------------------


def _error_classes() -> list[type[SentinaiError]]:
    """SentinaiError and its subclasses defined in pipeline.errors, plus those of pipeline.processing
    (ConcurrentProcessingError). Test doubles defined elsewhere do not count."""
    modules = {errors.__name__, processing.__name__}
    found: list[type[SentinaiError]] = [SentinaiError]
    pending = [SentinaiError]
    while pending:
        for child in pending.pop().__subclasses__():
            pending.append(child)
            if child.__module__ in modules:
                found.append(child)
    return found


def test_every_error_type_is_in_the_operations_guide() -> None:
    text = _doc("operations.md")
    classes = _error_classes()
    assert len(classes) >= 20
    missing = sorted({cls.error_type for cls in classes if f"`{cls.error_type}`" not in text})
    assert missing == [], f"add these error types to the table in docs/operations.md: {missing}"


def test_every_error_class_is_named_in_the_operations_guide() -> None:
    text = _doc("operations.md")
    missing = [cls.__name__ for cls in _error_classes() if f"`{cls.__name__}`" not in text]
    assert missing == [], f"name these classes in the error table of docs/operations.md: {missing}"


# --- (c) commands -> docs/operations.md -----------------------------------------------------------


def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def _commands(parser: argparse.ArgumentParser, prefix: tuple[str, ...] = ("sentinai",)) -> Iterator[
    tuple[str, argparse.ArgumentParser]
]:
    """("sentinai dlq replay", its parser) for every command and subcommand."""
    for name, child in _subparsers(parser).items():
        command = (*prefix, name)
        yield " ".join(command), child
        yield from _commands(child, command)


def test_the_parser_has_the_known_commands() -> None:
    commands = {command for command, _ in _commands(_parser())}
    assert {"sentinai up", "sentinai worker", "sentinai dlq replay", "sentinai config show"} <= commands


def test_every_command_is_in_the_operations_guide() -> None:
    text = _doc("operations.md")
    missing = [command for command, _ in _commands(_parser()) if command not in text]
    assert missing == [], f"document these commands in docs/operations.md: {missing}"


def test_every_command_option_is_in_the_operations_guide() -> None:
    text = _doc("operations.md")
    missing = []
    for command, parser in _commands(_parser()):
        for action in parser._actions:
            for option in action.option_strings:
                if option.startswith("--") and option != "--help" and not re.search(rf"{re.escape(option)}\b", text):
                    missing.append(f"{command} {option}")
    assert missing == [], f"document these options in docs/operations.md: {missing}"


# --- the runbook's SQL stays verbatim in docs/operations.md ----------------------------------------


def _runbook_queries() -> dict[str, str]:
    """RUNBOOK_QUERIES of the integration test that runs them, read without importing it (it pulls in Ray)."""
    tree = ast.parse(RUNBOOK_SQL_TEST.read_text(encoding="utf-8"))
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "RUNBOOK_QUERIES" for t in node.targets):
            return dict(ast.literal_eval(node.value))
    raise AssertionError(f"RUNBOOK_QUERIES not found in {RUNBOOK_SQL_TEST}")


def _lines(text: str) -> str:
    return "\n".join(line.rstrip() for line in text.splitlines())


def test_the_runbook_sql_appears_verbatim_in_the_operations_guide() -> None:
    text = _lines(_doc("operations.md"))
    queries = _runbook_queries()
    assert len(queries) >= 10
    missing = [name for name, sql in queries.items() if _lines(sql) not in text]
    assert missing == [], f"the runbook's queries {missing} are no longer verbatim in docs/operations.md"
