"""Records cross a Ray call as plain tuples and come back as the NamedTuples the code reads."""

from __future__ import annotations

import pickle

from ray import cloudpickle

from pipeline.records import BatchResult, EventStat, InboundRecord, OutboundRecord, inbound_records, plain


def test_inbound_records_round_trip_through_plain_tuples() -> None:
    records = [
        InboundRecord("sentinai.triage", 3, 17, b"tenant-a:EXC-1", b"{}", (("sentinai-attempt", b"2"),), 1_700_000_000_000),
        InboundRecord("sentinai.triage", 0, 4, None, None),
    ]

    rows = plain(records)

    assert all(type(row) is tuple for row in rows)
    received = inbound_records(pickle.loads(cloudpickle.dumps(rows)))
    assert received == records
    assert all(type(record) is InboundRecord for record in received)
    assert received[0].headers == (("sentinai-attempt", b"2"),)


def test_batch_result_pickles_as_plain_tuples_and_unpickles_as_records() -> None:
    result = BatchResult(
        outputs=[OutboundRecord("sentinai.policy", b"tenant-a:EXC-1", b'{"a":1}', (("h", b"v"),))],
        stats=[EventStat("TriageCompleted", "tenant-a", "completed", 0.002, None, 0.4),
               EventStat("TriageCompleted", "tenant-b", "dead_lettered", 0.002, "validation_error")],
    )

    _rebuild, (outputs, stats) = result.__reduce__()
    assert all(type(row) is tuple for row in outputs + stats)

    received = pickle.loads(cloudpickle.dumps(result))
    assert received == result
    assert type(received.outputs[0]) is OutboundRecord
    assert type(received.stats[1]) is EventStat
    assert received.count("dead_lettered") == 1
