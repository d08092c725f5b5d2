"""A spoc node's witness speaks C2SP tlog-witness to a client written from the specs alone.

Nothing of spoc's code builds or checks the bytes here: the Merkle tree and its consistency proofs follow
RFC 6962 §2.1, the checkpoint c2sp.org/tlog-checkpoint, the note and its Ed25519 signature
c2sp.org/signed-note (``cryptography`` signs), the request and the answers c2sp.org/tlog-witness, and the
returned cosignature is checked as c2sp.org/tlog-cosignature defines ``cosignature/v1``. The log is an
external one the regional directory lists (``tests.broker.witness.nodes.External``)."""

from __future__ import annotations

import base64
import hashlib
import time

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from sqlalchemy import select

from broker.audit.models import AuditAlert, AuditEntry
from tests.broker.witness.nodes import EXTERNAL_ORIGIN, Region

PATH = "/v1/witness/add-checkpoint"


# --- RFC 6962 §2.1, by the book -------------------------------------------------------------------------


def _leaf(data: bytes) -> bytes:
    return hashlib.sha256(b"\x00" + data).digest()


def _split(n: int) -> int:
    k = 1
    while k * 2 < n:
        k *= 2
    return k


def mth(leaves: list[bytes]) -> bytes:
    if not leaves:
        return hashlib.sha256(b"").digest()
    if len(leaves) == 1:
        return leaves[0]
    k = _split(len(leaves))
    return hashlib.sha256(b"\x01" + mth(leaves[:k]) + mth(leaves[k:])).digest()


def _subproof(m: int, leaves: list[bytes], complete: bool) -> list[bytes]:
    n = len(leaves)
    if m == n:
        return [] if complete else [mth(leaves)]
    k = _split(n)
    if m <= k:
        return [*_subproof(m, leaves[:k], complete), mth(leaves[k:])]
    return [*_subproof(m - k, leaves[k:], False), mth(leaves[:k])]


def proof(m: int, leaves: list[bytes]) -> list[bytes]:
    return [] if m in (0, len(leaves)) else _subproof(m, leaves, True)


# --- c2sp.org/signed-note and tlog-checkpoint, by the book ------------------------------------------------


def key_id(name: str, sig_type: int, public: bytes) -> bytes:
    return hashlib.sha256(name.encode() + b"\n" + bytes([sig_type]) + public).digest()[:4]


def note(text: str, key: Ed25519PrivateKey, name: str = EXTERNAL_ORIGIN) -> str:
    public = key.public_key().public_bytes_raw()
    blob = key_id(name, 0x01, public) + key.sign(text.encode())
    return f"{text}\n\u2014 {name} {base64.b64encode(blob).decode()}\n"


def checkpoint_text(leaves: list[bytes], origin: str = EXTERNAL_ORIGIN) -> str:
    return f"{origin}\n{len(leaves)}\n{base64.b64encode(mth(leaves)).decode()}\n"


def body(old: int, hashes: list[bytes], signed: str) -> bytes:
    lines = [f"old {old}", *(base64.b64encode(h).decode() for h in hashes)]
    return ("\n".join(lines) + "\n\n" + signed).encode()


def check_cosignature(answer: str, text: str, witness_vkey: str) -> int:
    """Verify a tlog-witness 200 body as cosignature/v1 lines; return the cosignature's time."""
    name, hex_id, material = witness_vkey.split("+", 2)
    raw = base64.b64decode(material)
    assert raw[0] == 0x04  # a cosignature/v1 key
    public = raw[1:]
    assert bytes.fromhex(hex_id) == key_id(name, 0x04, public)
    lines = answer.split("\n")
    assert lines[-1] == ""
    assert all(line.startswith("\u2014 ") for line in lines[:-1])
    line_name, b64 = lines[0][2:].split(" ")
    assert line_name == name
    blob = base64.b64decode(b64)
    assert blob[:4] == key_id(name, 0x04, public)
    assert len(blob) == 4 + 8 + 64
    timestamp = int.from_bytes(blob[4:12], "big")
    message = f"cosignature/v1\ntime {timestamp}\n{text}".encode()
    Ed25519PublicKey.from_public_bytes(public).verify(blob[12:], message)  # raises if it does not verify
    return timestamp


