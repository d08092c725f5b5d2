"""C2SP signed notes and cosignatures: the reference vector byte for byte, and the verification rules."""

from __future__ import annotations

import base64
import struct

import pytest

from broker.crypto import KeyPair
from broker.crypto.note import (
    COSIGNATURE_V1,
    ED25519,
    NoteKey,
    NoteSigner,
    add_signatures,
    open_note,
    sign_note,
    split_note,
)
from broker.errors import InvalidInput, VerificationError

# golang.org/x/mod/sumdb/note's test vector: Ed25519 is deterministic, so ours must match byte for byte.
VKEY = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"
SKEY_SEED = base64.b64decode("AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz")[1:]
TEXT = "If you think cryptography is the answer to your problem,\nthen you don't know what your problem is.\n"
SIGNED = (
    TEXT
    + "\n— PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n"
)


def test_signing_reproduces_the_go_reference_note() -> None:
    signer = NoteSigner.from_private_bytes("PeterNeumann", SKEY_SEED)
    assert signer.verifier.vkey == VKEY
    assert sign_note(TEXT, signer) == SIGNED
    verified = open_note(SIGNED, verifiers=[NoteKey.from_vkey(VKEY)])
    assert verified.text == TEXT
    with pytest.raises(VerificationError):
        open_note(SIGNED.replace("cryptography", "cryptographY"), verifiers=[NoteKey.from_vkey(VKEY)])


@pytest.mark.parametrize(
    "bad",
    [
        "PeterNeumann+cc469956+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",  # wrong key ID
        "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10T",  # truncated key
        "PeterNeumann+c74f20a3+BRpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",  # unknown type
        "Peter Neumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",  # space in name
        "PeterNeumann+c74f20a3",
    ],
)
def test_mangled_verifier_keys_are_refused(bad: str) -> None:
    with pytest.raises(InvalidInput):
        NoteKey.from_vkey(bad)


def test_cosignatures_are_timestamped_and_domain_separated() -> None:
    pair = KeyPair.generate("sig")
    witness = NoteSigner.from_keypair("spoc/witness/AL-SPOC", key=pair, sig_type=COSIGNATURE_V1)
    log = NoteSigner.from_keypair("spoc/audit-log", key=KeyPair.generate("sig"))
    text = "spoc/audit-log\n3\n" + base64.b64encode(b"\x01" * 32).decode() + "\ntime 1\n"
    note = sign_note(text, log)
    line = witness.signature_line(text, timestamp=1_700_000_000)
    cosigned = add_signatures(note, [line])
    verified = open_note(cosigned, verifiers=[witness.verifier])
    assert verified.times == (1_700_000_000,)
    _, sigs = split_note(cosigned)
    assert [s.name for s in sigs] == ["spoc/audit-log", "spoc/witness/AL-SPOC"]
    assert struct.unpack(">Q", sigs[1].blob[4:12]) == (1_700_000_000,)
    # The same key as a plain note key (type 0x01) has another key ID: a cosignature never passes for one.
    plain = NoteKey(name="spoc/witness/AL-SPOC", type=ED25519, public=witness.verifier.public)
    assert plain.key_id != witness.verifier.key_id
    with pytest.raises(VerificationError):
        open_note(cosigned, verifiers=[plain])
    # A cosignature's time is signed: changing it breaks the signature.
    blob = bytearray(sigs[1].blob)
    blob[11] ^= 1
    forged = note + "— spoc/witness/AL-SPOC " + base64.b64encode(bytes(blob)).decode() + "\n"
    with pytest.raises(VerificationError):
        open_note(forged, verifiers=[witness.verifier])


def test_unknown_signatures_are_ignored_but_a_bad_known_one_refuses_the_note() -> None:
    a = NoteSigner.from_keypair("a.example/log", key=KeyPair.generate("sig"))
    b = NoteSigner.from_keypair("b.example/log", key=KeyPair.generate("sig"))
    note = sign_note("hello\n", a, b)
    assert open_note(note, verifiers=[a.verifier]).signers == (a.verifier,)
    with pytest.raises(VerificationError):
        open_note(
            note, verifiers=[NoteSigner.from_keypair("c.example", key=KeyPair.generate("sig")).verifier]
        )
    other_b = sign_note("goodbye\n", b).split("\n\n")[1]
    tampered = sign_note("hello\n", a) + other_b
    with pytest.raises(VerificationError):
        open_note(tampered, verifiers=[a.verifier, b.verifier])


@pytest.mark.parametrize(
    "note",
    [
        "no signatures\n",
        "text\n\nnot a signature line\n",
        "text\n\n— name !!!\n",
        "text\n\n— name AAAA\n",
        "a\x01b\n\n",
    ],
)
def test_malformed_notes_are_refused(note: str) -> None:
    with pytest.raises(VerificationError):
        split_note(note)


def test_signers_do_not_leak_private_material() -> None:
    signer = NoteSigner.from_private_bytes("PeterNeumann", SKEY_SEED)
    assert "PeterNeumann+c74f20a3" in repr(signer)
    import pickle

    with pytest.raises(TypeError):
        pickle.dumps(signer)
    with pytest.raises(InvalidInput):
        signer.signature_line(TEXT, timestamp=5)  # a plain signer takes no time
