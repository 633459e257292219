"""The client's encryption layer on real Arrow shards: sealed while written (digests over the
ciphertext), opened while read (one pass, nothing decoded from a chunk that does not open), and
data keys from verified key grants only."""

from __future__ import annotations

import functools
import hashlib
import io
import os
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow as pa
import pytest

from ostraca.client.encryption import (
    ChunkOpener,
    KeyRing,
    OpeningReader,
    SealingSink,
    encryption_key_envelope,
    identity_encryption_key,
    key_grant_envelope,
    opened,
)
from ostraca.client.fetch import ChunkVerifier
from ostraca.client.shards import HashingSink, write_options
from ostraca.client.sinks import Opened, VerifiedReader, map_view
from ostraca.client.verified import decode_shard
from ostraca.protocol_spec import AccessGrant, SigningKey, sign_statement
from ostraca.protocol_spec.chunks import DEFAULT_CHUNK_DIGEST, chunk_count, compute_chunk_list
from ostraca.protocol_spec.crypto import DataKey, GroupContext, ShardCipher, ciphertext_size
from ostraca.protocol_spec.enckeys import verify_encryption_key
from ostraca.protocol_spec.errors import DecryptionError, MissingKeyError, WrongKeyError

CHUNK = 65536
NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
DATASET = "acme/clinical"
CTX = GroupContext(dataset=DATASET, version=1, group="default")
PUBLISHER = SigningKey.from_seed(b"\x0a" * 32)
RESEARCHER = SigningKey.from_seed(b"\x0b" * 32)
SECRET = "patient-name-"
TABLE = pa.table(
    {
        "id": pa.array(range(20_000), pa.int64()),
        "name": pa.array([f"{SECRET}{i:06d}" for i in range(20_000)]),
    }
)


def write_sealed(path: Path, key: DataKey, shard: int = 0) -> tuple[int, bytes, int]:
    """Seal TABLE as one shard at ``path``: (plaintext bytes, chunk list, sealed bytes)."""
    cipher = ShardCipher(key, context=CTX, shard=shard, chunk_bytes=CHUNK)
    with open(path, "wb") as fh:
        hashing = HashingSink(fh, CHUNK)
        sealing = SealingSink(hashing, cipher)
        writer = pa.ipc.new_stream(
            pa.PythonFile(sealing, mode="w"), TABLE.schema, options=write_options("none")
        )
        for batch in TABLE.to_batches(max_chunksize=2_000):
            writer.write_batch(batch)
        writer.close()
        sealing.finish()
        _, chunk_list = hashing.finish()
    return sealing.size, chunk_list, hashing.size


def decoded(source: memoryview | io.RawIOBase) -> pa.Table:
    batches = decode_shard(
        source, full_schema=TABLE.schema, columns=None, rows=TABLE.num_rows, what="shard 0"
    )
    return pa.Table.from_batches(list(batches), schema=TABLE.schema)


def test_sealed_shard_digests_cover_ciphertext_and_decode(tmp_path: Path) -> None:
    key = DataKey.generate()
    plain, chunk_list, sealed_size = write_sealed(tmp_path / "s", key)
    data = (tmp_path / "s").read_bytes()
    assert sealed_size == len(data) == ciphertext_size(plain, CHUNK)
    assert len(chunk_list) == 32 * chunk_count(len(data), CHUNK) > 32
    assert chunk_list[:32] == hashlib.sha256(data[:CHUNK]).digest()
    assert SECRET.encode() not in data
    cipher = ShardCipher(key, context=CTX, shard=0, chunk_bytes=CHUNK)
    assert decoded(opened(memoryview(data), size=len(data), cipher=cipher)).equals(TABLE)
    reader = OpeningReader(io.BytesIO(data), size=len(data), cipher=cipher)
    assert decoded(reader).equals(TABLE)


