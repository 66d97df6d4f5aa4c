"""pipeline.kafka.throttle: per-tenant token buckets that hold a tenant's records back, in order,
while other tenants go on (a fake clock)."""

from __future__ import annotations

from pipeline.kafka.throttle import TenantLimit, TenantThrottle, TokenBucket
from pipeline.records import InboundRecord


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _record(tenant: str, exception: str, offset: int) -> InboundRecord:
    return InboundRecord("exceptions", 0, offset, f"{tenant}:{exception}".encode(), b"{}")


def _throttle(limits: dict[str, TenantLimit], *, share: float = 1.0) -> tuple[TenantThrottle, FakeClock]:
    clock = FakeClock()
    throttle = TenantThrottle(report_interval_s=10.0, clock=clock)
    throttle.configure(limits, share=share)
    return throttle, clock


def test_a_tenant_passes_its_burst_then_waits_while_other_tenants_go_on() -> None:
    throttle, _ = _throttle({"SLOW": TenantLimit(events_per_s=10, burst=3)})
    slow = [_record("SLOW", f"E{i}", i) for i in range(5)]
    admitted = [throttle.admit(record) for record in slow]
    assert admitted == [True, True, True, False, False]
    # Unlimited tenants, and records without a key, are never held.
    assert throttle.admit(_record("FAST", "E1", 10)) and throttle.admit(InboundRecord("exceptions", 0, 11, None, b"x"))
    assert throttle.held() == 2 and throttle.held_by_tenant() == {"SLOW": 2}


def test_held_records_come_back_in_order_as_tokens_return_and_say_how_long_they_waited() -> None:
    throttle, clock = _throttle({"SLOW": TenantLimit(events_per_s=10, burst=1)})
    records = [_record("SLOW", f"E{i}", i) for i in range(4)]
    assert [throttle.admit(record) for record in records] == [True, False, False, False]
    assert throttle.release() == []
    assert throttle.seconds_until_release() == 0.1
    clock.now += 0.125
    first = throttle.release()
    assert [(r.offset, r.held_ms) for r in first] == [(1, 125)]
    clock.now += 0.25  # two and a half tokens more, though the burst is one: they were owed to waiting records
    assert [(r.offset, r.held_ms) for r in throttle.release()] == [(2, 375), (3, 375)]
    assert throttle.held() == 0 and throttle.seconds_until_release() is None


def test_a_later_record_of_a_waiting_tenant_queues_behind_the_held_ones_even_with_a_token() -> None:
    """One exception's events must keep their order: nothing of a waiting tenant overtakes."""
    throttle, clock = _throttle({"SLOW": TenantLimit(events_per_s=1, burst=1)})
    assert throttle.admit(_record("SLOW", "A", 0))
    assert not throttle.admit(_record("SLOW", "A", 1))
    clock.now += 1.0  # a token is back, but offset 1 waits for it
    assert not throttle.admit(_record("SLOW", "A", 2))
    assert [r.offset for r in throttle.release()] == [1]
    clock.now += 1.0
    assert [r.offset for r in throttle.release()] == [2]


def test_a_consumer_gets_its_share_of_the_partitions_of_each_limit() -> None:
    throttle, clock = _throttle({"T": TenantLimit(events_per_s=100, burst=40)}, share=0.25)
    assert sum(throttle.admit(_record("T", f"E{i}", i)) for i in range(20)) == 10  # a quarter of the burst
    clock.now += 0.2  # 25/s here: five more
    assert len(throttle.release()) == 5
    # A share smaller than one token of burst still admits one at a time.
    small, _ = _throttle({"T": TenantLimit(events_per_s=2, burst=2)}, share=0.1)
    assert small.admit(_record("T", "E0", 0)) and not small.admit(_record("T", "E1", 1))


def test_lifting_a_limit_lets_what_waits_go_and_lowering_it_caps_the_tokens() -> None:
    throttle, clock = _throttle({"A": TenantLimit(10, 5), "B": TenantLimit(10, 1)})
    assert [throttle.admit(_record("B", f"E{i}", i)) for i in range(3)] == [True, False, False]
    clock.now += 0.05
    throttle.configure({"A": TenantLimit(10, 2)})  # B has no limit any more; A's burst shrinks
    assert throttle.held() == 2
    assert [(r.offset, r.held_ms) for r in throttle.release()] == [(1, 50), (2, 50)]  # counted as held
    assert throttle.admit(_record("B", "E9", 9))
    assert [throttle.admit(_record("A", f"E{i}", 20 + i)) for i in range(3)] == [True, True, False]
    assert throttle.limits == {"A": TenantLimit(10, 2)}


def test_a_tenant_that_starts_to_wait_is_reported_once_per_interval() -> None:
    throttle, clock = _throttle({"SLOW": TenantLimit(events_per_s=1, burst=1)})
    throttle.admit(_record("SLOW", "EXC-1", 0))
    throttle.admit(_record("SLOW", "EXC-2", 1))
    throttle.admit(_record("SLOW", "EXC-3", 2))
    started = throttle.take_started()
    assert [(s.tenant_id, s.exception_id, s.held, s.limit) for s in started] == [("SLOW", "EXC-2", 2, TenantLimit(1, 1))]
    assert throttle.take_started() == []
    clock.now += 5.0
    assert [r.offset for r in throttle.release()] == [1, 2]
    assert throttle.admit(_record("SLOW", "EXC-4", 3))  # one token was left over, up to the burst
    assert not throttle.admit(_record("SLOW", "EXC-5", 4))  # waits again within the interval: not reported again
    assert throttle.take_started() == []
    clock.now += 10.0  # EXC-5 goes on: the tenant waits for nothing now
    assert [r.offset for r in throttle.release()] == [4]
    assert throttle.admit(_record("SLOW", "EXC-6", 5))  # the token left over
    assert not throttle.admit(_record("SLOW", "EXC-7", 6))  # waits again, an interval after the report
    assert [s.exception_id for s in throttle.take_started()] == ["EXC-7"]


def test_release_all_hands_back_every_held_record() -> None:
    throttle, clock = _throttle({"A": TenantLimit(1, 1), "B": TenantLimit(1, 1)})
    for offset, tenant in enumerate(["A", "A", "B", "B", "A"]):
        throttle.admit(_record(tenant, "E", offset))
    clock.now += 0.002
    released = throttle.release_all()
    assert sorted(r.offset for r in released) == [1, 3, 4] and {r.held_ms for r in released} == {2}
    assert throttle.held() == 0


def test_a_token_bucket_refills_at_its_rate_up_to_its_capacity() -> None:
    bucket = TokenBucket(rate=2, capacity=3, now=0.0)
    assert [bucket.take() for _ in range(4)] == [True, True, True, False]
    bucket.refill(0.75)
    assert bucket.tokens == 1.5
    bucket.refill(100.0)
    assert bucket.tokens == 3
    bucket.refill(50.0)  # a clock that goes back adds nothing
    assert bucket.tokens == 3
