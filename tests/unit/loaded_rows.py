"""An exception row as `Stage.load` fetches it for a stage that declares `exception_columns`."""

from __future__ import annotations

from typing import Any

from pipeline.stages import Stage


class LoadedColumnsOnly(dict[str, Any]):
    """Holds only the keys and the stage's `exception_columns`; reading any other column fails the
    test. In production such a read is a KeyError, or worse, a `.get` that quietly answers None."""

    def __init__(self, stage: type[Stage], values: dict[str, Any]) -> None:
        assert stage.exception_columns is not None
        loaded = {"tenant_id", "exception_id", *stage.exception_columns}
        assert set(values) <= loaded, f"{sorted(set(values) - loaded)} are not loaded for {stage.name}"
        super().__init__(values)

    def __getitem__(self, column: str) -> Any:
        assert column in self, f"column {column!r} is read but not loaded"
        return super().__getitem__(column)

    def get(self, column: str, default: Any = None) -> Any:
        assert column in self, f"column {column!r} is read but not loaded"
        return super().get(column, default)
