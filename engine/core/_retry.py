"""Retries: how many attempts, which failures, and how long to wait between them.

The wait after the n-th failure is ``initial_delay * multiplier ** (n - 1)``, capped
at ``max_delay``, then shortened by up to ``jitter`` of itself (``jitter=0.2``: by
0-20 %). The random part comes from a generator the engine seeds from the run's
seed, the run and the step, so the same seed gives the same waits.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from ._errors import AgentError, BreakerOpenError, StepError, StepTimeoutError


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """When a failed attempt is tried again. The default is no retry (one attempt)."""

    max_attempts: int = 1
    initial_delay: float = 0.1  # seconds
    multiplier: float = 2.0
    max_delay: float = 30.0
    jitter: float = 0.0  # 0..1: the fraction of a wait that may be cut at random
    retry_on: tuple[type[BaseException], ...] = (Exception,)  # what an agent raised
    retry_timeouts: bool = True
    retry_breaker_open: bool = (
        False  # wait out an open breaker (the wait must outlast its cooldown)
    )

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError(f"max_attempts must be at least 1, got {self.max_attempts}")
        if self.initial_delay < 0 or self.max_delay < 0:
            raise ValueError("delays cannot be negative")
        if self.multiplier < 1:
            raise ValueError(f"multiplier must be at least 1, got {self.multiplier}")
        if not 0 <= self.jitter <= 1:
            raise ValueError(f"jitter must be within 0..1, got {self.jitter}")

    def delay(self, failures: int, rng: random.Random | None = None) -> float:
        """Seconds to wait after the ``failures``-th failed attempt (1 for the first)."""
        d = min(self.max_delay, self.initial_delay * self.multiplier ** max(0, failures - 1))
        if self.jitter and rng is not None:
            d *= 1.0 - self.jitter * rng.random()
        return d

    def retries(self, error: StepError) -> bool:
        """Whether ``error`` is worth another attempt (attempts left aside)."""
        if isinstance(error, StepTimeoutError):
            return self.retry_timeouts
        if isinstance(error, BreakerOpenError):
            return self.retry_breaker_open
        if isinstance(error, AgentError):
            cause = error.__cause__
            return cause is not None and isinstance(cause, self.retry_on)
        return False  # contract rejections and bad output come out the same every time


NO_RETRY = RetryPolicy()
