"""Routes of the users function: /api/users/*."""

from __future__ import annotations

from litestar import Controller, Request, Response, get, post, put
from litestar.datastructures import Cookie

from functions.users import service
from functions.users.schemas import (
    LoggedIn,
    LoggedOut,
    Registered,
    ReviewerStatusUpdate,
    UserLogin,
    UserRegister,
)
from shared.auth import AuthUser
from shared.config import Settings
from shared.envelope import Envelope, ListEnvelope, ok, ok_list
from shared.errors import error_responses
from shared.schemas import LIMIT, SKIP, UserProfile, UserPublic
from shared.web_security import client_address


class UsersController(Controller):
    path = "/api/users"
    tags = ["users"]

    @post(
        "/register",
        operation_id="register",
        status_code=201,
        responses=error_responses(409, 429),
    )
    async def register(
        self, request: Request, data: UserRegister, settings: Settings
    ) -> Envelope[Registered]:
        """Create an account. Usernames are unique case-insensitively, emails too.

        Rate limited per client address (429 with Retry-After)."""
        address = client_address(request.scope, settings.http)
        registered = await service.register(data, address, settings.auth)
        return ok(registered, "User registered")

    @post("/login", operation_id="login", status_code=200, responses=error_responses(401, 429))
    async def login(
        self, request: Request, data: UserLogin, settings: Settings
    ) -> Response[Envelope[LoggedIn]]:
        """Log in with username (or email) and password; the token comes back and as a cookie."""
        address = client_address(request.scope, settings.http)
        result = await service.login(data.username, data.password, address, settings.auth)
        cookie = Cookie(
            key=settings.http.cookie_name,
            value=result.token,
            max_age=settings.auth.token_ttl_seconds,
            httponly=True,
            samesite="lax",
            secure=settings.http.cookie_secure,
            path="/",
        )
        return Response(ok(result, "Logged in"), cookies=[cookie])

    @post("/logout", operation_id="logout", status_code=200)
    async def logout(self, user: AuthUser, settings: Settings) -> Response[Envelope[LoggedOut]]:
        """Revoke the token this request carries, everywhere."""
        revoked = await service.logout(user)
        expired = Cookie(
            key=settings.http.cookie_name, value="", max_age=0, httponly=True, path="/"
        )
        return Response(ok(LoggedOut(revoked=revoked), "Logged out"), cookies=[expired])

    @get("/me", operation_id="me")
    async def me(self, user: AuthUser) -> Envelope[UserProfile]:
        """The caller's own profile (the only place the email appears)."""
        return ok(await service.me(user), "Profile")

    @put("/me/reviewer-status", operation_id="set_reviewer_status")
    async def set_reviewer_status(
        self, user: AuthUser, data: ReviewerStatusUpdate
    ) -> Envelope[UserProfile]:
        """Turn reviewing on (level 1 unless given) or off (level cleared)."""
        return ok(await service.set_reviewer_status(user, data), "Reviewer status updated")

    @get("/reviewers", operation_id="list_reviewers")
    async def reviewers(
        self,
        user: AuthUser,
        skip: int = SKIP,
        limit: int = LIMIT,
    ) -> ListEnvelope[UserPublic]:
        """Every user who reviews, as public views."""
        items, total = await service.reviewers(skip, limit)
        return ok_list(items, total, "Reviewers")
