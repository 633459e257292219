"""C2SP signed notes: the published vectors of Go's sumdb/note, C2SP and transparency-dev/formats
(``vectors/log.json`` "external"), then every way a note, a vkey or a signature can be wrong."""

from __future__ import annotations

import base64
import hashlib
import json
from pathlib import Path
from typing import Any

import pytest

from ostraca.protocol_spec import MalformedError, SignatureError, SigningKey, UntrustedKeyError
from ostraca.protocol_spec.errors import MalformedNoteError
from ostraca.protocol_spec.note import (
    COSIGNATURE_V1,
    ED25519,
    MAX_NOTE_SIZE,
    Note,
    NoteSignature,
    NoteSigner,
    NoteVerifier,
    cosignature_message,
    note_key_id,
    verify_note,
)

EXTERNAL: dict[str, Any] = json.loads(
    (Path(__file__).resolve().parents[2] / "protocol_spec" / "vectors" / "log.json").read_text(
        encoding="ascii"
    )
)["external"]
GO = EXTERNAL["go_sumdb_note"]
PETER = NoteVerifier.from_vkey(GO["peter_vkey"])
ENOCH = NoteVerifier.from_vkey(GO["enoch_vkey"])
TEXT: str = GO["text"]
PETER_SIG: str = GO["peter_signature_line"]
ENOCH_SIG: str = GO["enoch_signature_line"]


def _open(data: str, verifiers: list[NoteVerifier]) -> list[str]:
    return [v.verifier.name for v in verify_note(Note.from_bytes(data.encode()), verifiers)]


def test_go_private_key_signs_exactly_as_go_does() -> None:
    seed = base64.b64decode(GO["peter_skey"].split("+", 4)[-1])
    assert seed[0] == ED25519
    signer = NoteSigner(name="PeterNeumann", key=SigningKey.from_seed(seed[1:]))
    assert signer.verifier == PETER
    assert PETER.key_id.hex() == "c74f20a3"
    note = Note(text=TEXT, signatures=(signer.sign(TEXT),))
    assert note.to_bytes().decode() == GO["signed"]


def test_go_open_rules() -> None:
    both = f"{TEXT}\n{PETER_SIG}{ENOCH_SIG}"
    assert _open(both, [PETER]) == ["PeterNeumann"]
    assert _open(both, [PETER, ENOCH]) == ["PeterNeumann", "EnochRoot"]
    with pytest.raises(UntrustedKeyError):
        _open(both, [])
    assert _open(f"{TEXT}\n{PETER_SIG}{PETER_SIG}{ENOCH_SIG}", [PETER]) == ["PeterNeumann"]
    note = Note.from_bytes(both.encode())
    assert note.text == TEXT
    assert note.to_bytes() == both.encode()


def _collider(n: int) -> NoteSigner:
    """Two seeds found by search whose keys share the key id 81812634 under the name "w"."""
    seed = hashlib.sha256(b"collide %d" % n).digest()
    return NoteSigner(name="w", key=SigningKey.from_seed(seed), sig_type=COSIGNATURE_V1)


def test_colliding_key_ids() -> None:
    """A key crafted to share a trusted key's name and id gets a signature failure, and two such
    keys trusted at once are a configuration error."""
    real, crafted = _collider(55915), _collider(78744)
    assert real.verifier.key_id == crafted.verifier.key_id == bytes.fromhex("81812634")
    note = Note(text=TEXT, signatures=(crafted.sign(TEXT, timestamp=1),))
    with pytest.raises(SignatureError):
        verify_note(note, [real.verifier])
    with pytest.raises(MalformedNoteError):
        verify_note(note, [real.verifier, crafted.verifier])


def test_same_verifier_twice_is_one() -> None:
    assert _open(f"{TEXT}\n{ENOCH_SIG}", [ENOCH, PETER, ENOCH]) == ["EnochRoot"]


def test_bad_signature_by_known_key_refuses_the_note() -> None:
    bad = PETER_SIG[:60] + "ABCD" + PETER_SIG[60:]
    with pytest.raises(SignatureError):
        _open(f"{TEXT}\n{bad}", [PETER])
    flipped = Note.from_bytes(f"{TEXT}\n{PETER_SIG}".encode()).signatures[0]
    forged = NoteSignature(
        name=flipped.name, key_id=flipped.key_id, signature=bytes(64 - 1) + b"\x01"
    )
    with pytest.raises(SignatureError):
        verify_note(Note(text=TEXT, signatures=(forged,)), [PETER])
    with pytest.raises(SignatureError):
        verify_note(Note(text=TEXT.upper(), signatures=(flipped,)), [PETER])


