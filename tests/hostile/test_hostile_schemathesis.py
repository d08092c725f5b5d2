"""Schemathesis against the app's own OpenAPI, in process: no 5xx, and every answer is what the spec says.

Every operation is called with generated valid and invalid parameters and bodies, once unauthenticated and
once as a contact-point officer (Bearer token of a seeded account), so the handlers behind the auth
dependencies run too. Agency calls are RFC 9421-signed and cannot be generated blindly: the generated calls
to them end at the signature check, whose 401 problem+json is itself checked against the spec.

All operations run in one test per identity and every failing operation is reported together, so one run
shows every disagreement between the API and its spec.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import schemathesis
from fastapi import FastAPI
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.factories import Region

pytestmark = pytest.mark.integration

CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]
# Agency operations authenticate by RFC 9421 signature: a bearer token changes nothing there, so they are
# fuzzed in the anonymous run only (where every call must end in a declared 401 problem+json).
AGENCY_PREFIXES = ("/v1/messages", "/v1/inbox", "/v1/keys")
# Ending the session would turn the rest of the authenticated run into anonymous calls.
NO_AUTH = {"/v1/auth/logout"}


def _login(app: FastAPI, region: Region, username: str) -> str:
    with TestClient(app) as client:
        response = client.post(
            "/v1/auth/login", json={"username": username, "password": region.password(username)}
        )
    assert response.status_code == 200, response.text
    token: str = response.json()["token"]
    return token


def _fuzz(operation: Any, headers: dict[str, str], examples: int) -> None:
    """Generated valid and invalid calls to one operation; raises the first failed check."""
    strategy = st.one_of(
        operation.as_strategy(GenerationMode.POSITIVE), operation.as_strategy(GenerationMode.NEGATIVE)
    )

    @given(case=strategy)
    @settings(
        max_examples=examples,
        deadline=None,
        suppress_health_check=list(HealthCheck),
        derandomize=True,
        database=None,
        report_multiple_bugs=False,
    )
    def check(case: Any) -> None:
        case.call_and_validate(headers=headers, checks=CHECKS)

    check()


def _run(app: FastAPI, identity: Callable[[str], dict[str, str] | None], examples: int) -> int:
    """Fuzz every operation ``identity`` gives headers for; fail listing every operation that failed."""
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    failures: list[str] = []
    count = 0
    for result in schema.get_all_operations():
        operation = result.ok()  # type: ignore[union-attr]  # an Err (unresolvable spec) fails loudly here
        headers = identity(operation.path)
        if headers is None:
            continue
        count += 1
        try:
            _fuzz(operation, headers, examples)
        except (Exception, BaseExceptionGroup) as exc:  # every failure is reported, with its operation
            failures.append(f"{operation.method.upper()} {operation.path}: {str(exc)[:1500]}")
    if failures:
        pytest.fail("\n\n".join(failures))
    return count


def test_every_operation_as_anonymous(app: FastAPI) -> None:
    assert _run(app, lambda path: {}, examples=5) >= 40


def test_every_user_operation_as_officer_and_auditor(app: FastAPI, region: Region) -> None:
    officer = {"Authorization": f"Bearer {_login(app, region, 'al-officer')}"}
    auditor = {"Authorization": f"Bearer {_login(app, region, 'regional-auditor')}"}

    def identity(path: str) -> dict[str, str] | None:
        if path.startswith(AGENCY_PREFIXES):
            return None
        if path in NO_AUTH:
            return {}
        return auditor if path.startswith("/v1/audit") else officer

    assert _run(app, identity, examples=15) >= 30
