"""The in-memory account throttle: a flood of register/login requests from one address is
refused at once (429, no body parsing, no database), other addresses are untouched."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from shared.throttle import MAX_TRACKED, TokenBuckets
from tests.conftest import running_platform
from tests.helpers import Platform, assert_error


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_a_bucket_allows_its_burst_then_its_rate() -> None:
    clock = Clock()
    buckets = TokenBuckets(rate=2, burst=3, clock=clock)
    assert [buckets.take("a") for _ in range(3)] == [0, 0, 0]
    assert buckets.take("a") == pytest.approx(0.5)  # empty: one token comes every 1/rate s
    assert buckets.take("b") == 0  # another address has its own bucket
    clock.now += 0.5
    assert buckets.take("a") == 0
    clock.now += 100
    assert [buckets.take("a") for _ in range(4)][:3] == [0, 0, 0]  # refilled to the burst only


def test_the_buckets_remember_a_bounded_number_of_addresses() -> None:
    buckets = TokenBuckets(rate=1, burst=1)
    for i in range(MAX_TRACKED + 50):
        buckets.take(f"10.0.{i // 256}.{i % 256}")
    assert len(buckets._buckets) == MAX_TRACKED


@pytest.fixture(scope="module")
def throttled(database_url: str) -> Iterator[Platform]:
    with running_platform(
        database_url,
        {"AUTH_REQUESTS_PER_SECOND": "0.5", "AUTH_REQUESTS_BURST": "3", "TRUSTED_PROXIES": ""},
    ) as running:
        yield running


def test_a_flood_of_logins_from_one_address_is_refused_before_any_work(
    throttled: Platform,
) -> None:
    wrong = {"username": "nobody-here", "password": "wrong password"}
    with httpx.Client(base_url=throttled.base_url, timeout=30) as api:
        answers = [api.post("/api/users/login", json=wrong) for _ in range(8)]
        assert [r.status_code for r in answers[:3]] == [401, 401, 401]
        for refused in answers[3:]:
            body = assert_error(refused, 429)
            assert "too many requests" in body["error"] and int(refused.headers["Retry-After"]) >= 1
        assert api.get("/api/health/").status_code == 200  # only the account endpoints
    local = httpx.HTTPTransport(local_address="127.0.0.2")  # another client address
    with httpx.Client(base_url=throttled.base_url, timeout=30, transport=local) as other:
        assert other.post("/api/users/login", json=wrong).status_code == 401
