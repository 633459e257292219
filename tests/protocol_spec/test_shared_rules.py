"""The protocol rules the registry and the client both apply: chunk-list length (2.5), the chain
link M8 against a head, the rotation walk (5.5), and the grant checks a registry re-applies to
grants it stored (G8, G10–G12)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from ostraca.protocol_spec import (
    AccessGrant,
    ChainError,
    ChainHead,
    DatasetManifest,
    Envelope,
    ExpiredError,
    KeyRotation,
    NotYetValidError,
    PublicKey,
    RevokedError,
    RollbackError,
    ScopeError,
    SigningKey,
    check_grant_version,
    check_grant_window,
    chunk_count,
    chunk_list_bytes,
    sign_statement,
    verify_link,
    walk_rotations,
)

from .test_properties import FIXED_MANIFEST

VECTORS = Path(__file__).parents[2] / "protocol_spec" / "vectors"
NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)


def test_chunk_list_length_matches_the_vectors() -> None:
    for v in json.loads((VECTORS / "chunks.json").read_text())["vectors"]:
        assert chunk_list_bytes(v["bytes"], v["chunk_bytes"]) == len(v["chunk_list_hex"]) // 2
    assert chunk_count(0, 65536) == 1
    assert chunk_count(65536, 65536) == 1
    assert chunk_count(65537, 65536) == 2


def _rotation(old: SigningKey, new: SigningKey, minutes: int) -> bytes:
    statement = KeyRotation(
        old_key=old.keyid,
        new_key=PublicKey.from_verify_key(new.public),
        created=NOW - timedelta(minutes=minutes),
    )
    return sign_statement(statement, [old, new]).to_json()


def test_rotation_walk_follows_verified_links_in_order() -> None:
    a, b, c, stranger = (SigningKey.from_seed(bytes([i]) * 32) for i in range(4))
    chain = [
        Envelope.from_json(_rotation(b, c, 1)),  # listed out of order
        Envelope.from_json(_rotation(stranger, a, 3)),  # not from a trusted key
        Envelope.from_json(_rotation(a, b, 2)),
        Envelope.from_json(
            sign_statement(  # signed by the old key only
                KeyRotation(
                    old_key=a.keyid, new_key=PublicKey.from_verify_key(c.public), created=NOW
                ),
                [a],
            ).to_json()
        ),
    ]
    walk = walk_rotations({a.keyid: a.public}, chain, now=NOW)
    assert list(walk.active) == [c.keyid]
    assert [link.statement.old_key for link in walk.links] == [a.keyid, b.keyid]
    assert walk.rotated[a.keyid].successor == b.keyid
    assert walk.rotated[b.keyid].until == NOW - timedelta(minutes=1)
    # Authority never returns to a retired key.
    back = [Envelope.from_json(_rotation(a, b, 2))]
    assert list(walk_rotations({a.keyid: a.public}, back, now=NOW, retired=[b.keyid]).active) == [
        a.keyid
    ]


def test_grant_version_and_window_checks() -> None:
    g = AccessGrant(
        dataset="acme/books",
        publisher="0" * 64,
        grantee="1" * 64,
        min_version=2,
        max_version=3,
        not_before=NOW,
        expires=NOW + timedelta(days=1),
        created=NOW,
    )
    check_grant_version(g, 2)
    for version in (1, 4):
        with pytest.raises(ScopeError):
            check_grant_version(g, version)
    check_grant_window(g, grant_id="f" * 64, now=NOW, revoked=False)
    cases = [
        (NOW - timedelta(seconds=1), False, NotYetValidError),
        (NOW + timedelta(days=1), False, ExpiredError),
        (NOW, True, RevokedError),
    ]
    for now, revoked, error in cases:
        with pytest.raises(error):
            check_grant_window(g, grant_id="f" * 64, now=now, revoked=revoked)


def _manifest(version: int, previous: str | None) -> DatasetManifest:
    return FIXED_MANIFEST.model_copy(update={"version": version, "previous": previous})


def test_chain_link_against_a_head() -> None:
    empty = ChainHead.empty("acme/books")
    verify_link(_manifest(1, None), "a" * 64, previous=empty)
    with pytest.raises(ChainError):
        verify_link(_manifest(2, "a" * 64), "b" * 64, previous=empty)  # a gap
    head = ChainHead(dataset="acme/books", version=2, digest="b" * 64)
    verify_link(_manifest(3, "b" * 64), "c" * 64, previous=head)
    verify_link(_manifest(2, "a" * 64), "b" * 64, previous=head)  # the head itself
    cases: list[tuple[DatasetManifest, str, type[Exception]]] = [
        (_manifest(3, "f" * 64), "c" * 64, ChainError),  # does not link
        (_manifest(2, "a" * 64), "d" * 64, ChainError),  # a fork
        (_manifest(1, None), "a" * 64, RollbackError),
        (_manifest(4, "c" * 64), "d" * 64, ChainError),  # a gap
    ]
    for manifest, digest, error in cases:
        with pytest.raises(error):
            verify_link(manifest, digest, previous=head)
    other = ChainHead(dataset="acme/other", version=2, digest="b" * 64)
    with pytest.raises(ChainError):
        verify_link(_manifest(3, "b" * 64), "c" * 64, previous=other)
