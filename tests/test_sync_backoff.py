"""Backoff bounds and Retry-After parsing."""

from __future__ import annotations

import email.utils
import random

import pytest

from agent.sync.backoff import Backoff, parse_retry_after


def test_backoff_bounds_grow_and_cap() -> None:
    b = Backoff(1.0, 300.0, random.Random(7))
    for k in range(30):
        d = b.next_delay()
        step = min(300.0, 2.0**k)
        assert step / 2 <= d <= step, (k, d)
    assert b.failures == 30
    b.reset()
    assert b.next_delay() <= 1.0


def test_backoff_is_jittered_and_huge_k_is_safe() -> None:
    b = Backoff(1.0, 60.0, random.Random(1))
    b.failures = 10
    delays = {round(b.next_delay(), 6) for _ in range(20)}
    assert len(delays) > 10  # spread, not one value
    b.failures = 10_000
    assert 30.0 <= b.next_delay() <= 60.0


def test_backoff_rejects_bad_bounds() -> None:
    with pytest.raises(ValueError):
        Backoff(5.0, 1.0)


def test_retry_after_forms() -> None:
    assert parse_retry_after("7", 0.0) == 7.0
    assert parse_retry_after(" 2.5 ", 0.0) == 2.5
    assert parse_retry_after("-3", 0.0) == 0.0
    now = 1_750_000_000.0
    date = email.utils.formatdate(now + 30, usegmt=True)
    assert parse_retry_after(date, now) == pytest.approx(30, abs=1)
    assert parse_retry_after(date, now + 100) == 0.0
    assert parse_retry_after("soon", now) is None
    assert parse_retry_after(None, now) is None
    assert parse_retry_after("nan", now) is None
