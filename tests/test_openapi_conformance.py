"""Schemathesis over the gateway's merged OpenAPI, as an authenticated user.

Positive and negative data for every documented operation: no 5xx ever, and every response
(status, content type, body) conforms to what the document says. Statuses that valid-looking
data may still earn are allowed for positive cases: 400 (path rules JSON Schema cannot state,
such as no ".." component), 412 (If-Match) and 413 (quotas).
"""

from __future__ import annotations

import pytest
import schemathesis
from schemathesis import GenerationMode
from schemathesis.config import PositiveDataAcceptanceConfig

from tests.helpers import User, new_user, new_workspace

MAX_EXAMPLES = 50


@pytest.fixture(scope="module")
def fuzz_user(platform) -> User:
    import httpx

    with httpx.Client(base_url=platform.base_url) as api:
        user = new_user(api)
    # Something for positive cases to find: a workspace with a file.
    session_id = new_workspace(user, "fuzz")
    user.client.post(
        f"/api/workspace/{session_id}/files", json={"path": "main.py", "content": "print(1)\n"}
    )
    return user


@pytest.fixture(scope="module")
def api_schema(platform):
    schema = schemathesis.openapi.from_url(f"{platform.base_url}/openapi.json")
    schema.config.generation.update(
        modes=[GenerationMode.POSITIVE, GenerationMode.NEGATIVE],
        max_examples=MAX_EXAMPLES,
        deterministic=True,
    )
    schema.config.checks.positive_data_acceptance = PositiveDataAcceptanceConfig(
        expected_statuses=["2xx", "400", "401", "403", "404", "409", "412", "413", "429"]
    )
    # Logging out would revoke the fuzzing user's own token mid-run.
    return schema.exclude(path="/api/users/logout")


schema = schemathesis.pytest.from_fixture("api_schema")


@schema.parametrize()
def test_every_operation_conforms_to_the_merged_openapi(case, fuzz_user: User) -> None:
    # Its own client address (the test platform trusts X-Forwarded-For): the fuzzer's many
    # failed logins must not rate-limit the address every other test logs in from.
    case.call_and_validate(headers={**fuzz_user.headers, "X-Forwarded-For": "203.0.113.7"})
