"""Helpers shared by the client tests (importable: ``from client_helpers import ...``)."""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass
from pathlib import Path

import blake3
import pyarrow as pa

from ostraca.client.api import RegistryClient
from ostraca.client.config import ClientConfig, load_config
from ostraca.client.keyflow import escrow_ring
from ostraca.client.keystore import save_signing_key
from ostraca.client.publishing import PublishResult
from ostraca.protocol_spec import DatasetManifest, SigningKey, utc_now, verify_manifest
from ostraca.protocol_spec.models import DEFAULT_GROUP

NAMESPACE = "acme"
TERMS = "Research use only. Do not redistribute. Cite the corpus."
ENV_VARS = (
    "OSTRACA_HOME",
    "OSTRACA_REGISTRY",
    "OSTRACA_IDENTITY",
    "OSTRACA_PASSPHRASE_ENV",
    "OSTRACA_CACHE_DIR",
    "OSTRACA_CACHE_BYTES",
    "OSTRACA_MAX_MANIFEST_BYTES",
    "OSTRACA_MAX_RESPONSE_BYTES",
    "OSTRACA_REQUEST_DEADLINE_S",
    "OSTRACA_FETCH_DEADLINE_S",
    "OSTRACA_MIN_RATE_BYTES_S",
    "OSTRACA_STALL_WINDOW_S",
)
"""The environment variables the CLI reads (cleared before a test runs it)."""


@dataclass
class Identity:
    """One party: its home directory, config, key and a logged-in client."""

    name: str
    home: Path
    config: ClientConfig
    key: SigningKey
    client: RegistryClient

    @property
    def keyid(self) -> str:
        return self.key.keyid

    def env(self) -> dict[str, str]:
        """Environment for running the CLI as this identity."""
        return {"OSTRACA_HOME": str(self.home), "OSTRACA_REGISTRY": self.config.registry}


def make_identity(
    tmp_path: Path, registry: str, name: str, kind: str, *, register: bool = True
) -> Identity:
    home = tmp_path / f"home-{name}"
    key = SigningKey.generate()
    save_signing_key(
        key, home / "identity.pem", profile={"name": name, "kind": kind, "affiliation": "Test"}
    )
    config = load_config(home=home, registry=registry)
    client = RegistryClient(config)
    if register:
        client.register(name, kind, "Test")
        client.login()
    return Identity(name=name, home=home, config=config, key=key, client=client)


def sample_table(rows: int = 1000, *, seed: int = 0, text_bytes: int = 40) -> pa.Table:
    """A small deterministic table: ``id`` int64, ``text`` string, ``score`` float64."""
    ids = list(range(seed * rows, seed * rows + rows))
    return pa.table(
        {
            "id": pa.array(ids, pa.int64()),
            "text": pa.array(
                [
                    f"row {i} {hashlib.sha256(str(i).encode()).hexdigest()} "
                    + "x" * ((i * 7919) % text_bytes)
                    for i in ids
                ],
                pa.string(),
            ),
            "score": pa.array([i / 7 for i in ids], pa.float64()),
        }
    )


def read_back(client: RegistryClient, result: PublishResult) -> pa.Table:
    """Fetch every shard and chunk list through the registry, check each digest and the
    manifest's signature, open sealed shards with the publisher's escrow, and decode the shards
    as Arrow IPC streams."""
    env = client.get_manifest_envelope(result.dataset, result.version)
    verified = verify_manifest(
        env,
        publisher_keys=client.namespace_keys(result.dataset.split("/")[0]),
        now=utc_now(),
        dataset=result.dataset,
    )
    m: DatasetManifest = verified.statement
    assert verified.digest == result.digest
    schema = pa.ipc.read_schema(pa.py_buffer(base64.b64decode(m.arrow_schema)))
    keys = None
    if m.encryption:  # opened with the publisher's own escrow (ENCRYPTION.md 4.5)
        keys = escrow_ring(
            client, m.dataset, publisher_keys={client.keyid: client.key.public}, now=utc_now()
        )
    batches: list[pa.RecordBatch] = []
    for index, shard in enumerate(m.shards):
        data = client.get_blob(shard.sha256, dataset=result.dataset)
        assert len(data) == shard.bytes
        assert hashlib.sha256(data).hexdigest() == shard.sha256
        chunk_list = client.get_blob(shard.chunks, dataset=result.dataset)
        assert hashlib.sha256(chunk_list).hexdigest() == shard.chunks
        pieces = [data[i : i + m.chunk_bytes] for i in range(0, len(data), m.chunk_bytes)]
        piece_digest = blake3.blake3 if m.chunk_algorithm == "blake3" else hashlib.sha256
        assert chunk_list == b"".join(piece_digest(p).digest() for p in pieces)
        if keys is not None:
            record = m.encryption[DEFAULT_GROUP] if m.encryption else None
            assert record is not None
            cipher = keys.cipher(
                version=m.version,
                group=DEFAULT_GROUP,
                commitment=record.key_commitment,
                shard=index,
                chunk_bytes=m.chunk_bytes,
            )
            data = cipher.open(data)
        reader = pa.ipc.open_stream(data)
        assert reader.schema.equals(schema, check_metadata=True)
        shard_batches = list(reader)
        assert sum(b.num_rows for b in shard_batches) == shard.rows
        batches.extend(shard_batches)
    return pa.Table.from_batches(batches, schema=schema)
