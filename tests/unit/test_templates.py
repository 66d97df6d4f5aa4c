"""Template rendering of playbook step inputs: typed whole-value lookups, interpolation, missing keys."""

from __future__ import annotations

import pytest

from pipeline.errors import ToolInputError
from pipeline.tools.templates import lookup, render_template

CONTEXT = {
    "exception_id": "EXC-FIN_ACME-0A1B2C3D-0000042",
    "tenant_id": "FIN_ACME",
    "severity": "HIGH",
    "exception_type": "CASH_BREAK",
    "source_system": "tlm-recs",
    "attributes": {
        "amount": 25_000.0,
        "days_outstanding": 3,
        "open_item_amounts": [20_000.0, 5_000.0],
        "account_id": "NOSTRO-USD-JPM-001",
        "nested": {"level": {"value": False}},
        "note": None,
    },
}


def test_a_whole_template_keeps_the_value_type() -> None:
    assert render_template("{attributes.amount}", CONTEXT) == 25_000.0
    assert render_template("{attributes.days_outstanding}", CONTEXT) == 3
    assert render_template("{attributes.open_item_amounts}", CONTEXT) == [20_000.0, 5_000.0]
    assert render_template("{attributes.nested.level.value}", CONTEXT) is False
    assert render_template("{attributes.note}", CONTEXT) is None
    assert render_template("{attributes.nested}", CONTEXT) == {"level": {"value": False}}


def test_templates_inside_text_are_interpolated_as_strings() -> None:
    text = "{exception_type} {exception_id} on {attributes.account_id}: {attributes.amount} ({severity})"
    assert render_template(text, CONTEXT) == (
        "CASH_BREAK EXC-FIN_ACME-0A1B2C3D-0000042 on NOSTRO-USD-JPM-001: 25000.0 (HIGH)"
    )


def test_dicts_and_lists_are_rendered_recursively_and_other_values_pass_through() -> None:
    step_input = {
        "account_id": "{attributes.account_id}",
        "tolerance": 1.0,
        "flags": ["{tenant_id}", 7, True, None],
        "meta": {"source": "{source_system}", "label": "plain text"},
    }
    assert render_template(step_input, CONTEXT) == {
        "account_id": "NOSTRO-USD-JPM-001",
        "tolerance": 1.0,
        "flags": ["FIN_ACME", 7, True, None],
        "meta": {"source": "tlm-recs", "label": "plain text"},
    }
    assert render_template(("{severity}",), CONTEXT) == ["HIGH"]


def test_braces_that_are_not_dotted_names_are_left_alone() -> None:
    assert render_template("{}", CONTEXT) == "{}"
    assert render_template('{"a": 1} and { severity }', CONTEXT) == '{"a": 1} and { severity }'
    assert render_template("{9lives}", CONTEXT) == "{9lives}"


def test_a_missing_top_level_key_names_the_key() -> None:
    with pytest.raises(ToolInputError, match=r"template \{occurred_at\}: no value for 'occurred_at'"):
        render_template("{occurred_at}", CONTEXT)


def test_a_missing_attribute_names_the_dotted_path() -> None:
    with pytest.raises(
        ToolInputError, match=r"template \{attributes\.trade_id\}: no value for 'attributes\.trade_id'"
    ):
        render_template({"trade_id": "Trade {attributes.trade_id} failed"}, CONTEXT)


def test_walking_into_a_non_dict_names_where_it_stopped() -> None:
    with pytest.raises(ToolInputError, match=r"no value for 'attributes\.amount\.currency'"):
        render_template("{attributes.amount.currency}", CONTEXT)


def test_lookup_reads_dotted_paths() -> None:
    assert lookup("attributes.nested.level", CONTEXT) == {"value": False}
    assert lookup("tenant_id", CONTEXT) == "FIN_ACME"
    assert ToolInputError.error_type == "tool_input_invalid"
