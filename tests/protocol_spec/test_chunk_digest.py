"""``DatasetManifest.chunk_digest`` (SPEC 2.5, 7, 10): BLAKE3 chunk lists, checked with the
``blake3`` package directly (no ostraca code computes them here), the signed manifest vectors,
and the forward-compatibility rule (absent = sha256, byte-identical; unknown = ``malformed``)."""

from __future__ import annotations

import hashlib
import json
import re
from typing import Any

import blake3
import pytest

from ostraca.protocol_spec import DatasetManifest, MalformedError, OstracaError
from ostraca.protocol_spec.chunks import chunk_hasher, compute_chunk_list

from .vector_runner import load, run

BLAKE3 = load("chunks_blake3.json")


def _content(vector: dict[str, Any]) -> bytes:
    offset = int(re.fullmatch(r"byte i is \(i \+ (\d+)\) mod 251, .*", vector["content_rule"])[1])  # type: ignore[index]
    return bytes((i + offset) % 251 for i in range(vector["bytes"]))


@pytest.mark.parametrize("vector", BLAKE3["shards"], ids=lambda v: v["name"])
def test_blake3_chunk_list_vector_independently(vector: dict[str, Any]) -> None:
    data = _content(vector)
    step = vector["chunk_bytes"]
    chunk_list = b"".join(
        blake3.blake3(data[i : i + step]).digest() for i in range(0, len(data), step)
    )
    assert vector["chunk_digest"] == "blake3"
    assert len(chunk_list) == 32 * -(-len(data) // step)
    assert chunk_list.hex() == vector["chunk_list_hex"]
    assert hashlib.sha256(chunk_list).hexdigest() == vector["chunks"]  # the list's digest: sha256
    assert hashlib.sha256(data).hexdigest() == vector["sha256"]  # the blob id: sha256
    assert compute_chunk_list(data, step, "blake3") == chunk_list


def test_sha256_chunk_lists_are_unchanged() -> None:
    for vector in load("chunks.json")["vectors"]:
        data = _content(vector)
        assert (
            compute_chunk_list(data, vector["chunk_bytes"], "sha256").hex()
            == (vector["chunk_list_hex"])
        )


def test_blake3_manifest_vector_verifies_and_names_its_algorithm() -> None:
    good, bad = BLAKE3["vectors"]
    verified = run(good)
    assert verified.digest == good["expected"]["statement_id"]
    m = verified.statement
    assert isinstance(m, DatasetManifest)
    assert (m.chunk_digest, m.chunk_algorithm) == ("blake3", "blake3")
    assert m.to_payload() == good["payload_text"].encode()
    shards = {v["sha256"]: v for v in BLAKE3["shards"]}
    for entry in m.shards:
        assert entry.chunks == shards[entry.sha256]["chunks"]
    with pytest.raises(OstracaError) as info:
        run(bad)
    assert info.value.code == bad["expected"]["code"] == "malformed"
    assert "'sha3-256'" in str(info.value)


def _manifest_obj() -> dict[str, Any]:
    return dict(json.loads(load("positive.json")["vectors"][0]["payload_text"]))


def test_absent_means_sha256_and_the_payload_is_unchanged() -> None:
    obj = _manifest_obj()
    assert "chunk_digest" not in obj
    m = DatasetManifest.from_json_obj(obj)
    assert (m.chunk_digest, m.chunk_algorithm) == (None, "sha256")
    assert json.loads(m.to_payload()) == obj  # nothing added: old ids and signatures hold
    explicit = DatasetManifest.from_json_obj({**obj, "chunk_digest": "sha256"})
    assert explicit.chunk_algorithm == "sha256"
    assert json.loads(explicit.to_payload())["chunk_digest"] == "sha256"  # kept as signed


@pytest.mark.parametrize("value", ["sha3-256", "BLAKE3", "", 1, True, ["blake3"]])
def test_an_unknown_algorithm_is_malformed_and_named(value: Any) -> None:
    with pytest.raises(MalformedError, match="chunk_digest") as info:
        DatasetManifest.from_json_obj({**_manifest_obj(), "chunk_digest": value})
    assert repr(value) in str(info.value)
    assert "sha256, blake3" in str(info.value)


def test_chunk_hasher_is_the_one_place_algorithms_are_chosen() -> None:
    assert chunk_hasher("sha256")().digest() == hashlib.sha256().digest()
    assert chunk_hasher("blake3")().digest() == blake3.blake3().digest()
    with pytest.raises(MalformedError, match="'md5'"):
        chunk_hasher("md5")
