"""Property fuzzing of the parsing layers: arbitrary and mutated input raises only the one opaque error.

For each layer, anything that is not exactly what was signed/sealed either parses (when the mutation happened
to change nothing that matters) or raises the layer's one error type: ``VerificationError`` for the JOSE
recipes, ``NotAuthenticated`` for the RFC 9421 verifier, pydantic's ``ValidationError`` for the wire models.
Never a ``TypeError``, ``KeyError``, ``RecursionError``, a jwcrypto exception or anything else.
"""

from __future__ import annotations

import contextlib
import copy
import json
from collections.abc import Callable
from typing import Any, Final

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from broker.crypto import (
    KeyPair,
    PublicKey,
    open_sealed,
    seal,
    sign_envelope,
    sign_receipt,
    verify_envelope,
    verify_receipt,
)
from broker.crypto.httpsig import sign_request, verify_request
from broker.errors import InvalidInput, NotAuthenticated, NotFound, VerificationError
from schemas.envelope import Envelope, JWEGeneral, RoutingHeader

FUZZ = settings(
    max_examples=150,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

SIGNER: Final = KeyPair.generate("sig")
READER: Final = KeyPair.generate("enc")
OTHER_READER: Final = KeyPair.generate("enc")
HEADER: Final[dict[str, Any]] = {
    "message_id": "0b0f6a86-3c8e-4a52-9d61-3a3e4a8e2f10",
    "conversation_id": "5d7c1c55-4a7e-4c4e-8f0e-9b9f1b0e6c21",
    "type": "request",
    "sender_agency": "AL-ASP",
    "origin_country": "AL",
    "destination_country": "MK",
    "category": "fraud",
    "legal_basis": "DEMO/AL-MK/police-cooperation",
    "classification": "RESTRICTED",
    "handling_codes": ["H0"],
    "evaluation": {"source_reliability": "B", "information_accuracy": "2"},
    "priority": {"level": "normal"},
    "created_at": "2026-11-23T10:00:00Z",
}
SEALED: Final = seal(b'{"q": "fuzz"}', readers=[READER.public, OTHER_READER.public])
SIGNATURE: Final = sign_envelope(HEADER, SEALED, key=SIGNER)
ENVELOPE: Final[dict[str, Any]] = {"spoc": "1", "header": HEADER, "payload": SEALED, "signature": SIGNATURE}
RECEIPT: Final = sign_receipt(
    {"message_id": HEADER["message_id"], "digest": "sha-256:" + "0" * 64, "agency": "MK-MOI"}, key=SIGNER
)


def resolve(kid: str) -> PublicKey:
    if kid != SIGNER.kid:
        raise NotFound("no such key")
    return SIGNER.public


# --- strategies: arbitrary JSON, and mutations of a valid value ---------------------------------------

json_scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=40)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=20,
)
# Text that looks like the real thing: base64url and JOSE punctuation, plus unicode tricks.
tricky_text = st.text(
    st.sampled_from('AZaz09-_.=+/ \x00\u202e\u0410\ud7ff\ufeff"{}:,') | st.characters(), max_size=200
)


def _string_mutations(value: str) -> st.SearchStrategy[str]:
    cut = st.integers(0, max(len(value), 1))
    return st.one_of(
        cut.map(lambda n: value[:n]),  # truncated
        cut.map(lambda n: value[n:]),  # front cut off
        st.tuples(cut, tricky_text).map(lambda p: value[: p[0]] + p[1] + value[p[0] :]),  # inserted
        st.tuples(cut, st.characters()).map(lambda p: value[: p[0]] + p[1] + value[p[0] + 1 :]),  # replaced
        tricky_text,
    )


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    found = [prefix]
    if isinstance(value, dict):
        for key, child in value.items():
            found += _paths(child, (*prefix, key))
    elif isinstance(value, list):
        for index, child in enumerate(value):
            found += _paths(child, (*prefix, index))
    return found


