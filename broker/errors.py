"""The one error root of spoc and its semantic subclasses.

Domain code raises these and nothing else for expected failures; the HTTP edge maps them to
RFC 9457 problem+json in one handler (``broker.app``), the CLI to a one-line message. Each class
carries its HTTP status and a stable ``type`` slug so integrators can switch on it.

Hierarchy::

    SpocError
    ├── InvalidInput          400  the request is malformed or violates the schema
    ├── NotAuthenticated      401  no or bad credentials
    ├── NotPermitted          403  authenticated but not allowed (role, scope, clearance)
    ├── NotFound              404  no such object *in the caller's scope*
    ├── Conflict              409  state does not allow it / idempotency key reused
    │   └── FourEyesRefused   409  the same officer tried to give both approvals of four eyes
    ├── PolicyRefused         422  a rule of the exchange refuses it (legal basis, accreditation)
    ├── VerificationError     422  a signature, key or ciphertext did not verify (deliberately opaque)
    ├── TooLarge              413
    ├── UnsupportedMediaType  415  a body declared as something other than JSON
    ├── RateLimited           429
    └── Unavailable           503  a backing service is down; retry later

``denial`` marks the errors that refuse a caller what it asked for because of who it is (401, 403, 404 out of
scope, a four-eyes refusal): the HTTP edge records each as an ``access:denied`` audit entry, so probing and
attempts to exceed a role can be found in the log. ``audited`` is set on an instance whose refusal the
raiser already audited (a failed login), so it is not recorded twice.
"""

from __future__ import annotations

from typing import Any, ClassVar


class SpocError(Exception):
    """Root of every expected failure. ``detail`` is safe to show to the caller."""

    status: ClassVar[int] = 500
    slug: ClassVar[str] = "internal"
    title: ClassVar[str] = "Internal error"
    denial: ClassVar[bool] = False

    def __init__(self, detail: str, **extra: Any) -> None:
        super().__init__(detail)
        self.detail = detail
        self.extra = extra
        self.audited = False

    @property
    def type_uri(self) -> str:
        return f"urn:spoc:problem:{self.slug}"

    def problem(self, instance: str | None = None) -> dict[str, Any]:
        """The RFC 9457 problem details object for this error."""
        body: dict[str, Any] = {
            "type": self.type_uri,
            "title": self.title,
            "status": self.status,
            "detail": self.detail,
        }
        if instance:
            body["instance"] = instance
        body.update(self.extra)
        return body


class InvalidInput(SpocError):
    status = 400
    slug = "invalid-input"
    title = "Invalid input"


class NotAuthenticated(SpocError):
    status = 401
    slug = "not-authenticated"
    title = "Not authenticated"
    denial = True


class NotPermitted(SpocError):
    status = 403
    slug = "not-permitted"
    title = "Not permitted"
    denial = True


class NotFound(SpocError):
    status = 404
    slug = "not-found"
    title = "Not found"
    denial = True


class Conflict(SpocError):
    status = 409
    slug = "conflict"
    title = "Conflict"


class FourEyesRefused(Conflict):
    """The officer who gave the first approval of a four-eyes message tried to give the second as well.

    Answered as any ``Conflict`` (same ``type``, integrators need not change); audited as a denial."""

    denial = True


class PolicyRefused(SpocError):
    status = 422
    slug = "policy-refused"
    title = "Refused by policy"


class VerificationError(SpocError):
    """Any signature, key or ciphertext failure. Deliberately says nothing about *which* check failed
    beyond what the caller already knows, so it cannot be used as an oracle."""

    status = 422
    slug = "verification-failed"
    title = "Verification failed"


class TooLarge(SpocError):
    status = 413
    slug = "too-large"
    title = "Request too large"


class UnsupportedMediaType(SpocError):
    status = 415
    slug = "unsupported-media-type"
    title = "Unsupported media type"


class RateLimited(SpocError):
    status = 429
    slug = "rate-limited"
    title = "Too many requests"


class Unavailable(SpocError):
    status = 503
    slug = "unavailable"
    title = "Service unavailable"
