"""The web layer against another site and against hostile bytes: the Origin rule for the
login cookie (HTTP and WebSocket), media types, broken and over-deep JSON, oversized headers,
and how a terminal is opened without putting the login token in a URL."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from tests.helpers import (
    ALLOWED_ORIGIN,
    PASSWORD,
    Platform,
    User,
    assert_error,
    new_user,
    new_workspace,
)
from tests.terminal_client import Terminal, terminal_url

EVIL = "http://evil.example"


@pytest.fixture
def victim(api: httpx.Client) -> User:
    return new_user(api)


@pytest.fixture
def browser(platform: Platform, victim: User) -> Iterator[httpx.Client]:
    """A client that authenticates the way a browser does: only with the login cookie."""
    with httpx.Client(base_url=platform.base_url, timeout=30) as client:
        client.cookies.set("cep_token", victim.token)
        yield client


def session_count(user: User) -> int:
    response = user.client.get("/api/postgres_sessions/")
    assert response.status_code == 200, response.text
    return response.json()["count"]


# ---- CORS and OPTIONS ----------------------------------------------------------------------


def test_cors_headers_answer_an_allowed_origin_only(victim: User) -> None:
    allowed = victim.client.get("/api/users/me", headers={"Origin": ALLOWED_ORIGIN})
    assert allowed.status_code == 200
    assert allowed.headers["access-control-allow-origin"] == ALLOWED_ORIGIN
    assert allowed.headers["access-control-allow-credentials"] == "true"
    assert "Origin" in allowed.headers["vary"]
    foreign = victim.client.get("/api/users/me", headers={"Origin": EVIL})
    assert foreign.status_code == 200
    assert "access-control-allow-origin" not in foreign.headers
    plain = victim.client.get("/api/users/me")
    assert not [name for name in plain.headers if name.startswith("access-control-")]


def test_options_names_every_method_of_the_path(victim: User) -> None:
    url = f"/api/workspace/{new_workspace(victim)}/files/a.txt"
    for headers in ({}, {"Origin": ALLOWED_ORIGIN}):
        response = victim.client.options(url, headers=headers)
        assert response.status_code < 300, response.text
        if "origin" not in {name.lower() for name in headers}:
            methods = {m.strip() for m in response.headers["allow"].split(",")}
            assert {"GET", "PUT", "DELETE", "OPTIONS"} <= methods, methods


# ---- the Origin rule -----------------------------------------------------------------------


def test_a_cross_site_post_with_the_cookie_is_refused(browser: httpx.Client, victim: User) -> None:
    before = session_count(victim)
    response = browser.post("/api/postgres_sessions/", json={"name": "x"}, headers={"Origin": EVIL})
    assert "origin" in assert_error(response, 403)["error"]
    assert session_count(victim) == before


def test_cross_site_form_and_text_posts_never_reach_a_handler(
    browser: httpx.Client, victim: User
) -> None:
    # The two kinds of POST another site can make without a CORS preflight.
    before = session_count(victim)
    for content_type, body in (
        ("text/plain", '{"name": "planted"}'),
        ("application/x-www-form-urlencoded", "name=planted"),
    ):
        response = browser.post(
            "/api/postgres_sessions/",
            content=body,
            headers={"Origin": EVIL, "Content-Type": content_type},
        )
        assert_error(response, 415)
    assert session_count(victim) == before


def test_every_state_changing_method_from_a_foreign_origin_is_refused(
    browser: httpx.Client, victim: User
) -> None:
    workspace = new_workspace(victim)
    url = f"/api/postgres_sessions/{workspace}"
    assert_error(browser.put(url, json={"name": "x"}, headers={"Origin": EVIL}), 403)
    assert_error(browser.delete(url, headers={"Origin": EVIL}), 403)
    assert_error(browser.post("/api/users/logout", headers={"Origin": EVIL}), 403)
    assert victim.client.get(url).json()["data"]["name"] == "ws"
    # Reading is not state-changing: the Origin rule leaves it to CORS.
    assert browser.get(url, headers={"Origin": EVIL}).status_code == 200


def test_cookie_requests_from_an_allowed_or_the_apis_own_origin_pass(
    browser: httpx.Client, platform: Platform
) -> None:
    for headers in (
        {"Origin": ALLOWED_ORIGIN},
        {"Origin": platform.base_url},
        {"Referer": f"{ALLOWED_ORIGIN}/editor?file=main.py"},
        {"Referer": f"{platform.base_url}/"},
    ):
        response = browser.post("/api/postgres_sessions/", json={}, headers=headers)
        assert response.status_code == 201, (headers, response.text)


def test_a_cookie_request_without_origin_or_referer_or_from_a_foreign_referer_is_refused(
    browser: httpx.Client,
) -> None:
    assert "Bearer" in assert_error(browser.post("/api/postgres_sessions/", json={}), 403)["error"]
    refused = browser.post("/api/postgres_sessions/", json={}, headers={"Referer": f"{EVIL}/x"})
    assert_error(refused, 403)
    assert_error(browser.post("/api/postgres_sessions/", json={}, headers={"Origin": "null"}), 403)


def test_bearer_requests_are_not_subject_to_the_origin_rule(victim: User) -> None:
    created = victim.client.post("/api/postgres_sessions/", json={}, headers={"Origin": EVIL})
    assert created.status_code == 201, created.text


def test_requests_the_cookie_does_not_authenticate_are_not_subject_to_it(
    browser: httpx.Client, victim: User
) -> None:
    # A stale cookie does not make a login "authenticated by the cookie".
    login = browser.post(
        "/api/users/login", json={"username": victim.username, "password": PASSWORD}
    )
    assert login.status_code == 200, login.text


# ---- media types, broken bodies, big headers -------------------------------------------------


def test_a_text_plain_or_form_login_is_415_and_sets_no_cookie(
    api: httpx.Client, victim: User
) -> None:
    for content_type, body in (
        ("text/plain", f'{{"username": "{victim.username}", "password": "{PASSWORD}"}}'),
        ("application/x-www-form-urlencoded", f"username={victim.username}&password={PASSWORD}"),
    ):
        response = api.post(
            "/api/users/login", content=body, headers={"Content-Type": content_type}
        )
        assert_error(response, 415)
        assert "set-cookie" not in response.headers
    assert not api.cookies


def test_a_json_endpoint_refuses_another_media_type_and_writes_nothing(victim: User) -> None:
    before = session_count(victim)
    for content_type in ("text/plain", "multipart/form-data; boundary=x", "application/xml"):
        response = victim.client.post(
            "/api/postgres_sessions/",
            content=b'{"name": "x"}',
            headers={"Content-Type": content_type},
        )
        assert_error(response, 415)
    latin = victim.client.post(
        "/api/postgres_sessions/",
        content=b'{"name": "x"}',
        headers={"Content-Type": "application/json; charset=latin-1"},
    )
    assert_error(latin, 415)
    assert session_count(victim) == before


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/api/users/login", b'{"username": "\xff\xfe", "password": "12345678"}'),
        (
            "/api/users/register",
            b'{"username": "abc", "email": "\xed\xa0\x80@x.io", "password": "x"}',
        ),
        ("/api/postgres_sessions/", b'{"name": "caf\xe9"}'),
    ],
)
def test_a_body_that_is_not_utf8_is_400(victim: User, path: str, body: bytes) -> None:
    response = victim.client.post(path, content=body, headers={"Content-Type": "application/json"})
    assert "UTF-8" in assert_error(response, 400)["error"]


@pytest.mark.parametrize("depth", [33, 100_000])
def test_json_nested_deeper_than_32_levels_is_400(victim: User, depth: int) -> None:
    deep = b"[" * depth + b"]" * depth
    for body in (deep, b'{"name": "x", "extra": ' + deep + b"}"):
        for path in ("/api/postgres_sessions/", "/api/users/login"):
            response = victim.client.post(
                path, content=body, headers={"Content-Type": "application/json"}
            )
            assert "deeper than 32" in assert_error(response, 400)["error"]


def test_json_within_the_depth_limit_is_decoded_as_usual(victim: User) -> None:
    nested = b"[" * 31 + b"]" * 31
    response = victim.client.post(
        "/api/postgres_sessions/",
        content=b'{"name": ' + nested + b"}",
        headers={"Content-Type": "application/json"},
    )
    assert "name" in assert_error(response, 400)["error"]  # a type error, not a depth error


def test_oversized_request_headers_are_431(api: httpx.Client) -> None:
    big = {"X-Padding": "x" * 40_000}
    for path in ("/api/health/", "/api/users/me", "/no/such/path"):
        assert "headers" in assert_error(api.get(path, headers=big), 431)["error"]
    many = {f"X-Pad-{i}": "y" * 1000 for i in range(40)}
    assert_error(api.get("/api/health/", headers=many), 431)
    assert api.get("/api/health/", headers={"X-Padding": "x" * 8000}).status_code == 200


# ---- the terminal: Origin, tickets, no token in the URL --------------------------------------


async def handshake_status(url: str, headers: dict[str, str]) -> int:
    """The HTTP status of a WebSocket handshake: 101 when it opened."""
    try:
        async with connect(url, additional_headers=headers, open_timeout=20):
            return 101
    except InvalidStatus as exc:
        return exc.response.status_code


@pytest.mark.anyio
async def test_a_terminal_handshake_from_a_foreign_origin_is_refused_whatever_the_credentials(
    platform: Platform, victim: User
) -> None:
    url = terminal_url(platform, new_workspace(victim))
    for credentials in ({"Cookie": f"cep_token={victim.token}"}, victim.headers, {}):
        assert await handshake_status(url, {**credentials, "Origin": EVIL}) == 403
    # From an allowed origin the handshake goes through (and then needs credentials).
    async with connect(url, additional_headers={"Origin": ALLOWED_ORIGIN}) as ws:
        assert await Terminal(ws).closed() == 4401


@pytest.mark.anyio
async def test_a_login_token_in_the_terminal_url_is_not_accepted(
    platform: Platform, victim: User
) -> None:
    url = terminal_url(platform, new_workspace(victim), token=victim.token)
    async with connect(url) as ws:
        assert await Terminal(ws).closed() == 4401


def test_a_terminal_ticket_is_issued_to_the_owner_only(api: httpx.Client, victim: User) -> None:
    workspace = new_workspace(victim)
    path = f"/api/terminal/{workspace}/ticket"
    issued = victim.client.post(path)
    assert issued.status_code == 200, issued.text
    data = issued.json()["data"]
    assert data["expires_in"] == 60 and len(data["ticket"]) >= 32
    assert victim.client.post(path).json()["data"]["ticket"] != data["ticket"]

    reviewer = new_user(api, reviewer=True)
    review = victim.client.post(
        "/api/reviews/", json={"session_id": workspace, "title": "t", "assigned_to": reviewer.id}
    )
    assert review.status_code == 201, review.text
    assert_error(reviewer.client.post(path), 403)
    assert_error(new_user(api).client.post(path), 404)
    assert_error(api.post(path), 401)
    assert_error(
        victim.client.post("/api/terminal/00000000-0000-0000-0000-000000000000/ticket"), 404
    )