def test_tampered_chunk_yields_no_row_from_it(tmp_path: Path) -> None:
    key = DataKey.generate()
    write_sealed(tmp_path / "s", key)
    data = bytearray((tmp_path / "s").read_bytes())
    data[100] ^= 1
    cipher = ShardCipher(key, context=CTX, shard=0, chunk_bytes=CHUNK)
    reader = OpeningReader(io.BytesIO(bytes(data)), size=len(data), cipher=cipher)
    batches = decode_shard(
        reader, full_schema=TABLE.schema, columns=None, rows=TABLE.num_rows, what="shard 0"
    )
    with pytest.raises(DecryptionError):
        next(batches)


def test_shard_read_as_another_shard_does_not_open(tmp_path: Path) -> None:
    key = DataKey.generate()
    write_sealed(tmp_path / "s", key, shard=3)
    data = (tmp_path / "s").read_bytes()
    cipher = ShardCipher(key, context=CTX, shard=0, chunk_bytes=CHUNK)
    with pytest.raises(DecryptionError):
        decoded(OpeningReader(io.BytesIO(data), size=len(data), cipher=cipher))


def grant(max_version: int | None) -> AccessGrant:
    return AccessGrant(
        dataset=DATASET,
        publisher=PUBLISHER.keyid,
        grantee=RESEARCHER.keyid,
        max_version=max_version,
        not_before=NOW,
        expires=NOW + timedelta(days=30),
        created=NOW,
    )


def test_keys_travel_from_escrow_to_grantee() -> None:
    keys = {1: {"default": DataKey.generate()}, 2: {"default": DataKey.generate()}}
    publisher_enc = identity_encryption_key(PUBLISHER)
    escrow = key_grant_envelope(
        PUBLISHER,
        keys,
        dataset=DATASET,
        grantee=PUBLISHER.keyid,
        recipient=publisher_enc.public,
        grant=None,
        created=NOW,
    )
    trusted = {PUBLISHER.keyid: PUBLISHER.public}
    # On a new machine the publisher holds only its identity: the derived key opens the escrow.
    ring = KeyRing(DATASET)
    ring.add(
        [escrow],
        publisher_keys=trusted,
        grantee=PUBLISHER.keyid,
        privates={publisher_enc.public.keyid: identity_encryption_key(PUBLISHER)},
        grants={None: None},
        now=NOW,
    )
    assert ring.keys() == keys
    # The researcher registers its key; the publisher verifies it and wraps to it.
    reg = encryption_key_envelope(RESEARCHER, identity_encryption_key(RESEARCHER), created=NOW)
    researcher_pub = verify_encryption_key(
        reg, owner_keys={RESEARCHER.keyid: RESEARCHER.public}, now=NOW
    ).statement.to_public_key()
    g = grant(max_version=1)
    g_id = sign_statement(g, [PUBLISHER]).digest
    wrapped = key_grant_envelope(
        PUBLISHER,
        ring.keys(),
        dataset=DATASET,
        grantee=RESEARCHER.keyid,
        recipient=researcher_pub,
        grant=g_id,
        created=NOW,
    )
    mine = KeyRing(DATASET)
    researcher_enc = identity_encryption_key(RESEARCHER)
    mine.add(
        [wrapped, escrow],
        publisher_keys=trusted,
        grantee=RESEARCHER.keyid,
        privates={researcher_enc.public.keyid: researcher_enc},
        grants={g_id: g},
        now=NOW,
    )
    c1 = keys[1]["default"].commitment(CTX)
    mine.cipher(version=1, group="default", commitment=c1, shard=0, chunk_bytes=CHUNK)
    # Version 2 is outside the grant (max_version 1): its key is not taken.
    ctx2 = GroupContext(dataset=DATASET, version=2, group="default")
    with pytest.raises(MissingKeyError):
        mine.cipher(
            version=2,
            group="default",
            commitment=keys[2]["default"].commitment(ctx2),
            shard=0,
            chunk_bytes=CHUNK,
        )
    with pytest.raises(WrongKeyError):
        mine.cipher(version=1, group="default", commitment="00" * 32, shard=0, chunk_bytes=CHUNK)


