"""Per-tenant rate limits at the pipeline's entry (DESIGN.md §5): a tenant over its limit is slowed,
not failed, and the other tenants are not slowed.

The intake consumer asks `TenantThrottle.admit` about every record it fetches. A tenant with tokens
left passes; once its bucket is empty, its records wait here, in the order they came, and
`release` lets them through as tokens come back. Every later record of a waiting tenant queues
behind the ones already waiting, so one exception's events keep their order. Records of other
tenants go on at once.

The bucket is shared by the stage's consumers without a shared store: the partition key
(`tenant_id:exception_id`) spreads each tenant's exceptions evenly over the topic's partitions, so a
consumer that owns a quarter of the partitions sees about a quarter of each tenant's traffic and
gets a quarter of its rate and burst (`share`). Over a few seconds the group admits about the
tenant's limit; a burst that happens to hash unevenly is held a little early on one consumer.

Records held here have been fetched, not processed: the consumer keeps their offsets uncommitted,
so a crash redelivers them. How many may wait is bounded by the consumer (it pauses its partitions).
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

from pipeline.records import InboundRecord


@dataclass(frozen=True, slots=True)
class TenantLimit:
    """A tenant pack's `rate_limit`: events per second, and how many may come at once."""

    events_per_s: float
    burst: int


@dataclass(frozen=True, slots=True)
class Backpressure:
    """A tenant that started to be held back: what a `BackpressureDetected` event reports."""

    tenant_id: str
    exception_id: str  # the first exception held
    limit: TenantLimit
    held: int


class TokenBucket:
    """`capacity` tokens at most, `rate` tokens a second back; one token per event."""

    __slots__ = ("capacity", "rate", "tokens", "updated_at")

    def __init__(self, rate: float, capacity: float, now: float) -> None:
        self.rate = rate
        self.capacity = capacity
        self.tokens = capacity
        self.updated_at = now

    def refill(self, now: float, *, capped: bool = True) -> None:
        """Add the tokens earned since the last refill. `capped=False` while records wait: each token
        would have gone to one of them the moment it came, so none is lost to the capacity between
        two releases."""
        if now > self.updated_at:
            self.tokens += (now - self.updated_at) * self.rate
            if capped:
                self.tokens = min(self.capacity, self.tokens)
            self.updated_at = now

    def take(self) -> bool:
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return True
        return False

    def resize(self, rate: float, capacity: float) -> None:
        self.rate = rate
        self.capacity = capacity
        self.tokens = min(self.tokens, capacity)


class _Tenant:
    __slots__ = ("bucket", "held", "limit", "reported_at")

    def __init__(self, limit: TenantLimit, bucket: TokenBucket) -> None:
        self.limit = limit
        self.bucket = bucket
        self.held: deque[tuple[float, InboundRecord]] = deque()  # (held since, record), in arrival order
        self.reported_at = -float("inf")


def tenant_of(key: bytes | None) -> bytes:
    """The tenant part of a partition key `tenant_id:exception_id`, as bytes (no decoding per record)."""
    return key.partition(b":")[0] if key else b""


class TenantThrottle:
    def __init__(self, *, report_interval_s: float = 10.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.report_interval_s = report_interval_s
        self.clock = clock
        self.share = 1.0
        self._tenants: dict[bytes, _Tenant] = {}
        self._released_unlimited: list[tuple[float, InboundRecord]] = []  # held by a limit since lifted: (held since, record)
        self._started: list[Backpressure] = []

    @property
    def limits(self) -> dict[str, TenantLimit]:
        return {tenant.decode(): state.limit for tenant, state in self._tenants.items()}

    def configure(self, limits: Mapping[str, TenantLimit], share: float | None = None) -> None:
        """Set every tenant's limit (tenants left out have none) and this consumer's share of them."""
        if share is not None:
            self.share = min(1.0, max(share, 0.0))
        now = self.clock()
        wanted = {tenant.encode(): limit for tenant, limit in limits.items()}
        for tenant in list(self._tenants):
            if tenant not in wanted:  # limit lifted: what waits goes on
                self._released_unlimited += self._tenants.pop(tenant).held
        for tenant, limit in wanted.items():
            rate, capacity = self._scaled(limit)
            state = self._tenants.get(tenant)
            if state is None:
                self._tenants[tenant] = _Tenant(limit, TokenBucket(rate, capacity, now))
            else:
                state.bucket.refill(now)
                state.bucket.resize(rate, capacity)
                state.limit = limit

    def _scaled(self, limit: TenantLimit) -> tuple[float, float]:
        # At least one token, or a small share of a small burst would never admit anything.
        return limit.events_per_s * self.share, max(1.0, limit.burst * self.share)

    def admit(self, record: InboundRecord) -> bool:
        """True: dispatch the record now. False: it waits here until `release` returns it."""
        if not self._tenants:
            return True
        state = self._tenants.get(tenant_of(record.key))
        if state is None:
            return True
        now = self.clock()
        if not state.held:
            state.bucket.refill(now)
            if state.bucket.take():
                return True
            if now - state.reported_at >= self.report_interval_s:
                state.reported_at = now
                exception_id = record.key.partition(b":")[2].decode("utf-8", "replace") if record.key else ""
                self._started.append(Backpressure(tenant_of(record.key).decode(), exception_id, state.limit, 0))
        state.held.append((now, record))
        return False

    def release(self) -> list[InboundRecord]:
        """Held records whose tokens have come back, each tenant's in arrival order; `held_ms` says
        how long each waited."""
        now = self.clock()
        released = _waited(self._released_unlimited, now)
        self._released_unlimited = []
        for state in self._tenants.values():
            if not state.held:
                continue
            state.bucket.refill(now, capped=False)
            while state.held and state.bucket.take():
                released += _waited([state.held.popleft()], now)
            state.bucket.tokens = min(state.bucket.capacity, state.bucket.tokens)
        return released

    def release_all(self) -> list[InboundRecord]:
        """Every held record, limits or not: the consumer is giving its partitions up or stopping."""
        now = self.clock()
        released = _waited(self._released_unlimited, now)
        self._released_unlimited = []
        for state in self._tenants.values():
            released += _waited(state.held, now)
            state.held.clear()
        return released

    def take_started(self) -> list[Backpressure]:
        """Tenants that started to be held since the last call (each at most once per
        `report_interval_s`), with how many of their records wait now."""
        started, self._started = self._started, []
        return [
            Backpressure(item.tenant_id, item.exception_id, item.limit, len(self._tenants[item.tenant_id.encode()].held))
            if item.tenant_id.encode() in self._tenants else item
            for item in started
        ]

    def held(self) -> int:
        return len(self._released_unlimited) + sum(len(state.held) for state in self._tenants.values())

    def held_by_tenant(self) -> dict[str, int]:
        return {tenant.decode(): len(state.held) for tenant, state in self._tenants.items() if state.held}

    def seconds_until_release(self) -> float | None:
        """How long until some held record gets its token (None: nothing is held)."""
        if self._released_unlimited:
            return 0.0
        now = self.clock()
        for state in self._tenants.values():
            if state.held:
                state.bucket.refill(now, capped=False)
        waits = [
            max(0.0, (1.0 - state.bucket.tokens) / state.bucket.rate) if state.bucket.rate > 0 else float("inf")
            for state in self._tenants.values()
            if state.held
        ]
        return min(waits) if waits else None


def _waited(held: Iterable[tuple[float, InboundRecord]], now: float) -> list[InboundRecord]:
    """Held records as they go on, each saying how long it waited (`held_ms`, at least 1)."""
    return [record._replace(held_ms=max(1, round(1000 * (now - since)))) for since, record in held]

