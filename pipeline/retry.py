"""Retry policy: exponential backoff with jitter, then the dead-letter queue.

Defaults follow the runbook: 1, 2, 4, 8 s, then DLQ. Jitter spreads a burst of failures so they do
not all come back in the same second.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from pipeline.settings import RetryPolicySettings


@dataclass(frozen=True)
class RetryPolicy:
    max_retries: int = 4
    base_delay_s: float = 1.0
    max_delay_s: float = 60.0
    jitter_fraction: float = 0.1

    def delay_s(self, retry_number: int, rng: random.Random | None = None) -> float:
        """Delay before retry `retry_number` (1-based): base * 2^(n-1), capped, +/- jitter."""
        if retry_number < 1:
            raise ValueError("retry_number starts at 1")
        delay = min(self.base_delay_s * (2 ** (retry_number - 1)), self.max_delay_s)
        spread = delay * self.jitter_fraction
        return max(0.0, delay + (rng or random).uniform(-spread, spread))

    def exhausted(self, retries_done: int) -> bool:
        return retries_done >= self.max_retries

    @classmethod
    def from_settings(cls, settings: RetryPolicySettings) -> RetryPolicy:
        return cls(settings.max_retries, settings.base_delay_s, settings.max_delay_s, settings.jitter_fraction)