def stream_through_verifier(
    tmp_path: Path, data: bytes, cipher: ShardCipher
) -> tuple[Iterator[pa.RecordBatch], threading.Thread, list[BaseException]]:
    """The streaming reader's path (stream.py): ``data`` arrives on a thread of its own through
    a ChunkVerifier (chunk list over ``data``: what its publisher signed) that opens each chunk
    as it verifies; the decoder reads the plaintext through a VerifiedReader."""
    path = tmp_path / "partial"
    path.write_bytes(bytes(len(data)))
    fd = os.open(path, os.O_RDWR)
    view = map_view(fd, len(data))
    opener = ChunkOpener(size=len(data), cipher=cipher)
    verifier = ChunkVerifier(
        name="shard 0",
        digest=hashlib.sha256(data).hexdigest(),
        size=len(data),
        chunk_bytes=CHUNK,
        chunk_list=compute_chunk_list(data, CHUNK, DEFAULT_CHUNK_DIGEST),
        fd=fd,
        on_verified=functools.partial(opener.open_verified, view),
    )
    errors: list[BaseException] = []

    def receive() -> None:
        try:
            for start in range(0, len(data), 10_000):  # pieces that straddle chunks
                verifier.write(memoryview(data)[start : start + 10_000])
            verifier.finish()
        except BaseException as exc:
            errors.append(exc)
        finally:
            os.close(fd)

    thread = threading.Thread(target=receive)
    thread.start()
    batches = decode_shard(
        VerifiedReader(Opened(view, verifier, opener)),
        full_schema=TABLE.schema,
        columns=None,
        rows=TABLE.num_rows,
        what="shard 0",
    )
    return batches, thread, errors


def test_chunks_opened_as_they_verify_decode_and_the_file_keeps_ciphertext(
    tmp_path: Path,
) -> None:
    key = DataKey.generate()
    write_sealed(tmp_path / "s", key)
    data = (tmp_path / "s").read_bytes()
    cipher = ShardCipher(key, context=CTX, shard=0, chunk_bytes=CHUNK)
    batches, thread, errors = stream_through_verifier(tmp_path, data, cipher)
    assert pa.Table.from_batches(list(batches), schema=TABLE.schema).equals(TABLE)
    thread.join()
    assert errors == []
    assert (tmp_path / "partial").read_bytes() == data  # the cached copy stays sealed


def test_a_chunk_that_verifies_but_does_not_open_yields_no_row(tmp_path: Path) -> None:
    """A shard sealed as shard 3 and signed as shard 0: every digest matches, no chunk opens,
    and the reader gets the DecryptionError, not a row."""
    key = DataKey.generate()
    write_sealed(tmp_path / "s", key, shard=3)
    data = (tmp_path / "s").read_bytes()
    cipher = ShardCipher(key, context=CTX, shard=0, chunk_bytes=CHUNK)
    batches, thread, errors = stream_through_verifier(tmp_path, data, cipher)
    with pytest.raises(DecryptionError):
        next(batches)
    thread.join()
    assert len(errors) == 1
    assert isinstance(errors[0], DecryptionError)


def test_an_empty_shard_whose_tag_does_not_open_is_a_decryption_error(tmp_path: Path) -> None:
    """An empty plaintext still seals to one 16-byte tag: the reader at the end of the (empty)
    data waits for it to be checked, so a tag that does not open is DecryptionError, not an
    Arrow error about an empty stream."""
    data = ShardCipher(DataKey.generate(), context=CTX, shard=0, chunk_bytes=CHUNK).seal(b"")
    assert len(data) == 16
    cipher = ShardCipher(DataKey.generate(), context=CTX, shard=0, chunk_bytes=CHUNK)
    batches, thread, errors = stream_through_verifier(tmp_path, data, cipher)
    with pytest.raises(DecryptionError):
        next(batches)
    thread.join()
    assert [type(e) for e in errors] == [DecryptionError]
