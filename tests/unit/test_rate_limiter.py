"""The HTTP service's per-token rate limit: a token bucket, refilled continuously."""

from __future__ import annotations

from infra.http.limits import RateLimiter


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_a_key_may_burst_to_its_rate_then_waits_for_the_bucket_to_refill() -> None:
    clock = Clock()
    limiter = RateLimiter(per_minute=60, clock=clock)
    assert [limiter.take("a") for _ in range(60)] == [0.0] * 60
    assert limiter.take("a") == 1.0  # one a second: the next in a second
    clock.now = 0.5
    assert limiter.take("a") == 0.5
    clock.now = 1.0
    assert limiter.take("a") == 0.0


def test_keys_have_buckets_of_their_own() -> None:
    limiter = RateLimiter(per_minute=1, clock=Clock())
    assert limiter.take("a") == 0.0
    assert limiter.take("a") > 0
    assert limiter.take("b") == 0.0


def test_refilled_buckets_are_forgotten_so_memory_stays_bounded() -> None:
    clock = Clock()
    limiter = RateLimiter(per_minute=60, clock=clock)
    limiter.MAX_BUCKETS = 100
    for n in range(100):
        limiter.take(f"address:{n}")
    clock.now = 60.0  # every bucket has refilled
    limiter.take("one more")
    assert len(limiter._buckets) == 1
