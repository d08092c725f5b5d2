"""``RequestSigner`` (the precomputed RFC 9421 signer) gives exactly the headers of the library-based
``sign_request`` and is accepted by ``verify_request``."""

from __future__ import annotations

import datetime

import pytest

from broker.crypto import KeyPair
from broker.crypto.httpsig import LABEL, NODE_LABEL, RequestSigner, sign_request, verify_request

WHEN = datetime.datetime(2026, 11, 23, 12, 0, 5, tzinfo=datetime.UTC)


@pytest.mark.parametrize(
    ("method", "url", "body"),
    [
        ("POST", "http://127.0.0.1:8000/v1/messages", b'{"spoc":"1"}'),
        ("post", "https://broker.example/v1/messages/batches", b"x" * 5000),
        ("GET", "http://h/v1/inbox?limit=3&visibility_timeout=0", b""),
        ("GET", "http://h", b""),
        ("PUT", "http://h/v1/a%20b/c?q=%2F&r=", b"{}"),
    ],
)
@pytest.mark.parametrize("label", [LABEL, NODE_LABEL])
def test_same_headers_as_the_library_and_verified(
    signer: KeyPair, method: str, url: str, body: bytes, label: str
) -> None:
    reference: dict[str, str] = {"Content-Type": "application/json"}
    fast: dict[str, str] = {"Content-Type": "application/json"}
    sign_request(method, url, reference, body, key=signer, created=WHEN, nonce="n0nce-1", label=label)
    RequestSigner(signer, label=label).sign(method, url, fast, body, created=WHEN, nonce="n0nce-1")
    assert fast == reference

    now: dict[str, str] = {}
    RequestSigner(signer, label=label).sign(method, url, now, body)
    verified = verify_request(
        method, url, now, body, resolve=lambda _kid: signer.public, max_age=60, label=label
    )
    assert verified.kid == signer.kid


def test_refuses_what_the_profile_does_not_allow(signer: KeyPair) -> None:
    with pytest.raises(ValueError, match="'sig' key"):
        RequestSigner(KeyPair.generate("enc"))
    with pytest.raises(ValueError, match="label"):
        RequestSigner(signer, label="other")
    with pytest.raises(ValueError, match="nonce"):
        RequestSigner(signer).sign("GET", "http://h/", {}, b"", nonce='a"b')
