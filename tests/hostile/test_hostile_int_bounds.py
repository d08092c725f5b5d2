"""Integers beyond 64 bits in paths and query strings are the caller's mistake (400), never a 500.

One test walks every route of the app and checks every integer path and query parameter is bounded to
PostgreSQL's ``bigint`` (``broker.params.Int64``); the other sends 2**64 to each of them over HTTP, with
credentials the route accepts, and expects 400 problem+json (an HTML error page under ``/ui``).
"""

from __future__ import annotations

import typing
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from fastapi import routing as fastapi_routing
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient
from pydantic import TypeAdapter, ValidationError

from tests.broker.messages.spoc_builders import agency_http, officer_headers
from tests.factories import Region

HUGE = 2**64


def _routes(app: FastAPI) -> Iterator[tuple[str, set[str], APIRoute]]:
    """(full path, methods, route) of every API route, the UI's included (FastAPI nests included routers)."""
    for context in fastapi_routing.iter_route_contexts(app.routes):
        route = context.original_route
        if isinstance(route, APIRoute):
            yield str(context.path), set(context.methods or ()), route


def _int_params(app: FastAPI) -> Iterator[tuple[str, set[str], str, str, Any]]:
    """(path, methods, "path" | "query", name, the parameter's annotated type) of every integer parameter."""
    for path, methods, route in _routes(app):
        pending = [route.dependant]
        while pending:
            dependant = pending.pop()
            pending.extend(dependant.dependencies)
            for where, params in (("path", dependant.path_params), ("query", dependant.query_params)):
                for param in params:
                    annotation = param.field_info.annotation
                    if int in (annotation, *typing.get_args(annotation)):
                        metadata = tuple(param.field_info.metadata)
                        typed = typing.Annotated[annotation, *metadata] if metadata else annotation
                        yield path, methods, where, param.name, typed


def _accepts(typed: Any, value: int) -> bool:
    try:
        TypeAdapter(typed).validate_python(value)
    except ValidationError:
        return False
    return True


def test_every_integer_route_parameter_is_bounded_to_64_bits(app: FastAPI) -> None:
    found = list(_int_params(app))
    assert len(found) >= 10  # the walk does find them
    unbounded = [
        f"{sorted(methods)} {path} {name}"
        for path, methods, _, name, typed in found
        if _accepts(typed, HUGE) or _accepts(typed, -HUGE)
    ]
    assert unbounded == []


def _caller(client: TestClient, region: Region, path: str) -> httpx.Client:
    if path.startswith("/v1/audit"):
        return httpx.Client(
            base_url="http://testserver",
            transport=client._transport,
            headers=officer_headers(client, region, "regional-auditor"),
        )
    if path.startswith(("/v1/cp", "/ui", "/v1/retention")):
        headers = officer_headers(client, region, "hr-officer")
        browser = httpx.Client(base_url="http://testserver", transport=client._transport, headers=headers)
        browser.cookies.set("spoc_session", headers["Authorization"].removeprefix("Bearer "))
        return browser
    return agency_http(client, region, "HR-DORH")


def _cases(app: FastAPI) -> list[tuple[str, str, str, str]]:
    return sorted(
        {
            (method, path, where, name)
            for path, methods, where, name, _ in _int_params(app)
            for method in methods
        }
    )


def test_integers_beyond_64_bits_are_refused_with_400(
    app: FastAPI, client: TestClient, region: Region
) -> None:
    cases = _cases(app)
    assert cases
    answers = {}
    for method, template, where, name in cases:
        path = template
        for other in [p.split("}")[0] for p in template.split("{")[1:]]:
            path = path.replace(f"{{{other}}}", str(HUGE) if (where, other) == ("path", name) else "1")
        params = {name: str(HUGE)} if where == "query" else {}
        with _caller(client, region, template) as caller:
            response = caller.request(method, path, params=params, json={} if method == "POST" else None)
        answers[f"{method} {template} {name}"] = response.status_code
    assert {case: status for case, status in answers.items() if status != 400} == {}


@pytest.mark.parametrize("value", [str(HUGE), str(-HUGE)])
def test_a_huge_cursor_gets_a_problem_document(client: TestClient, region: Region, value: str) -> None:
    with _caller(client, region, "/v1/audit/entries") as auditor:
        response = auditor.get("/v1/audit/entries", params={"before": value})
    assert response.status_code == 400, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    assert response.json()["errors"][0]["loc"] == ["query", "before"]  # refused by the schema, not the DB
