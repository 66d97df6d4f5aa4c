"""Realistic, reproducible exception traffic for the demo tenants (`sentinai demo`, tests, benchmarks).

Every generated exception carries the attributes its type's severity rules and playbook tool inputs
read, in the formats the tools' input schemas require, with values spread so that every severity and
both tool outcomes occur. Descriptions come from templates here, never from the packs' examples.
Output depends only on the random generator's state and `start` (no clock): the same seed gives the
same stream. Dates in attributes are relative to `occurred_at`, which lies up to 12 hours before
`start`; pass `start=now` for live demos so date-window tools see current dates.
"""

from pipeline.demo_traffic.common import DEMO_START
from pipeline.demo_traffic.stream import demo_types, generate_exception, generate_for_type, generate_stream

__all__ = ["DEMO_START", "demo_types", "generate_exception", "generate_for_type", "generate_stream"]