@st.composite
def mutated(draw: st.DrawFn, original: Any, *, rounds: int = 3) -> Any:
    """``original`` with one to ``rounds`` members replaced, deleted, retyped or their text mutated."""
    value = copy.deepcopy(original)
    for _ in range(draw(st.integers(1, rounds))):
        paths = _paths(value)
        path = draw(st.sampled_from(paths))
        if not path:
            value = draw(json_values)
            continue
        *parents, last = path
        parent = value
        for step in parents:
            parent = parent[step]
        current = parent[last]
        choice = draw(st.integers(0, 3))
        if choice == 0 and isinstance(parent, dict):
            del parent[last]
        elif choice == 1 and isinstance(current, str):
            parent[last] = draw(_string_mutations(current))
        elif choice == 2 and isinstance(parent, dict):
            parent[draw(st.text(max_size=8))] = draw(json_values)
        else:
            parent[last] = draw(json_values)
    return value


def _only(error: type[BaseException], call: Callable[[], object]) -> None:
    with contextlib.suppress(error):
        call()


# --- schemas.envelope ---------------------------------------------------------------------------------


def test_the_reference_envelope_is_valid() -> None:
    """Control: what the properties below mutate is accepted as it is."""
    Envelope.model_validate(ENVELOPE)
    assert verify_envelope(HEADER, SEALED, SIGNATURE, resolve=resolve) == SIGNER.kid
    assert open_sealed(SEALED, key=READER) == b'{"q": "fuzz"}'
    assert verify_receipt(RECEIPT, resolve=resolve)["agency"] == "MK-MOI"


@FUZZ
@given(data=json_values | mutated(ENVELOPE))
def test_envelope_parsing_raises_only_validation_error(data: Any) -> None:
    for model in (Envelope, RoutingHeader, JWEGeneral):
        _only(ValidationError, lambda m=model: m.model_validate(data))  # type: ignore[misc]


@FUZZ
@given(raw=st.binary(max_size=300) | mutated(ENVELOPE).map(lambda e: json.dumps(e).encode()))
def test_envelope_json_parsing_raises_only_validation_error(raw: bytes) -> None:
    _only(ValidationError, lambda: Envelope.model_validate_json(raw))


def test_deeply_nested_json_is_a_validation_error() -> None:
    nested = b'{"spoc": "1", "header": ' + b"[" * 10_000 + b"]" * 10_000 + b"}"
    with pytest.raises(ValidationError):
        Envelope.model_validate_json(nested)


# --- JOSE recipes -------------------------------------------------------------------------------------


@FUZZ
@given(
    header=mutated(HEADER) | st.just(HEADER),
    payload=mutated(SEALED) | st.just(SEALED),
    signature=_string_mutations(SIGNATURE) | st.just(SIGNATURE),
)
def test_verify_envelope_raises_only_verification_error(header: Any, payload: Any, signature: Any) -> None:
    try:
        kid = verify_envelope(header, payload, signature, resolve=resolve)
    except VerificationError:
        return
    # Accepted only if nothing the signature covers changed (recipients are outside it by design).
    assert kid == SIGNER.kid
    assert header == HEADER
    assert signature == SIGNATURE
    assert {k: payload.get(k) for k in ("protected", "iv", "ciphertext", "tag", "aad")} == {
        k: SEALED.get(k) for k in ("protected", "iv", "ciphertext", "tag", "aad")
    }


@FUZZ
@given(signature=tricky_text | json_values)
def test_verify_envelope_with_arbitrary_tokens(signature: Any) -> None:
    with pytest.raises(VerificationError):
        verify_envelope(HEADER, SEALED, signature, resolve=resolve)


def _nested(depth: int) -> dict[str, Any]:
    deep: dict[str, Any] = {}
    for _ in range(depth):
        deep = {"a": deep}
    return deep


@pytest.mark.parametrize("depth", [100, 5_000])
def test_deeply_nested_input_to_the_jose_recipes(depth: int) -> None:
    with pytest.raises(VerificationError):
        verify_envelope({**HEADER, "x": _nested(depth)}, SEALED, SIGNATURE, resolve=resolve)
    with pytest.raises(VerificationError):
        verify_envelope(HEADER, {**SEALED, "aad": _nested(depth)}, SIGNATURE, resolve=resolve)
    # The shared unprotected header is unauthenticated by definition (RFC 7516) and an unknown member in it
    # is ignored, so a shallow one may still open; a deep one must fail the same opaque way.
    with contextlib.suppress(VerificationError):
        assert open_sealed({**SEALED, "unprotected": _nested(depth)}, key=READER) == b'{"q": "fuzz"}'


