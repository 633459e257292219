"""Pinned publisher keys (TOFU, config pins, rotation) and chunk-by-chunk verification, offline."""

from __future__ import annotations

import hashlib
import os
import threading
from pathlib import Path

import pytest

from ostraca.client.fetch import ChunkVerifier
from ostraca.client.trust import TrustStore
from ostraca.protocol_spec import (
    DigestMismatchError,
    KeyRotation,
    PublicKey,
    SigningKey,
    UntrustedKeyError,
    sign_statement,
    utc_now,
)


def _keys(*keys: SigningKey) -> dict[str, object]:
    return {k.keyid: k.public for k in keys}


def test_tofu_pins_then_refuses_a_changed_key(tmp_path: Path) -> None:
    told: list[str] = []
    store = TrustStore(tmp_path, announce=told.append)
    old, new = SigningKey.generate(), SigningKey.generate()
    now = utc_now()
    got = store.keys_for("acme", offered={old.keyid: old.public}, now=now)
    assert set(got) == {old.keyid}
    assert len(told) == 1
    assert "first use" in told[0]
    assert old.keyid[:16] in told[0]
    # Same key again: silent.
    store.keys_for("acme", offered={old.keyid: old.public}, now=now)
    assert len(told) == 1
    # The registry now lists another key: refused, with a hint.
    with pytest.raises(UntrustedKeyError) as info:
        store.keys_for("acme", offered={new.keyid: new.public}, now=now)
    assert info.value.hint is not None
    assert "KeyRotation" in info.value.hint
    assert store.pinned("acme") == {old.keyid: old.public}
    # A pin made by hand (config) wins over what the registry says.
    store.pin("acme", {new.keyid: new.public})
    assert set(store.keys_for("acme", offered={new.keyid: new.public}, now=now)) == {new.keyid}


def test_key_rotation_signed_by_both_keys_moves_the_pin(tmp_path: Path) -> None:
    store = TrustStore(tmp_path)
    old, new, evil = SigningKey.generate(), SigningKey.generate(), SigningKey.generate()
    now = utc_now()
    store.keys_for("acme", offered={old.keyid: old.public}, now=now)
    rotation = KeyRotation(
        old_key=old.keyid, new_key=PublicKey.from_verify_key(new.public), created=now
    )
    # Signed by the new key only: no proof the old key agreed.
    forged = sign_statement(rotation, [new])
    with pytest.raises(UntrustedKeyError):
        store.keys_for("acme", offered={new.keyid: new.public}, now=now, rotations=[forged])
    # A rotation to another key does not link the offered one.
    other = KeyRotation(
        old_key=old.keyid, new_key=PublicKey.from_verify_key(evil.public), created=now
    )
    with pytest.raises(UntrustedKeyError):
        store.keys_for(
            "acme",
            offered={new.keyid: new.public},
            now=now,
            rotations=[sign_statement(other, [old, evil])],
        )
    good = sign_statement(rotation, [old, new])
    got = store.keys_for("acme", offered={new.keyid: new.public}, now=now, rotations=[good])
    assert set(got) == {new.keyid}
    assert store.pinned("acme") == {new.keyid: new.public}


def _shard(size: int, chunk: int) -> tuple[bytes, bytes, str]:
    data = os.urandom(size)
    chunks = b"".join(hashlib.sha256(data[i : i + chunk]).digest() for i in range(0, size, chunk))
    return data, chunks, hashlib.sha256(data).hexdigest()


def _verifier(
    tmp_path: Path, data: bytes, chunks: bytes, digest: str, chunk: int
) -> tuple[ChunkVerifier, int]:
    fd = os.open(tmp_path / "part", os.O_RDWR | os.O_CREAT, 0o644)
    os.ftruncate(fd, len(data))
    v = ChunkVerifier(
        name="shard 7", digest=digest, size=len(data), chunk_bytes=chunk, chunk_list=chunks, fd=fd
    )
    return v, fd


def test_chunk_verifier_releases_only_verified_chunks(tmp_path: Path) -> None:
    chunk = 65536
    data, chunks, digest = _shard(3 * chunk + 1000, chunk)
    v, fd = _verifier(tmp_path, data, chunks, digest, chunk)
    try:
        v.write(memoryview(data)[: chunk + 10])
        assert v.verified == chunk
        v.wait_for(chunk)  # returns at once: chunk 0 verified
        released = threading.Event()

        def reader() -> None:
            v.wait_for(chunk + 1)
            released.set()

        t = threading.Thread(target=reader)
        t.start()
        assert not released.wait(0.1)  # chunk 1 not complete yet: the reader waits
        v.write(memoryview(data)[chunk + 10 :])
        # All chunks match, but the last one is released only after the length check (SPEC 2.5).
        assert released.wait(5)
        t.join()
        last = threading.Event()

        def reader_last() -> None:
            v.wait_for(len(data))
            last.set()

        t2 = threading.Thread(target=reader_last)
        t2.start()
        assert not last.wait(0.1)
        v.finish()
        assert last.wait(5)
        t2.join()
    finally:
        os.close(fd)


def test_chunk_verifier_tampered_chunk_raises_for_readers(tmp_path: Path) -> None:
    chunk = 65536
    data, chunks, digest = _shard(3 * chunk, chunk)
    bad = bytearray(data)
    bad[chunk + 5] ^= 1
    v, fd = _verifier(tmp_path, data, chunks, digest, chunk)
    try:
        with pytest.raises(DigestMismatchError, match="shard 7: chunk 1"):
            v.write(memoryview(bytes(bad)))
        assert v.verified == chunk
        with pytest.raises(DigestMismatchError):
            v.wait_for(chunk + 1)
    finally:
        os.close(fd)


def test_chunk_verifier_resumes_a_partial_file(tmp_path: Path) -> None:
    chunk = 65536
    data, chunks, digest = _shard(3 * chunk + 7, chunk)
    v, fd = _verifier(tmp_path, data, chunks, digest, chunk)
    os.pwrite(fd, data[: 2 * chunk + 100], 0)  # a dropped download left this behind
    os.close(fd)
    v2, fd2 = _verifier(tmp_path, data, chunks, digest, chunk)
    try:
        assert v2.resume_existing() == 2 * chunk
        v2.write(memoryview(data)[2 * chunk :])
        v2.finish()
        assert (tmp_path / "part").read_bytes() == data
        # More bytes than the manifest promised are refused.
        with pytest.raises(DigestMismatchError):
            v2.write(memoryview(b"x"))
    finally:
        os.close(fd2)
    del v
