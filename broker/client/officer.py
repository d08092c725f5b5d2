"""A tiny client for officers' and auditors' API calls (scripts, the demo, the benchmark)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import httpx

from broker.client.agency import ClientError


class OfficerClient:
    def __init__(
        self,
        base_url: str,
        username: str,
        password: str,
        *,
        timeout: float = 15.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.username = username
        self._http = httpx.Client(base_url=base_url, timeout=timeout, transport=transport)
        login = self._call("POST", "/v1/auth/login", json={"username": username, "password": password})
        self._http.headers["Authorization"] = f"Bearer {login['token']}"

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> OfficerClient:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def _call(self, method: str, url: str, **kwargs: Any) -> Any:
        response = self._http.request(method, url, **kwargs)
        if response.status_code >= 400:
            try:
                problem = response.json()
            except ValueError:
                problem = {"detail": response.text[:500]}
            raise ClientError(response.status_code, problem)
        return response.json() if response.content else None

    def queue(self, direction: str) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self._call("GET", f"/v1/cp/queues/{direction}")
        return result

    def message(self, message_id: str) -> dict[str, Any] | None:
        """One message of this officer's contact point (metadata, custody, allowed actions), or None."""
        try:
            result: dict[str, Any] = self._call("GET", f"/v1/cp/messages/{message_id}")
        except ClientError as error:
            if error.status == 404:
                return None
            raise
        return result

    def decide(self, message_id: str, action: str, **fields: Any) -> dict[str, Any]:
        result: dict[str, Any] = self._call(
            "POST", f"/v1/cp/messages/{message_id}/decisions", json={"action": action, **fields}
        )
        return result

    def decide_many(self, decisions: Sequence[tuple[str, dict[str, Any]]]) -> dict[str, Any]:
        """Several decisions in one call (``POST /v1/cp/decisions``): ``(message_id, {"action": ...})``
        pairs, each taken as alone; the answer lists each one's new state or problem, in order."""
        body = {"decisions": [{"message_id": m, "decision": d} for m, d in decisions]}
        result: dict[str, Any] = self._call("POST", "/v1/cp/decisions", json=body)
        return result

    def content(self, message_id: str) -> dict[str, Any]:
        result: dict[str, Any] = self._call("GET", f"/v1/cp/messages/{message_id}/content")
        return result

    def verify_audit(self) -> dict[str, Any]:
        result: dict[str, Any] = self._call("POST", "/v1/audit/verify")
        return result