@FUZZ
@given(jwe=mutated(SEALED))
def test_a_validly_signed_jwe_out_of_profile_raises_only_verification_error(jwe: Any) -> None:
    """The sender itself signs whatever JWE it likes: the profile check must still fail only one way."""
    if not isinstance(jwe, dict):
        return
    try:
        signature = sign_envelope(HEADER, jwe, key=SIGNER)
    except InvalidInput:  # not I-JSON: nothing a sender could sign
        return
    with contextlib.suppress(VerificationError):
        assert verify_envelope(HEADER, jwe, signature, resolve=resolve) == SIGNER.kid


@FUZZ
@given(jwe=mutated(SEALED) | json_values.filter(lambda v: v != SEALED))
def test_open_sealed_raises_only_verification_error(jwe: Any) -> None:
    try:
        plaintext = open_sealed(jwe, key=READER)
    except VerificationError:
        return
    assert plaintext == b'{"q": "fuzz"}'  # only the other reader's entry (or nothing authenticated) changed


@FUZZ
@given(token=_string_mutations(RECEIPT) | tricky_text | json_values)
def test_verify_receipt_raises_only_verification_error(token: Any) -> None:
    try:
        statement = verify_receipt(token, resolve=resolve)
    except VerificationError:
        return
    assert token == RECEIPT
    assert statement["agency"] == "MK-MOI"


# --- RFC 9421 request signatures ----------------------------------------------------------------------

URL = "http://testserver/v1/messages?x=1"
BODY = b'{"spoc": "1"}'


def _signed_headers() -> dict[str, str]:
    headers = httpx.Headers({"content-type": "application/json"})
    sign_request("POST", URL, headers, BODY, key=SIGNER)
    return dict(headers)


SIGNED_HEADERS: Final = _signed_headers()


def _verify(method: str, url: str, headers: dict[str, str], body: bytes) -> None:
    # Signed once at import; the suite may reach these tests minutes later. Freshness is tested elsewhere
    # (tests/functional/test_agency_auth.py); here an expired signature would make every mutation
    # fail for the wrong reason.
    verify_request(method, url, headers, body, resolve=resolve, max_age=86_400)


def test_the_reference_request_verifies() -> None:
    """Control: the request mutated below verifies as signed."""
    _verify("POST", URL, SIGNED_HEADERS, BODY)


header_texts = {name: _string_mutations(value) for name, value in SIGNED_HEADERS.items()}


@st.composite
def mutated_requests(draw: st.DrawFn) -> tuple[str, str, dict[str, str], bytes]:
    headers = dict(SIGNED_HEADERS)
    for name in draw(st.sets(st.sampled_from(sorted(headers)), min_size=1)):
        if draw(st.booleans()):
            headers[name] = draw(header_texts[name])
        else:
            del headers[name]
    method = draw(st.sampled_from(["POST", "GET", "post", "PUT", "", "P\x00ST"]))
    url = draw(st.sampled_from([URL, URL.replace("x=1", "x=2"), "http://testserver/v1/inbox", "", "::"]))
    body = draw(st.sampled_from([BODY, b"", BODY + b" "]) | st.binary(max_size=40))
    return method, url, headers, body


@FUZZ
@given(request=mutated_requests())
def test_verify_request_raises_only_not_authenticated(
    request: tuple[str, str, dict[str, str], bytes],
) -> None:
    method, url, headers, body = request
    _only(NotAuthenticated, lambda: _verify(method, url, headers, body))


@FUZZ
@given(
    headers=st.dictionaries(st.sampled_from(["signature", "signature-input", "content-digest"]), tricky_text)
)
def test_verify_request_with_arbitrary_signature_headers(headers: dict[str, str]) -> None:
    with pytest.raises(NotAuthenticated):
        _verify("POST", URL, headers, BODY)