def test_add_checkpoint_from_a_client_written_from_the_spec(witness_region: Region) -> None:
    xk = witness_region.nodes["XK"]
    log_key = witness_region.external.log_key
    directory = witness_region.directory["directory"]
    witness_vkey = next(n["witness_key"] for n in directory["nodes"] if n["node_id"] == "xk")
    leaves = [_leaf(f"entry {i}".encode()) for i in range(13)]

    # First contact: old 0, no proof. 200 with a cosignature/v1 over exactly the checkpoint text.
    text5 = checkpoint_text(leaves[:5])
    answer = xk.client.post(PATH, content=body(0, [], note(text5, log_key)))
    assert answer.status_code == 200, answer.text
    assert abs(check_cosignature(answer.text, text5, witness_vkey) - time.time()) < 120

    # The client's old size is stale: 409, the witness's size, text/x.tlog.size.
    again = xk.client.post(PATH, content=body(0, [], note(checkpoint_text(leaves[:8]), log_key)))
    assert again.status_code == 409
    assert again.headers["content-type"] == "text/x.tlog.size"
    assert again.content == b"5\n"

    # From the size it gave, with the RFC 6962 consistency proof: cosigned.
    text8 = checkpoint_text(leaves[:8])
    grown = xk.client.post(PATH, content=body(5, proof(5, leaves[:8]), note(text8, log_key)))
    assert grown.status_code == 200, grown.text
    check_cosignature(grown.text, text8, witness_vkey)

    # A proof that does not verify: 422; the witness stays at 8.
    bad = proof(8, leaves[:13])
    bad[0] = bytes(32)
    text13 = checkpoint_text(leaves[:13])
    assert xk.client.post(PATH, content=body(8, bad, note(text13, log_key))).status_code == 422
    # Signed by a key the directory does not list for that origin: 403. An origin nobody listed: 404.
    thief = Ed25519PrivateKey.generate()
    good = proof(8, leaves[:13])
    assert xk.client.post(PATH, content=body(8, good, note(text13, thief))).status_code == 403
    stranger = checkpoint_text(leaves[:13], origin="example.com/another-log")
    unknown = xk.client.post(PATH, content=body(8, good, note(stranger, thief, "example.com/another-log")))
    assert unknown.status_code == 404
    # old above the checkpoint's size: 400. A body that is not the protocol: 400 (audited with no origin).
    assert xk.client.post(PATH, content=body(9, [], note(text8, log_key))).status_code == 400
    assert (
        xk.client.post(PATH, content=b"old 8\nnot base64\n\n" + note(text13, log_key).encode()).status_code
        == 400
    )
    # The state did not move on any refusal: the good proof from 8 is still what it takes.
    ok = xk.client.post(PATH, content=body(8, good, note(text13, log_key)))
    assert ok.status_code == 200, ok.text
    check_cosignature(ok.text, text13, witness_vkey)

    # The same size with another root: 409 with its size, and the witness raises a fork alert.
    forked = [*leaves[:12], _leaf(b"rewritten")]
    fork = xk.client.post(PATH, content=body(13, [], note(checkpoint_text(forked), log_key)))
    assert fork.status_code == 409
    assert fork.content == b"13\n"
    with xk.session() as session:
        alert = session.scalar(select(AuditAlert).where(AuditAlert.reporter == "witness:ext"))
        assert alert is not None
        assert alert.kind == "peer-fork"
        refused = session.scalars(
            select(AuditEntry.details).where(AuditEntry.action == "witness:refused")
        ).all()
    reasons = sorted(
        str(d["reason"]) for d in refused if d["origin"] in (EXTERNAL_ORIGIN, "example.com/another-log", "")
    )
    assert reasons == sorted(
        ["old-size", "consistency-proof", "log-signature", "unknown-log", "old-size", "malformed", "fork"]
    )
