"""Accounts: registration rules, login, tokens, logout revocation, the login rate limit."""

from __future__ import annotations

import httpx
import pytest

from tests.helpers import PASSWORD, assert_error, new_user, register, unique_name


def test_register_returns_the_profile_without_secrets(api: httpx.Client) -> None:
    name = unique_name()
    response = register(api, name, f"{name}@Example.com")
    assert response.status_code == 201
    body = response.json()
    assert body["success"] is True and body["timestamp"].endswith("Z")
    user = body["data"]["user"]
    assert body["data"]["user_id"] == user["id"]
    assert user["username"] == name and user["email"] == f"{name}@Example.com"
    assert user["is_reviewer"] is False and user["reviewer_level"] is None
    assert "password" not in response.text and "hash" not in response.text


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("username", "ab"),
        ("username", "x" * 33),
        ("username", "bad name"),
        ("username", "semi;colon"),
        ("email", "not-an-email"),
        ("email", "a@b"),
        ("password", "short"),
        ("password", "p" * 129),
    ],
)
def test_register_rejects_invalid_fields_naming_them(
    api: httpx.Client, field: str, value: str
) -> None:
    name = unique_name()
    body = {"username": name, "email": f"{name}@example.com", "password": PASSWORD, field: value}
    error = assert_error(api.post("/api/users/register", json=body), 400)
    assert field in error["error"]


def test_register_rejects_missing_fields_and_non_json(api: httpx.Client) -> None:
    assert_error(api.post("/api/users/register", json={"username": unique_name()}), 400)
    assert_error(
        api.post(
            "/api/users/register",
            content=b"{not json",
            headers={"content-type": "application/json"},
        ),
        400,
    )


def test_usernames_are_unique_case_insensitively_and_emails_too(api: httpx.Client) -> None:
    name = unique_name()
    assert register(api, name, f"{name}@example.com").status_code == 201
    assert (
        "username"
        in assert_error(register(api, name.upper(), f"other{name}@example.com"), 409)["error"]
    )
    assert (
        "email"
        in assert_error(register(api, "x" + name, f"{name.upper()}@EXAMPLE.com"), 409)["error"]
    )


def test_login_by_username_or_email_sets_an_httponly_cookie(api: httpx.Client) -> None:
    user = new_user(api)
    by_email = api.post("/api/users/login", json={"username": user.email, "password": PASSWORD})
    assert by_email.status_code == 200
    data = by_email.json()["data"]
    assert data["user"]["id"] == user.id and data["expires_at"].endswith("Z")
    assert len(data["token"]) >= 32
    cookie = by_email.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=lax" in cookie
    # The cookie alone authenticates.
    with httpx.Client(base_url=str(api.base_url)) as browser:
        browser.cookies.set("cep_token", data["token"])
        assert browser.get("/api/users/me").json()["data"]["username"] == user.username


def test_wrong_password_and_unknown_user_get_the_same_401(api: httpx.Client) -> None:
    user = new_user(api)
    wrong = assert_error(
        api.post(
            "/api/users/login", json={"username": user.username, "password": "wrong password"}
        ),
        401,
    )
    unknown = assert_error(
        api.post(
            "/api/users/login", json={"username": unique_name(), "password": "wrong password"}
        ),
        401,
    )
    assert wrong["message"] == unknown["message"] and wrong["error"] == unknown["error"]


def test_me_requires_a_valid_token(api: httpx.Client) -> None:
    assert_error(api.get("/api/users/me"), 401)
    assert_error(api.get("/api/users/me", headers={"Authorization": "Bearer not-a-token"}), 401)
    assert_error(api.get("/api/users/me", headers={"Authorization": "Basic abc"}), 401)


def test_me_shows_email_only_to_its_owner(api: httpx.Client) -> None:
    user = new_user(api, reviewer=True)
    other = new_user(api)
    me = user.client.get("/api/users/me").json()["data"]
    assert me["email"] == user.email and "updated_at" in me
    reviewers = other.client.get("/api/users/reviewers", params={"limit": 100}).text
    assert (
        user.username in reviewers or other.client.get("/api/users/reviewers").json()["count"] > 0
    )
    assert user.email not in reviewers


