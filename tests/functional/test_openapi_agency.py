"""The OpenAPI document an integrator generates a client from: every POST that takes a body declares it,
and the agency routes declare their RFC 9421 signature (a security scheme and the three headers)."""

from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient

from broker.app import _api_routes as api_routes


def _calls(route: Any) -> set[str]:
    calls: set[str] = set()
    pending = list(route.dependant.dependencies)
    while pending:
        dependant = pending.pop()
        if dependant.call is not None:
            calls.add(getattr(dependant.call, "__qualname__", type(dependant.call).__qualname__))
        pending.extend(dependant.dependencies)
    return calls


def _api_routes(client: TestClient) -> list[Any]:
    app: Any = client.app
    routes = list(api_routes(app))  # the routes as the app documents them (included routers nest)
    assert routes
    return routes


def test_every_post_that_takes_a_body_declares_it(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    missing = []
    takes_a_body = 0
    for route in _api_routes(client):
        if "POST" not in route.methods:
            continue
        if not (route.dependant.body_params or "raw_body" in _calls(route)):
            continue
        takes_a_body += 1
        operation = spec["paths"][route.path_format]["post"]
        content = operation.get("requestBody", {}).get("content", {})
        # JSON everywhere, except the C2SP tlog-witness call, whose body the spec fixes as text
        body = content.get(
            "text/plain" if route.path_format.startswith("/v1/witness/") else "application/json", {}
        )
        if "schema" not in body:
            missing.append(route.path_format)
    assert takes_a_body >= 5
    assert missing == []


def test_the_envelope_body_is_the_envelope_schema(client: TestClient) -> None:
    operation = client.get("/openapi.json").json()["paths"]["/v1/messages"]["post"]
    schema = operation["requestBody"]["content"]["application/json"]["schema"]
    assert {"spoc", "header", "payload", "signature"} <= set(schema["properties"])
    assert "$ref" not in str(schema)  # stands on its own
    batch = client.get("/openapi.json").json()["paths"]["/v1/messages/batches"]["post"]
    assert batch["requestBody"]["content"]["application/json"]["schema"]["required"] == ["envelopes"]


def test_agency_routes_declare_the_signature(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    scheme = spec["components"]["securitySchemes"]["agencySignature"]
    assert scheme["type"] == "apiKey"
    assert scheme["in"] == "header"
    assert scheme["name"] == "Signature"
    assert "docs/agency-signing.md" in scheme["description"]
    agency_routes = [r for r in _api_routes(client) if "current_agency" in _calls(r)]
    assert len(agency_routes) >= 8
    for route in agency_routes:
        for method in route.methods:
            operation = spec["paths"][route.path_format][method.lower()]
            assert {"agencySignature": []} in operation.get("security", []), route.path_format
            headers = {p["name"] for p in operation.get("parameters", []) if p["in"] == "header"}
            assert {"Signature-Input", "Signature", "Content-Digest"} <= headers, route.path_format