def test_bad_signature_by_unknown_key_is_ignored() -> None:
    bad_enoch = ENOCH_SIG[:60] + "ABCD" + ENOCH_SIG[60:]
    assert _open(f"{TEXT}\n{PETER_SIG}{bad_enoch}", [PETER]) == ["PeterNeumann"]


def test_misnamed_or_rehashed_signature_is_unknown() -> None:
    with pytest.raises(UntrustedKeyError):
        _open(f"{TEXT}\n{PETER_SIG.replace('PeterNeumann', 'CarmenSandiego')}", [PETER])
    with pytest.raises(UntrustedKeyError):
        _open(f"{TEXT}\n{PETER_SIG.replace('x08g', 'xxxx')}", [PETER])


BAD_NOTES = {
    "text only": TEXT,
    "no signatures": TEXT + "\n",
    "no final newline": TEXT + "\n" + PETER_SIG[:-1],
    "control character": "\x01" + TEXT + "\n" + PETER_SIG,
    "tab": TEXT.replace(" ", "\t", 1) + "\n" + PETER_SIG,
    "carriage return": TEXT + "\n" + PETER_SIG.replace("\n", "\r\n"),
    "name with a space": TEXT + "\n— Bad Name " + PETER_SIG.split(" ")[2],
    "unexpected line": TEXT + "\n" + PETER_SIG + "Unexpected line.\n",
    "blank line among signatures": TEXT + "\n" + PETER_SIG + "\n",
    "hyphen, not em dash": TEXT + "\n" + PETER_SIG.replace("—", "-"),
    "two spaces": TEXT + "\n" + PETER_SIG.replace(" ", "  ", 1),
    "not base64": TEXT + "\n— PeterNeumann x08go/ZJ!\n",
    "short signature": TEXT + "\n— PeterNeumann x08g\n",
    "non-canonical base64": TEXT + "\n— PeterNeumann " + PETER_SIG.split(" ")[2][:-2] + "N=\n",
    "too many signatures": TEXT + "\n" + PETER_SIG * 101,
    "oversized": "a" * MAX_NOTE_SIZE + TEXT + "\n" + PETER_SIG,
}


@pytest.mark.parametrize("data", BAD_NOTES.values(), ids=BAD_NOTES.keys())
def test_malformed_notes_are_refused(data: str) -> None:
    with pytest.raises(MalformedNoteError):
        Note.from_bytes(data.encode())


def test_non_utf8_note_is_refused() -> None:
    with pytest.raises(MalformedNoteError):
        Note.from_bytes(b"\xff" + f"{TEXT}\n{PETER_SIG}".encode())


def test_text_may_hold_blank_lines() -> None:
    text = "a\n\nb\n"
    signer = NoteSigner(name="k", key=SigningKey.from_seed(bytes(32)))
    note = Note(text=text, signatures=(signer.sign(text),))
    parsed = Note.from_bytes(note.to_bytes())
    assert parsed == note
    assert _open(note.to_bytes().decode(), [signer.verifier]) == ["k"]


def test_every_mangled_go_vkey_is_refused() -> None:
    vkey: str = GO["peter_vkey"]
    mangled = {vkey[i:j] for i in range(len(vkey)) for j in range(i + 1, len(vkey) + 1)}
    mangled |= {vkey[:i] + chr(ord(vkey[i]) + 1) + vkey[i + 1 :] for i in range(len(vkey))}
    mangled |= set(GO["bad_vkeys"])
    mangled.discard(vkey)
    for bad in mangled:
        with pytest.raises(MalformedError):
            NoteVerifier.from_vkey(bad)


@pytest.mark.parametrize("case", EXTERNAL["vkeys"], ids=lambda c: c["vkey"][:24])
def test_published_vkeys(case: dict[str, Any]) -> None:
    if case["valid"]:
        v = NoteVerifier.from_vkey(case["vkey"])
        assert v.to_vkey() == case["vkey"]
        assert v.sig_type == case["sig_type"]
    else:
        with pytest.raises(MalformedError):
            NoteVerifier.from_vkey(case["vkey"])