def test_logout_revokes_the_token_everywhere(api: httpx.Client) -> None:
    user = new_user(api)
    second = api.post(
        "/api/users/login", json={"username": user.username, "password": PASSWORD}
    ).json()["data"]["token"]
    response = user.client.post("/api/users/logout")
    assert response.status_code == 200 and response.json()["data"]["revoked"] is True
    assert_error(user.client.get("/api/users/me"), 401)
    assert_error(user.client.post("/api/postgres_sessions/", json={}), 401)
    # Only that token: the user's other login still works.
    assert (
        api.get("/api/users/me", headers={"Authorization": f"Bearer {second}"}).status_code == 200
    )


def test_reviewer_status_on_defaults_level_1_and_off_clears_it(api: httpx.Client) -> None:
    user = new_user(api)
    on = user.client.put("/api/users/me/reviewer-status", json={"is_reviewer": True}).json()["data"]
    assert on["is_reviewer"] is True and on["reviewer_level"] == 1
    leveled = user.client.put(
        "/api/users/me/reviewer-status", json={"is_reviewer": True, "reviewer_level": 3}
    )
    assert leveled.json()["data"]["reviewer_level"] == 3
    off = user.client.put(
        "/api/users/me/reviewer-status", json={"is_reviewer": False, "reviewer_level": 2}
    )
    assert off.json()["data"] == {
        **off.json()["data"],
        "is_reviewer": False,
        "reviewer_level": None,
    }
    for bad in (
        {"is_reviewer": True, "reviewer_level": 5},
        {"is_reviewer": True, "reviewer_level": 0},
        {"reviewer_level": 1},
        {"is_reviewer": "maybe"},
    ):
        assert_error(user.client.put("/api/users/me/reviewer-status", json=bad), 400)


def test_reviewers_list_is_public_views_with_pagination(api: httpx.Client) -> None:
    reviewers = [new_user(api, reviewer=True, level=2) for _ in range(2)]
    caller = new_user(api)
    page = caller.client.get("/api/users/reviewers", params={"limit": 1})
    body = page.json()
    assert body["count"] >= 2 and len(body["data"]) == 1
    assert set(body["data"][0]) == {"id", "username", "is_reviewer", "reviewer_level", "created_at"}
    everyone = caller.client.get("/api/users/reviewers", params={"limit": 100}).json()["data"]
    assert {r.id for r in reviewers} <= {entry["id"] for entry in everyone}
    assert caller.id not in {entry["id"] for entry in everyone}
    assert_error(caller.client.get("/api/users/reviewers", params={"limit": 101}), 400)
    assert_error(caller.client.get("/api/users/reviewers", params={"skip": -1}), 400)
    assert_error(api.get("/api/users/reviewers"), 401)


def test_failed_logins_are_rate_limited_per_username(api: httpx.Client) -> None:
    user = new_user(api)
    attempt = {"username": user.username, "password": "wrong password"}
    for i in range(5):
        # Each attempt from a different address: the per-username limit is what trips.
        headers = {"X-Forwarded-For": f"10.9.{i}.1"}
        assert api.post("/api/users/login", json=attempt, headers=headers).status_code == 401
    limited = api.post(
        "/api/users/login",
        json={**attempt, "password": PASSWORD},
        headers={"X-Forwarded-For": "10.9.9.9"},
    )
    assert_error(limited, 429)
    assert int(limited.headers["Retry-After"]) >= 1


def test_failed_logins_are_rate_limited_per_address(api: httpx.Client) -> None:
    headers = {"X-Forwarded-For": "10.77.0.1"}
    for _ in range(20):
        attempt = {"username": unique_name(), "password": "wrong password"}
        assert api.post("/api/users/login", json=attempt, headers=headers).status_code == 401
    victim = new_user(api)
    blocked = api.post(
        "/api/users/login",
        json={"username": victim.username, "password": PASSWORD},
        headers=headers,
    )
    assert_error(blocked, 429)
    elsewhere = api.post(
        "/api/users/login",
        json={"username": victim.username, "password": PASSWORD},
        headers={"X-Forwarded-For": "10.77.0.2"},
    )
    assert elsewhere.status_code == 200
