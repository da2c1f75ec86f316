"""Capability probes of a running platform (does it serve ``/ide/``, does its terminal speak
channel mode), for ``bench/browser.py``, which reports what it measured against."""

from __future__ import annotations

from functools import cache

import httpx

from tests.helpers import PASSWORD, User, new_user, new_workspace

SUBPROTOCOL = "channel.v1.terminal"


@cache
def platform_serves_ide(base_url: str) -> bool:
    """Does the platform itself serve the IDE at /ide/ (the lead's ingress change)?"""
    try:
        response = httpx.get(base_url + "/ide/", timeout=10)
    except httpx.TransportError:
        return False
    return response.status_code == 200 and 'content="cep-ide"' in response.text


@cache
def terminal_speaks_channel_mode(base_url: str, ws_url: str) -> bool:
    """Does the terminal WebSocket accept the channel subprotocol (the new terminal protocol,
    which brings channel and plain mode together)?"""
    from websockets.sync.client import connect

    with httpx.Client(base_url=base_url, timeout=30) as anonymous:
        user = new_user(anonymous)
    workspace = new_workspace(user)
    headers = {**user.headers, "Cookie": login_cookie(base_url, user)}
    try:
        with connect(
            f"{ws_url}/api/terminal/ws/{workspace}",
            subprotocols=[SUBPROTOCOL],
            additional_headers=headers,
            open_timeout=30,
        ) as socket:
            return socket.subprotocol == SUBPROTOCOL
    except Exception:  # noqa: BLE001 - any refusal means "not available"
        return False
    finally:
        user.client.delete(f"/api/postgres_sessions/{workspace}")
        user.client.close()


def login_cookie(base_url: str, user: User) -> str:
    """A Cookie header of a fresh login of ``user`` (whatever the cookie is named)."""
    response = httpx.post(
        base_url + "/api/users/login", json={"username": user.username, "password": PASSWORD}
    )
    assert response.status_code == 200, response.text
    return "; ".join(f"{name}={value}" for name, value in response.cookies.items())