def test_c2sp_example_note() -> None:
    c2sp = EXTERNAL["c2sp_signed_note"]
    verifier = NoteVerifier.from_vkey(c2sp["vkey"])
    assert _open(c2sp["note"], [verifier]) == ["example.com/foo"]


def test_key_id_is_the_spec_hash() -> None:
    assert note_key_id("PeterNeumann", ED25519, PETER.key.raw) == bytes.fromhex("c74f20a3")
    cosigner = NoteVerifier(name="PeterNeumann", key=PETER.key, sig_type=COSIGNATURE_V1)
    assert cosigner.key_id != PETER.key_id


WITNESS = NoteSigner(
    name="witness.example/w1", key=SigningKey.from_seed(bytes(range(32))), sig_type=COSIGNATURE_V1
)
CP_TEXT = "example.com/log\n3\n" + base64.b64encode(bytes(32)).decode() + "\n"


def test_cosignature_round_trip_and_timestamp() -> None:
    sig = WITNESS.sign(CP_TEXT, timestamp=1_700_000_000)
    assert sig.signature[:8] == (1_700_000_000).to_bytes(8, "big")
    WITNESS.key.public.verify(sig.signature[8:], cosignature_message(CP_TEXT, 1_700_000_000))
    assert cosignature_message(CP_TEXT, 7).startswith(b"cosignature/v1\ntime 7\nexample.com/log\n")
    [verified] = verify_note(Note(text=CP_TEXT, signatures=(sig,)), [WITNESS.verifier])
    assert verified.timestamp == 1_700_000_000


def test_cosignature_with_a_changed_time_or_text_fails() -> None:
    sig = WITNESS.sign(CP_TEXT, timestamp=1_700_000_000)
    later = NoteSignature(
        name=sig.name,
        key_id=sig.key_id,
        signature=(1_700_000_001).to_bytes(8, "big") + sig.signature[8:],
    )
    for note in (
        Note(text=CP_TEXT, signatures=(later,)),
        Note(text=CP_TEXT.replace("\n3\n", "\n4\n"), signatures=(sig,)),
    ):
        with pytest.raises(SignatureError):
            verify_note(note, [WITNESS.verifier])


@pytest.mark.parametrize(
    "signature",
    [bytes(64), bytes(73), b"\xff" * 8 + bytes(64)],
    ids=["plain length", "too long", "time beyond 2**63"],
)
def test_malformed_cosignatures_fail(signature: bytes) -> None:
    v = WITNESS.verifier
    note = Note(
        text=CP_TEXT, signatures=(NoteSignature(name=v.name, key_id=v.key_id, signature=signature),)
    )
    with pytest.raises(SignatureError):
        verify_note(note, [v])


def test_plain_signature_is_not_a_cosignature() -> None:
    plain = NoteSigner(name=WITNESS.name, key=WITNESS.key)
    with pytest.raises(UntrustedKeyError):
        verify_note(Note(text=CP_TEXT, signatures=(plain.sign(CP_TEXT),)), [WITNESS.verifier])


@pytest.mark.parametrize(
    ("signer", "timestamp"),
    [
        (NoteSigner(name="k", key=WITNESS.key), 5),
        (WITNESS, None),
        (WITNESS, -1),
        (WITNESS, 2**63),
    ],
    ids=["plain with time", "cosignature without time", "negative time", "time too big"],
)
def test_signing_misuse_is_refused(signer: NoteSigner, timestamp: int | None) -> None:
    with pytest.raises(MalformedNoteError):
        signer.sign(CP_TEXT, timestamp=timestamp)


@pytest.mark.parametrize("name", ["", "a b", "a+b", "a\u2003b", "a\nb"])
def test_bad_key_names_are_refused(name: str) -> None:
    with pytest.raises(MalformedNoteError):
        NoteVerifier(name=name, key=PETER.key)


def test_bad_texts_and_types_are_refused() -> None:
    for text in ("no newline", "bell\a\n"):
        with pytest.raises(MalformedNoteError):
            NoteSigner(name="k", key=WITNESS.key).sign(text)
    with pytest.raises(MalformedNoteError):
        NoteVerifier(name="k", key=PETER.key, sig_type=0x02)
    with pytest.raises(MalformedNoteError):
        NoteSignature(name="k", key_id=b"abc", signature=b"x")
