"""Limits that keep one user from hurting another: failed logins counted atomically, the
registration limit, who the client is behind a proxy, the bounded password-hash pool and the
per-user quota of workspaces.

Tests that need small limits run on a second platform whose only trusted proxy is 127.0.0.2:
a client bound to that address plays the ingress (its ``X-Forwarded-For`` names the client),
a client on 127.0.0.1 connects directly (its ``X-Forwarded-For`` is the client's own claim).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest

from tests.conftest import running_platform
from tests.helpers import PASSWORD, Platform, User, assert_error, new_user, register, unique_name

SESSION_QUOTA = 3
REGISTRATIONS_PER_ADDRESS = 3


def in_parallel(calls: list[Callable[[], httpx.Response]]) -> list[httpx.Response]:
    """Run every call at once (one thread each) and return the responses in order."""
    with ThreadPoolExecutor(max_workers=len(calls)) as pool:
        return list(pool.map(lambda call: call(), calls))


def statuses(responses: list[httpx.Response]) -> list[int]:
    return sorted(response.status_code for response in responses)


def guess(base_url: str, username: str, address: str) -> Callable[[], httpx.Response]:
    def call() -> httpx.Response:
        with httpx.Client(base_url=base_url, timeout=60) as client:
            return client.post(
                "/api/users/login",
                json={"username": username, "password": "wrong password"},
                headers={"X-Forwarded-For": address},
            )

    return call


# ---- logins on the main platform (5 failures per account, 20 per address) ---------------------


def test_parallel_guesses_at_one_account_get_no_more_tries_than_a_sequence(
    api: httpx.Client, platform: Platform
) -> None:
    victim = new_user(api)
    burst = [guess(platform.base_url, victim.username, f"10.31.0.{i}") for i in range(30)]
    responses = in_parallel(burst)
    assert statuses(responses) == [401] * 5 + [429] * 25
    for response in responses:
        if response.status_code == 429:
            assert int(response.headers["Retry-After"]) >= 1
    # Its email is the same account: no fresh budget by switching names.
    by_email = guess(platform.base_url, victim.email, "10.31.1.1")()
    assert_error(by_email, 429)


def test_parallel_guesses_from_one_address_get_no_more_tries_than_a_sequence(
    platform: Platform,
) -> None:
    address = f"10.32.{uuid.uuid4().int % 250}.1"
    burst = [guess(platform.base_url, unique_name("nobody"), address) for _ in range(40)]
    assert statuses(in_parallel(burst)) == [401] * 20 + [429] * 20


def test_the_client_behind_trusted_proxies_is_the_rightmost_untrusted_address(
    api: httpx.Client, platform: Platform
) -> None:
    for i in range(20):
        # A client may prepend anything; the address the proxy saw is still the rightmost.
        spoofed = f"198.51.100.{i}, 10.33.0.1"
        assert guess(platform.base_url, unique_name("nobody"), spoofed)().status_code == 401
    victim = new_user(api)
    attempt = {"username": victim.username, "password": PASSWORD}
    blocked = api.post(
        "/api/users/login", json=attempt, headers={"X-Forwarded-For": "203.0.113.9, 10.33.0.1"}
    )
    assert_error(blocked, 429)
    elsewhere = api.post("/api/users/login", json=attempt, headers={"X-Forwarded-For": "10.33.0.2"})
    assert elsewhere.status_code == 200, elsewhere.text


def test_a_successful_login_is_not_counted_as_a_failure(api: httpx.Client) -> None:
    victim = new_user(api)
    headers = {"X-Forwarded-For": "10.34.0.1"}
    attempt = {"username": victim.username, "password": PASSWORD}
    for _ in range(8):
        assert api.post("/api/users/login", json=attempt, headers=headers).status_code == 200
    wrong = {"username": victim.username, "password": "wrong password"}
    for _ in range(4):
        assert api.post("/api/users/login", json=wrong, headers=headers).status_code == 401
    assert api.post("/api/users/login", json=attempt, headers=headers).status_code == 200
    # The success cleared the account's failures: five more wrong guesses before 429.
    for _ in range(5):
        assert api.post("/api/users/login", json=wrong, headers=headers).status_code == 401
    assert_error(api.post("/api/users/login", json=wrong, headers=headers), 429)


# ---- a platform with small limits ----------------------------------------------------------


@pytest.fixture(scope="module")
def limited(database_url: str) -> Iterator[Platform]:
    with running_platform(
        database_url,
        extra_env={
            "TRUSTED_PROXIES": "127.0.0.2/32",
            "REGISTER_MAX_PER_ADDRESS": str(REGISTRATIONS_PER_ADDRESS),
            "MAX_SESSIONS_PER_USER": str(SESSION_QUOTA),
            "PASSWORD_HASH_CONCURRENCY": "1",
            "PASSWORD_HASH_QUEUE": "0",
            # The production cost (the suite's own is cheap): the pool must stay busy.
            "PASSWORD_HASH_MEMORY_KIB": "65536",
            "PASSWORD_HASH_TIME_COST": "3",
        },
    ) as running:
        yield running


def via_proxy(platform: Platform, client_address: str) -> httpx.Client:
    """A client that reaches the platform through the trusted proxy, as ``client_address``."""
    return httpx.Client(
        base_url=platform.base_url,
        timeout=60,
        transport=httpx.HTTPTransport(local_address="127.0.0.2"),
        headers={"X-Forwarded-For": client_address},
    )


def limited_user(platform: Platform) -> User:
    with via_proxy(platform, f"10.40.{uuid.uuid4().int % 250}.{uuid.uuid4().int % 250}") as api:
        return new_user(api)


def test_registration_is_rate_limited_per_client_address(limited: Platform) -> None:
    with via_proxy(limited, "10.41.0.1") as api:
        taken = unique_name()
        assert register(api, taken).status_code == 201
        assert_error(register(api, taken, f"other-{taken}@example.com"), 409)  # counts too
        assert register(api).status_code == 201
        refused = assert_error(register(api), 429)
        assert "registrations" in refused["error"]
    with via_proxy(limited, "10.41.0.2") as elsewhere:
        assert register(elsewhere).status_code == 201


def test_an_ipv6_client_is_counted_by_its_64_block(limited: Platform) -> None:
    # A subscriber gets a /64: counting single addresses would give one client 2**64 budgets.
    for i in range(REGISTRATIONS_PER_ADDRESS):
        with via_proxy(limited, f"2001:db8:41:1::{i + 1}") as api:
            assert register(api).status_code == 201
    with via_proxy(limited, "2001:db8:41:1:ffff::7") as same_block:
        assert "registrations" in assert_error(register(same_block), 429)["error"]
    with via_proxy(limited, "2001:db8:41:2::1") as next_block:
        assert register(next_block).status_code == 201


def test_forwarded_for_is_ignored_unless_the_peer_is_a_trusted_proxy(limited: Platform) -> None:
    # Straight from 127.0.0.3 (not a proxy; an address no other test uses, since the counts
    # live in the shared database): whatever it claims, every registration counts against it.
    direct_transport = httpx.HTTPTransport(local_address="127.0.0.3")
    with httpx.Client(base_url=limited.base_url, timeout=60, transport=direct_transport) as direct:
        for i in range(REGISTRATIONS_PER_ADDRESS + 1):
            direct.headers["X-Forwarded-For"] = f"10.42.0.{i}"
            response = register(direct)
            if i < REGISTRATIONS_PER_ADDRESS:
                assert response.status_code == 201, response.text
        assert_error(response, 429)
    # The same claim through the trusted proxy is believed.
    with via_proxy(limited, "10.42.0.0") as proxied:
        assert register(proxied).status_code == 201


def test_password_hashing_has_a_bounded_queue_and_taken_names_never_reach_it(
    limited: Platform,
) -> None:
    taken = unique_name()
    with via_proxy(limited, "10.43.0.1") as api:
        assert register(api, taken).status_code == 201

    def register_taken(i: int) -> Callable[[], httpx.Response]:
        def call() -> httpx.Response:
            with via_proxy(limited, f"10.43.1.{i}") as api:
                return register(api, taken, f"{uuid.uuid4().hex}@example.com")

        return call

    def login(i: int) -> Callable[[], httpx.Response]:
        def call() -> httpx.Response:
            with via_proxy(limited, f"10.43.2.{i}") as api:
                body = {"username": unique_name("nobody"), "password": "wrong password"}
                return api.post("/api/users/login", json=body)

        return call

    calls: list[Callable[[], Any]] = []
    for i in range(16):
        calls += [register_taken(i), login(i)]
    responses = in_parallel(calls)
    registers, logins = responses[0::2], responses[1::2]
    # One hash at a time and nobody waiting: logins beyond it are refused at once.
    busy = [response for response in logins if response.status_code == 503]
    assert busy and set(statuses(logins)) <= {401, 503}
    assert_error(busy[0], 503)
    assert int(busy[0].headers["Retry-After"]) >= 1
    # A taken name is answered before hashing, so it never meets the busy pool.
    assert statuses(registers) == [409] * 16


def test_sessions_owned_per_user_are_capped_without_races(limited: Platform) -> None:
    owner = limited_user(limited)

    def create(i: int) -> Callable[[], httpx.Response]:
        legacy = i % 2 == 1
        path = "/api/sessions/" if legacy else "/api/postgres_sessions/"
        body = {"code": "print(1)\n"} if legacy else {}
        return lambda: owner.client.post(path, json=body)

    responses = in_parallel([create(i) for i in range(10)])
    assert statuses(responses) == [201] * SESSION_QUOTA + [429] * (10 - SESSION_QUOTA)
    refused = next(response for response in responses if response.status_code == 429)
    assert f"{SESSION_QUOTA} workspaces" in assert_error(refused, 429)["error"]
    listed = owner.client.get("/api/postgres_sessions/").json()
    assert listed["count"] == SESSION_QUOTA
    # Deleting one makes room for one.
    first = listed["data"][0]["id"]
    assert owner.client.delete(f"/api/postgres_sessions/{first}").status_code == 200
    assert owner.client.post("/api/sessions/", json={}).status_code == 201
    assert_error(owner.client.post("/api/postgres_sessions/", json={}), 429)
    # The quota is per user: somebody else still creates.
    other = limited_user(limited)
    assert other.client.post("/api/postgres_sessions/", json={}).status_code == 201
